package api_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/pipeline"
	"github.com/spoolgw/spool/internal/txlog/redislog"
	"github.com/spoolgw/spool/internal/txn"
)

// flakyEvict is the Redis log's shared overlay whose first evictions
// fail, as they do while Redis restarts.
type flakyEvict struct {
	*redislog.Overlay
	failures atomic.Int32 // evictions still to fail
	tries    atomic.Int32
}

func (o *flakyEvict) Evict(ctx context.Context, ids ...string) error {
	o.tries.Add(1)
	if o.failures.Add(-1) >= 0 {
		return errors.New("connection refused")
	}
	return o.Overlay.Evict(ctx, ids...)
}

// TestEvictionRetriedBeforeAck: a committed batch whose eviction from the
// shared overlay fails is evicted again until it leaves, and is
// acknowledged in the log only then. An acknowledged batch whose entries
// stayed in the overlay would be merged over newer rows of the database
// for ever.
func TestEvictionRetriedBeforeAck(t *testing.T) {
	st, _, _ := newPostgres(t)
	t.Cleanup(func() { st.Close() })
	ctx := t.Context()
	cat := catalogOf(t, st)
	lg, err := redislog.Open(ctx, redislog.Config{URL: redisSrv.URL, Name: fmt.Sprintf("evict-%d", rand.Uint32()), Normalize: cat.Normalize}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	ov := &flakyEvict{Overlay: lg.Overlay()}
	ov.failures.Store(3)
	p := build(t, pipeline.Config{Store: st, Catalog: cat, Log: lg, Shared: ov, SharedKeys: lg,
		Applier: &applier.Config{LogName: lg.Name(), Lease: lg.Lease(redislog.LeaseConfig{})}})
	gw, ap := p.Gateway, p.Applier
	if err := ap.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ap.Stop)

	rc, err := gw.Submit(ctx, &gateway.Request{Operations: []gateway.OpRequest{{Op: "insert", Table: "observations", Values: map[string]any{"target": "evict"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s, err := lg.Stats(ctx)
		if err == nil && s.Depth == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log still holds the transaction after 20 s (%+v, %v)", s, err)
		}
	}
	if n := ov.tries.Load(); n < 4 {
		t.Fatalf("the log was acknowledged after %d evictions, want the 3 that failed and one that succeeded", n)
	}
	if pending, err := ov.Has(ctx, rc.TransactionID); err != nil || pending {
		t.Fatalf("the transaction is still in the overlay once acknowledged (%v, %v)", pending, err)
	}
	if s, ok, err := gw.Status(ctx, rc.TransactionID); err != nil || !ok || !s.State.Reached(txn.Applied) {
		t.Fatalf("status %+v, %v, %v; want applied", s, ok, err)
	}
}
