package main

import (
	"context"
	"sync/atomic"

	"github.com/spoolgw/spool/internal/applier"
)

// heldLease is an applier's lease that knows whether this process holds
// it, for GET /v1/stats (the dashboard's applier card).
type heldLease struct {
	applier.Lease
	held atomic.Bool
}

// Acquire acquires the lease and notes that this process holds it until
// it is lost (or released: lost is closed then too).
func (l *heldLease) Acquire(ctx context.Context) (int64, <-chan struct{}, error) {
	token, lost, err := l.Lease.Acquire(ctx)
	if err != nil {
		return token, lost, err
	}
	l.held.Store(true)
	go func() {
		<-lost
		l.held.Store(false)
	}()
	return token, lost, nil
}

// applierState is the applier section of GET /v1/stats: whether it
// runs, whether it is the log's active applier (holds_lease: always, on
// a local log), its backoff after transient failures, and, on a shared
// log, whether this process holds the lease (else it stands by).
func applierState(ap *applier.Applier, lease *heldLease) func() any {
	return func() any {
		s := map[string]any{"running": ap.Running(), "holds_lease": ap.HoldsLease(), "backoff": ap.Backoff()}
		if lease != nil {
			s["lease"] = map[string]any{"held": lease.held.Load()}
		}
		return s
	}
}
