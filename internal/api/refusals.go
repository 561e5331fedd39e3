package api

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// refusalEvery is how often a run of refused writes is logged again: an
// outage refuses thousands of writes a second, and the log must stay
// readable through it.
const refusalEvery = 10 * time.Second

// refusals logs writes refused because spool cannot store them (the log is
// down, the disk full): the first of a run at once, then a summary at most
// every refusalEvery, and the first write accepted after it.
type refusals struct {
	logger  *slog.Logger
	active  atomic.Bool // a run of refusals is under way
	mu      sync.Mutex
	since   time.Time // the run's first refusal
	logged  time.Time // when the run was last logged
	count   int       // refusals in the run
	unnamed int       // refusals since the run was last logged
}

// refused notes one refused write, logging it if it starts a run or
// refusalEvery has passed since the run was last logged.
func (f *refusals) refused(path string, err error) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count++
	switch {
	case !f.active.Load():
		f.active.Store(true)
		f.since, f.logged, f.count, f.unnamed = now, now, 1, 0
		f.logger.Error("write refused: spool cannot store writes; further refusals are summarised every "+refusalEvery.String(), "path", path, "err", err)
	case now.Sub(f.logged) >= refusalEvery:
		f.logger.Error("writes still refused", "refused", f.unnamed+1, "in", now.Sub(f.logged).Round(time.Millisecond),
			"since", f.since.Format(time.RFC3339), "path", path, "err", err)
		f.logged, f.unnamed = now, 0
	default:
		f.unnamed++
	}
}

// accepted ends a run of refusals, if one is under way, and logs the
// recovery. It costs one atomic load while writes are accepted.
func (f *refusals) accepted() {
	if !f.active.Load() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.active.Load() {
		return
	}
	f.active.Store(false)
	f.logger.Info("writes accepted again", "refused", f.count, "after", time.Since(f.since).Round(time.Millisecond))
}
