// Package handoff is the hand-off both logs' appends go through: an Append
// puts a request on its log's queue and waits for its answer; the log's one
// writer goroutine takes the first request queued and every one already
// queued behind it (never waiting for more), makes the group durable with
// one write (an fdatasync of the file log; a script call to Redis) and
// answers each. Appends that arrive meanwhile queue behind the write in
// flight, so groups grow with load by themselves.
//
// An Append whose context ends, or whose log closes, before the writer
// took its request gives up; once the writer took it, the Append waits for
// its answer whatever its context does, since the write is shared. The
// two race for the request with a compare-and-swap, so that exactly one
// of them wins.
package handoff

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// The states of a Request.
const (
	queued int32 = iota
	taken
	cancelled
)

// Request is one Append waiting for the writer; T is what the log keeps
// with it (the encoded record, the script's arguments).
type Request[T any] struct {
	Tx   *txn.Transaction
	Data T
	// Size is the request's bytes, for the bound on a group.
	Size int
	// Entry and Err are the answer, set by the writer before Answer.
	Entry txlog.Entry
	Err   error
	state atomic.Int32
	done  chan struct{}
}

// Answer returns Entry and Err to the Append; the writer calls it once.
func (r *Request[T]) Answer() { close(r.done) }

// Queue is one log's hand-off.
type Queue[T any] struct {
	op         string // what errors name: "filelog: append"
	reqs       chan *Request[T]
	closing    <-chan struct{}
	writerDone <-chan struct{}
}

// NewQueue returns a queue of up to length waiting requests for the
// writer of a log that closes closing when it starts closing and
// writerDone when its writer has returned. Errors begin with op.
func NewQueue[T any](op string, length int, closing, writerDone <-chan struct{}) *Queue[T] {
	return &Queue[T]{op: op, reqs: make(chan *Request[T], length), closing: closing, writerDone: writerDone}
}

// Check refuses an append of nil, one whose ctx is done, or one to a
// closing log: what an Append checks before it encodes tx.
func (q *Queue[T]) Check(ctx context.Context, tx *txn.Transaction) error {
	if tx == nil {
		return errors.New(q.op + ": nil transaction")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", q.op, err)
	}
	select {
	case <-q.closing:
		return fmt.Errorf("%s: %w", q.op, txlog.ErrClosed)
	default:
	}
	return nil
}

// Append hands tx, with data of size bytes, to the writer and returns its
// answer.
func (q *Queue[T]) Append(ctx context.Context, tx *txn.Transaction, data T, size int) (txlog.Entry, error) {
	r := &Request[T]{Tx: tx, Data: data, Size: size, done: make(chan struct{})}
	select {
	case q.reqs <- r:
	case <-ctx.Done():
		return txlog.Entry{}, fmt.Errorf("%s: %w", q.op, ctx.Err())
	case <-q.closing:
		return txlog.Entry{}, fmt.Errorf("%s: %w", q.op, txlog.ErrClosed)
	}
	select {
	case <-r.done:
		return r.Entry, r.Err
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, cancelled) {
			return txlog.Entry{}, fmt.Errorf("%s: %w", q.op, ctx.Err())
		}
	case <-q.writerDone:
		if r.state.CompareAndSwap(queued, cancelled) {
			return txlog.Entry{}, fmt.Errorf("%s: %w", q.op, txlog.ErrClosed)
		}
	}
	<-r.done // the writer took it: the answer is one write away
	return r.Entry, r.Err
}

// Requests is where the writer waits for the first request of a group.
func (q *Queue[T]) Requests() <-chan *Request[T] { return q.reqs }

// Gather appends to group first and every request already queued behind
// it, up to maxBytes, skipping those whose Append gave up, and returns
// the group. The requests it returns are the writer's to answer.
func (q *Queue[T]) Gather(group []*Request[T], first *Request[T], maxBytes int) []*Request[T] {
	n := 0
	take := func(r *Request[T]) {
		if r.state.CompareAndSwap(queued, taken) {
			group = append(group, r)
			n += r.Size
		}
	}
	take(first)
	for n < maxBytes {
		select {
		case r := <-q.reqs:
			take(r)
		default:
			return group
		}
	}
	return group
}
