package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// deadLetters are the dead letters testListDeadLetters and
// testDropDeadLetter start from, in the order they failed.
type deadLetters struct {
	// a failed on a unique code, r1 retried it and failed again, r2
	// retried r1 and applied: a and r1 are retried, not live.
	a, r1, r2 *txn.Transaction
	// b failed on a foreign key (table frames); c names obs and frames
	// and failed on a missing row. Both are live.
	b, c *txn.Transaction
}

// failDeadLetters makes the dead letters of deadLetters, one batch each so
// that they fail in that order.
func failDeadLetters(t *testing.T, f *fixture) *deadLetters {
	t.Helper()
	taken := txn.NewID()
	f.mustApply(tx(insertObs(taken, schema.Row{"target": "M31", "code": "taken"})))
	fail := func(tx *txn.Transaction) {
		t.Helper()
		if out := f.apply(nil, tx); out[0].Err == nil {
			t.Fatalf("transaction %s applied, want it dead-lettered", tx.ID)
		}
	}
	retry := func(of *txn.Transaction, code string) *txn.Transaction {
		r := tx(insertObs(txn.NewID(), schema.Row{"target": "M1", "code": code}))
		r.RetryOf, r.Principal = of.ID, "token:ops"
		return r
	}
	frame := txn.NewID()
	d := &deadLetters{
		a: tx(insertObs(txn.NewID(), schema.Row{"target": "M1", "code": "taken"})),
		b: tx(insert("frames", "id", frame, frame, schema.Row{"obs_id": txn.NewID()})),
		c: tx(insertObs(txn.NewID(), schema.Row{"target": "M2"}), update("frames", txn.NewID(), schema.Row{"n": int64(1)})),
	}
	fail(d.a)
	d.r1 = retry(d.a, "taken")
	fail(d.r1)
	fail(d.b)
	fail(d.c)
	d.r2 = retry(d.r1, "fixed")
	f.mustApply(d.r2)
	return d
}

// deadLetterIDs lists the ids of the dead letters fl selects.
func (f *fixture) deadLetterIDs(fl store.DeadLetterFilter) []string {
	f.t.Helper()
	dls, err := f.s.ListDeadLetters(f.ctx, fl)
	if err != nil {
		f.t.Fatalf("list dead letters %+v: %v", fl, err)
	}
	ids := []string{}
	for _, dl := range dls {
		ids = append(ids, dl.Tx.ID)
	}
	return ids
}

// testDeadLetterAttempts follows a failing transaction through two
// retries: each dead letter counts the attempts since the first failure,
// and the retried ones name their retry.
func testDeadLetterAttempts(t *testing.T, f *fixture) {
	d := failDeadLetters(t, f)
	first, err := f.s.DeadLetter(f.ctx, d.a.ID)
	if err != nil || first.Attempts != 1 || !first.FirstFailedAt.Equal(first.FailedAt) {
		t.Fatalf("first dead letter %+v, %v; want 1 attempt", first, err)
	}
	second, err := f.s.DeadLetter(f.ctx, d.r1.ID)
	if err != nil || second.Attempts != 2 || !second.FirstFailedAt.Equal(first.FailedAt) || second.Tx.RetryOf != d.a.ID {
		t.Fatalf("retry's dead letter %+v, %v; want 2 attempts since %v", second, err, first.FailedAt)
	}
	for id, want := range map[string]string{d.a.ID: d.r1.ID, d.r1.ID: d.r2.ID, d.b.ID: ""} {
		if dl, err := f.s.DeadLetter(f.ctx, id); err != nil || dl.RetriedAs != want || (want != "") != (dl.RetriedBy == "token:ops") {
			t.Errorf("dead letter %s: %+v, %v; want retried as %q (by token:ops)", id, dl, err, want)
		}
	}
	f.wantNoDeadLetter(d.r2.ID)
}

