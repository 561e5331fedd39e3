package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// testPruneApplied deletes the records of transactions applied before one
// bound and with ids below the other, the least ids first, at most limit
// at a time, and no other. A transaction whose record is gone runs again
// if it comes again: that is what the caller's bounds must rule out.
func testPruneApplied(t *testing.T, f *fixture) {
	var txs []*txn.Transaction
	made := time.Now().Add(-time.Minute)
	for i, target := range []string{"M1", "M2", "M3"} {
		x := tx(insertObs(txn.NewID(), schema.Row{"target": target}))
		// ids of distinct milliseconds, in this order
		x.ID = txn.FirstIDAt(made.Add(time.Duration(i) * time.Millisecond))[:13] + x.ID[13:]
		txs = append(txs, x)
	}
	f.mustApply(txs...)
	prune := func(appliedBefore time.Time, idBefore string, limit int, want int64) {
		t.Helper()
		n, err := f.s.PruneApplied(f.ctx, appliedBefore, idBefore, limit)
		if err != nil || n != want {
			t.Fatalf("PruneApplied(%v, %s, %d) = %d, %v; want %d", appliedBefore, idBefore, limit, n, err, want)
		}
	}
	later := time.Now().Add(time.Minute) // after every apply

	// Applied after the first bound: none goes, whatever their ids.
	prune(time.Now().Add(-time.Hour), txn.FirstIDAt(later), 100, 0)
	// Below the second: the least id first, limit at a time.
	prune(later, txs[2].ID, 1, 1)
	f.wantApplied(txs[0].ID, false)
	f.wantApplied(txs[1].ID, true)
	prune(later, txs[2].ID, 100, 1)
	f.wantApplied(txs[1].ID, false)
	f.wantApplied(txs[2].ID, true)
	prune(later, txs[2].ID, 100, 0)

	// txs[0]'s record is gone: delivered again, it runs again (its
	// insert now finds its row) instead of being skipped as a duplicate.
	out := f.apply(nil, txs[0], txs[2])
	if out[0].Duplicate || out[0].Err == nil {
		t.Errorf("transaction whose record was pruned: outcome %+v, want it run again (and refused: its row exists)", out[0])
	}
	if !out[1].Duplicate {
		t.Errorf("transaction whose record was kept: outcome %+v, want a duplicate", out[1])
	}
}

// testLogHeads records the heads of two logs: each recording returns the
// earliest head of any log, its own just recorded included.
func testLogHeads(t *testing.T, f *fixture) {
	t0 := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Hour)
	record := func(log string, oldest, want time.Time) {
		t.Helper()
		got, err := f.s.RecordLogHead(f.ctx, log, oldest)
		if err != nil || !got.Equal(want) {
			t.Fatalf("RecordLogHead(%s, %v) = %v, %v; want %v", log, oldest, got, err, want)
		}
	}
	record("a", t0.Add(time.Minute), t0.Add(time.Minute))
	record("b", t0, t0)
	record("a", t0.Add(2*time.Minute), t0)                    // b is still behind
	record("b", t0.Add(3*time.Minute), t0.Add(2*time.Minute)) // now a is
	record("a", t0.Add(-time.Minute), t0.Add(-time.Minute))   // a head moves back: a log reopened behind
}

// BenchPruneApplied times PruneApplied deleting 10,000 records
// from a spool_applied of that many more that it keeps (applied later):
// how long one pruning statement holds the database. s must be migrated
// and empty.
func BenchPruneApplied(b *testing.B, s store.Store) {
	const chunk = 10_000
	ctx := context.Background()
	fill := func(n int) {
		b.Helper()
		batch := make([]*txn.Transaction, 0, 500)
		for range n {
			batch = append(batch, &txn.Transaction{ID: txn.NewID()})
			if len(batch) == cap(batch) {
				MustApply(b, s, batch...)
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			MustApply(b, s, batch...)
		}
	}
	for b.Loop() {
		b.StopTimer()
		fill(chunk)
		// The scenario, not a wait: a bound strictly between the two
		// fills by the database's clock, whatever its precision.
		time.Sleep(time.Millisecond)
		bound := time.Now()
		time.Sleep(time.Millisecond)
		fill(chunk) // applied after it: kept
		b.StartTimer()
		n, err := s.PruneApplied(ctx, bound, txn.FirstIDAt(time.Now().Add(time.Hour)), chunk)
		if err != nil || n != chunk {
			b.Fatalf("PruneApplied = %d, %v; want %d", n, err, chunk)
		}
		b.StopTimer()
		if _, err := s.PruneApplied(ctx, time.Now().Add(time.Hour), txn.FirstIDAt(time.Now().Add(time.Hour)), 2*chunk); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
