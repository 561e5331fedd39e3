package txlogtest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

func testDurableAcrossReopen(t *testing.T, f *fixture) {
	want := f.appendN(10)
	f.reopen()
	f.sameEntries("pending after reopen", f.pending(), want)
	f.sameEntries("claim after reopen", f.claimN(10), want)
}

func testClaimedNotAckedComeAgain(t *testing.T, f *fixture) {
	want := f.appendN(5)
	f.sameEntries("claim", f.claimN(5), want)
	f.reopen()
	f.sameEntries("claim after reopen", f.claimN(5), want)
}

func testAckThenReopen(t *testing.T, f *fixture) {
	all := f.appendN(10)
	claimed := f.claimN(10)
	// Two acks, each continuing the last.
	if err := f.log.Ack(f.ctx(), claimed[:2]); err != nil {
		t.Fatalf("ack 2: %v", err)
	}
	if err := f.log.Ack(f.ctx(), claimed[2:4]); err != nil {
		t.Fatalf("ack 2 more: %v", err)
	}
	if d := f.depth(); d != 6 {
		t.Fatalf("depth %d after acking 4 of 10, want 6", d)
	}
	f.sameEntries("pending after acking 4", f.pending(), all[4:])

	f.reopen()
	if d := f.depth(); d != 6 {
		t.Fatalf("depth %d after reopen, want 6", d)
	}
	f.sameEntries("pending after reopen", f.pending(), all[4:])
	again := f.claimN(6)
	f.sameEntries("claim after reopen", again, all[4:])
	if err := f.log.Ack(f.ctx(), again); err != nil {
		t.Fatalf("ack the rest: %v", err)
	}

	f.reopen()
	if d := f.depth(); d != 0 {
		t.Fatalf("depth %d after acking everything and reopening, want 0", d)
	}
	if p := f.pending(); len(p) != 0 {
		t.Fatalf("pending lists %d entries after acking everything, want none", len(p))
	}
	ctx, cancel := context.WithTimeout(f.ctx(), 20*time.Millisecond)
	defer cancel()
	if es, err := f.log.Claim(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("claim after acking everything: %d entries, err %v; want none until the deadline", len(es), err)
	}
	// Positions are not reused after everything was acknowledged.
	more := f.appendN(1)
	f.checkPositions("positions before and after acking everything", append(all, more...))
	f.sameEntries("claim of a new append", f.claimN(1), more)
}

func testPendingListsUnacked(t *testing.T, f *fixture) {
	all := f.appendN(6)
	claimed := f.claimN(3)
	f.sameEntries("pending with 3 claimed", f.pending(), all) // claimed is not acked
	if err := f.log.Ack(f.ctx(), claimed); err != nil {
		t.Fatalf("ack: %v", err)
	}
	f.sameEntries("pending with 3 acked", f.pending(), all[3:])
}

func testPendingStopsOnError(t *testing.T, f *fixture) {
	f.appendN(5)
	stop := errors.New("stop here")
	calls := 0
	err := f.log.Pending(f.ctx(), func(txlog.Entry) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 2 {
		t.Fatalf("pending with fn failing on the 2nd entry: err %v after %d calls; want fn's error after 2", err, calls)
	}
}

func testStatsDepth(t *testing.T, f *fixture) {
	if d := f.depth(); d != 0 {
		t.Fatalf("depth of a new log %d, want 0", d)
	}
	f.appendN(5)
	if d := f.depth(); d != 5 {
		t.Fatalf("depth after 5 appends %d, want 5", d)
	}
	claimed := f.claimN(5)
	if d := f.depth(); d != 5 {
		t.Fatalf("depth after claiming 5 %d, want 5 (claimed is not acked)", d)
	}
	if err := f.log.Ack(f.ctx(), claimed[:2]); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if d := f.depth(); d != 3 {
		t.Fatalf("depth after acking 2 %d, want 3", d)
	}
}

func testClosed(t *testing.T, f *fixture) {
	claimed := f.appendN(2)
	f.claimN(2)
	l := f.log
	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	ctx := f.ctx()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, txlog.ErrClosed) {
			t.Fatalf("%s after close: %v, want txlog.ErrClosed", what, err)
		}
	}
	_, err := l.Append(ctx, newTx("late"))
	check("append", err)
	_, err = l.Claim(ctx, 1)
	check("claim", err)
	check("ack", l.Ack(ctx, claimed[:1]))
	check("pending", l.Pending(ctx, func(txlog.Entry) error { return nil }))
	_, err = l.Stats(ctx)
	check("stats", err)
}

// richTx holds every kind of operation and value the log must carry.
func richTx() *txn.Transaction {
	return &txn.Transaction{
		ID: txn.NewID(),
		Operations: []txn.Operation{
			{Op: txn.Insert, Table: "readings", ID: txn.NewID(), As: "r1", Values: map[string]any{
				"text":    "quotes \" and \\ backslash, ünïcödé, 🌡, <html>&",
				"float":   -273.15,
				"bigint":  int64(1<<53 + 1), // not exact as a float64
				"numeric": json.Number("12345678901234567890.000000000123"),
				"true":    true,
				"false":   false,
				"null":    nil,
				"array":   []any{"a", 1.0, nil, []any{true}},
				"object":  map[string]any{"nested": map[string]any{"k": "v"}, "n": 2.5e-10},
				"empty":   "",
			}},
			{Op: txn.Update, Table: "readings", ID: "42", Values: map[string]any{"float": 0.0}},
			{Op: txn.Upsert, Table: "devices", ID: "dev-7", Values: map[string]any{"name": "probe"}},
			{Op: txn.Delete, Table: "readings", ID: "41"},
		},
		CreatedAt: time.Date(2026, 11, 22, 10, 11, 12, 123456789, time.FixedZone("CET", 3600)),
		RetryOf:   txn.NewID(),
		Principal: "jwt:alice@example.org", // who sent it, kept through every log
	}
}

func testRoundTrip(t *testing.T, f *fixture) {
	tx := richTx()
	e, err := f.log.Append(f.ctx(), tx)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	sameTx(t, "append", e.Tx, tx)
	got := f.claimN(1)
	sameTx(t, "claim", got[0].Tx, tx)
	p := f.pending()
	if len(p) != 1 {
		t.Fatalf("pending lists %d entries, want 1", len(p))
	}
	sameTx(t, "pending", p[0].Tx, tx)
	f.reopen()
	sameTx(t, "claim after reopen", f.claimN(1)[0].Tx, tx)
}
