package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// testReplay applies a batch twice, as the applier does after a crash
// between commit and log ack: the second run changes nothing and reports
// every transaction a duplicate, without asking the gate.
func testReplay(t *testing.T, f *fixture) {
	a, b := txn.NewID(), txn.NewID()
	t0 := tx(insertObs(a, schema.Row{"target": "M31"}))
	t1 := tx(update("obs", a, schema.Row{"exposure": 1.5}))
	t2 := tx(insertObs(b, schema.Row{"target": "M42"}))
	before := time.Now().Add(-time.Minute)
	f.mustApply(t0, t1, t2)
	f.mustApply(tx(update("obs", a, schema.Row{"exposure": 2.5})))

	g := newGate()
	for i, o := range f.apply(g, t0, t1, t2, t0) {
		if !o.Duplicate || o.Err != nil {
			t.Errorf("replayed transaction %d: outcome %+v, want duplicate", i, o)
		}
	}
	if len(g.admitted) != 0 || len(g.failures()) != 0 {
		t.Errorf("gate asked about duplicates: admitted %v, failed %v", g.admitted, g.failures())
	}
	f.wantRow("obs", a, merge(emptyObs(a, "M31"), schema.Row{"exposure": 2.5}))

	// One transaction twice in one batch: the second is a duplicate.
	c := txn.NewID()
	t3 := tx(insertObs(c, schema.Row{"target": "M1"}))
	out := f.apply(nil, t3, t3)
	if out[0].Err != nil || out[0].Duplicate || !out[1].Duplicate {
		t.Errorf("same transaction twice in a batch: outcomes %+v, want applied then duplicate", out)
	}

	for _, id := range []string{t0.ID, t1.ID, t2.ID, t3.ID} {
		at, ok, err := f.s.Applied(f.ctx, id)
		if err != nil || !ok || at.Before(before) || at.After(time.Now().Add(time.Minute)) {
			t.Errorf("applied %s = %v, %v, %v; want a time around now", id, at, ok, err)
		}
		f.wantNoDeadLetter(id)
	}
	f.wantApplied(txn.NewID(), false)
}

// testPermanentFailures puts failures of every kind between good
// transactions: each failing transaction is rolled back alone (all its
// operations), dead-lettered with the database's error, reported to the
// gate, and the others commit.
func testPermanentFailures(t *testing.T, f *fixture) {
	existing := txn.NewID()
	f.mustApply(tx(insertObs(existing, schema.Row{"target": "M31", "code": "taken"})))

	good1, good2, partial, frame := txn.NewID(), txn.NewID(), txn.NewID(), txn.NewID()
	batch := []*txn.Transaction{
		tx(insertObs(good1, schema.Row{"target": "M1"})),
		// unique violation in the second operation: the first is undone too
		tx(insertObs(partial, schema.Row{"target": "M2"}), insertObs(txn.NewID(), schema.Row{"target": "M3", "code": "taken"})),
		tx(insertObs(txn.NewID(), schema.Row{"code": "no target"})), // NOT NULL violation
		tx(update("obs", txn.NewID(), schema.Row{"exposure": 1.0})), // missing row
		tx(del("obs", txn.NewID())), // missing row
		tx(insert("frames", "id", frame, frame, schema.Row{"obs_id": txn.NewID()})),               // foreign key
		tx(insertObs(existing, schema.Row{"target": "again"})),                                    // primary key
		tx(update("obs", existing, schema.Row{"exposure": 9.0}), update("obs", txn.NewID(), nil)), // missing row, update without values
		tx(insertObs(good2, schema.Row{"target": "M4"})),
	}
	wantOp := map[int]int{1: 1, 7: 1}
	missing := map[int]bool{3: true, 4: true, 7: true}

	g := newGate()
	out := f.apply(g, batch...)
	failed := g.failures()
	for i, o := range out {
		id := batch[i].ID
		if i == 0 || i == len(batch)-1 {
			if o.Err != nil || o.Duplicate {
				t.Errorf("transaction %d: outcome %+v, want applied", i, o)
			}
			f.wantApplied(id, true)
			f.wantNoDeadLetter(id)
			if _, ok := failed[id]; ok {
				t.Errorf("transaction %d reported failed to the gate", i)
			}
			continue
		}
		var ae *store.ApplyError
		if !errors.As(o.Err, &ae) {
			t.Errorf("transaction %d: error %v (%T), want *store.ApplyError", i, o.Err, o.Err)
			continue
		}
		if ae.Op != wantOp[i] || ae.Table != batch[i].Operations[ae.Op].Table {
			t.Errorf("transaction %d: failed operation %d on %q, want %d on %q", i, ae.Op, ae.Table, wantOp[i], batch[i].Operations[wantOp[i]].Table)
		}
		if got := errors.Is(o.Err, store.ErrMissingRow); got != missing[i] {
			t.Errorf("transaction %d: errors.Is(%v, ErrMissingRow) = %v", i, o.Err, got)
		}
		if !missing[i] && ae.Code == "" {
			t.Errorf("transaction %d: %v has no database error code", i, o.Err)
		}
		if err, ok := failed[id]; !ok || err != o.Err {
			t.Errorf("transaction %d: gate told %v, %v; want Failed with %v", i, err, ok, o.Err)
		}
		f.wantApplied(id, false)
		dl, err := f.s.DeadLetter(f.ctx, id)
		if err != nil {
			t.Errorf("dead letter of transaction %d: %v", i, err)
			continue
		}
		if dl.Error != o.Err.Error() || dl.Code != ae.Code || dl.FailedAt.IsZero() {
			t.Errorf("dead letter of transaction %d: error %q code %q at %v; want %q, %q", i, dl.Error, dl.Code, dl.FailedAt, o.Err, ae.Code)
		}
		if dl.Tx == nil || dl.Tx.ID != id || len(dl.Tx.Operations) != len(batch[i].Operations) || dl.Tx.Operations[0].ID != batch[i].Operations[0].ID {
			t.Errorf("dead letter of transaction %d holds %+v, want %+v", i, dl.Tx, batch[i])
		}
	}
	f.wantRow("obs", good1, emptyObs(good1, "M1"))
	f.wantRow("obs", good2, emptyObs(good2, "M4"))
	f.wantNoRow("obs", partial)
	f.wantRow("obs", existing, merge(emptyObs(existing, "M31"), schema.Row{"code": "taken"}))
}

