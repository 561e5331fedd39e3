package txlogtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/txlog"
)

func testAppendReturnsEntries(t *testing.T, f *fixture) {
	var es []txlog.Entry
	for i := range 5 {
		tx := newTx(fmt.Sprint(i))
		e, err := f.log.Append(f.ctx(), tx)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if e.Tx == nil || e.Tx.ID != tx.ID {
			t.Fatalf("append %d returned %s, want tx %s", i, describe(e), tx.ID)
		}
		es = append(es, e)
	}
	f.checkPositions("appended", es)
}

func testAppendCancelledContext(t *testing.T, f *fixture) {
	ctx, cancel := context.WithCancel(f.ctx())
	cancel()
	if _, err := f.log.Append(ctx, newTx("cancelled")); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a cancelled context: %v, want context.Canceled", err)
	}
	if d := f.depth(); d != 0 {
		t.Fatalf("depth %d after a cancelled append, want 0", d)
	}
}

func testClaimFIFOAtMostMax(t *testing.T, f *fixture) {
	want := f.appendN(10)
	first, err := f.log.Claim(f.ctx(), 3)
	if err != nil {
		t.Fatalf("claim 3: %v", err)
	}
	f.sameEntries("claim(max 3)", first, want[:3])
	// The rest is there: Claim returns it at once, all of it, no more.
	rest, err := f.log.Claim(f.ctx(), 100)
	if err != nil {
		t.Fatalf("claim 100: %v", err)
	}
	f.sameEntries("claim(max 100)", rest, want[3:])
	f.checkPositions("claimed", append(first, rest...))
}

// claimResult is what a Claim in a goroutine returned.
type claimResult struct {
	entries []txlog.Entry
	err     error
}

func goClaim(ctx context.Context, l txlog.Log, max int) <-chan claimResult {
	ch := make(chan claimResult, 1)
	go func() {
		es, err := l.Claim(ctx, max)
		ch <- claimResult{es, err}
	}()
	return ch
}

func wait(t *testing.T, what string, ch <-chan claimResult) claimResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitTimeout):
		t.Fatalf("%s: no answer after %v", what, waitTimeout)
		return claimResult{}
	}
}

func testClaimWaitsForAppend(t *testing.T, f *fixture) {
	ch := goClaim(f.ctx(), f.log, 10)
	select {
	case r := <-ch:
		t.Fatalf("claim on an empty log returned %d entries, err %v, before any append", len(r.entries), r.err)
	default:
	}
	want := f.appendN(1)
	r := wait(t, "claim waiting for an append", ch)
	if r.err != nil {
		t.Fatalf("claim waiting for an append: %v", r.err)
	}
	f.sameEntries("claim waiting for an append", r.entries, want)
}

func testClaimContextCancelled(t *testing.T, f *fixture) {
	ctx, cancel := context.WithCancel(f.ctx())
	ch := goClaim(ctx, f.log, 10)
	cancel()
	r := wait(t, "claim with its context cancelled", ch)
	if !errors.Is(r.err, context.Canceled) || len(r.entries) != 0 {
		t.Fatalf("claim with its context cancelled: %d entries, err %v; want context.Canceled", len(r.entries), r.err)
	}
	// The log still works.
	want := f.appendN(1)
	f.sameEntries("claim after a cancelled claim", f.claimN(1), want)
}

func testClaimContextDeadline(t *testing.T, f *fixture) {
	ctx, cancel := context.WithTimeout(f.ctx(), 20*time.Millisecond)
	defer cancel()
	es, err := f.log.Claim(ctx, 10)
	if !errors.Is(err, context.DeadlineExceeded) || len(es) != 0 {
		t.Fatalf("claim on an empty log with a deadline: %d entries, err %v; want context.DeadlineExceeded", len(es), err)
	}
}

func testConcurrentAppends(t *testing.T, f *fixture) {
	const writers, each = 16, 25
	type origin struct{ writer, index int }
	var (
		mu       sync.Mutex
		from     = make(map[string]origin) // tx id → who appended it
		appended = make(map[string]string) // tx id → position Append returned
		wg       sync.WaitGroup
		errs     = make(chan error, writers)
	)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				tx := newTx(fmt.Sprintf("w%d-%d", w, i))
				mu.Lock()
				from[tx.ID] = origin{w, i}
				mu.Unlock()
				e, err := f.log.Append(f.ctx(), tx)
				if err != nil {
					errs <- fmt.Errorf("writer %d append %d: %w", w, i, err)
					return
				}
				mu.Lock()
				appended[tx.ID] = e.Pos
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := f.claimN(writers * each)
	f.checkPositions("claimed", got)
	next := make([]int, writers) // next index due from each writer
	for _, e := range got {
		o, ok := from[e.Tx.ID]
		if !ok {
			t.Fatalf("claimed %s, which nobody appended", describe(e))
		}
		if o.index != next[o.writer] {
			t.Fatalf("writer %d: claimed its append %d where %d was due (delivered twice or out of its order)", o.writer, o.index, next[o.writer])
		}
		next[o.writer]++
		if appended[e.Tx.ID] != e.Pos {
			t.Fatalf("claimed %s, but Append returned position %q", describe(e), appended[e.Tx.ID])
		}
	}
	if d := f.depth(); d != writers*each {
		t.Fatalf("depth %d, want %d", d, writers*each)
	}
	if n := len(f.pending()); n != writers*each {
		t.Fatalf("pending lists %d entries, want %d", n, writers*each)
	}
}

func testCloseUnblocksClaim(t *testing.T, f *fixture) {
	ch := goClaim(f.ctx(), f.log, 10)
	if err := f.log.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	r := wait(t, "claim blocked while the log closes", ch)
	if !errors.Is(r.err, txlog.ErrClosed) {
		t.Fatalf("claim blocked while the log closes: %d entries, err %v; want txlog.ErrClosed", len(r.entries), r.err)
	}
}

// testAckWhileClaimWaits: the applier acknowledges a batch while the next
// Claim waits for entries; the Ack must not wait for that Claim (which
// waits until an append, however long that takes).
func testAckWhileClaimWaits(t *testing.T, f *fixture) {
	f.appendN(1)
	claimed := f.claimN(1)
	ctx, cancel := context.WithCancel(f.ctx())
	defer cancel()
	waiting := goClaim(ctx, f.log, 10)
	time.Sleep(50 * time.Millisecond) // let it block, if it is going to
	acked := make(chan error, 1)
	go func() { acked <- f.log.Ack(f.ctx(), claimed) }()
	select {
	case err := <-acked:
		if err != nil {
			t.Fatalf("ack while a claim waits: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("ack while a claim waits: no answer after %v (it waits for the claim)", waitTimeout)
	}
	select {
	case r := <-waiting:
		t.Fatalf("the waiting claim returned %d entries, err %v, with nothing appended", len(r.entries), r.err)
	default:
	}
	cancel()
	if r := wait(t, "the waiting claim, cancelled", waiting); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("the waiting claim, cancelled: %d entries, err %v", len(r.entries), r.err)
	}
	if d := f.depth(); d != 0 {
		t.Fatalf("depth %d after the ack, want 0", d)
	}
}
