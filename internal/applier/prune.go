package applier

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// Defaults of the pruning of spool_applied.
const (
	// DefaultAppliedRetention is how long spool_applied keeps the record
	// of an applied transaction: a week of answers to "what became of
	// it" once the process has forgotten it, where keeping every record
	// would grow the table by a row per transaction for ever (some 20
	// GiB a day at 3,000 transactions a second on PostgreSQL).
	DefaultAppliedRetention = 7 * 24 * time.Hour
	// DefaultPruneEvery is how often the applier prunes while it applies.
	DefaultPruneEvery = time.Hour
	// firstPrune is how long after a term starts the first pruning
	// comes, at most: out of the way of the start.
	firstPrune = time.Minute
	// pruneChunk is how many records one statement deletes; pruneBreath
	// is the pause between two, which leaves the database (SQLite's one
	// writer above all) to the batches in between.
	pruneChunk  = 10_000
	pruneBreath = 50 * time.Millisecond
)

// startPruner prunes spool_applied in the background, first after
// min(PruneEvery, firstPrune), then every PruneEvery, until ctx ends or
// the returned stop is called (which waits for it). It runs within a term:
// only the active applier of a log prunes.
func (a *Applier) startPruner(ctx context.Context) (stop func()) {
	if a.cfg.AppliedRetention < 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(min(a.cfg.PruneEvery, firstPrune))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n, err := a.pruneOnce(ctx, a.cfg.Now())
			a.pruned.Add(n)
			switch {
			case err != nil && ctx.Err() == nil:
				a.logger.Warn("applier: prune spool_applied; trying again later", "pruned", n, "err", err)
			case n > 0:
				a.logger.Info("applier: pruned spool_applied", "records", n, "retention", a.cfg.AppliedRetention)
			}
			t.Reset(a.cfg.PruneEvery)
		}
	}()
	return func() { cancel(); <-done }
}

// Pruned returns how many records of spool_applied this applier has
// deleted since it started.
func (a *Applier) Pruned() int64 { return a.pruned.Load() }

// errFound stops a walk of the log at its first entry.
var errFound = errors.New("found")

// pruneOnce deletes the records of spool_applied that no delivery can
// need again, and returns how many it deleted. A record is what makes a
// transaction delivered twice (a crash between its commit and its ack)
// skipped instead of applied twice, so it goes only once its transaction
// is well behind the log: applied more than AppliedRetention ago, and
// with an id (a UUIDv7, the time it was made) more than AppliedRetention
// older than the oldest transaction the log still holds (or than now if
// it holds none), and than that of every other log draining into the
// database as its applier last recorded it. A spool that was down for
// longer than the retention thus keeps the records of what it will
// deliver again at its start; the margin covers ids made by clocks apart
// and the local log's checkpoint, which trails its acknowledgements by a
// second. A log that is retired for good holds the bound where it left
// it until its row in spool_log_heads is deleted.
func (a *Applier) pruneOnce(ctx context.Context, now time.Time) (int64, error) {
	oldest := now
	err := a.log.Pending(ctx, func(e txlog.Entry) error {
		if t := txn.IDTime(e.Tx.ID); !t.IsZero() && t.Before(oldest) {
			oldest = t
		}
		return errFound
	})
	if err != nil && !errors.Is(err, errFound) {
		return 0, fmt.Errorf("find the log's oldest transaction: %w", err)
	}
	// Other logs (other sites) may drain into the same database, and
	// spool_applied holds their records too: the bound is the earliest
	// head of them all, as each log's applier last recorded it.
	earliest, err := a.store.RecordLogHead(ctx, a.cfg.HeadName, oldest)
	if err != nil {
		return 0, err
	}
	if behind := now.Sub(earliest); behind > a.cfg.AppliedRetention {
		a.logger.Warn("applier: a log holds a transaction older than --applied-retention; records of later ones are kept until it drains (a log retired for good: delete its row from spool_log_heads)",
			"oldest", earliest, "behind", behind.Round(time.Second))
	}
	appliedBefore := now.Add(-a.cfg.AppliedRetention)
	idBefore := txn.FirstIDAt(earliest.Add(-a.cfg.AppliedRetention))
	var total int64
	for {
		n, err := a.store.PruneApplied(ctx, appliedBefore, idBefore, pruneChunk)
		total += n
		if err != nil || n < pruneChunk {
			return total, err
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(pruneBreath):
		}
	}
}
