package redislog

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// appendN appends n small transactions and returns their entries.
func appendN(t *testing.T, l *Log, n int) []txlog.Entry {
	t.Helper()
	es := make([]txlog.Entry, n)
	for i := range es {
		e, err := l.Append(testCtx(t), newTxn(op(txn.Insert, "samples", txn.NewID(), map[string]any{"i": i})))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		es[i] = e
	}
	return es
}

// claimN claims until it has n entries.
func claimN(t testing.TB, l *Log, n int) []txlog.Entry {
	t.Helper()
	var got []txlog.Entry
	for len(got) < n {
		es, err := l.Claim(testCtx(t), n-len(got))
		if err != nil {
			t.Fatalf("claim after %d of %d: %v", len(got), n, err)
		}
		got = append(got, es...)
	}
	return got
}

// pending lists the entries of the log not yet acknowledged.
func pending(t *testing.T, l *Log) []txlog.Entry {
	t.Helper()
	var got []txlog.Entry
	if err := l.Pending(testCtx(t), func(e txlog.Entry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func samePositions(t *testing.T, what string, got, want []txlog.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d entries, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i].Pos != want[i].Pos || got[i].Tx.ID != want[i].Tx.ID {
			t.Fatalf("%s: entry %d is %s (tx %s), want %s (tx %s)", what, i, got[i].Pos, got[i].Tx.ID, want[i].Pos, want[i].Tx.ID)
		}
	}
}

// TestTakeOverDeadConsumer: consumer a claims entries and dies without
// acknowledging them; consumer b, when it starts claiming, gets a's entries
// first, in order, then the rest, then new ones.
func TestTakeOverDeadConsumer(t *testing.T) {
	t.Parallel()
	name := uniqueName(t)
	const minIdle = 200 * time.Millisecond
	a := openLog(t, Config{Name: name, Consumer: "a", MinIdle: minIdle})
	all := appendN(t, a, 6)
	// Taken before the claim is sent: Redis starts the entries' idle time
	// after it, and the claim's reply may come late on a busy machine.
	claimedAt := time.Now()
	samePositions(t, "a's claim", claimN(t, a, 3), all[:3])
	if err := a.Close(); err != nil { // dies: no ack
		t.Fatal(err)
	}

	b := openLog(t, Config{Name: name, Consumer: "b", MinIdle: minIdle})
	more := appendN(t, b, 2)
	first, err := b.Claim(testCtx(t), 100)
	if err != nil {
		t.Fatal(err)
	}
	// Redis counts idle time in whole milliseconds: allow for one.
	if waited := time.Since(claimedAt); waited < minIdle-time.Millisecond {
		t.Fatalf("b took a's entries over %v after a claimed them, before MinIdle %v", waited, minIdle)
	}
	// a's three come first, in order, then the rest.
	got := append(first, claimN(t, b, 5-len(first)+3)...)
	samePositions(t, "b's claims", got, append(all, more...))

	// a's entries are pending under b now, and a is gone from the group.
	p, err := b.client.XPending(testCtx(t), b.keys.stream, groupName).Result()
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 8 || p.Consumers["b"] != 8 {
		t.Fatalf("pending after the takeover: %+v, want 8 under b", p)
	}
	cs, err := b.client.XInfoConsumers(testCtx(t), b.keys.stream, groupName).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Name == "a" {
			t.Fatalf("consumer a still in the group after b took its entries over: %+v", c)
		}
	}
	if err := b.Ack(testCtx(t), got); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.Stats(testCtx(t)); st.Depth != 0 {
		t.Fatalf("depth %d after acknowledging everything", st.Depth)
	}
}

// TestTakeOverWaitsForYoungEntries: entries another consumer claimed a
// moment ago are not skipped (which would break the order) but waited for.
func TestTakeOverWaitsForYoungEntries(t *testing.T) {
	t.Parallel()
	name := uniqueName(t)
	const minIdle = 300 * time.Millisecond
	a := openLog(t, Config{Name: name, Consumer: "a"})
	all := appendN(t, a, 4)
	// Taken before the claim is sent: Redis starts the entries' idle time
	// after it, and the claim's reply may come late on a busy machine.
	claimedAt := time.Now()
	claimN(t, a, 2)
	b := openLog(t, Config{Name: name, Consumer: "b", MinIdle: minIdle})
	got := claimN(t, b, 4)
	// Redis counts idle time in whole milliseconds: allow for one.
	if waited := time.Since(claimedAt); waited < minIdle-time.Millisecond {
		t.Fatalf("b delivered a's entries %v after a claimed them, before MinIdle %v", waited, minIdle)
	}
	samePositions(t, "b's claims", got, all)
}

