package applier

import (
	"context"
	"math/rand/v2"
	"time"
)

// pause waits after a failure outside a batch (the log or the lease
// unreachable), with the same backoff as a failing batch.
func (a *Applier) pause(ctx context.Context, attempt int, err error) {
	wait := a.wait(attempt)
	a.setBackoff(BackoffState{Attempt: attempt, LastError: err.Error(), NextRetry: time.Now().Add(wait)})
	a.logger.Warn("applier: retrying", "attempt", attempt, "wait", wait, "err", err)
	select {
	case <-time.After(wait):
	case <-ctx.Done():
	}
}

// pinger is a store that can tell whether its database answers, cheaply.
type pinger interface {
	Ping(ctx context.Context) error
}

// reachability is a store that tells whether an error of an attempt says
// its database could not be reached (down, starting, shut down, a broken
// connection), rather than that it refused the batch for a while (a lock,
// a serialization failure).
type reachability interface {
	Unreachable(err error) bool
}

// backOff waits wait before the next attempt at a batch, which failed with
// cause, or less: if the store can be pinged, it is asked every
// ProbeInterval whether the database answers, and a database that did not
// answer (a probe, or the attempt: cause says it could not be reached)
// and then answers a probe ends the wait at once. A database that was
// reached and answers the first probe failed the batch for another reason
// (a lock, a serialization failure): then the whole wait is kept. It
// returns the cause of ctx's end if ctx ends first.
func (a *Applier) backOff(ctx context.Context, wait time.Duration, cause error) error {
	p, probes := a.store.(pinger)
	deadline := time.Now().Add(wait)
	r, ok := a.store.(reachability)
	down := ok && r.Unreachable(cause)
	for {
		step := time.Until(deadline)
		if step <= 0 {
			return nil
		}
		if probes {
			step = min(step, a.cfg.ProbeInterval)
		}
		t := time.NewTimer(step)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		}
		if !probes || !time.Now().Before(deadline) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, a.cfg.ProbeInterval)
		err := p.Ping(pctx)
		cancel()
		switch {
		case err != nil:
			down = true
		case down:
			a.logger.Info("applier: the database answers again; retrying at once", "left_of_backoff", time.Until(deadline).Round(time.Millisecond))
			return nil
		default:
			probes = false // it answers: the batch failed for another reason
		}
	}
}

// wait is the backoff before retry attempt+1: exponential, capped, with
// full jitter over its upper half so that many appliers do not retry in
// step.
func (a *Applier) wait(attempt int) time.Duration {
	d := a.cfg.MinBackoff << min(attempt-1, 30)
	if d <= 0 || d > a.cfg.MaxBackoff {
		d = a.cfg.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}
