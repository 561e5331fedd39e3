package applier_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/store"
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
	a := applyNow(t, st, insertObs("a", 1))
	time.Sleep(50 * time.Millisecond)
	c := insertObs("c", 1)
	if _, err := lg.Append(ctx, c); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	b := applyNow(t, st, insertObs("b", 1))

	held := newHeldStore(st)
	ap := start(t, pruneEvery20ms, lg, held, &recorder{}, nil)
	t.Cleanup(held.Release) // before Stop, if the test fails while c is held
	waitFor(t, "a's record pruned", func() bool { return !applied(t, st, a) })
	time.Sleep(200 * time.Millisecond) // ten more prunings
	if !applied(t, st, b) {
		t.Fatal("b's record was pruned while c, older, was still in the log")
	}
	held.Release()
	waitFor(t, "c applied", func() bool { return len(held.batches()) == 1 && applied(t, st, c) })
	waitFor(t, "b's record pruned once c left the log", func() bool { return !applied(t, st, b) })
	// The pruner counts the records it deleted once its statement has
	// committed, which is after the test can see them gone.
	waitFor(t, "Pruned() to count a's and b's records (2 or more)", func() bool { return ap.Pruned() >= 2 })
}

// TestPruneAppliedOtherLog: another log draining into the same database
// recorded that it still holds a transaction made before a; a's record
// stays, however old, until that log records a later head.
func TestPruneAppliedOtherLog(t *testing.T) {
	ctx := t.Context()
	st, lg := open(t)
	a := applyNow(t, st, insertObs("a", 1))
	if _, err := st.RecordLogHead(ctx, "site-b", txn.IDTime(a.ID).Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	var logged syncbuf.Buffer
	start(t, pruneEvery20ms, lg, st, &recorder{}, slog.New(slog.NewTextHandler(&logged, nil)))
	time.Sleep(300 * time.Millisecond) // fifteen prunings
	if !applied(t, st, a) {
		t.Fatal("a's record was pruned while another log still held an older transaction")
	}
	if !strings.Contains(logged.String(), "a log holds a transaction older than --applied-retention") {
		t.Errorf("no warning that a log holds pruning back; the log says:\n%s", logged.String())
	}
	if _, err := st.RecordLogHead(ctx, "site-b", time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's record pruned once the other log moved on", func() bool { return !applied(t, st, a) })
}

// pruneEvery20ms is an applier that keeps records 30 ms and prunes
// every 20 ms.
var pruneEvery20ms = applier.Config{AppliedRetention: 30 * time.Millisecond, PruneEvery: 20 * time.Millisecond}

// applyNow applies tx to st directly, as an applier before this one did,
// and returns it.
func applyNow(t *testing.T, st store.Store, tx *txn.Transaction) *txn.Transaction {
	t.Helper()
	if _, err := st.ApplyBatch(t.Context(), []*txn.Transaction{tx}, nil); err != nil {
		t.Fatal(err)
	}
	return tx
}

// applied reports whether st holds the record of tx.
func applied(t *testing.T, st store.Store, tx *txn.Transaction) bool {
	t.Helper()
	_, ok, err := st.Applied(t.Context(), tx.ID)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}