// TestClaimHonoursContextWhileTakingOver: a Claim waiting for another
// consumer's entries to age returns when its context ends.
func TestClaimHonoursContextWhileTakingOver(t *testing.T) {
	t.Parallel()
	name := uniqueName(t)
	a := openLog(t, Config{Name: name, Consumer: "a"})
	appendN(t, a, 1)
	claimN(t, a, 1)
	b := openLog(t, Config{Name: name, Consumer: "b", MinIdle: time.Hour})
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	if es, err := b.Claim(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("claim while a's entry is young: %d entries, %v; want context.DeadlineExceeded", len(es), err)
	}
}

// TestAckBehindPending: entries acknowledged behind one still pending are
// deleted, the pending one and those never claimed stay, and the stream
// holds exactly the entries not yet acknowledged throughout.
func TestAckBehindPending(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	ctx := testCtx(t)
	es := appendN(t, l, 5)
	claimed := claimN(t, l, 3)
	left := func(want []txlog.Entry) {
		t.Helper()
		samePositions(t, "left in the stream", pending(t, l), want)
		if n, err := l.client.XLen(ctx, l.keys.stream).Result(); err != nil || n != int64(len(want)) {
			t.Fatalf("XLEN %d (%v), want %d", n, err, len(want))
		}
	}
	if err := l.Ack(ctx, claimed[1:]); err != nil { // behind the first, still pending
		t.Fatal(err)
	}
	left([]txlog.Entry{es[0], es[3], es[4]})
	if err := l.Ack(ctx, claimed[:1]); err != nil {
		t.Fatal(err)
	}
	left(es[3:])
	samePositions(t, "claimed next", claimN(t, l, 2), es[3:])
	if err := l.Ack(ctx, es[3:]); err != nil {
		t.Fatal(err)
	}
	left(nil)
}

// TestAckLeavesUnclaimedEntries: acknowledging an entry nobody claimed
// does not delete it, and acknowledging twice is harmless.
func TestAckLeavesUnclaimedEntries(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	ctx := testCtx(t)
	es := appendN(t, l, 3)
	claimed := claimN(t, l, 1)
	if err := l.Ack(ctx, es); err != nil { // two of them were never claimed
		t.Fatal(err)
	}
	if err := l.Ack(ctx, claimed); err != nil {
		t.Fatal(err)
	}
	samePositions(t, "pending", pending(t, l), es[1:])
	if err := l.Ack(ctx, []txlog.Entry{{Pos: "not-a-position"}}); err == nil {
		t.Fatal("ack of a position that is no stream id: no error")
	}
}

// TestClaimDropsEntriesDeletedWhilePending: an entry pending under this
// consumer that another applier acknowledged and deleted (it committed
// just before losing its lease) is not delivered again after a restart.
func TestClaimDropsEntriesDeletedWhilePending(t *testing.T) {
	t.Parallel()
	name := uniqueName(t)
	a := openLog(t, Config{Name: name, Consumer: "a"})
	es := appendN(t, a, 3)
	claimN(t, a, 3)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Someone else deletes the middle one (XDEL without XACK).
	b := openLog(t, Config{Name: name, Consumer: "b"})
	if err := b.client.XDel(testCtx(t), b.keys.stream, es[1].Pos).Err(); err != nil {
		t.Fatal(err)
	}
	a = openLog(t, Config{Name: name, Consumer: "a"})
	got := claimN(t, a, 2)
	samePositions(t, "claim after restart", got, []txlog.Entry{es[0], es[2]})
	p, err := a.client.XPending(testCtx(t), a.keys.stream, groupName).Result()
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 2 {
		t.Fatalf("%d entries pending, want 2 (the deleted one acknowledged)", p.Count)
	}
}

