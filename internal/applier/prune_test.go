package applier_test

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/poll"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/syncbuf"
	"github.com/spoolgw/spool/internal/txn"
)

// retention is the tests' --applied-retention: an hour, like the least
// spool accepts, set against a clock the tests move (fakeClock) and ids
// made at the times they choose (idAt), so that nothing depends on how
// fast the machine runs.
const retention = time.Hour

// fakeClock is the pruner's clock: it says what the test set, and counts
// the prunings (the pruner reads it once at the start of each).
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	reads int
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.now
}

func (c *fakeClock) prunings() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// waitPrunings waits until n more prunings than now have run to the end:
// the pruning after the nth has started, and prunings run one at a time.
func (c *fakeClock) waitPrunings(t *testing.T, n int) {
	t.Helper()
	from := c.prunings()
	poll.Until(t, 10*time.Second, "prunings to run", func() bool { return c.prunings() > from+n })
}

// pruneConfig is an applier that keeps records for retention by clock,
// pruning every 5 ms.
func pruneConfig(clock *fakeClock) applier.Config {
	return applier.Config{AppliedRetention: retention, PruneEvery: 5 * time.Millisecond, Now: clock.Now}
}

// idAt is a fresh transaction id made at t (to the millisecond).
func idAt(t time.Time) string {
	return txn.FirstIDAt(t)[:13] + txn.NewID()[13:]
}

// insertObsAt is insertObs with an id made at t.
func insertObsAt(key string, at time.Time) *txn.Transaction {
	tx := insertObs(key, 1)
	tx.ID = idAt(at)
	return tx
}

// TestPruneApplied runs the applier two hours ahead of the database's
// clock, while the log holds transaction c, made now, claimed but held in
// the database. The record of a, applied now and made 90 minutes before
// c (more than the retention), goes; that of b, made 30 minutes before c,
// stays for as long as c is in the log, though by the pruner's clock it
// is older than the retention: a crash now would deliver c again, and b
// with it if it were in the log. Once c is applied and acknowledged, b's
// record goes too.
func TestPruneApplied(t *testing.T) {
	ctx := t.Context()
	st, lg := open(t)
	now := time.Now()
	a := applyNow(t, st, insertObsAt("a", now.Add(-90*time.Minute)))
	b := applyNow(t, st, insertObsAt("b", now.Add(-30*time.Minute)))
	c := insertObsAt("c", now)
	if _, err := lg.Append(ctx, c); err != nil {
		t.Fatal(err)
	}

	clock := &fakeClock{now: now.Add(2 * retention)}
	held := newHeldStore(st)
	ap := start(t, pruneConfig(clock), lg, held, &recorder{}, nil)
	t.Cleanup(held.Release) // before Stop, if the test fails while c is held
	poll.Until(t, 10*time.Second, "a's record pruned", func() bool { return !applied(t, st, a) })
	clock.waitPrunings(t, 2) // with c still held: the bounds are the same
	if !applied(t, st, b) {
		t.Fatal("b's record was pruned while c, older, was still in the log")
	}
	held.Release()
	poll.Until(t, 10*time.Second, "c applied", func() bool { return len(held.batches()) == 1 && applied(t, st, c) })
	poll.Until(t, 10*time.Second, "b's and c's records pruned once c left the log", func() bool {
		return !applied(t, st, b) && !applied(t, st, c)
	})
	// The pruner counts the records it deleted once its statement has
	// committed, which is after the test can see them gone.
	poll.Until(t, 10*time.Second, "Pruned() to count a's, b's and c's records", func() bool { return ap.Pruned() == 3 })
}

// TestPruneAppliedOtherLog: another log draining into the same database
// recorded that it still holds a transaction made before a; a's record
// stays, however old, until that log records a later head.
func TestPruneAppliedOtherLog(t *testing.T) {
	ctx := t.Context()
	st, lg := open(t)
	now := time.Now()
	a := applyNow(t, st, insertObsAt("a", now.Add(-2*retention)))
	if _, err := st.RecordLogHead(ctx, "site-b", txn.IDTime(a.ID).Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: now.Add(2 * retention)}
	var logged syncbuf.Buffer
	start(t, pruneConfig(clock), lg, st, &recorder{}, slog.New(slog.NewTextHandler(&logged, nil)))
	clock.waitPrunings(t, 2)
	if !applied(t, st, a) {
		t.Fatal("a's record was pruned while another log still held an older transaction")
	}
	if !strings.Contains(logged.String(), "a log holds a transaction older than --applied-retention") {
		t.Errorf("no warning that a log holds pruning back; the log says:\n%s", logged.String())
	}
	if _, err := st.RecordLogHead(ctx, "site-b", now); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "a's record pruned once the other log moved on", func() bool { return !applied(t, st, a) })
}

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
