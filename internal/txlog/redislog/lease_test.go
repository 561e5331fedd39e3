package redislog

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spoolgw/spool/internal/txlog"
)

// testLease is short, so that handovers are quick, and long enough that a
// loaded test machine renews in time.
var testLease = LeaseConfig{TTL: time.Second, Renew: 250 * time.Millisecond}

// handover bounds how long a standby may take to get a lease its holder
// stopped renewing: TTL + Renew, plus scheduling slack for a loaded
// machine.
var handover = testLease.TTL + testLease.Renew + 500*time.Millisecond

type acquired struct {
	token int64
	lost  <-chan struct{}
	err   error
	at    time.Time
}

func goAcquire(ctx context.Context, le *Lease) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		tok, lost, err := le.Acquire(ctx)
		ch <- acquired{tok, lost, err, time.Now()}
	}()
	return ch
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// twoAppliers opens two logs of one name, as two applier processes would.
func twoAppliers(t *testing.T) (a, b *Log) {
	name := uniqueName(t)
	return openLog(t, Config{Name: name, Consumer: "a"}), openLog(t, Config{Name: name, Consumer: "b"})
}

func TestLeaseReleaseHandsOver(t *testing.T) {
	t.Parallel()
	a, b := twoAppliers(t)
	ctx := testCtx(t)
	la, lb := a.Lease(testLease), b.Lease(testLease)
	t1, lostA, err := la.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := lb.Holder(ctx); err != nil || h != "a" {
		t.Fatalf("holder %q, %v; want a", h, err)
	}
	if _, _, err := la.Acquire(ctx); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("acquire of a held lease: %v, want ErrLeaseHeld", err)
	}
	ch := goAcquire(ctx, lb)
	// b must not get it while a holds it, for longer than a TTL (a renews).
	select {
	case r := <-ch:
		t.Fatalf("b acquired the lease a holds: token %d, err %v", r.token, r.err)
	case <-time.After(testLease.TTL + testLease.Renew):
	}
	if isClosed(lostA) {
		t.Fatal("a's lease reported lost while a renews it")
	}
	released := time.Now()
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !isClosed(lostA) {
		t.Fatal("a's lost channel open after Release")
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.token <= t1 {
		t.Fatalf("b's token %d is not above a's %d", r.token, t1)
	}
	if d := r.at.Sub(released); d > testLease.Renew+500*time.Millisecond {
		t.Fatalf("b took %v to get a released lease, want about Renew (%v)", d, testLease.Renew)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lb.Release(ctx); err != nil { // not held: a no-op
		t.Fatalf("second release: %v", err)
	}
}

func TestLeaseExpiresWhenHolderStops(t *testing.T) {
	t.Parallel()
	a, b := twoAppliers(t)
	ctx := testCtx(t)
	actx, stopA := context.WithCancel(ctx)
	t1, lostA, err := a.Lease(testLease).Acquire(actx)
	if err != nil {
		t.Fatal(err)
	}
	ch := goAcquire(ctx, b.Lease(testLease))
	stopped := time.Now()
	stopA() // a stops renewing, as a process that hangs or dies would
	select {
	case <-lostA:
	case <-time.After(handover):
		t.Fatal("a's lost channel open after its context ended")
	}
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.token <= t1 {
			t.Fatalf("b's token %d is not above a's %d", r.token, t1)
		}
		t.Logf("b took over %v after a stopped renewing (TTL %v, Renew %v)", r.at.Sub(stopped), testLease.TTL, testLease.Renew)
	case <-time.After(handover):
		t.Fatalf("b did not get the lease within %v of a stopping", handover)
	}
}

func TestLeaseLostToAnotherHolder(t *testing.T) {
	t.Parallel()
	a, _ := twoAppliers(t)
	ctx := testCtx(t)
	le := a.Lease(testLease)
	t1, lost, err := le.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// As if a paused past its TTL and b took the lease meanwhile.
	if err := a.client.Set(ctx, a.keys.lease, "b/0123", testLease.TTL).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(testLease.Renew + 500*time.Millisecond):
		t.Fatal("a renewal that found another holder did not close lost")
	}
	// a's release must not delete b's lease.
	if err := le.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := a.client.Get(ctx, a.keys.lease).Result(); err != nil || v != "b/0123" {
		t.Fatalf("lease after a's release: %q, %v; want b's untouched", v, err)
	}
	// Once b's lease is gone, a may acquire again, with a newer token.
	if err := a.client.Del(ctx, a.keys.lease).Err(); err != nil {
		t.Fatal(err)
	}
	t2, _, err := le.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if t2 <= t1 {
		t.Fatalf("token %d after reacquiring, not above %d", t2, t1)
	}
}

