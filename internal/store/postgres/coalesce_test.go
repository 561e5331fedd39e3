package postgres

import (
	"context"
	"testing"

	"github.com/spoolgw/spool/internal/store/storetest"
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
			storetest.MustApply(t, s, storetest.UpdateHeavy(rows, updates)...)
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
	url := newDatabase(b)
	s := openStore(b, url)
	ctx := context.Background()
	if err := s.Exec(ctx, storetest.TallySchema); err != nil {
		b.Fatal(err)
	}
	c := connect(b, url)
	storetest.BenchDrainUpdateHeavy(b, s, func() {
		if _, err := run(ctx, c, "truncate tallies, spool_applied"); err != nil {
			b.Fatal(err)
		}
	}, func(on bool) { s.noCoalesce = !on })
}