// testGateRefusal: a transaction the gate refuses is dead-lettered unrun
// with the gate's reason and reported back to the gate.
func testGateRefusal(t *testing.T, f *fixture) {
	a, b, c := txn.NewID(), txn.NewID(), txn.NewID()
	batch := []*txn.Transaction{
		tx(insertObs(a, schema.Row{"target": "M1"})),
		tx(insertObs(b, schema.Row{"target": "M2"})),
		tx(insertObs(c, schema.Row{"target": "M3"})),
	}
	reason := errors.New("depends on a failed transaction")
	g := newGate()
	g.refuse[batch[1].ID] = reason
	out := f.apply(g, batch...)
	if out[0].Err != nil || out[2].Err != nil {
		t.Errorf("outcomes %+v, want the first and last applied", out)
	}
	if !errors.Is(out[1].Err, reason) {
		t.Errorf("refused transaction: error %v, want the gate's reason", out[1].Err)
	}
	// Each is asked about (an attempt given up and run again asks again).
	if asked := slices.Compact(slices.Sorted(slices.Values(g.admitted))); len(asked) != 3 {
		t.Errorf("gate asked about %d transactions, want all 3", len(asked))
	}
	if err, ok := g.failures()[batch[1].ID]; !ok || !errors.Is(err, reason) {
		t.Errorf("gate told %v, %v; want Failed with the reason", err, ok)
	}
	f.wantNoRow("obs", b)
	f.wantRow("obs", a, emptyObs(a, "M1"))
	f.wantRow("obs", c, emptyObs(c, "M3"))
	f.wantApplied(batch[1].ID, false)
	dl, err := f.s.DeadLetter(f.ctx, batch[1].ID)
	if err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	if dl.Error != reason.Error() || dl.Code != "" || dl.Tx.ID != batch[1].ID {
		t.Errorf("dead letter %+v, want the reason and no code", dl)
	}
}

