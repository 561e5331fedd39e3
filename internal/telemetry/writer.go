package telemetry

import (
	"context"
	"math/rand/v2"
	"time"
)

// run is a lane's writer: it drains the ring into the database by size
// (a full batch wakes it) or time (FlushInterval), taking what the ring
// holds up to MaxBatchSize rows a transaction, spills batches while the
// database does not answer, and replays the spill files, oldest first,
// once it does. While spill files wait, new batches are spilled behind
// them, so the rows reach the table in the order they were taken.
func (l *lane) run(ctx context.Context) {
	tick := time.NewTicker(l.cfg.FlushInterval)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	force := false
	for {
		l.work(ctx, force)
		force = false
		var retryC <-chan time.Time
		if l.spilling() {
			wait := time.Until(l.retryAt)
			if wait <= 0 {
				wait = l.cfg.RetryMin
			}
			retry.Reset(wait)
			retryC = retry.C
		}
		select {
		case <-ctx.Done():
			retry.Stop()
			return
		case <-l.notify:
		case <-tick.C:
			force = true
		case <-retryC:
		}
	}
}

// spilling reports whether rows wait in the spill files, so that new
// batches must queue behind them.
func (l *lane) spilling() bool { return l.chunk != nil || l.spill.hasPending() }

// work replays what is due and drains full batches (every batch when
// force) until there is nothing to do or ctx ends. Database calls run on a
// context detached from ctx, bounded by WriteTimeout, so that Stop lets
// the batch in flight finish.
func (l *lane) work(ctx context.Context, force bool) {
	db := context.WithoutCancel(ctx)
	for ctx.Err() == nil {
		did := false
		if l.spilling() && !time.Now().Before(l.retryAt) {
			did = l.replayOne(db)
		}
		if n := l.ring.Len(); n >= l.cfg.BatchSize || (force && n > 0) {
			l.writeBatch(db, l.ring.AppendGet(l.buf[:0], l.cfg.MaxBatchSize), false)
			did = true
		}
		if !did {
			return
		}
	}
}

// writeBatch inserts a batch taken from the ring, one shape at a time, or
// spills it. With final set (the flush at Stop) a database known to be
// down is not tried again.
func (l *lane) writeBatch(ctx context.Context, batch []sample, final bool) {
	for _, g := range groups(batch) {
		if l.spilling() || (final && (l.attempt > 0 || ctx.Err() != nil)) {
			l.toSpill(g)
			continue
		}
		if err := l.insert(ctx, g, false); err != nil {
			l.failed(err)
			l.toSpill(g)
		}
	}
	clear(batch) // the buffer is reused; do not keep the samples alive
}

// insert writes rows of one shape in one database transaction.
func (l *lane) insert(ctx context.Context, rows []sample, replayed bool) error {
	cols, vals := project(l.table, rows)
	ctx, cancel := context.WithTimeout(ctx, l.cfg.WriteTimeout)
	defer cancel()
	rejected, err := l.cfg.Inserter.InsertRows(ctx, l.table, cols, vals)
	if err != nil {
		return err
	}
	l.wrote(len(rows), rejected, replayed)
	l.recovered()
	return nil
}

func (l *lane) toSpill(rows []sample) {
	if err := l.spill.append(rows); err != nil {
		l.spillFailed(len(rows), err)
	}
}

// replayOne writes the next chunk of the spill files and reports whether
// it did.
func (l *lane) replayOne(ctx context.Context) bool {
	if l.chunk == nil || l.chunk.cancelled {
		if l.chunk = l.spill.next(l.cfg.BatchSize); l.chunk == nil {
			return false
		}
	}
	ch := l.chunk
	if len(ch.rows) > 0 {
		if err := l.insert(ctx, ch.rows, true); err != nil {
			l.failed(err)
			return false
		}
	}
	l.chunk = nil
	l.reject(ch.rejected)
	if err := l.spill.commit(ch); err != nil {
		// The rows are in the database; a restart before the next
		// checkpoint would write them again.
		l.logger.Error("telemetry: cannot record replay progress", "err", err)
	}
	return true
}

// flush empties the ring at Stop: into the database while it answers and
// no spill files wait, else into the spill files, which are then closed.
func (l *lane) flush(ctx context.Context) {
	for {
		batch := l.ring.AppendGet(l.buf[:0], l.cfg.MaxBatchSize)
		if len(batch) == 0 {
			break
		}
		l.writeBatch(ctx, batch, true)
	}
	l.spill.close()
}

// backoff is the wait before attempt+1: RetryMin doubling up to RetryMax,
// drawn from the upper half so that lanes do not retry in step.
func backoff(lo, hi time.Duration, attempt int) time.Duration {
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}
