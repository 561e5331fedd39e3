package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/overlay"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// SetReplication sets the tracker of committed batches (the replication
// watcher, which reports back through Replicated). Call before the applier
// starts.
func (g *Gateway) SetReplication(t Tracker) { g.replication = t }

// Replicated implements replication.Sink: every replica has these
// transactions, so readers see them without the overlay. They leave the
// overlay before their state advances, as in Committed: a client that saw
// its transaction replicated finds its rows in the database only.
// If they cannot be evicted it returns the error and advances nothing:
// the watcher reports them again.
func (g *Gateway) Replicated(ctx context.Context, ids []string, at time.Time) error {
	if err := g.evictOnce(ctx, ids); err != nil {
		return err
	}
	for _, id := range ids {
		g.tracker.Advance(id, txn.Replicated, at, 0, nil, "")
	}
	return nil
}

// evictOnce takes transactions out of the overlay, once; not cut short by
// a stop: what the database has must leave the overlay.
func (g *Gateway) evictOnce(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := g.overlay.Evict(context.WithoutCancel(ctx), ids...); err != nil {
		return fmt.Errorf("evict %d transactions from the overlay: %w", len(ids), err)
	}
	return nil
}

// EvictRetry is the longest wait between two tries of an eviction that
// failed (the overlay's Redis down): an entry left in the overlay would be
// merged over newer rows of the database for ever, so an eviction is
// tried until it succeeds or the batch's term ends.
const EvictRetry = time.Second

// evict takes transactions out of the overlay, trying again until it
// succeeds or ctx (the batch's term) ends. It reports whether they left.
// A batch whose eviction did not succeed is not acknowledged: the log
// delivers it again, and its eviction is tried again then.
func (g *Gateway) evict(ctx context.Context, ids []string) bool {
	wait := 10 * time.Millisecond
	for {
		err := g.evictOnce(ctx, ids)
		if err == nil {
			return true
		}
		g.logger.Error("evict transactions from the overlay; trying again", "err", err, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(2*wait, EvictRetry)
	}
}

// SetApplier lets the gateway ask the applier which pending changes depend
// on failed transactions.
func (g *Gateway) SetApplier(a *applier.Applier) {
	g.depends, g.forgiveFn = a.DependsOnFailed, a.Forgive
}

// Committed implements applier.Sink. Failed transactions leave the overlay
// at once, with every pending transaction that depends on them. Applied ones
// leave it when the readers' database has them: at once without replicas,
// else when the replication watcher reports them replicated; the channel
// returned is closed then.
func (g *Gateway) Committed(ctx context.Context, results []applier.Result) <-chan struct{} {
	failed := false
	var gone, applied []string
	var lsn txn.LSN
	for _, r := range results {
		if r.Err != nil {
			failed = true
			gone = append(gone, r.Tx.ID)
			continue
		}
		lsn = max(lsn, r.LSN)
		applied = append(applied, r.Tx.ID)
	}
	if g.replication == nil {
		gone = append(gone, applied...)
	}
	// Evicted (with what depends on a failed transaction) before the
	// states advance: a client that sees its transaction failed or
	// replicated and reads again must not find its rows still buffered.
	// A batch whose eviction did not succeed never settles: it stays in
	// the log, to be delivered and evicted again.
	evicted := g.evict(ctx, gone)
	if failed && g.depends != nil {
		ids, err := g.overlay.Withdraw(ctx, func(table, key string, op overlay.Op) bool {
			_, ok := g.depends(txn.Operation{Op: op.Kind, Table: table, ID: key, Values: op.Values})
			return ok
		})
		if err != nil {
			g.logger.Error("withdraw transactions that depend on a failed one", "err", err)
		}
		if len(ids) > 0 {
			g.logger.Warn("withdrew pending transactions that depend on a failed one", "transactions", len(ids))
		}
	}
	for _, r := range results {
		if r.Tx.RetryOf != "" {
			g.retries.release(r.Tx.RetryOf) // the database marked it retried
		}
		switch {
		case r.Err != nil:
			var code string
			var (
				ae *store.ApplyError
				se *store.SupersededError
			)
			switch {
			case errors.As(r.Err, &ae):
				code = ae.Code
			case errors.As(r.Err, &se):
				code = store.CodeSuperseded
			}
			g.tracker.Advance(r.Tx.ID, txn.Failed, r.At, 0, r.Err, code)
			g.logger.Warn("transaction dead-lettered", "txn", r.Tx.ID, "err", r.Err)
		case g.replication == nil:
			g.tracker.Advance(r.Tx.ID, txn.Replicated, r.At, r.LSN, nil, "")
		default:
			g.tracker.Advance(r.Tx.ID, txn.Applied, r.At, r.LSN, nil, "")
		}
	}
	settled := make(chan struct{})
	switch {
	case !evicted:
		// Never closed: the applier leaves the batch in the log.
	case g.replication != nil && len(applied) > 0:
		return g.replication.Track(lsn, applied, results[0].At)
	default:
		close(settled)
	}
	return settled
}
