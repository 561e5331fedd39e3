package overlay

import (
	"context"
	"fmt"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// Logged is a log of this process kept in step with its overlay: an append
// records the transaction's changes in the overlay first, so that readers
// see a write from the moment it is acknowledged, and takes them back if
// the append fails. It is the local counterpart of the Redis log, whose
// append script fills its shared overlay in the same atomic step: with
// either, writing is one call to Append.
type Logged struct {
	txlog.Log
	ov *Overlay
}

// rebuildChunk is how many transactions of the log the overlay takes in
// one Rebuild at start.
const rebuildChunk = 1000

// NewLogged wraps log with ov, an empty overlay, and fills ov with what the
// log holds (the transactions a former run did not apply), a chunk at a
// time: a backlog that spills goes to disk in one write per chunk. Their
// values are restored against cat, whose tables they must name; each is
// also handed to also (if not nil), so that whatever else keeps state of
// the log's transactions (idempotency keys) takes it from the same pass.
// It returns how many transactions it found; on an error ov is unusable.
func NewLogged(ctx context.Context, log txlog.Log, ov *Overlay, cat *schema.Live, also func(*txn.Transaction)) (*Logged, int, error) {
	n := 0
	var chunk []*txn.Transaction
	flush := func() error {
		err := ov.Rebuild(ctx, chunk)
		chunk = chunk[:0]
		return err
	}
	err := log.Pending(ctx, func(e txlog.Entry) error {
		for _, op := range e.Tx.Operations {
			if _, err := cat.Load().Table(op.Table); err != nil {
				return fmt.Errorf("transaction %s in the log: %w", e.Tx.ID, err)
			}
			cat.Normalize(op.Table, op.Values)
		}
		if also != nil {
			also(e.Tx)
		}
		chunk = append(chunk, e.Tx)
		n++
		if len(chunk) == rebuildChunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, 0, fmt.Errorf("rebuild overlay from log: %w", err)
	}
	return &Logged{Log: log, ov: ov}, n, nil
}

// Append records tx's changes in the overlay, then makes tx durable in the
// log. If either fails, nothing of tx stays.
func (l *Logged) Append(ctx context.Context, tx *txn.Transaction) (txlog.Entry, error) {
	if err := l.ov.Add(ctx, tx); err != nil {
		return txlog.Entry{}, fmt.Errorf("overlay: %w", err)
	}
	e, err := l.Log.Append(ctx, tx)
	if err != nil {
		if eerr := l.ov.Evict(context.WithoutCancel(ctx), tx.ID); eerr != nil {
			return txlog.Entry{}, fmt.Errorf("%w (and its changes stay in the overlay until spool restarts: %w)", err, eerr)
		}
		return txlog.Entry{}, err
	}
	return e, nil
}

// Overlay returns the overlay the appends fill.
func (l *Logged) Overlay() *Overlay { return l.ov }

// Unwrap returns the log it wraps.
func (l *Logged) Unwrap() txlog.Log { return l.Log }
