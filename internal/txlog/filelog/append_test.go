package filelog

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/poll"
	"github.com/spoolgw/spool/internal/txlog"
)

func TestMaxRecordSize(t *testing.T) {
	t.Parallel()
	l := openLog(t, t.TempDir(), Config{MaxRecordSize: 300}, nil)
	big := testTx(1)
	big.Operations[0].Values["blob"] = strings.Repeat("x", 400)
	if _, err := l.Append(t.Context(), big); err == nil || !strings.Contains(err.Error(), "MaxRecordSize") {
		t.Fatalf("append of a too large transaction: %v", err)
	}
	appendN(t, l, 1) // the log still works
}

// blockSync makes the writer's syncs wait for release and counts them. It
// is set before any append, so the writer reads it only after a channel
// receive that orders it.
func blockSync(l *Log) (entered <-chan struct{}, release func(), syncs *atomic.Int64) {
	in := make(chan struct{}, 100)
	gate := make(chan struct{})
	var n atomic.Int64
	l.w.sync = func(f *os.File) error {
		n.Add(1)
		in <- struct{}{}
		<-gate
		return syncData(f)
	}
	var once sync.Once
	return in, func() { once.Do(func() { close(gate) }) }, &n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 10*time.Second, what, cond)
}

func TestGroupCommit(t *testing.T) {
	t.Parallel()
	l := openLog(t, t.TempDir(), Config{}, nil)
	entered, release, syncs := blockSync(l)
	defer release()

	first := make(chan error, 1)
	go func() {
		_, err := l.Append(t.Context(), testTx(0))
		first <- err
	}()
	<-entered // the first append's sync is in flight
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := l.Append(t.Context(), testTx(i+1))
			errs <- err
		})
	}
	waitFor(t, "20 appends queued behind the sync", func() bool { return len(l.queue.Requests()) == n })
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := syncs.Load(); got != 2 {
		t.Fatalf("%d syncs for 1 + %d queued appends, want 2 (one group)", got, n)
	}
	if d := depth(t, l); d != n+1 {
		t.Fatalf("depth %d, want %d", d, n+1)
	}
}

func TestAppendContextWhileQueued(t *testing.T) {
	t.Parallel()
	l := openLog(t, t.TempDir(), Config{}, nil)
	entered, release, _ := blockSync(l)
	defer release()

	first := make(chan txlog.Entry, 1)
	go func() {
		e, err := l.Append(t.Context(), testTx(0))
		if err != nil {
			t.Error(err)
		}
		first <- e
	}()
	<-entered
	ctx, cancel := context.WithCancel(t.Context())
	queued := make(chan error, 1)
	go func() {
		_, err := l.Append(ctx, testTx(1))
		queued <- err
	}()
	waitFor(t, "the second append queued", func() bool { return len(l.queue.Requests()) == 1 })
	cancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("queued append with its context cancelled: %v, want context.Canceled", err)
	}
	release()
	e := <-first
	// The cancelled append was never written: the next one follows the first.
	next := appendN(t, l, 1)
	if want := strconv.Itoa(mustAtoi(t, e.Pos) + 1); next[0].Pos != want {
		t.Fatalf("append after a cancelled one at %s, want %s", next[0].Pos, want)
	}
	if d := depth(t, l); d != 2 {
		t.Fatalf("depth %d, want 2", d)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCloseFailsQueuedAppends(t *testing.T) {
	t.Parallel()
	l := openLog(t, t.TempDir(), Config{}, nil)
	entered, release, _ := blockSync(l)
	defer release()

	first := make(chan error, 1)
	go func() {
		_, err := l.Append(t.Context(), testTx(0))
		first <- err
	}()
	<-entered
	queued := make(chan error, 1)
	go func() {
		_, err := l.Append(t.Context(), testTx(1))
		queued <- err
	}()
	waitFor(t, "the second append queued", func() bool { return len(l.queue.Requests()) == 1 })
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	// Close waits for the group in flight; release it.
	waitFor(t, "close to start", l.isClosing)
	release()
	if err := <-first; err != nil {
		t.Fatalf("append whose sync was in flight at close: %v, want success", err)
	}
	if err := <-queued; !errors.Is(err, txlog.ErrClosed) {
		t.Fatalf("append queued at close: %v, want txlog.ErrClosed", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

func TestAppendNil(t *testing.T) {
	t.Parallel()
	l := openLog(t, t.TempDir(), Config{}, nil)
	if _, err := l.Append(t.Context(), nil); err == nil {
		t.Fatal("append of nil succeeded")
	}
	if _, err := l.Claim(t.Context(), 0); err == nil {
		t.Fatal("claim of 0 succeeded")
	}
}
