package settle

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/deadletter"
	"github.com/spoolgw/spool/internal/overlay"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// fakeOverlay is an overlay that records evictions and fails the first
// `failures` of them.
type fakeOverlay struct {
	mu       sync.Mutex
	failures int
	tries    int
	evicted  []string
	// published is what the feed had heard when each eviction ran.
	feed *recorder
	seen []int
}

func (o *fakeOverlay) Evict(_ context.Context, ids ...string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tries++
	if o.failures > 0 {
		o.failures--
		return errors.New("connection refused")
	}
	o.evicted = append(o.evicted, ids...)
	o.seen = append(o.seen, o.feed.count())
	return nil
}

func (o *fakeOverlay) Withdraw(context.Context, func(table, key string, op overlay.Op) bool) ([]string, error) {
	return nil, nil
}

func (o *fakeOverlay) evictions() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.evicted)
}

type recorder struct {
	mu sync.Mutex
	cs []changes.Change
}

func (r *recorder) Publish(cs ...changes.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cs = append(r.cs, cs...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cs)
}

func (r *recorder) states() map[string][]txn.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string][]txn.State{}
	for _, c := range r.cs {
		m[c.ID] = append(m[c.ID], c.State)
	}
	return m
}

type fakeReplication struct {
	ch  chan time.Time
	ids []string
}

func (f *fakeReplication) Track(_ txn.LSN, ids []string, _ time.Time) <-chan time.Time {
	f.ids = ids
	return f.ch
}

func results() []applier.Result {
	now := time.Now()
	return []applier.Result{
		{Tx: &txn.Transaction{ID: "a"}, LSN: 10, At: now},
		{Tx: &txn.Transaction{ID: "b"}, Err: &store.ApplyError{Code: "23505"}, At: now},
		{Tx: &txn.Transaction{ID: "c"}, LSN: 11, At: now},
	}
}

