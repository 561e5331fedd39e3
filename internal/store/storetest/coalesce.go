package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// TallySchema is a table writes to which the stores coalesce (see
// store.Coalesce): no constraint but its key and a NOT NULL, nothing
// referencing it. Backends' own tests of coalescing use it too.
const TallySchema = `create table tallies (id uuid primary key, label text not null, hits bigint, note text default 'new', at timestamptz);`

// tally is a tallies row as it reads back.
func tally(id, label string, hits any, note string) schema.Row {
	return schema.Row{"id": id, "label": label, "hits": hits, "note": note, "at": nil}
}

// withTallies adds the tallies table to the fixture's database.
func (f *fixture) withTallies() {
	f.t.Helper()
	if err := f.s.Exec(f.ctx, TallySchema); err != nil {
		f.t.Fatalf("create tallies: %v", err)
	}
	cat, err := f.s.Catalog(f.ctx)
	if err != nil {
		f.t.Fatalf("catalog: %v", err)
	}
	f.cat = cat
}

func insertTally(id, label string, values schema.Row) txn.Operation {
	return insert("tallies", "id", id, id, merge(schema.Row{"label": label}, values))
}

// testCoalescing applies an update-heavy batch, whose writes to one row the
// stores coalesce, interleaved with writes to tables they do not (a
// foreign key between them), a replayed transaction, a refused one, an
// update of a row of an earlier batch, an upsert after an insert, a delete
// after updates, and a delete then an insert of one key. Every row ends as
// applying the operations one by one leaves it, and every transaction that
// ran is in spool_applied.
func testCoalescing(t *testing.T, f *fixture) {
	f.withTallies()
	old := txn.NewID()
	f.mustApply(tx(insertTally(old, "old", schema.Row{"hits": int64(0)})))
	replayed := tx(update("tallies", old, schema.Row{"label": "replayed"}))
	f.mustApply(replayed)
	f.mustApply(tx(update("tallies", old, schema.Row{"label": "current"})))

	ids := []string{txn.NewID(), txn.NewID(), txn.NewID(), txn.NewID(), txn.NewID()}
	obs, frame, fresh := txn.NewID(), txn.NewID(), txn.NewID()
	batch := []*txn.Transaction{replayed} // applied already: it must not run again
	for _, id := range ids {
		batch = append(batch, tx(insertTally(id, "r0", schema.Row{"hits": int64(0)})))
	}
	batch = append(batch, tx(insertObs(obs, schema.Row{"target": "A"})))
	for round := int64(1); round <= 4; round++ {
		for _, id := range ids {
			batch = append(batch, tx(update("tallies", id, schema.Row{"hits": round, "label": fmt.Sprint("r", round)})))
		}
		switch round {
		case 2: // a row referencing another, between writes to tallies
			batch = append(batch, tx(insert("frames", "id", frame, frame, schema.Row{"obs_id": obs, "n": int64(1)})))
		case 3:
			batch = append(batch, tx(update("obs", obs, schema.Row{"exposure": 2.5}), update("frames", frame, schema.Row{"n": int64(2)})))
		}
	}
	refused := tx(update("tallies", ids[3], schema.Row{"note": "refused"}))
	batch = append(batch,
		tx(update("tallies", old, schema.Row{"hits": int64(7)})),                     // a row of an earlier batch
		tx(upsert("tallies", "id", ids[0], ids[0], schema.Row{"label": "upserted"})), // upsert after insert
		tx(del("tallies", ids[1])),                                    // insert, updates, delete
		tx(del("tallies", ids[2]), insertTally(ids[2], "again", nil)), // delete then insert
		tx(update("tallies", ids[2], schema.Row{"hits": int64(9)})),   // and update
		refused, // refused by the gate
		tx(upsert("tallies", "id", fresh, fresh, schema.Row{"label": "u1"})),                      // upsert of a new row,
		tx(update("tallies", fresh, schema.Row{"hits": int64(1)}), update("tallies", fresh, nil)), // updates,
		tx(upsert("tallies", "id", fresh, fresh, schema.Row{"note": "n", "label": "u2"})),         // upsert again
	)
	reason := errors.New("depends on a failed transaction")
	g := newGate()
	g.refuse[refused.ID] = reason
	out := f.apply(g, batch...)
	for i, o := range out {
		switch {
		case i == 0:
			if !o.Duplicate {
				t.Errorf("replayed transaction: outcome %+v, want duplicate", o)
			}
		case batch[i] == refused:
			if !errors.Is(o.Err, reason) {
				t.Errorf("refused transaction: outcome %+v, want the gate's reason", o)
			}
		default:
			if o.Err != nil || o.Duplicate {
				t.Errorf("transaction %d: outcome %+v, want applied", i, o)
			}
			f.wantApplied(batch[i].ID, true)
			f.wantNoDeadLetter(batch[i].ID)
		}
	}
	f.wantApplied(refused.ID, false)
	if _, err := f.s.DeadLetter(f.ctx, refused.ID); err != nil {
		t.Errorf("dead letter of the refused transaction: %v", err)
	}

	f.wantRow("tallies", old, tally(old, "current", int64(7), "new"))
	f.wantRow("tallies", ids[0], tally(ids[0], "upserted", int64(4), "new"))
	f.wantNoRow("tallies", ids[1])
	f.wantRow("tallies", ids[2], tally(ids[2], "again", int64(9), "new"))
	f.wantRow("tallies", ids[3], tally(ids[3], "r4", int64(4), "new"))
	f.wantRow("tallies", ids[4], tally(ids[4], "r4", int64(4), "new"))
	f.wantRow("tallies", fresh, tally(fresh, "u2", int64(1), "n"))
	f.wantRow("obs", obs, merge(emptyObs(obs, "A"), schema.Row{"exposure": 2.5}))
	f.wantRow("frames", frame, schema.Row{"id": frame, "obs_id": obs, "n": int64(2)})
}