// TestPendingPages: Pending reads a log longer than one page in order.
func TestPendingPages(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	ctx := testCtx(t)
	const n = pendingPage + 7
	want := make([]string, 0, n)
	// Concurrent appends, so that groups are large and this is quick.
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := l.Append(ctx, newTxn(op(txn.Insert, "s", txn.NewID(), nil)))
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := l.client.XRange(ctx, l.keys.stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		want = append(want, m.ID)
	}
	var got []string
	if err := l.Pending(ctx, func(e txlog.Entry) error { got = append(got, e.Pos); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != n {
		t.Fatalf("pending listed %d entries, want %d in stream order", len(got), n)
	}
}

// TestCorruptEntryIsNeverSkipped: an entry that holds no transaction stops
// Claim with ErrCorrupt, again and again, after the entries before it;
// the entries after it are not delivered past it.
func TestCorruptEntryIsNeverSkipped(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	ctx := testCtx(t)
	before := appendN(t, l, 2)
	if err := l.client.XAdd(ctx, &redis.XAddArgs{Stream: l.keys.stream, Values: []any{"tx", "{not json"}}).Err(); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 2)
	got, err := l.Claim(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	samePositions(t, "claim up to the corrupt entry", got, before)
	for range 2 {
		if es, err := l.Claim(ctx, 10); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("claim at the corrupt entry: %d entries, %v; want ErrCorrupt", len(es), err)
		}
	}
	if err := l.Pending(ctx, func(txlog.Entry) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("pending over the corrupt entry: %v; want ErrCorrupt", err)
	}
}

// TestTakeoverBeforeClaim: the applier's explicit Takeover, when it becomes
// active, moves a dead consumer's entries at once; Claim then delivers
// them first, in order, and does not take over again.
func TestTakeoverBeforeClaim(t *testing.T) {
	t.Parallel()
	name := uniqueName(t)
	const minIdle = 100 * time.Millisecond
	a := openLog(t, Config{Name: name, Consumer: "a", MinIdle: minIdle})
	all := appendN(t, a, 4)
	claimN(t, a, 2)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := openLog(t, Config{Name: name, Consumer: "b", MinIdle: minIdle})
	ctx := testCtx(t)
	if _, _, err := b.Lease(testLease).Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Takeover(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := b.client.XPending(ctx, b.keys.stream, groupName).Result()
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 2 || p.Consumers["b"] != 2 {
		t.Fatalf("pending after Takeover: %+v, want a's 2 under b", p)
	}
	samePositions(t, "claims after Takeover", claimN(t, b, 4), all)
}

// TestClaimHandsOverWhatItAppended: once a process claims, its Claim
// hands over the transactions it appended itself, not a decoding of
// them; one appended before it first claimed, one another process
// appended, and one whose entry holds other bytes than were appended
// under its id are decoded from the stream.
func TestClaimHandsOverWhatItAppended(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	other := openLog(t, Config{Name: l.cfg.Name})
	ctx := testCtx(t)
	tx := func(i int) *txn.Transaction {
		return newTxn(op(txn.Insert, "t", fmt.Sprint(i), map[string]any{"v": i}))
	}
	var appended []*txn.Transaction
	add := func(lg *Log, i int) txlog.Entry {
		t.Helper()
		x := tx(i)
		e, err := lg.Append(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		appended = append(appended, x)
		return e
	}
	add(l, 0) // before l claimed
	if got, err := l.Claim(ctx, 10); err != nil || len(got) != 1 || got[0].Tx == appended[0] || got[0].Tx.ID != appended[0].ID {
		t.Fatalf("first claim: %+v, %v; want the transaction decoded", got, err)
	}
	add(l, 1)
	add(other, 2)
	forged := add(l, 3)
	add(l, 4)
	// The entry under forged's id now holds the bytes of another transaction.
	l.recent.mu.Lock()
	k := l.recent.byID[forged.Pos]
	k.payload = []byte(`{"id":"another"}`)
	l.recent.byID[forged.Pos] = k
	l.recent.mu.Unlock()

	got, err := l.Claim(ctx, 10)
	if err != nil || len(got) != 4 {
		t.Fatalf("claim: %d entries, %v", len(got), err)
	}
	for i, e := range got {
		want, handed := appended[i+1], i == 0 || i == 3
		if e.Tx.ID != want.ID || (e.Tx == want) != handed {
			t.Fatalf("entry %d: %s, want %s handed over as appended: %v", i, e.Tx.ID, want.ID, handed)
		}
	}
	if n := len(l.recent.byID); n != 0 {
		t.Fatalf("%d transactions still kept after they were claimed", n)
	}
}
