package applier_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/syncbuf"
	"github.com/spoolgw/spool/internal/txn"
)

// TestPruneApplied runs the applier with a retention of 30 ms, pruning
// every 20 ms, while the log holds transaction c, claimed but held in the
// database. The record of a, applied and made 50 ms before c, goes; that
// of b, applied and made after c, stays for as long as c is in the log,
// though it is older than the retention: a crash now would deliver c
// again, and b with it if it were in the log. Once c is applied and
// acknowledged, b's record goes too.
func TestPruneApplied(t *testing.T) {
	ctx := t.Context()
	st, lg := open(t)
	insert := func(key string) *txn.Transaction {
		return &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "obs", ID: key,
			Values: map[string]any{"id": key, "n": int64(1)}}}}
	}
	applied := func(tx *txn.Transaction) bool {
		t.Helper()
		_, ok, err := st.Applied(ctx, tx.ID)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 10 s", what)
			}
		}
	}

	a := insert("a")
	if _, err := st.ApplyBatch(ctx, []*txn.Transaction{a}, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	c := insert("c")
	if _, err := lg.Append(ctx, c); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	b := insert("b")
	if _, err := st.ApplyBatch(ctx, []*txn.Transaction{b}, nil); err != nil {
		t.Fatal(err)
	}

	held := newHeldStore(st)
	ap, err := applier.New(applier.Config{AppliedRetention: 30 * time.Millisecond, PruneEvery: 20 * time.Millisecond},
		lg, held, &recorder{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ap.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer ap.Stop()
	defer held.Release()
	waitFor("a's record pruned", func() bool { return !applied(a) })
	time.Sleep(200 * time.Millisecond) // ten more prunings
	if !applied(b) {
		t.Fatal("b's record was pruned while c, older, was still in the log")
	}
	held.Release()
	waitFor("c applied", func() bool { return len(held.batches()) == 1 && applied(c) })
	waitFor("b's record pruned once c left the log", func() bool { return !applied(b) })
	if n := ap.Pruned(); n < 2 {
		t.Errorf("Pruned() = %d after a's and b's records went, want 2 or more", n)
	}
}

// TestPruneAppliedOtherLog: another log draining into the same database
// recorded that it still holds a transaction made before a; a's record
// stays, however old, until that log records a later head.
func TestPruneAppliedOtherLog(t *testing.T) {
	ctx := t.Context()
	st, lg := open(t)
	a := &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "obs", ID: "a",
		Values: map[string]any{"id": "a", "n": int64(1)}}}}
	if _, err := st.ApplyBatch(ctx, []*txn.Transaction{a}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RecordLogHead(ctx, "site-b", txn.IDTime(a.ID).Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	var logged syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logged, nil))
	ap, err := applier.New(applier.Config{AppliedRetention: 30 * time.Millisecond, PruneEvery: 20 * time.Millisecond},
		lg, st, &recorder{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := ap.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer ap.Stop()
	applied := func() bool {
		_, ok, err := st.Applied(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	time.Sleep(300 * time.Millisecond) // fifteen prunings
	if !applied() {
		t.Fatal("a's record was pruned while another log still held an older transaction")
	}
	if !strings.Contains(logged.String(), "a log holds a transaction older than --applied-retention") {
		t.Errorf("no warning that a log holds pruning back; the log says:\n%s", logged.String())
	}
	if _, err := st.RecordLogHead(ctx, "site-b", time.Now()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); applied(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a's record not pruned 10 s after the other log moved on")
		}
	}
}
