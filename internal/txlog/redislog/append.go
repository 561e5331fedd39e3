package redislog

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txlog/handoff"
	"github.com/spoolgw/spool/internal/txn"
)

// appendReq is one Append waiting for the writer, with its part of the
// script's ARGV.
type appendReq = handoff.Request[encoded]

// encoded is a transaction as the append script takes it: its part of the
// ARGV, and its payload (among them), which the log keeps for its own
// Claim (recent).
type encoded struct {
	args    []any
	payload []byte
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
	if err := l.queue.Check(ctx, tx); err != nil {
		return txlog.Entry{}, err
	}
	enc, size, err := l.encode(tx)
	if err != nil {
		return txlog.Entry{}, err
	}
	return l.queue.Append(ctx, tx, enc, size)
}

// encode encodes tx and its overlay entries as the script's arguments,
// and returns their size in bytes.
func (l *Log) encode(tx *txn.Transaction) (encoded, int, error) {
	payload, err := json.Marshal(tx)
	if err != nil {
		return encoded{}, 0, fmt.Errorf("redislog: append: encode transaction: %w", err)
	}
	if len(payload) > l.cfg.MaxRecordSize {
		return encoded{}, 0, fmt.Errorf("redislog: append: transaction of %d bytes exceeds MaxRecordSize %d",
			len(payload), l.cfg.MaxRecordSize)
	}
	// Each operation's values are encoded once, for its overlay entry and
	// its events entry alike.
	vals := make([][]byte, len(tx.Operations))
	for i, op := range tx.Operations {
		if len(op.Values) > 0 {
			if vals[i], err = json.Marshal(op.Values); err != nil {
				return encoded{}, 0, fmt.Errorf("redislog: append: encode operation %d: %w", i, err)
			}
		}
	}
	ikey, irec := "", []byte(nil)
	if tx.Idempotency != nil {
		ikey, irec = tx.Idempotency.Key, tx.Idempotency.Record
	}
	evops := encodeOps(tx.Operations, vals)
	args := make([]any, 0, 6+3*len(tx.Operations))
	args = append(args, tx.ID, payload, ikey, irec, evops, len(tx.Operations))
	size := len(tx.ID) + len(payload) + len(ikey) + len(irec) + len(evops)
	prefix := entryPrefix(tx.ID)
	for i, op := range tx.Operations {
		entry := encodeEntry(prefix, op.Op, vals[i])
		args = append(args, op.Table, op.ID, entry)
		size += len(op.Table) + len(op.ID) + len(entry)
	}
	return encoded{args: args, payload: payload}, size, nil
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
		case r := <-l.queue.Requests():
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
	return l.queue.Gather(nil, first, l.cfg.MaxBatchBytes)
}

// commit appends a group with one call of the append script and answers
// every append of it. A failed call fails the group's appends only: the
// next group tries again (unlike a failed fsync, a failed call to Redis
// leaves nothing unknown behind on this side).
func (l *Log) commit(batch []*appendReq) {
	if len(batch) == 0 {
		return
	}
	n := 3
	for _, r := range batch {
		n += len(r.Data.args)
	}
	args := make([]any, 0, n)
	args = append(args, l.keys.prefix, l.cfg.KeyRetention.Milliseconds(), l.cfg.EventsMaxLen)
	for _, r := range batch {
		args = append(args, r.Data.args...)
	}
	// Not the appenders' contexts: the call is shared, and go-redis's read
	// and write timeouts bound it.
	ids, err := l.runAppend(context.Background(),
		[]string{l.keys.stream, l.keys.tables, l.keys.counts, l.keys.events}, args)
	if err == nil && len(ids) != len(batch) {
		err = fmt.Errorf("append script returned %d stream ids for %d transactions", len(ids), len(batch))
	}
	if err != nil {
		err = fmt.Errorf("redislog: append: %w", err)
		for _, r := range batch {
			r.Err = err
			r.Answer()
		}
		return
	}
	l.calls.Add(1)
	l.appended.Add(int64(len(batch)))
	for i, r := range batch {
		if rec, dup := strings.CutPrefix(ids[i], "dup:"); dup {
			r.Err = &txlog.KeyTakenError{Record: []byte(rec)}
		} else {
			r.Entry = txlog.Entry{Pos: ids[i], Tx: r.Tx}
			l.recent.add(ids[i], r.Data.payload, r.Tx)
		}
		r.Answer()
	}
}
