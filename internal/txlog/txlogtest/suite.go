package txlogtest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// Harness tells the suite how to make logs of one backend.
type Harness struct {
	// New prepares a fresh, empty log for the test t and returns a
	// function that opens it; every call to open must reach the same log.
	// Required.
	New func(t testing.TB) (open func() (txlog.Log, error))
	// ComparePos, if not nil, compares two positions of one log as
	// cmp.Compare does; the suite then checks that positions increase in
	// log order. Positions are opaque in the contract, so without it the
	// suite only checks that they are distinct and not empty.
	ComparePos func(a, b string) int
}

// waitTimeout bounds every wait for an asynchronous outcome; a test that
// reaches it fails. It is long because a loaded CI machine can stall an
// fsync for most of a second.
const waitTimeout = 30 * time.Second

// Run runs the conformance suite against the backend h describes.
func Run(t *testing.T, h Harness) {
	if h.New == nil {
		t.Fatal("txlogtest: Harness.New is nil")
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"AppendReturnsEntries", testAppendReturnsEntries},
		{"AppendCancelledContext", testAppendCancelledContext},
		{"ClaimFIFOAtMostMax", testClaimFIFOAtMostMax},
		{"ClaimWaitsForAppend", testClaimWaitsForAppend},
		{"ClaimContextCancelled", testClaimContextCancelled},
		{"ClaimContextDeadline", testClaimContextDeadline},
		{"AckWhileClaimWaits", testAckWhileClaimWaits},
		{"ConcurrentAppends", testConcurrentAppends},
		{"DurableAcrossReopen", testDurableAcrossReopen},
		{"ClaimedNotAckedComeAgain", testClaimedNotAckedComeAgain},
		{"AckThenReopen", testAckThenReopen},
		{"PendingListsUnacked", testPendingListsUnacked},
		{"PendingStopsOnError", testPendingStopsOnError},
		{"StatsDepth", testStatsDepth},
		{"Closed", testClosed},
		{"CloseUnblocksClaim", testCloseUnblocksClaim},
		{"RoundTrip", testRoundTrip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, setup(t, h))
		})
	}
}

// fixture is one test's log, reopened as the test needs.
type fixture struct {
	t    *testing.T
	h    Harness
	open func() (txlog.Log, error)
	log  txlog.Log
	c    context.Context
}

func setup(t *testing.T, h Harness) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	f := &fixture{t: t, h: h, open: h.New(t), c: ctx}
	f.log = f.mustOpen()
	t.Cleanup(func() {
		if f.log != nil {
			_ = f.log.Close()
		}
	})
	return f
}

func (f *fixture) mustOpen() txlog.Log {
	f.t.Helper()
	l, err := f.open()
	if err != nil {
		f.t.Fatalf("open log: %v", err)
	}
	return l
}

// reopen closes the log and opens it again.
func (f *fixture) reopen() {
	f.t.Helper()
	err := f.log.Close()
	f.log = nil
	if err != nil {
		f.t.Fatalf("close log: %v", err)
	}
	f.log = f.mustOpen()
}

// ctx is the test's context, bounded by waitTimeout.
func (f *fixture) ctx() context.Context { return f.c }

// newTx returns a small transaction whose first operation's values carry
// label, so that a test can tell transactions apart.
func newTx(label string) *txn.Transaction {
	return &txn.Transaction{
		ID: txn.NewID(),
		Operations: []txn.Operation{{
			Op:     txn.Insert,
			Table:  "samples",
			ID:     txn.NewID(),
			Values: map[string]any{"label": label, "value": 1.5},
		}},
		CreatedAt: time.Now().UTC(),
	}
}

// appendN appends n new transactions and returns their entries.
func (f *fixture) appendN(n int) []txlog.Entry {
	f.t.Helper()
	entries := make([]txlog.Entry, n)
	for i := range entries {
		e, err := f.log.Append(f.ctx(), newTx(fmt.Sprintf("tx-%d", i)))
		if err != nil {
			f.t.Fatalf("append %d: %v", i, err)
		}
		entries[i] = e
	}
	return entries
}