func newSettler(t *testing.T, ov *fakeOverlay, rep Replication, feed *recorder) *Settler {
	t.Helper()
	s, err := New(Config{Overlay: ov, Poison: deadletter.NewPoison(), Replication: rep, Feed: feed, EvictRetry: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Without replicas a batch settles at once: every transaction leaves the
// overlay before any state is published, applied ones as replicated.
func TestSettleWithoutReplicas(t *testing.T) {
	feed := &recorder{}
	ov := &fakeOverlay{feed: feed}
	settled := newSettler(t, ov, nil, feed).Committed(t.Context(), results())
	if !closed(settled) {
		t.Fatal("batch not settled")
	}
	if got := ov.evictions(); !slices.Equal(got, []string{"b", "a", "c"}) {
		t.Fatalf("evicted %v, want the failed one, then the applied ones", got)
	}
	if ov.seen[0] != 0 {
		t.Fatalf("%d states published before the eviction", ov.seen[0])
	}
	want := map[string][]txn.State{"a": {txn.Replicated}, "b": {txn.Failed}, "c": {txn.Replicated}}
	if got := feed.states(); !mapsEqual(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	if c := feed.cs[1]; c.Code != "23505" || c.Err == nil {
		t.Fatalf("failure published as %+v", c)
	}
}

// With replicas the applied transactions stay in the overlay, applied,
// until the replicas have them; then they leave it, are published
// replicated, and the batch settles.
func TestSettleWaitsForReplicas(t *testing.T) {
	feed := &recorder{}
	ov := &fakeOverlay{feed: feed}
	rep := &fakeReplication{ch: make(chan time.Time, 1)}
	settled := newSettler(t, ov, rep, feed).Committed(t.Context(), results())
	if closed(settled) {
		t.Fatal("batch settled before the replicas had it")
	}
	if got := ov.evictions(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("evicted %v before replication, want only the failed one", got)
	}
	if !slices.Equal(rep.ids, []string{"a", "c"}) {
		t.Fatalf("tracked %v, want the applied ones", rep.ids)
	}
	rep.ch <- time.Now()
	select {
	case <-settled:
	case <-time.After(10 * time.Second):
		t.Fatal("batch never settled once replicated")
	}
	if got := ov.evictions(); !slices.Equal(got, []string{"b", "a", "c"}) {
		t.Fatalf("evicted %v", got)
	}
	want := map[string][]txn.State{"a": {txn.Applied, txn.Replicated}, "b": {txn.Failed}, "c": {txn.Applied, txn.Replicated}}
	if got := feed.states(); !mapsEqual(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
}

// An eviction that fails is tried again until it succeeds; one that never
// succeeds before the term ends leaves the batch unsettled (it stays in
// the log), and nothing is published replicated.
func TestSettleRetriesEviction(t *testing.T) {
	feed := &recorder{}
	ov := &fakeOverlay{feed: feed, failures: 3}
	if !closed(newSettler(t, ov, nil, feed).Committed(t.Context(), results())) {
		t.Fatal("batch not settled after the eviction succeeded")
	}

	feed = &recorder{}
	ov = &fakeOverlay{feed: feed, failures: 1 << 30}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	settled := newSettler(t, ov, nil, feed).Committed(ctx, results())
	if closed(settled) {
		t.Fatal("batch settled though it never left the overlay")
	}

	feed = &recorder{}
	ov = &fakeOverlay{feed: feed}
	rep := &fakeReplication{ch: make(chan time.Time, 1)}
	ctx, cancel = context.WithCancel(t.Context())
	settled = newSettler(t, ov, rep, feed).Committed(ctx, results())
	ov.mu.Lock()
	ov.failures = 1 << 30
	ov.mu.Unlock()
	rep.ch <- time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ov.mu.Lock()
		tries := ov.tries
		ov.mu.Unlock()
		if tries >= 3 { // the failed one's eviction, then two of the replicated ones
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replicated transactions' eviction was tried %d times", tries)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if s := feed.states(); slices.Contains(s["a"], txn.Replicated) || closed(settled) {
		t.Fatalf("published replicated (%v) or settled though the eviction failed", s)
	}
}

func mapsEqual(a, b map[string][]txn.State) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// batchReplication gives every tracked batch a channel of its own, so a
// test says which batch the replicas have.
type batchReplication struct {
	mu  sync.Mutex
	chs []chan time.Time
}

func (b *batchReplication) Track(txn.LSN, []string, time.Time) <-chan time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan time.Time, 1)
	b.chs = append(b.chs, ch)
	return ch
}

func (b *batchReplication) replicated(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chs[i] <- time.Now()
}

// refusingOverlay refuses to evict the transactions in refuse (Redis
// down for them) and records the ones it evicted, in order.
type refusingOverlay struct {
	mu      sync.Mutex
	refuse  map[string]bool
	evicted []string
}

func (o *refusingOverlay) Evict(_ context.Context, ids ...string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		if o.refuse[id] {
			return errors.New("connection refused")
		}
	}
	o.evicted = append(o.evicted, ids...)
	return nil
}

func (o *refusingOverlay) Withdraw(context.Context, func(table, key string, op overlay.Op) bool) ([]string, error) {
	return nil, nil
}

func (o *refusingOverlay) evictions() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.evicted)
}

func applied(id string, lsn txn.LSN) []applier.Result {
	return []applier.Result{{Tx: &txn.Transaction{ID: id}, LSN: lsn, At: time.Now()}}
}

func waitSettled(t *testing.T, settled <-chan struct{}) {
	t.Helper()
	select {
	case <-settled:
	case <-time.After(10 * time.Second):
		t.Fatal("batch never settled")
	}
}

