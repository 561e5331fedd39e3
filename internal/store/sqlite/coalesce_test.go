package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/store/storetest"
	"github.com/spoolgw/spool/internal/txn"
)

// TestCoalescedWrites shows that an update-heavy batch writes each row
// once: total_changes() on the one write connection counts the rows each
// statement changed (spool_applied's included).
func TestCoalescedWrites(t *testing.T) {
	t.Parallel()
	const rows, updates = 5, 4
	for _, tc := range []struct {
		name    string
		off     bool
		changes int
	}{
		{"coalesced", false, rows + rows*(1+updates)},
		{"uncoalesced", true, 2 * rows * (1 + updates)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := setup(t, options{busyTimeout: BusyTimeout})
			s.noCoalesce = tc.off
			if err := s.Exec(t.Context(), storetest.TallySchema); err != nil {
				t.Fatal(err)
			}
			changes := func() int {
				var n int
				if err := s.wdb.QueryRowContext(t.Context(), `select total_changes()`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			before := changes()
			out, err := s.ApplyBatch(t.Context(), storetest.UpdateHeavy(rows, updates), nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range out {
				if o.Err != nil || o.Duplicate {
					t.Fatalf("transaction %d: %+v", i, o)
				}
			}
			if got := changes() - before; got != tc.changes {
				t.Errorf("%d rows changed, want %d", got, tc.changes)
			}
		})
	}
}

// BenchmarkDrainUpdateHeavy is the PostgreSQL store's benchmark of the same
// name on SQLite: batches of 500 transactions, 100 rows each inserted and
// updated four times, coalescing on and off in the same run.
func BenchmarkDrainUpdateHeavy(b *testing.B) {
	const rows, updates, batches = 100, 4, 20
	ctx := context.Background()
	s, err := open(ctx, filepath.Join(b.TempDir(), "spool.db"), nil, options{busyTimeout: BusyTimeout})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.Exec(ctx, storetest.TallySchema); err != nil {
		b.Fatal(err)
	}
	var on, off time.Duration
	drain := func(noCoalesce bool) time.Duration {
		b.StopTimer()
		if err := s.Exec(ctx, "delete from tallies; delete from spool_applied;"); err != nil {
			b.Fatal(err)
		}
		work := make([][]*txn.Transaction, batches)
		for i := range work {
			work[i] = storetest.UpdateHeavy(rows, updates)
		}
		s.noCoalesce = noCoalesce
		b.StartTimer()
		start := time.Now()
		for _, batch := range work {
			out, err := s.ApplyBatch(ctx, batch, nil)
			if err != nil {
				b.Fatal(err)
			}
			for _, o := range out {
				if o.Err != nil || o.Duplicate {
					b.Fatalf("outcome %+v", o)
				}
			}
		}
		return time.Since(start)
	}
	for b.Loop() {
		on += drain(false)
		off += drain(true)
	}
	n := float64(b.N * batches * rows * (1 + updates))
	b.ReportMetric(n/on.Seconds(), "coalesced-txn/s")
	b.ReportMetric(n/off.Seconds(), "uncoalesced-txn/s")
	b.ReportMetric(off.Seconds()/on.Seconds(), "coalesced/uncoalesced")
	b.ReportMetric(0, "ns/op")
}