// testDeadLetterReplay replays a batch whose dead letter had committed: the
// dead-lettered transaction keeps its fate (it is not run again even though
// it would now succeed) and the gate hears of it again.
func testDeadLetterReplay(t *testing.T, f *fixture) {
	existing, a, b := txn.NewID(), txn.NewID(), txn.NewID()
	f.mustApply(tx(insertObs(existing, schema.Row{"target": "M31", "code": "taken"})))
	batch := []*txn.Transaction{
		tx(insertObs(a, schema.Row{"target": "M1"})),
		tx(insertObs(b, schema.Row{"target": "M2", "code": "taken"})),
	}
	out := f.apply(nil, batch...)
	if out[0].Err != nil || out[1].Err == nil {
		t.Fatalf("outcomes %+v, want applied then failed", out)
	}
	f.mustApply(tx(del("obs", existing))) // the cause is gone

	g := newGate()
	out = f.apply(g, batch...)
	if !out[0].Duplicate {
		t.Errorf("replayed applied transaction: %+v, want duplicate", out[0])
	}
	if out[1].Err == nil || out[1].Duplicate {
		t.Errorf("replayed dead-lettered transaction: %+v, want it failed still", out[1])
	}
	if _, ok := g.failures()[batch[1].ID]; !ok {
		t.Error("gate not told of the replayed dead letter")
	}
	f.wantNoRow("obs", b)
	f.wantApplied(batch[1].ID, false)
	if _, err := f.s.DeadLetter(f.ctx, batch[1].ID); err != nil {
		t.Errorf("dead letter: %v", err)
	}
}

// testTransient cancels the context in the middle of a batch, after one
// transaction ran and one was dead-lettered: the batch returns an error and
// none of it, dead letter included, is committed. Run again, it all applies.
func testTransient(t *testing.T, f *fixture) {
	existing, a, b, c := txn.NewID(), txn.NewID(), txn.NewID(), txn.NewID()
	f.mustApply(tx(insertObs(existing, schema.Row{"target": "M31", "code": "taken"})))
	batch := []*txn.Transaction{
		tx(insertObs(a, schema.Row{"target": "M1"})),
		tx(insertObs(b, schema.Row{"target": "M2", "code": "taken"})),
		tx(insertObs(c, schema.Row{"target": "M3"})),
	}
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	g := newGate()
	g.onAdmit = func(tx *txn.Transaction) {
		if tx.ID == batch[2].ID {
			cancel()
		}
	}
	out, err := f.s.ApplyBatch(ctx, batch, g)
	if err == nil {
		t.Fatalf("batch with the context cancelled midway: outcomes %+v, no error", out)
	}
	for _, id := range []string{a, c} {
		f.wantNoRow("obs", id)
	}
	for _, tx := range batch {
		f.wantApplied(tx.ID, false)
		f.wantNoDeadLetter(tx.ID)
	}

	out = f.apply(nil, batch...)
	if out[0].Err != nil || out[1].Err == nil || out[2].Err != nil || out[0].Duplicate || out[2].Duplicate {
		t.Errorf("retried batch: outcomes %+v, want applied, failed, applied", out)
	}
	f.wantRow("obs", a, emptyObs(a, "M1"))
	f.wantRow("obs", c, emptyObs(c, "M3"))
}

// testFencing: a batch under an older fencing token than one already
// committed for the same log commits nothing and fails with ErrFenced;
// other logs and token 0 are not affected.
func testFencing(t *testing.T, f *fixture) {
	fenced := func(log string, token int64) *gate {
		g := newGate()
		g.log, g.token = log, token
		return g
	}
	a, b, c, d := txn.NewID(), txn.NewID(), txn.NewID(), txn.NewID()
	f.apply(fenced("site-a", 2), tx(insertObs(a, schema.Row{"target": "M1"})))
	f.apply(fenced("site-a", 2), tx(insertObs(b, schema.Row{"target": "M2"}))) // same token again: fine
	old := tx(insertObs(c, schema.Row{"target": "M3"}))
	if _, err := f.s.ApplyBatch(f.ctx, []*txn.Transaction{old}, fenced("site-a", 1)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("batch under an older token: %v, want ErrFenced", err)
	}
	f.wantNoRow("obs", c)
	f.wantApplied(old.ID, false)
	f.apply(fenced("site-b", 1), tx(insertObs(d, schema.Row{"target": "M4"}))) // another log
	f.apply(fenced("site-a", 3), old)                                          // a newer lease
	f.wantRow("obs", c, emptyObs(c, "M3"))
	f.apply(nil, tx(insertObs(txn.NewID(), schema.Row{"target": "M5"}))) // no lease
}

