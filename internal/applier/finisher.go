package applier

import (
	"context"
	"errors"
	"time"

	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txlog"
)

// committed is a batch the database has, to report and acknowledge: its
// entries and the outcome of each.
type committed struct {
	ctx      context.Context
	entries  []txlog.Entry
	outcomes []store.Outcome
}

// finisher reports committed batches to the sink and acknowledges them in
// the log, in commit order, in goroutines of their own: the log's round
// trip (an fsynced XACK on Redis) overlaps the next batch's database work
// instead of adding to it. It holds one batch beside the one it reports,
// so the drain runs at most two batches ahead of the reports; a reported
// batch waits to be acknowledged until the sink says it has settled (its
// transactions left the overlay), up to MaxUnsettled batches.
type finisher struct {
	a       *Applier
	next    chan committed
	settled chan reported
	done    chan struct{}
}

// MaxUnsettled is how many reported batches may wait for their
// transactions to reach the read replicas before the applier stops
// applying more: a replica far behind holds the drain back there,
// instead of the memory of their positions growing without bound.
const MaxUnsettled = 4096

// reported is a reported batch waiting to settle: its entries' positions.
type reported struct {
	ctx     context.Context
	entries []txlog.Entry
	settled <-chan struct{}
}

func (a *Applier) startFinisher() *finisher {
	f := &finisher{a: a, next: make(chan committed, 1), settled: make(chan reported, MaxUnsettled), done: make(chan struct{})}
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		for r := range f.settled {
			f.acknowledge(r)
		}
	}()
	go func() {
		defer close(f.done)
		defer func() { <-acked }()
		defer close(f.settled)
		for c := range f.next {
			f.finish(c)
		}
	}()
	return f
}

// add queues a committed batch, waiting while one is already queued.
func (f *finisher) add(c committed) { f.next <- c }

// close waits until every queued batch is reported and acknowledged.
func (f *finisher) close() {
	close(f.next)
	<-f.done
}

// finish reports a committed batch, then acknowledges it. The report comes
// first: it is what writers wait for (their transactions' states, and on
// PostgreSQL the replica's progress is followed from there), and the
// order is safe either way, since a batch reported but not acknowledged
// when spool stops is delivered again and skipped as applied.
func (f *finisher) finish(c committed) {
	a := f.a
	now := time.Now()
	results := make([]Result, len(c.entries))
	for i, e := range c.entries {
		o := c.outcomes[i]
		results[i] = Result{Tx: e.Tx, Err: o.Err, Duplicate: o.Duplicate, LSN: o.LSN, At: now}
	}
	settled := a.sink.Committed(c.ctx, results)
	a.observe(StageReport, now)
	pos := make([]txlog.Entry, len(c.entries))
	for i, e := range c.entries {
		pos[i] = txlog.Entry{Pos: e.Pos} // the transactions are not needed any more
	}
	f.settled <- reported{ctx: c.ctx, entries: pos, settled: settled}
}

// acknowledge acknowledges a reported batch once it has settled. If the
// batch's context (its term's) ends first, the entries stay pending: the
// next term delivers them again.
func (f *finisher) acknowledge(r reported) {
	a := f.a
	select {
	case <-r.settled:
	case <-r.ctx.Done():
		select {
		case <-r.settled:
		default:
			a.logger.Info("applier: batch not yet on the read replicas when the term ended; left in the log, to be delivered again and skipped", "transactions", len(r.entries))
			return
		}
	}
	start := time.Now()
	a.ack(r.ctx, r.entries)
	a.observe(StageAck, start)
}

// ack acknowledges a committed batch in the log, retrying with backoff
// while the term lasts (c.ctx): an entry left unacknowledged would stay
// pending under this applier behind its claim's position and never be
// delivered again in this term. When the term ends first (a stop, the
// lease lost), the entries stay pending: the next term, here or in
// another applier, takes over every pending entry and delivers them
// again, and spool_applied skips them, so nothing is lost or doubled.
func (a *Applier) ack(ctx context.Context, entries []txlog.Entry) {
	for attempt := 1; ; attempt++ {
		err := a.log.Ack(context.WithoutCancel(ctx), entries)
		if err == nil {
			if attempt > 1 {
				a.logger.Info("applier: ack succeeded", "attempts", attempt)
			}
			return
		}
		if ctx.Err() != nil || errors.Is(err, txlog.ErrClosed) {
			a.logger.Warn("applier: ack failed after commit; the batch stays pending, to be delivered again and skipped", "transactions", len(entries), "err", err)
			return
		}
		wait := a.wait(attempt)
		a.logger.Warn("applier: ack failed after commit; retrying", "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}
