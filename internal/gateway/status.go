package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/status"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// Status tells where transaction id is. ok is false if spool never saw it.
func (g *Gateway) Status(ctx context.Context, id string) (status.Status, bool, error) {
	if s, ok := g.tracker.Get(id); ok && (!g.shared || s.State.Done()) {
		return s, true, nil
	}
	if !g.shared {
		// What this process knows first; gone from the overlay and the
		// tracker, it finished long ago (or never was): the database tells.
		if s, ok, err := g.known(ctx, id); ok || err != nil {
			return s, ok, err
		}
		return g.stored(ctx, id)
	}
	// With a shared log another process applies: ask the database, then
	// what this process knows, then the database again: a transaction
	// leaves the overlay only once committed, so one found in neither
	// committed between the two looks.
	if s, ok, err := g.stored(ctx, id); ok || err != nil {
		return s, ok, err
	}
	if s, ok, err := g.known(ctx, id); ok || err != nil {
		return s, ok, err
	}
	return g.stored(ctx, id)
}

// stored tells what the database holds of transaction id: applied (and
// replicated, if every replica has it) or dead-lettered.
func (g *Gateway) stored(ctx context.Context, id string) (status.Status, bool, error) {
	at, ok, err := g.store.Applied(ctx, id)
	if err != nil {
		return status.Status{}, false, fmt.Errorf("look up transaction: %w: %w", query.ErrDatabase, err)
	}
	if ok {
		st := status.Status{ID: id, State: txn.Replicated, AppliedAt: at, ReplicatedAt: at}
		if len(g.replicas) > 0 {
			st.State, st.ReplicatedAt = txn.Applied, time.Time{}
			if on, err := g.replicatedOnAll(ctx, id); err != nil {
				return status.Status{}, false, err
			} else if on {
				st.State = txn.Replicated
			}
		}
		return st, true, nil
	}
	dl, err := g.store.DeadLetter(ctx, id)
	switch {
	case err == nil:
		return status.Status{ID: id, State: txn.Failed, QueuedAt: dl.Tx.CreatedAt, FailedAt: dl.FailedAt, Error: dl.Error, Code: dl.Code, Principal: dl.Tx.Principal}, true, nil
	case !errors.Is(err, store.ErrNotFound):
		return status.Status{}, false, fmt.Errorf("look up transaction: %w: %w", query.ErrDatabase, err)
	}
	return status.Status{}, false, nil
}

// known tells what this process knows of transaction id without the
// database: queued while the overlay holds its changes (the tracker keeps
// nothing of a queued transaction), else what the tracker remembers. The
// overlay is asked first: a transaction leaves it before its state
// advances, so it cannot fall between the two.
func (g *Gateway) known(ctx context.Context, id string) (status.Status, bool, error) {
	pending, err := g.overlay.Has(ctx, id)
	if err != nil {
		return status.Status{}, false, fmt.Errorf("look up transaction: %w: %w", query.ErrOverlay, err)
	}
	if pending {
		return status.Status{ID: id, State: txn.Queued, QueuedAt: txn.IDTime(id)}, true, nil
	}
	s, ok := g.tracker.Get(id)
	return s, ok, nil
}

// replicatedOnAll reports whether every replica has replayed transaction
// id: each has its spool_applied row. A replica that does not answer has
// not (yet).
func (g *Gateway) replicatedOnAll(ctx context.Context, id string) (bool, error) {
	for _, r := range g.replicas {
		if _, ok, err := r.Applied(ctx, id); err != nil || !ok {
			return false, nil
		}
	}
	return true, nil
}

// SharedPoll is how often a wait polls the database when another process
// applies the log: a fraction of a batch's latency, a few cheap queries a
// second per waiter.
const SharedPoll = 20 * time.Millisecond

// Wait waits until transaction id reaches state want or ctx ends.
func (g *Gateway) Wait(ctx context.Context, id string, want txn.State) (status.Status, bool, error) {
	if !g.shared {
		pending := func() bool {
			ok, err := g.overlay.Has(ctx, id)
			return ok && err == nil // on an error, Status below reports it
		}
		if s, ok := g.tracker.Wait(ctx, id, want, pending); ok {
			return s, true, nil
		}
		return g.Status(context.WithoutCancel(ctx), id)
	}
	tick := time.NewTicker(SharedPoll)
	defer tick.Stop()
	for {
		s, ok, err := g.Status(context.WithoutCancel(ctx), id)
		if err != nil || !ok || s.State.Reached(want) {
			return s, ok, err
		}
		select {
		case <-ctx.Done():
			return s, true, nil
		case <-tick.C:
		}
	}
}
