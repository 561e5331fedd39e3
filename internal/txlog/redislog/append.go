package redislog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// The states of an appendReq: an Append that gives up (its context is done,
// or the log closed) and the writer that takes the request for a group race
// for it with a compare-and-swap, so that exactly one of them wins.
const (
	reqQueued int32 = iota
	reqTaken
	reqCancelled
)

// appendReq is one Append waiting for the writer.
type appendReq struct {
	tx    *txn.Transaction
	args  []any // the transaction's part of the script's ARGV
	size  int   // bytes of args, for MaxBatchBytes
	state atomic.Int32
	done  chan struct{} // closed once entry or err is set
	entry txlog.Entry
	err   error
}

// Append makes tx durable in the stream and visible in the overlay, in one
// script call, and returns its entry; the entry's Pos is its stream id.
// Concurrent appends share one call. Durable means what the server's AOF
// setting makes it (with appendfsync always, Redis fsyncs before it
// replies). ctx is honoured while the append waits for the writer; once
// the writer has taken it, Append waits for the call's answer whatever ctx
// does.
//
// An Append that fails with a network error may or may not have reached
// the log. A transaction still pending in the overlay is not appended
// twice: appending it again returns its first entry.
func (l *Log) Append(ctx context.Context, tx *txn.Transaction) (txlog.Entry, error) {
	if tx == nil {
		return txlog.Entry{}, errors.New("redislog: append: nil transaction")
	}
	if err := ctx.Err(); err != nil {
		return txlog.Entry{}, fmt.Errorf("redislog: append: %w", err)
	}
	if l.isClosing() {
		return txlog.Entry{}, fmt.Errorf("redislog: append: %w", txlog.ErrClosed)
	}
	r, err := l.newRequest(tx)
	if err != nil {
		return txlog.Entry{}, err
	}
	select {
	case l.reqs <- r:
	case <-ctx.Done():
		return txlog.Entry{}, fmt.Errorf("redislog: append: %w", ctx.Err())
	case <-l.closing:
		return txlog.Entry{}, fmt.Errorf("redislog: append: %w", txlog.ErrClosed)
	}
	select {
	case <-r.done:
		return r.entry, r.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqCancelled) {
			return txlog.Entry{}, fmt.Errorf("redislog: append: %w", ctx.Err())
		}
	case <-l.writerDone:
		if r.state.CompareAndSwap(reqQueued, reqCancelled) {
			return txlog.Entry{}, fmt.Errorf("redislog: append: %w", txlog.ErrClosed)
		}
	}
	<-r.done // the writer took it: the answer is one call away
	return r.entry, r.err
}

// newRequest encodes tx and its overlay entries as the script's arguments.
func (l *Log) newRequest(tx *txn.Transaction) (*appendReq, error) {
	payload, err := json.Marshal(tx)
	if err != nil {
		return nil, fmt.Errorf("redislog: append: encode transaction: %w", err)
	}
	if len(payload) > l.cfg.MaxRecordSize {
		return nil, fmt.Errorf("redislog: append: transaction of %d bytes exceeds MaxRecordSize %d",
			len(payload), l.cfg.MaxRecordSize)
	}
	r := &appendReq{tx: tx, done: make(chan struct{})}
	r.args = make([]any, 0, 3+3*len(tx.Operations))
	r.args = append(r.args, tx.ID, payload, len(tx.Operations))
	r.size = len(tx.ID) + len(payload)
	for _, op := range tx.Operations {
		entry, err := json.Marshal(opEntry{Tx: tx.ID, Kind: string(op.Op), Values: op.Values})
		if err != nil {
			return nil, fmt.Errorf("redislog: append: encode operation: %w", err)
		}
		r.args = append(r.args, op.Table, op.ID, entry)
		r.size += len(op.Table) + len(op.ID) + len(entry)
	}
	return r, nil
}

// run is the writer goroutine: it takes the first queued append, waits for
// one of MaxInFlight call slots, drains whatever else is queued by then
// (never waiting for more), and hands the group to a goroutine that appends
// it with one script call and answers it. Appends that arrive meanwhile
// queue behind the calls in flight, so groups grow with load by
// themselves.
func (l *Log) run() {
	var calls sync.WaitGroup
	defer close(l.writerDone)
	defer calls.Wait() // a call under way finishes and is answered
	slots := make(chan struct{}, l.cfg.MaxInFlight)
	for {
		select {
		case <-l.closing:
			return
		case r := <-l.reqs:
			select {
			case slots <- struct{}{}:
			case <-l.closing:
				return // r not taken: its Append sees writerDone and fails
			}
			if l.isClosing() {
				return
			}
			batch := l.gather(r)
			calls.Go(func() {
				l.commit(batch)
				<-slots
			})
		}
	}
}

// gather returns first and every append already queued behind it, up to
// MaxBatchBytes, skipping those whose Append gave up.
func (l *Log) gather(first *appendReq) []*appendReq {
	var batch []*appendReq
	n := 0
	take := func(r *appendReq) {
		if r.state.CompareAndSwap(reqQueued, reqTaken) {
			batch = append(batch, r)
			n += r.size
		}
	}
	take(first)
	for n < l.cfg.MaxBatchBytes {
		select {
		case r := <-l.reqs:
			take(r)
		default:
			return batch
		}
	}
	return batch
}

// commit appends a group with one call of the append script and answers
// every append of it. A failed call fails the group's appends only: the
// next group tries again (unlike a failed fsync, a failed call to Redis
// leaves nothing unknown behind on this side).
func (l *Log) commit(batch []*appendReq) {
	if len(batch) == 0 {
		return
	}
	n := 1
	for _, r := range batch {
		n += len(r.args)
	}
	args := make([]any, 0, n)
	args = append(args, l.keys.prefix)
	for _, r := range batch {
		args = append(args, r.args...)
	}
	// Not the appenders' contexts: the call is shared, and go-redis's read
	// and write timeouts bound it.
	ids, err := appendScript.Run(context.Background(), l.client,
		[]string{l.keys.stream, l.keys.tables, l.keys.counts}, args...).StringSlice()
	if err == nil && len(ids) != len(batch) {
		err = fmt.Errorf("append script returned %d stream ids for %d transactions", len(ids), len(batch))
	}
	if err != nil {
		err = fmt.Errorf("redislog: append: %w", err)
		for _, r := range batch {
			r.err = err
			close(r.done)
		}
		return
	}
	l.calls.Add(1)
	l.appended.Add(int64(len(batch)))
	for i, r := range batch {
		r.entry = txlog.Entry{Pos: ids[i], Tx: r.tx}
		close(r.done)
	}
}