// claimN claims until it has n entries, failing on an error or timeout.
func (f *fixture) claimN(n int) []txlog.Entry {
	f.t.Helper()
	var got []txlog.Entry
	for len(got) < n {
		es, err := f.log.Claim(f.ctx(), n-len(got))
		if err != nil {
			f.t.Fatalf("claim after %d of %d entries: %v", len(got), n, err)
		}
		if len(es) == 0 || len(es) > n-len(got) {
			f.t.Fatalf("claim(max %d) returned %d entries", n-len(got), len(es))
		}
		got = append(got, es...)
	}
	return got
}

// pending returns what Pending lists.
func (f *fixture) pending() []txlog.Entry {
	f.t.Helper()
	var got []txlog.Entry
	if err := f.log.Pending(f.ctx(), func(e txlog.Entry) error {
		got = append(got, e)
		return nil
	}); err != nil {
		f.t.Fatalf("pending: %v", err)
	}
	return got
}

func (f *fixture) depth() int64 {
	f.t.Helper()
	st, err := f.log.Stats(f.ctx())
	if err != nil {
		f.t.Fatalf("stats: %v", err)
	}
	if st.Depth < 0 || st.Bytes < 0 {
		f.t.Fatalf("stats %+v: negative", st)
	}
	return st.Depth
}

// sameEntries fails unless got holds the transactions of want, in order,
// at the same positions.
func (f *fixture) sameEntries(what string, got, want []txlog.Entry) {
	f.t.Helper()
	if len(got) != len(want) {
		f.t.Fatalf("%s: %d entries, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i].Pos != want[i].Pos || got[i].Tx == nil || got[i].Tx.ID != want[i].Tx.ID {
			f.t.Fatalf("%s: entry %d is %s, want %s", what, i, describe(got[i]), describe(want[i]))
		}
	}
}

// checkPositions fails if positions are empty, repeated or (with
// ComparePos) not increasing.
func (f *fixture) checkPositions(what string, es []txlog.Entry) {
	f.t.Helper()
	seen := make(map[string]bool, len(es))
	for i, e := range es {
		if e.Pos == "" || seen[e.Pos] {
			f.t.Fatalf("%s: entry %d has position %q, empty or repeated", what, i, e.Pos)
		}
		seen[e.Pos] = true
		if f.h.ComparePos != nil && i > 0 && f.h.ComparePos(es[i-1].Pos, e.Pos) >= 0 {
			f.t.Fatalf("%s: position %q follows %q, not increasing", what, e.Pos, es[i-1].Pos)
		}
	}
}

func describe(e txlog.Entry) string {
	if e.Tx == nil {
		return fmt.Sprintf("%s (no transaction)", e.Pos)
	}
	return fmt.Sprintf("%s (tx %s)", e.Pos, e.Tx.ID)
}

// sameTx fails unless got is want after the trip through the log: equal
// fields, the same instant, and values with the same JSON encoding.
func sameTx(t *testing.T, what string, got, want *txn.Transaction) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no transaction", what)
	}
	if got.ID != want.ID || got.RetryOf != want.RetryOf || !got.CreatedAt.Equal(want.CreatedAt) || got.Principal != want.Principal {
		t.Fatalf("%s: got id %q retry_of %q created_at %v principal %q, want %q %q %v %q", what,
			got.ID, got.RetryOf, got.CreatedAt, got.Principal, want.ID, want.RetryOf, want.CreatedAt, want.Principal)
	}
	if len(got.Operations) != len(want.Operations) {
		t.Fatalf("%s: %d operations, want %d", what, len(got.Operations), len(want.Operations))
	}
	for i, g := range got.Operations {
		w := want.Operations[i]
		if g.Op != w.Op || g.Table != w.Table || g.ID != w.ID || g.As != w.As {
			t.Fatalf("%s: operation %d is %+v, want %+v", what, i, g, w)
		}
		gj, err := json.Marshal(g.Values)
		if err != nil {
			t.Fatalf("%s: encode values of operation %d: %v", what, i, err)
		}
		wj, err := json.Marshal(w.Values)
		if err != nil {
			t.Fatalf("%s: encode wanted values of operation %d: %v", what, i, err)
		}
		if string(gj) != string(wj) {
			t.Fatalf("%s: operation %d values\n got %s\nwant %s", what, i, gj, wj)
		}
	}
}