// Batches leave the overlay in the order they were committed, whatever
// order the replicas are seen to have them in: a transaction still in the
// overlay must never sit behind a later change to its row that has left
// (a read would merge it over the later row in the database: the stale
// read TestCampaignServers found).
func TestSettleInCommitOrder(t *testing.T) {
	ov := &refusingOverlay{}
	rep := &batchReplication{}
	s, err := New(Config{Overlay: ov, Poison: deadletter.NewPoison(), Replication: rep, Feed: &recorder{}, EvictRetry: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first := s.Committed(t.Context(), applied("a", 10))
	second := s.Committed(t.Context(), applied("b", 11))
	rep.replicated(1) // the later batch's goroutine is told first
	time.Sleep(50 * time.Millisecond)
	if got := ov.evictions(); len(got) != 0 || closed(second) {
		t.Fatalf("evicted %v before the batch committed before it", got)
	}
	rep.replicated(0)
	waitSettled(t, first)
	waitSettled(t, second)
	if got := ov.evictions(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("evicted %v, want a, then b", got)
	}
}

// A batch whose eviction gave up when its term ended (Redis down) holds
// back every later batch of that term, though the replicas have them and
// their evictions would succeed: all of them stay in the log, to be
// delivered again in order. The next term's batches, which begin with
// those delivered again, leave.
func TestSettleGivenUpHoldsBackItsTerm(t *testing.T) {
	ov := &refusingOverlay{refuse: map[string]bool{"a": true}}
	rep := &batchReplication{}
	s, err := New(Config{Overlay: ov, Poison: deadletter.NewPoison(), Replication: rep, Feed: &recorder{}, EvictRetry: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	term, end := context.WithCancel(applier.WithTerm(t.Context(), 1))
	first := s.Committed(term, applied("a", 10))
	second := s.Committed(term, applied("b", 11))
	rep.replicated(0)
	rep.replicated(1)
	time.Sleep(50 * time.Millisecond)
	if got := ov.evictions(); len(got) != 0 {
		t.Fatalf("evicted %v while the batch before could not be evicted", got)
	}
	end()
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	select {
	case <-last.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the term's last batch never gave up")
	}
	if got := ov.evictions(); len(got) != 0 || closed(first) || closed(second) {
		t.Fatalf("evicted %v after the term ended; settled %v %v", got, closed(first), closed(second))
	}

	// A stopping applier's final flush reports a batch of the same term on
	// a context of its own, still alive: it stays behind the given-up ones.
	flush := s.Committed(context.WithoutCancel(term), applied("c", 12))
	rep.replicated(2)
	s.mu.Lock()
	last = s.last
	s.mu.Unlock()
	select {
	case <-last.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the final flush's batch neither left nor gave up")
	}
	if got := ov.evictions(); len(got) != 0 || closed(flush) {
		t.Fatalf("the final flush's batch left (%v, settled %v) while batches of its term before it had given up", got, closed(flush))
	}

	ov.mu.Lock()
	ov.refuse = nil
	ov.mu.Unlock()
	again := s.Committed(applier.WithTerm(t.Context(), 2), []applier.Result{
		{Tx: &txn.Transaction{ID: "a"}, LSN: 12, Duplicate: true, At: time.Now()},
		{Tx: &txn.Transaction{ID: "b"}, LSN: 12, Duplicate: true, At: time.Now()},
	})
	rep.replicated(3)
	waitSettled(t, again)
	if got := ov.evictions(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("evicted %v in the next term, want a and b", got)
	}
}

// fakeEvents is an events stream that records what was written and
// fails the first `failures` writes.
type fakeEvents struct {
	mu       sync.Mutex
	failures int
	written  []txn.State
}

func (e *fakeEvents) PublishEvents(_ context.Context, cs []changes.Change) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failures > 0 {
		e.failures--
		return errors.New("connection refused")
	}
	for _, c := range cs {
		e.written = append(e.written, c.State)
	}
	return nil
}

func (e *fakeEvents) states() []txn.State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.written)
}

// A batch's states are in the events stream before the batch settles
// (and the applier lets it go from the log): a write that fails is tried
// again; one that never succeeds before the term ends leaves the batch
// in the log, to be settled, and its states written, again.
func TestSettleWritesEventsFirst(t *testing.T) {
	feed := &recorder{}
	ev := &fakeEvents{failures: 2}
	rep := &fakeReplication{ch: make(chan time.Time, 1)}
	s, err := New(Config{Overlay: &fakeOverlay{feed: feed}, Poison: deadletter.NewPoison(), Replication: rep, Feed: feed, Events: ev, EvictRetry: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	settled := s.Committed(t.Context(), results())
	if got, want := ev.states(), []txn.State{txn.Applied, txn.Failed, txn.Applied}; !slices.Equal(got, want) {
		t.Fatalf("written %v once committed, want %v", got, want)
	}
	ev.mu.Lock()
	ev.failures = 2
	ev.mu.Unlock()
	rep.ch <- time.Now()
	select {
	case <-settled:
	case <-time.After(10 * time.Second):
		t.Fatal("batch never settled once replicated")
	}
	if got := ev.states(); len(got) != 5 || got[3] != txn.Replicated || got[4] != txn.Replicated {
		t.Fatalf("written %v by the time the batch settled, want the replicated states last", got)
	}

	ev = &fakeEvents{failures: 1 << 30}
	s, err = New(Config{Overlay: &fakeOverlay{feed: feed}, Poison: deadletter.NewPoison(), Feed: feed, Events: ev, EvictRetry: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if closed(s.Committed(ctx, results())) {
		t.Fatal("batch settled though its states were never written")
	}
}
