package status

import (
	"context"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/poll"
	"github.com/spoolgw/spool/internal/txn"
)

func TestQueuedKeepsNothing(t *testing.T) {
	tr := New(10)
	for range 1000 {
		tr.Queued()
	}
	if got := tr.Counters().Queued; got != 1000 {
		t.Fatalf("Counters().Queued = %d, want 1000", got)
	}
	if len(tr.m) != 0 {
		t.Fatalf("the tracker holds %d entries for queued transactions, want none", len(tr.m))
	}
}

func TestAdvanceUnknownTakesQueuedAtFromID(t *testing.T) {
	tr := New(10)
	id := txn.NewID()
	at := time.Now().UTC()
	tr.Advance(id, txn.Applied, at, 7, nil, "")
	s, ok := tr.Get(id)
	if !ok || s.State != txn.Applied || !s.AppliedAt.Equal(at) || s.LSN != 7 {
		t.Fatalf("Get = %+v, %v; want applied at %v with LSN 7", s, ok, at)
	}
	if d := at.Sub(s.QueuedAt); s.QueuedAt.IsZero() || d < 0 || d > time.Second {
		t.Fatalf("QueuedAt = %v, want the id's time, just before %v", s.QueuedAt, at)
	}
}

func TestWaitUnknownNotPending(t *testing.T) {
	tr := New(10)
	if s, ok := tr.Wait(context.Background(), txn.NewID(), txn.Applied, func() bool { return false }); ok {
		t.Fatalf("Wait for a transaction neither known nor pending = %+v, want not found", s)
	}
}

func TestWaitFollowsPending(t *testing.T) {
	tr := New(10)
	id := txn.NewID()
	got := make(chan Status, 1)
	go func() {
		s, ok := tr.Wait(context.Background(), id, txn.Replicated, func() bool { return true })
		if !ok {
			t.Error("Wait lost a pending transaction")
		}
		got <- s
	}()
	waitFor(t, func() bool { _, ok := tr.Get(id); return ok })
	tr.Advance(id, txn.Applied, time.Now(), 1, nil, "")
	select {
	case s := <-got:
		t.Fatalf("Wait returned at %s, want it to wait for replicated", s.State)
	case <-time.After(20 * time.Millisecond):
	}
	tr.Advance(id, txn.Replicated, time.Now(), 1, nil, "")
	if s := <-got; s.State != txn.Replicated {
		t.Fatalf("Wait = %s, want replicated", s.State)
	}
}

// An Advance while Wait asks the overlay (the applier committed the
// transaction in between) must not leave the waiter waiting for good.
func TestWaitAdvanceWhileAskingPending(t *testing.T) {
	for _, stillPending := range []bool{true, false} {
		tr := New(10)
		id := txn.NewID()
		pending := func() bool {
			tr.Advance(id, txn.Replicated, time.Now(), 1, nil, "")
			return stillPending
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, ok := tr.Wait(ctx, id, txn.Replicated, pending)
		cancel()
		if !ok || s.State != txn.Replicated {
			t.Fatalf("pending %v: Wait = %+v, %v; want replicated", stillPending, s, ok)
		}
	}
}

func TestForgetStopsWaiter(t *testing.T) {
	tr := New(10)
	id := txn.NewID()
	tr.Queued()
	done := make(chan bool, 1)
	go func() {
		_, ok := tr.Wait(context.Background(), id, txn.Applied, func() bool { return true })
		done <- ok
	}()
	waitFor(t, func() bool { _, ok := tr.Get(id); return ok })
	tr.Forget(id)
	if ok := <-done; ok {
		t.Fatal("Wait for a forgotten transaction reported it found")
	}
	if got := tr.Counters().Queued; got != 0 {
		t.Fatalf("Counters().Queued = %d after Forget, want 0", got)
	}
}

func TestRetainBoundsFinished(t *testing.T) {
	tr := New(3)
	// Around the ring of finished transactions more than twice.
	ids := make([]string, 8)
	for i := range ids {
		ids[i] = txn.NewID()
		tr.Advance(ids[i], txn.Replicated, time.Now(), 1, nil, "")
	}
	for i, id := range ids {
		if _, ok := tr.Get(id); ok != (i >= 5) {
			t.Errorf("transaction %d known: %v, want %v", i, ok, i >= 5)
		}
	}
	if len(tr.m) != 3 {
		t.Errorf("the tracker holds %d transactions, want 3", len(tr.m))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	poll.Until(t, 5*time.Second, "the condition", cond)
}

// BenchmarkAdvance is the applier's report of one committed transaction to
// a tracker that remembers DefaultRetain finished ones already, as it does
// after the first minute of a steady load.
func BenchmarkAdvance(b *testing.B) {
	tr := New(DefaultRetain)
	ids := make([]string, DefaultRetain+b.N)
	for i := range ids {
		ids[i] = txn.NewID()
	}
	at := time.Now()
	for _, id := range ids[:DefaultRetain] {
		tr.Advance(id, txn.Replicated, at, 1, nil, "")
	}
	b.ResetTimer()
	for _, id := range ids[DefaultRetain:] {
		tr.Advance(id, txn.Replicated, at, 1, nil, "")
	}
}