func TestLeaseCloseStopsRenewal(t *testing.T) {
	t.Parallel()
	a, _ := twoAppliers(t)
	le := a.Lease(testLease)
	_, lost, err := le.Acquire(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !isClosed(lost) {
		t.Fatal("lost channel open after the log closed")
	}
	if _, _, err := le.Acquire(testCtx(t)); err == nil {
		t.Fatal("acquire on a closed log: no error")
	}
}

func TestLeaseAcquireHonoursContext(t *testing.T) {
	t.Parallel()
	a, b := twoAppliers(t)
	if _, _, err := a.Lease(testLease).Acquire(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	if _, _, err := b.Lease(testLease).Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire of a held lease until a deadline: %v, want context.DeadlineExceeded", err)
	}
}

// TestAcquireRestartsClaim: an applier that becomes active again takes
// over what the applier active meanwhile left, in order, before new
// entries.
func TestAcquireRestartsClaim(t *testing.T) {
	t.Parallel()
	name := uniqueName(t)
	const minIdle = 100 * time.Millisecond
	a := openLog(t, Config{Name: name, Consumer: "a", MinIdle: minIdle})
	b := openLog(t, Config{Name: name, Consumer: "b", MinIdle: minIdle})
	ctx := testCtx(t)
	all := appendN(t, a, 6)

	la := a.Lease(testLease)
	if _, _, err := la.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	got := claimN(t, a, 2)
	if err := a.Ack(ctx, got); err != nil {
		t.Fatal(err)
	}
	samePositions(t, "a's first claim", append(got, claimN(t, a, 1)...), all[:3]) // e2 not acked
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}

	lb := b.Lease(testLease)
	if _, _, err := lb.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	// a's e2 first; then b stops without acknowledging.
	samePositions(t, "b's claims", claimN(t, b, 3), all[2:5])
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}

	if _, _, err := la.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	samePositions(t, "a's claims after it is active again", claimN(t, a, 4), all[2:6])
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestClaimOnlyByHolder: on a log with a Lease, Claim delivers nothing
// unless this process holds the lease, and a holder whose lease another
// applier took (it was paused past the TTL, and its renewer has not
// noticed yet) is refused in Redis: no entry lands in its pending list,
// so none is hidden from the new holder. The new holder takes over the
// entries the former one claimed in its term at once, however young, and
// a former holder cannot take them back.
func TestClaimOnlyByHolder(t *testing.T) {
	t.Parallel()
	name := uniqueName(t)
	a := openLog(t, Config{Name: name, Consumer: "a", MinIdle: time.Hour})
	b := openLog(t, Config{Name: name, Consumer: "b", MinIdle: time.Hour})
	ctx := testCtx(t)
	all := appendN(t, a, 6)
	la, lb := a.Lease(testLease), b.Lease(testLease)

	if es, err := a.Claim(ctx, 10); !errors.Is(err, txlog.ErrNotHolder) {
		t.Fatalf("claim before Acquire: %d entries, %v; want ErrNotHolder", len(es), err)
	}
	if _, _, err := la.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	samePositions(t, "a's claim", claimN(t, a, 2), all[:2])

	// b takes the lease behind a's back, as if a had been stopped past
	// the TTL: a's renewer has not run yet, so a still believes it holds.
	if err := a.client.Del(ctx, a.keys.lease).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := lb.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if a.holder.Load() == nil {
		t.Fatal("a's renewer noticed already; the test needs it not to have (renew interval too short?)")
	}
	if es, err := a.Claim(ctx, 10); !errors.Is(err, txlog.ErrNotHolder) {
		t.Fatalf("claim by a former holder: %d entries, %v; want ErrNotHolder", len(es), err)
	}
	p, err := a.client.XPending(ctx, a.keys.stream, groupName).Result()
	if err != nil {
		t.Fatal(err)
	}
	if p.Consumers["a"] != 2 {
		t.Fatalf("a has %d entries pending after its refused claim, want its 2", p.Consumers["a"])
	}
	// b's term: a's two at once (MinIdle is an hour), then the rest.
	samePositions(t, "b's claims", claimN(t, b, 6), all)
	// a, continued mid-way through a take-over of its own, must not move
	// b's entries into its pending list either.
	if err := a.Takeover(ctx); !errors.Is(err, txlog.ErrNotHolder) {
		t.Fatalf("take-over by a former holder: %v, want ErrNotHolder", err)
	}
	if p, err := a.client.XPending(ctx, a.keys.stream, groupName).Result(); err != nil || p.Consumers["b"] != 6 || p.Consumers["a"] != 0 {
		t.Fatalf("pending after a's refused take-over: %+v, %v; want b's 6, none under a", p, err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestClaimFencedAfterItsCheck: when the lease passes to another applier
// between a Claim's check of the holder and its read, the read does
// nothing (the two are one step): the former holder gets ErrNotHolder
// and no entry lands in its pending list.
func TestClaimFencedAfterItsCheck(t *testing.T) {
	t.Parallel()
	name := uniqueName(t)
	a := openLog(t, Config{Name: name, Consumer: "a", MinIdle: time.Hour})
	ctx := testCtx(t)
	appendN(t, a, 4)
	if _, _, err := a.Lease(testLease).Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	// The first Claim of a term reads the pending list first; this one
	// takes it through that, so that the next reads new entries.
	claimN(t, a, 1)
	other := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer other.Close()
	hook := &afterLeaseCheck{lease: a.keys.lease, then: func(ctx context.Context) error {
		return other.Set(ctx, a.keys.lease, "b-elsewhere", time.Minute).Err()
	}}
	a.client.AddHook(hook)
	if es, err := a.Claim(ctx, 10); !errors.Is(err, txlog.ErrNotHolder) {
		t.Fatalf("claim whose lease passed after its check: %d entries, %v; want ErrNotHolder", len(es), err)
	}
	if !hook.fired.Load() {
		t.Fatal("the claim never checked the lease in Redis (its renewer noticed first?)")
	}
	p, err := other.XPending(ctx, a.keys.stream, groupName).Result()
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 1 {
		t.Fatalf("%d entries pending after the fenced claim, want the 1 claimed before: %+v", p.Count, p.Consumers)
	}
}

// afterLeaseCheck is a go-redis hook that runs then once, right after the
// first GET of the lease key.
type afterLeaseCheck struct {
	lease string
	then  func(context.Context) error
	fired atomic.Bool
}

func (h *afterLeaseCheck) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *afterLeaseCheck) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *afterLeaseCheck) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if args := cmd.Args(); cmd.Name() == "get" && len(args) == 2 && args[1] == h.lease && h.fired.CompareAndSwap(false, true) {
			if err := h.then(ctx); err != nil {
				return err
			}
		}
		return err
	}
}

// TestClaimWaitsForAppendUnderLease: a holder's Claim on an empty log
// blocks until an append, and then delivers it, though the transaction
// that delivers cannot block in Redis.
func TestClaimWaitsForAppendUnderLease(t *testing.T) {
	t.Parallel()
	name := uniqueName(t)
	a := openLog(t, Config{Name: name, Consumer: "a", ClaimBlock: 50 * time.Millisecond})
	ctx := testCtx(t)
	la := a.Lease(testLease)
	if _, _, err := la.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = la.Release(ctx) }()
	done := make(chan []txlog.Entry, 1)
	go func() {
		es, err := a.Claim(ctx, 10)
		if err != nil {
			t.Error(err)
		}
		done <- es
	}()
	select {
	case es := <-done:
		t.Fatalf("claim of an empty log returned %d entries", len(es))
	case <-time.After(200 * time.Millisecond): // several ClaimBlocks
	}
	want := appendN(t, a, 1)
	select {
	case es := <-done:
		samePositions(t, "claim after the append", es, want)
	case <-time.After(10 * time.Second):
		t.Fatal("claim did not return after an append")
	}
}