// testCoalescedPoison puts failing transactions among writes to rows the
// stores coalesce: a NULL into a NOT NULL column between updates of one
// row, an update of a missing row between updates of another. Each fails
// alone, is dead-lettered and reported to the gate; every other
// transaction applies, and the rows end as if the failing ones had not
// been written.
func testCoalescedPoison(t *testing.T, f *fixture) {
	f.withTallies()
	x, y := txn.NewID(), txn.NewID()
	batch := []*txn.Transaction{
		tx(insertTally(x, "x", schema.Row{"hits": int64(0)})),
		tx(update("tallies", x, schema.Row{"hits": int64(1)})),
		tx(update("tallies", x, schema.Row{"label": nil, "note": "poison"})), // NOT NULL
		tx(update("tallies", x, schema.Row{"hits": int64(3)})),
		tx(insertTally(y, "y", nil)),
		tx(update("tallies", y, schema.Row{"hits": int64(1)})),
		tx(update("tallies", y, schema.Row{"hits": int64(2)}), update("tallies", txn.NewID(), schema.Row{"hits": int64(5)})), // missing row
		tx(update("tallies", y, schema.Row{"label": "y2"})),
	}
	poison := map[int]bool{2: true, 6: true}
	g := newGate()
	out := f.apply(g, batch...)
	failed := g.failures()
	for i, o := range out {
		id := batch[i].ID
		if !poison[i] {
			if o.Err != nil || o.Duplicate {
				t.Errorf("transaction %d: outcome %+v, want applied", i, o)
			}
			if _, ok := failed[id]; ok {
				t.Errorf("transaction %d reported failed to the gate", i)
			}
			f.wantApplied(id, true)
			f.wantNoDeadLetter(id)
			continue
		}
		var ae *store.ApplyError
		if !errors.As(o.Err, &ae) {
			t.Errorf("transaction %d: error %v, want *store.ApplyError", i, o.Err)
		}
		if err, ok := failed[id]; !ok || err != o.Err {
			t.Errorf("transaction %d: gate told %v, %v; want Failed with %v", i, err, ok, o.Err)
		}
		f.wantApplied(id, false)
		if _, err := f.s.DeadLetter(f.ctx, id); err != nil {
			t.Errorf("dead letter of transaction %d: %v", i, err)
		}
	}
	if ae := (*store.ApplyError)(nil); errors.As(out[6].Err, &ae) && (ae.Op != 1 || !errors.Is(ae, store.ErrMissingRow)) {
		t.Errorf("missing row: %v, want operation 1 and ErrMissingRow", out[6].Err)
	}
	f.wantRow("tallies", x, tally(x, "x", int64(3), "new"))
	f.wantRow("tallies", y, tally(y, "y2", int64(1), "new"))
}

// UpdateHeavy is a batch of the workload coalescing is for: rows rows of
// tallies, each inserted and then updated updates times, one transaction
// per write, the rows' writes interleaved (every row's insert, then every
// row's first update, …). Values are canonical, as they come out of the
// log.
func UpdateHeavy(rows, updates int) []*txn.Transaction {
	ids := make([]string, rows)
	batch := make([]*txn.Transaction, 0, rows*(1+updates))
	for i := range ids {
		ids[i] = txn.NewID()
		batch = append(batch, tx(insertTally(ids[i], "new", schema.Row{"hits": int64(0)})))
	}
	for round := 1; round <= updates; round++ {
		at := fmt.Sprintf("2026-11-23T00:00:%02d.000000000Z", round%60)
		for _, id := range ids {
			batch = append(batch, tx(update("tallies", id, schema.Row{"hits": int64(round), "label": fmt.Sprint("round ", round), "at": at})))
		}
	}
	return batch
}

// MustApply applies a batch every transaction of which must be applied
// (not failed, not a duplicate).
func MustApply(tb testing.TB, s store.Store, batch ...*txn.Transaction) {
	tb.Helper()
	out, err := s.ApplyBatch(context.Background(), batch, nil)
	if err != nil {
		tb.Fatalf("apply batch: %v", err)
	}
	for i, o := range out {
		if o.Err != nil || o.Duplicate {
			tb.Fatalf("transaction %d: outcome %+v, want applied", i, o)
		}
	}
}

// BenchDrainUpdateHeavy applies batches of UpdateHeavy transactions (100
// rows, each inserted and updated four times, 20 batches a round) to s,
// with coalescing on and off in the same run, and reports both rates and
// their ratio. reset empties tallies and spool_applied; coalesce switches
// the store's coalescing.
func BenchDrainUpdateHeavy(b *testing.B, s store.Store, reset func(), coalesce func(on bool)) {
	const rows, updates, batches = 100, 4, 20
	var on, off time.Duration
	drain := func(coalesced bool) time.Duration {
		b.StopTimer()
		reset()
		work := make([][]*txn.Transaction, batches)
		for i := range work {
			work[i] = UpdateHeavy(rows, updates)
		}
		coalesce(coalesced)
		b.StartTimer()
		start := time.Now()
		for _, batch := range work {
			MustApply(b, s, batch...)
		}
		return time.Since(start)
	}
	for b.Loop() {
		on += drain(true)
		off += drain(false)
	}
	n := float64(b.N * batches * rows * (1 + updates))
	b.ReportMetric(n/on.Seconds(), "coalesced-txn/s")
	b.ReportMetric(n/off.Seconds(), "uncoalesced-txn/s")
	b.ReportMetric(off.Seconds()/on.Seconds(), "coalesced/uncoalesced")
	b.ReportMetric(0, "ns/op")
}