// testSupersededRetries sends a dead letter two retries, in one batch, in
// later ones and on the slow path, and retries a dropped one: only the
// first retry of a dead letter runs; the others are dead-lettered as
// superseded, dropped at once, and poison nothing. A dead letter retried
// cannot be dropped.
func testSupersededRetries(t *testing.T, f *fixture) {
	row := txn.NewID()
	// Each dead letter updates a row that does not exist; its retries
	// (edited) update row.
	failed := func() *txn.Transaction {
		t.Helper()
		d := tx(update("obs", txn.NewID(), schema.Row{"exposure": 0.0}))
		if out := f.apply(nil, d); out[0].Err == nil {
			t.Fatalf("dead letter to be: applied")
		}
		return d
	}
	retry := func(of *txn.Transaction, exposure float64) *txn.Transaction {
		r := tx(update("obs", row, schema.Row{"exposure": exposure}))
		r.RetryOf = of.ID
		return r
	}
	wantSuperseded := func(o store.Outcome, r *txn.Transaction, of, as string) {
		t.Helper()
		var se *store.SupersededError
		if !errors.As(o.Err, &se) || se.DeadLetter != of || se.RetriedAs != as {
			t.Fatalf("retry %s: outcome %+v, want superseded (dead letter %s retried as %q)", r.ID, o, of, as)
		}
		dl, err := f.s.DeadLetter(f.ctx, r.ID)
		if err != nil || dl.Code != store.CodeSuperseded || dl.DroppedBy != store.DroppedBySpool || dl.DroppedAt.IsZero() || dl.RetriedAs != "" {
			t.Fatalf("superseded retry's dead letter %+v, %v; want dropped by spool, code %s", dl, err, store.CodeSuperseded)
		}
	}
	wantRetriedAs := func(of *txn.Transaction, as string) {
		t.Helper()
		dl, err := f.s.DeadLetter(f.ctx, of.ID)
		if err != nil || dl.RetriedAs != as || !dl.DroppedAt.IsZero() {
			t.Fatalf("dead letter %s: %+v, %v; want retried as %s, not dropped", of.ID, dl, err, as)
		}
	}

	a := failed()
	f.mustApply(tx(insertObs(row, schema.Row{"target": "M31"})))

	// Two retries in one batch: the first runs.
	r1, r2 := retry(a, 1), retry(a, 2)
	g := newGate()
	out := f.apply(g, r1, r2)
	if out[0].Err != nil || out[0].Duplicate {
		t.Fatalf("first retry: outcome %+v, want applied", out[0])
	}
	wantSuperseded(out[1], r2, a.ID, r1.ID)
	if fails := g.failures(); len(fails) != 0 {
		t.Errorf("the gate was told of failures %v; a superseded retry poisons nothing", fails)
	}
	f.wantRow("obs", row, merge(emptyObs(row, "M31"), schema.Row{"exposure": 1.0}))
	wantRetriedAs(a, r1.ID)
	f.wantApplied(r2.ID, false)

	// A later retry, and the batch replayed: nothing changes.
	r3 := retry(a, 3)
	out = f.apply(nil, r3)
	wantSuperseded(out[0], r3, a.ID, r1.ID)
	out = f.apply(nil, r1, r2)
	if !out[0].Duplicate || out[1].Err == nil {
		t.Fatalf("replayed retries: outcomes %+v, want a duplicate and a failure", out)
	}
	f.wantRow("obs", row, merge(emptyObs(row, "M31"), schema.Row{"exposure": 1.0}))
	wantRetriedAs(a, r1.ID)

	// On the slow path (a transaction of the batch fails): the same.
	b := failed()
	r4, r5 := retry(b, 4), retry(b, 5)
	out = f.apply(nil, r4, tx(update("obs", txn.NewID(), schema.Row{"exposure": 9.0})), r5)
	if out[0].Err != nil || out[1].Err == nil {
		t.Fatalf("slow path: outcomes %+v, want applied, failed, superseded", out)
	}
	wantSuperseded(out[2], r5, b.ID, r4.ID)
	f.wantRow("obs", row, merge(emptyObs(row, "M31"), schema.Row{"exposure": 4.0}))

	// A retried dead letter cannot be dropped; a dropped one's retry does
	// not run.
	if err := f.s.DropDeadLetter(f.ctx, b.ID, "ops"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("drop a retried dead letter: %v, want store.ErrNotFound", err)
	}
	wantRetriedAs(b, r4.ID)
	c := failed()
	if err := f.s.DropDeadLetter(f.ctx, c.ID, "ops"); err != nil {
		t.Fatalf("drop: %v", err)
	}
	r6 := retry(c, 6)
	out = f.apply(nil, r6)
	wantSuperseded(out[0], r6, c.ID, "")
	f.wantRow("obs", row, merge(emptyObs(row, "M31"), schema.Row{"exposure": 4.0}))
}
