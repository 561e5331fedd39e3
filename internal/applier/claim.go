package applier

import (
	"context"
	"time"

	"github.com/spoolgw/spool/internal/txlog"
)

// claiming is a claim running in the background.
type claiming struct {
	done    chan struct{}
	cancel  context.CancelFunc
	entries []txlog.Entry
	err     error
	at      time.Time // when the claim ended
}

// claimAhead starts claiming the next batch. The claim ends with ctx, or
// earlier by abandon.
func (a *Applier) claimAhead(ctx context.Context) *claiming {
	ctx, cancel := context.WithCancel(ctx)
	c := &claiming{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(c.done)
		c.entries, c.err = a.claim(ctx)
		c.at = time.Now()
	}()
	return c
}

// topUpWait bounds how long topUp waits for the log to answer when it
// has nothing more: the batch is ready to apply.
const topUpWait = time.Millisecond

// topUp adds to a batch claimed ahead what the log took since, up to
// BatchSize, if the batch waited for the applier longer than BatchTimeout:
// it stopped growing at BatchTimeout while the batch before it applied,
// and writes went on arriving. Without it, a batch claimed while a slow
// one applies (a distant database) stays small, and small batches cannot
// keep up with the rate that made them.
func (a *Applier) topUp(ctx context.Context, entries []txlog.Entry, claimedAt time.Time) []txlog.Entry {
	if len(entries) == 0 || len(entries) >= a.cfg.BatchSize || time.Since(claimedAt) < max(a.cfg.BatchTimeout, topUpWait) {
		return entries
	}
	ctx, cancel := context.WithTimeout(ctx, topUpWait)
	defer cancel()
	more, err := a.log.Claim(ctx, a.cfg.BatchSize-len(entries))
	if err != nil {
		return entries // nothing more yet, or the next claim meets the error
	}
	return append(entries, more...)
}

// wait returns the claimed batch, once the claim has ended.
func (c *claiming) wait() ([]txlog.Entry, error) {
	<-c.done
	c.cancel()
	return c.entries, c.err
}

// abandon stops the claim and waits for it, so that no claim of this term
// runs on into the next. What it claimed stays claimed and unacknowledged:
// the log delivers it again (after a restart, or to the next lease holder).
func (c *claiming) abandon() {
	c.cancel()
	<-c.done
}

// claim waits for a first entry, then up to BatchTimeout for the batch to fill.
func (a *Applier) claim(ctx context.Context) ([]txlog.Entry, error) {
	entries, err := a.log.Claim(ctx, a.cfg.BatchSize)
	if err != nil {
		return nil, err
	}
	if a.cfg.BatchTimeout <= 0 || len(entries) >= a.cfg.BatchSize {
		return entries, nil
	}
	fillCtx, cancel := context.WithTimeout(ctx, a.cfg.BatchTimeout)
	defer cancel()
	for len(entries) < a.cfg.BatchSize {
		more, err := a.log.Claim(fillCtx, a.cfg.BatchSize-len(entries))
		if err != nil {
			break // the timeout, a stop, or a closed log: apply what we have
		}
		entries = append(entries, more...)
	}
	return entries, nil
}