// testListDeadLetters lists dead letters with each filter, and pages
// through them.
func testListDeadLetters(t *testing.T, f *fixture) {
	d := failDeadLetters(t, f)
	all := []string{d.a.ID, d.r1.ID, d.b.ID, d.c.ID}
	live := []string{d.b.ID, d.c.ID}
	dls := map[string]*store.DeadLetter{}
	for _, id := range all {
		dl, err := f.s.DeadLetter(f.ctx, id)
		if err != nil {
			t.Fatalf("dead letter %s: %v", id, err)
		}
		dls[id] = dl
	}
	unique, foreign := dls[d.a.ID].Code, dls[d.b.ID].Code
	class := commonPrefix(unique, foreign) // "2350" (SQLSTATE), "SQLITE_CONSTRAINT"
	if unique == "" || foreign == "" || class == "" || class == unique || class == foreign {
		t.Fatalf("codes %q and %q: want two codes of one class", unique, foreign)
	}
	since := dls[d.b.ID].FailedAt
	var fromB []string
	for _, id := range all {
		if !dls[id].FailedAt.Before(since) {
			fromB = append(fromB, id)
		}
	}

	for _, tt := range []struct {
		name string
		f    store.DeadLetterFilter
		want []string
	}{
		{"live", store.DeadLetterFilter{}, live},
		{"all", store.DeadLetterFilter{All: true}, all},
		{"table obs", store.DeadLetterFilter{All: true, Table: "obs"}, []string{d.a.ID, d.r1.ID, d.c.ID}},
		{"table obs, live", store.DeadLetterFilter{Table: "obs"}, []string{d.c.ID}},
		{"table frames", store.DeadLetterFilter{Table: "frames"}, []string{d.b.ID, d.c.ID}},
		{"table o (no partial match)", store.DeadLetterFilter{All: true, Table: "o"}, nil},
		{"table unknown", store.DeadLetterFilter{All: true, Table: "nope"}, nil},
		{"code exact", store.DeadLetterFilter{All: true, Code: foreign}, []string{d.b.ID}},
		{"code class", store.DeadLetterFilter{All: true, Code: class}, []string{d.a.ID, d.r1.ID, d.b.ID}},
		{"code class, live", store.DeadLetterFilter{Code: class}, []string{d.b.ID}},
		{"code unknown", store.DeadLetterFilter{All: true, Code: "zz"}, nil},
		{"since the first", store.DeadLetterFilter{All: true, Since: dls[d.a.ID].FailedAt}, all},
		{"since b", store.DeadLetterFilter{All: true, Since: since}, fromB},
		{"since later", store.DeadLetterFilter{All: true, Since: time.Now().Add(time.Hour)}, nil},
		{"page 1", store.DeadLetterFilter{All: true, Limit: 3}, all[:3]},
		{"page 2", store.DeadLetterFilter{All: true, Limit: 3, After: all[2]}, all[3:]},
		{"after the last", store.DeadLetterFilter{All: true, After: all[3]}, nil},
		{"live page after a retried one", store.DeadLetterFilter{Limit: 1, After: d.r1.ID}, []string{d.b.ID}},
		{"after an unknown id", store.DeadLetterFilter{All: true, After: txn.NewID()}, nil},
		{"after nonsense", store.DeadLetterFilter{All: true, After: "nonsense"}, nil},
		{"every filter", store.DeadLetterFilter{Table: "frames", Code: class, Since: since, Limit: 5}, []string{d.b.ID}},
	} {
		if got := f.deadLetterIDs(tt.f); !slices.Equal(got, orEmpty(tt.want)) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}

	// Pages of one walk every dead letter once, in order.
	var walked []string
	for after := ""; ; {
		page := f.deadLetterIDs(store.DeadLetterFilter{All: true, Limit: 1, After: after})
		if len(page) == 0 {
			break
		}
		if len(page) != 1 || len(walked) > len(all) {
			t.Fatalf("pages of one: %v after %v", page, walked)
		}
		walked = append(walked, page[0])
		after = page[0]
	}
	if !slices.Equal(walked, all) {
		t.Errorf("pages of one: %v, want %v", walked, all)
	}

	// A listed dead letter is the one DeadLetter returns.
	got, err := f.s.ListDeadLetters(f.ctx, store.DeadLetterFilter{Table: "frames", Code: foreign})
	if err != nil || len(got) != 1 {
		t.Fatalf("list: %v, %v", got, err)
	}
	want := dls[d.b.ID]
	if got := got[0]; got.Error != want.Error || got.Code != want.Code || !got.FailedAt.Equal(want.FailedAt) ||
		got.Attempts != want.Attempts || got.RetriedAs != "" || !got.DroppedAt.IsZero() || len(got.Tx.Operations) != 1 {
		t.Errorf("listed dead letter %+v, want %+v", got, want)
	}
}

// testDropDeadLetter drops a dead letter and tries to drop it again, one
// retried and one that does not exist.
func testDropDeadLetter(t *testing.T, f *fixture) {
	d := failDeadLetters(t, f)
	before := time.Now().Add(-time.Minute)
	if err := f.s.DropDeadLetter(f.ctx, d.b.ID, "ops@example"); err != nil {
		t.Fatalf("drop: %v", err)
	}
	dl, err := f.s.DeadLetter(f.ctx, d.b.ID)
	if err != nil || dl.DroppedBy != "ops@example" || dl.DroppedAt.Before(before) || dl.DroppedAt.After(time.Now().Add(time.Minute)) {
		t.Fatalf("dropped dead letter %+v, %v; want dropped by ops@example around now", dl, err)
	}
	if dl.Tx.ID != d.b.ID || dl.RetriedAs != "" || dl.Error == "" {
		t.Errorf("dropped dead letter %+v lost its record", dl)
	}
	if got := f.deadLetterIDs(store.DeadLetterFilter{}); !slices.Equal(got, []string{d.c.ID}) {
		t.Errorf("live after the drop: %v, want %v", got, []string{d.c.ID})
	}
	if got := f.deadLetterIDs(store.DeadLetterFilter{All: true, Table: "frames"}); !slices.Equal(got, []string{d.b.ID, d.c.ID}) {
		t.Errorf("all of frames after the drop: %v, want the dropped one still", got)
	}

	for _, tt := range []struct{ name, id string }{
		{"twice", d.b.ID},
		{"a retried one", d.a.ID},
		{"a retried one (the last retry applied)", d.r1.ID},
		{"an applied transaction", d.r2.ID},
		{"an unknown id", txn.NewID()},
		{"nonsense", "nonsense"},
	} {
		if err := f.s.DropDeadLetter(f.ctx, tt.id, "again"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("drop %s: %v, want store.ErrNotFound", tt.name, err)
		}
	}
	if dl, err := f.s.DeadLetter(f.ctx, d.b.ID); err != nil || dl.DroppedBy != "ops@example" {
		t.Errorf("dropped twice: %+v, %v; want the first drop's record", dl, err)
	}
	for _, id := range []string{d.a.ID, d.r1.ID} {
		if dl, err := f.s.DeadLetter(f.ctx, id); err != nil || !dl.DroppedAt.IsZero() || dl.DroppedBy != "" || dl.RetriedAs == "" {
			t.Errorf("retried dead letter %s after a drop: %+v, %v; want retried, not dropped", id, dl, err)
		}
	}
}

func commonPrefix(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return strings.TrimRight(a[:n], "_")
}

// orEmpty makes a nil want compare equal to an empty list.
func orEmpty(ids []string) []string {
	if ids == nil {
		return []string{}
	}
	return ids
}
