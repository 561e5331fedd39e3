package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/store/storetest"
	"github.com/spoolgw/spool/internal/txn"
)

// TestCoalescedWrites shows that the fast path writes each row of an
// update-heavy batch once: in a fresh table every version of a row takes a
// line pointer of the first page, so the highest one counts the versions
// written. Without coalescing, the insert and each update write one.
func TestCoalescedWrites(t *testing.T) {
	t.Parallel()
	const rows, updates = 5, 4
	for _, tc := range []struct {
		name     string
		off      bool
		versions int
	}{
		{"coalesced", false, rows},
		{"uncoalesced", true, rows * (1 + updates)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, url := setup(t)
			s.noCoalesce = tc.off
			if err := s.Exec(t.Context(), storetest.TallySchema); err != nil {
				t.Fatal(err)
			}
			mustApply(t, s, storetest.UpdateHeavy(rows, updates)...)
			var versions, live, applied int
			err := connect(t, url).QueryRow(t.Context(), `select max((ctid::text::point)[1])::int, count(*),
				(select count(*) from spool_applied) from tallies where hits = $1`, updates).Scan(&versions, &live, &applied)
			if err != nil {
				t.Fatal(err)
			}
			if versions != tc.versions || live != rows || applied != rows*(1+updates) {
				t.Errorf("%d row versions, %d rows at the last update, %d ids applied; want %d, %d, %d",
					versions, live, applied, tc.versions, rows, rows*(1+updates))
			}
		})
	}
}

// BenchmarkDrainUpdateHeavy drains batches of 500 transactions into a
// five-column table: 100 rows, each inserted and then updated four times
// (storetest.UpdateHeavy), with write coalescing on and, in the same run
// on the same database, off. It reports both rates in transactions per
// second and their ratio.
func BenchmarkDrainUpdateHeavy(b *testing.B) {
	const rows, updates, batches = 100, 4, 20
	url := newDatabase(b)
	s := openStore(b, url)
	ctx := context.Background()
	if err := s.Exec(ctx, storetest.TallySchema); err != nil {
		b.Fatal(err)
	}
	c := connect(b, url)
	var on, off time.Duration
	drain := func(noCoalesce bool) time.Duration {
		b.StopTimer()
		if _, err := run(ctx, c, "truncate tallies, spool_applied"); err != nil {
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
