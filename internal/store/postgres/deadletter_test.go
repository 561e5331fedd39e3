package postgres

import (
	"errors"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/storetest"
	"github.com/spoolgw/spool/internal/txn"
)

var _ gateway.DeadLetterStore = (*Store)(nil)

// TestDeadLetterQueue follows a failing transaction through two retries,
// and lists, pages and drops dead letters.
func TestDeadLetterQueue(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	taken := txn.NewID()
	storetest.MustApply(t, s, obsTx(taken, "code", "taken"))
	apply := func(batch ...*txn.Transaction) []store.Outcome {
		t.Helper()
		out, err := s.ApplyBatch(ctx, batch, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	retry := func(of *txn.Transaction, code string) *txn.Transaction {
		r := obsTx(txn.NewID(), "code", code)
		r.RetryOf = of.ID
		return r
	}

	a := obsTx(txn.NewID(), "code", "taken")
	b := &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "frames", ID: txn.NewID(),
		Values: map[string]any{"obs_id": txn.NewID()}}}}
	b.Operations[0].Values["id"] = b.Operations[0].ID
	if out := apply(a, b); out[0].Err == nil || out[1].Err == nil {
		t.Fatalf("outcomes %+v, want both failed", out)
	}
	first, err := s.DeadLetter(ctx, a.ID)
	if err != nil || first.Attempts != 1 || !first.FirstFailedAt.Equal(first.FailedAt) || first.RetriedAs != "" {
		t.Fatalf("first dead letter %+v, %v", first, err)
	}

	r1 := retry(a, "taken") // fails again
	if out := apply(r1); out[0].Err == nil {
		t.Fatal("retry of a still failing transaction applied")
	}
	d1, err := s.DeadLetter(ctx, r1.ID)
	if err != nil || d1.Attempts != 2 || !d1.FirstFailedAt.Equal(first.FailedAt) || d1.Tx.RetryOf != a.ID {
		t.Fatalf("retry's dead letter %+v, %v; want 2 attempts since %v", d1, err, first.FailedAt)
	}
	r2 := retry(r1, "fixed") // the fix: applies
	if out := apply(r2); out[0].Err != nil {
		t.Fatalf("fixed retry: %v", out[0].Err)
	}
	for id, want := range map[string]string{a.ID: r1.ID, r1.ID: r2.ID} {
		if dl, err := s.DeadLetter(ctx, id); err != nil || dl.RetriedAs != want {
			t.Errorf("dead letter %s retried as %q, %v; want %s", id, dl.RetriedAs, err, want)
		}
	}

	// Only b is live; with All, all three, in the order they failed.
	ids := func(f store.DeadLetterFilter) []string {
		t.Helper()
		dls, err := s.ListDeadLetters(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, dl := range dls {
			out = append(out, dl.Tx.ID)
		}
		return out
	}
	check := func(name string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v", name, got, want)
			return
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: %v, want %v", name, got, want)
				return
			}
		}
	}
	check("live", ids(store.DeadLetterFilter{}), b.ID)
	all := ids(store.DeadLetterFilter{All: true})
	if len(all) != 3 {
		t.Fatalf("all: %v", all)
	}
	check("table obs", ids(store.DeadLetterFilter{All: true, Table: "obs"}), a.ID, r1.ID)
	check("table frames", ids(store.DeadLetterFilter{Table: "frames"}), b.ID)
	check("table o (no partial match)", ids(store.DeadLetterFilter{All: true, Table: "o"}))
	check("code 23503", ids(store.DeadLetterFilter{All: true, Code: "23503"}), b.ID)
	check("code class 23", ids(store.DeadLetterFilter{All: true, Code: "23"}), all...)
	check("since later", ids(store.DeadLetterFilter{All: true, Since: time.Now().Add(time.Hour)}))
	check("page 1", ids(store.DeadLetterFilter{All: true, Limit: 2}), all[:2]...)
	check("page 2", ids(store.DeadLetterFilter{All: true, Limit: 2, After: all[1]}), all[2:]...)
	check("after nonsense", ids(store.DeadLetterFilter{All: true, After: "nonsense"}))

	if err := s.DropDeadLetter(ctx, b.ID, "ops@example"); err != nil {
		t.Fatal(err)
	}
	if dl, err := s.DeadLetter(ctx, b.ID); err != nil || dl.DroppedBy != "ops@example" || dl.DroppedAt.IsZero() {
		t.Errorf("dropped dead letter %+v, %v", dl, err)
	}
	check("live after drop", ids(store.DeadLetterFilter{}))
	if err := s.DropDeadLetter(ctx, b.ID, "again"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("drop twice: %v, want ErrNotFound", err)
	}
	if err := s.DropDeadLetter(ctx, txn.NewID(), "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("drop of nothing: %v, want ErrNotFound", err)
	}
}

// TestCommitLSN: every outcome carries the batch's commit position, which
// grows from batch to batch and which the primary has passed.
func TestCommitLSN(t *testing.T) {
	t.Parallel()
	s, url := setup(t)
	ctx := t.Context()
	var last txn.LSN
	for _, batch := range [][]*txn.Transaction{obsBatch(3), obsBatch(1)} {
		out, err := s.ApplyBatch(ctx, batch, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range out {
			if o.LSN == 0 || o.LSN != out[0].LSN {
				t.Errorf("outcome %d: LSN %v, want the batch's", i, o.LSN)
			}
		}
		if out[0].LSN <= last {
			t.Errorf("LSN %v after %v", out[0].LSN, last)
		}
		last = out[0].LSN
	}
	var text string
	if err := connect(t, url).QueryRow(ctx, `select pg_current_wal_insert_lsn()::text`).Scan(&text); err != nil {
		t.Fatal(err)
	}
	if now, err := txn.ParseLSN(text); err != nil || now < last {
		t.Errorf("WAL at %v (%v), before the last commit %v", now, err, last)
	}
}
