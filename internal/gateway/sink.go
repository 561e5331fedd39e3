package gateway

import (
	"context"
	"errors"
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
func (g *Gateway) Replicated(ctx context.Context, ids []string, at time.Time) {
	g.evict(ctx, ids)
	for _, id := range ids {
		g.tracker.Advance(id, txn.Replicated, at, 0, nil, "")
	}
}

func (g *Gateway) evict(ctx context.Context, ids []string) {
	if len(ids) == 0 {
		return
	}
	// Not cut short by a stop: what the database has must leave the overlay.
	if err := g.overlay.Evict(context.WithoutCancel(ctx), ids...); err != nil {
		// The rows stay in the overlay until a later eviction or restart;
		// reads stay correct (the same values are in the database).
		g.logger.Error("evict transactions from the overlay", "transactions", len(ids), "err", err)
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
	g.evict(ctx, gone)
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
	if g.replication != nil && len(applied) > 0 {
		return g.replication.Track(lsn, applied, results[0].At)
	}
	settled := make(chan struct{})
	close(settled)
	return settled
}
