package sqlite

import (
	"context"
	"path/filepath"
	"testing"

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
	ctx := context.Background()
	s, err := open(ctx, filepath.Join(b.TempDir(), "spool.db"), nil, options{busyTimeout: BusyTimeout})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.Exec(ctx, storetest.TallySchema); err != nil {
		b.Fatal(err)
	}
	storetest.BenchDrainUpdateHeavy(b, s, func() {
		if err := s.Exec(ctx, "delete from tallies; delete from spool_applied;"); err != nil {
			b.Fatal(err)
		}
	}, func(on bool) { s.noCoalesce = !on })
}

// TestGroupedInsertFallsBack: ten inserts into one table run as one
// multi-row INSERT; one of them reuses a key the table has, so the
// statement fails, the batch runs again one transaction at a time, and
// only that one is dead-lettered.
func TestGroupedInsertFallsBack(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, options{busyTimeout: BusyTimeout})
	ctx := t.Context()
	if err := s.Exec(ctx, storetest.TallySchema); err != nil {
		t.Fatal(err)
	}
	taken := txn.NewID()
	insert := func(id string) *txn.Transaction {
		return &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "tallies", ID: id,
			Values: map[string]any{"id": id, "label": "l", "hits": int64(1)}}}}
	}
	if _, err := s.ApplyBatch(ctx, []*txn.Transaction{insert(taken)}, nil); err != nil {
		t.Fatal(err)
	}
	var batch []*txn.Transaction
	for i := range 10 {
		id := txn.NewID()
		if i == 5 {
			id = taken
		}
		batch = append(batch, insert(id))
	}
	out, err := s.ApplyBatch(ctx, batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if (o.Err != nil) != (i == 5) {
			t.Errorf("transaction %d: %+v; want only transaction 5 to fail", i, o)
		}
	}
	var rows int
	if err := s.wdb.QueryRowContext(ctx, `select count(*) from tallies`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 10 {
		t.Errorf("%d rows in tallies, want 10 (1 before, 9 of the batch)", rows)
	}
}
