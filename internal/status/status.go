// Package status tracks the state of transactions this process has seen, so
// that a writer can ask where its transaction is and wait for a state.
//
// The tracker keeps nothing for a transaction that is merely queued, so
// that a backlog of any size (a long database outage) costs it no memory:
// the overlay knows what is still on its way. It remembers a transaction
// from the moment it is applied or fails, or from the moment a writer
// waits for it, and keeps the most recent finished ones (up to the retain
// of New); older answers come from the database (spool_applied, the dead
// letters), which the gateway consults when the tracker does not know an
// id.
package status

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/txn"
)

// DefaultRetain is how many finished transactions the tracker remembers:
// enough for every writer waiting on a recent write at tens of thousands of
// writes per second, small enough (~200 bytes each) to stay a few MiB.
const DefaultRetain = 50_000

// Status is what is known of one transaction.
type Status struct {
	ID           string    `json:"transaction_id"`
	State        txn.State `json:"state"`
	QueuedAt     time.Time `json:"queued_at,omitzero"`
	AppliedAt    time.Time `json:"applied_at,omitzero"`
	ReplicatedAt time.Time `json:"replicated_at,omitzero"`
	FailedAt     time.Time `json:"failed_at,omitzero"`
	LSN          txn.LSN   `json:"lsn,omitzero"`
	Error        string    `json:"error,omitempty"`
	Code         string    `json:"code,omitempty"`
	// Principal is who submitted the transaction, once the tracker has
	// heard of it with its transaction (applied, replicated or failed in
	// this process), or a dead letter holds it.
	Principal string `json:"principal,omitempty"`
	Duplicate bool   `json:"-"`
	waiters   chan struct{}
}

// Counters are the totals since start, for /stats.
type Counters struct {
	Queued    int64
	Processed int64
	Failed    int64
}

// Tracker holds transaction states and wakes waiters on changes.
type Tracker struct {
	retain int
	// queued is counted outside mu: every write counts itself, and must
	// not queue behind the applier's reports.
	queued atomic.Int64

	mu sync.Mutex
	m  map[string]*Status
	// finished is a ring of the ids of the last retain finished
	// transactions; next is where the next one goes, over the oldest once
	// the ring is full.
	finished []string
	next     int
	// processed and failed count the transactions that reached applied
	// (or replicated) and failed, since start.
	processed, failed int64
	rate              rateWindow
	latency           latencyWindow
}

// New returns a tracker remembering up to retain finished transactions
// (DefaultRetain when retain <= 0).
func New(retain int) *Tracker {
	if retain <= 0 {
		retain = DefaultRetain
	}
	return &Tracker{retain: retain, m: make(map[string]*Status)}
}

// Queued counts a transaction that is in the log (or about to be). It
// keeps nothing of it: see the package documentation.
func (t *Tracker) Queued() {
	t.queued.Add(1)
}

// Forget takes back a transaction whose append failed: it is not counted,
// and anyone waiting for it stops.
func (t *Tracker) Forget(id string) {
	t.queued.Add(-1)
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.m[id]; ok && s.State == txn.Queued {
		delete(t.m, id)
		close(s.waiters)
	}
}

// queued returns a new status of id in the queued state.
func queued(id string) *Status {
	return &Status{ID: id, State: txn.Queued, QueuedAt: txn.IDTime(id), waiters: make(chan struct{})}
}

// Advance moves id to state at time at. States only move forward; a
// transaction the tracker does not know is added.
func (t *Tracker) Advance(id string, state txn.State, at time.Time, lsn txn.LSN, failure error, code string) {
	t.advance(id, state, at, lsn, failure, code, "")
}

// advance is Advance recording who submitted the transaction too, before
// any waiter wakes.
func (t *Tracker) advance(id string, state txn.State, at time.Time, lsn txn.LSN, failure error, code, principal string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[id]
	if !ok {
		s = queued(id)
		t.m[id] = s
	}
	if s.State.Done() || (s.State.Reached(state) && state != txn.Failed) {
		return
	}
	if lsn != 0 {
		s.LSN = lsn
	}
	if principal != "" {
		s.Principal = principal
	}
	switch state {
	case txn.Applied:
		s.AppliedAt = at
	case txn.Replicated:
		if s.AppliedAt.IsZero() {
			s.AppliedAt = at
		}
		s.ReplicatedAt = at
	case txn.Failed:
		s.FailedAt = at
		if failure != nil {
			s.Error = failure.Error()
		}
		s.Code = code
	}
	if s.State == txn.Queued {
		if state == txn.Failed {
			t.failed++
		} else {
			t.processed++
			t.rate.add(at)
			t.latency.add(at, at.Sub(s.QueuedAt))
		}
	}
	s.State = state
	close(s.waiters)
	s.waiters = make(chan struct{})
	if state.Done() {
		t.remember(id)
	}
}

// remember puts id, just finished, in the ring of finished transactions;
// when the ring is full, the oldest leaves it and the tracker.
func (t *Tracker) remember(id string) {
	if len(t.finished) < t.retain {
		t.finished = append(t.finished, id)
		return
	}
	delete(t.m, t.finished[t.next])
	t.finished[t.next] = id
	t.next = (t.next + 1) % t.retain
}

// Get returns what the tracker knows of id.
func (t *Tracker) Get(id string) (Status, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[id]
	if !ok {
		return Status{}, false
	}
	return *s, true
}

// Wait blocks until id reaches want (or fails), ctx is done, or the tracker
// forgets it, and returns the latest status. If the tracker does not know
// id, pending tells whether it is queued (its changes are in the overlay):
// if so, the tracker follows it from now on; if not, ok is false. pending
// is called without the tracker's lock, and an Advance that comes in
// meanwhile is not missed.
func (t *Tracker) Wait(ctx context.Context, id string, want txn.State, pending func() bool) (Status, bool) {
	if !t.watch(id, pending) {
		return Status{}, false
	}
	for {
		t.mu.Lock()
		s, ok := t.m[id]
		if !ok {
			t.mu.Unlock()
			return Status{}, false
		}
		cur, ch := *s, s.waiters
		t.mu.Unlock()
		if cur.State.Reached(want) {
			return cur, true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return cur, true
		}
	}
}

// watch makes sure the tracker follows id, if it is known or pending, and
// reports whether it does.
func (t *Tracker) watch(id string, pending func() bool) bool {
	if _, ok := t.Get(id); ok {
		return true
	}
	still := pending()
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[id]; ok {
		return true // it advanced while pending looked
	}
	if still {
		// Queued when pending looked: any Advance comes after this.
		t.m[id] = queued(id)
	}
	return still
}

// Counters returns the totals since start.
func (t *Tracker) Counters() Counters {
	t.mu.Lock()
	c := Counters{Processed: t.processed, Failed: t.failed}
	t.mu.Unlock()
	c.Queued = t.queued.Load()
	return c
}

// Rate returns transactions processed per second over the last RateWindow.
func (t *Tracker) Rate(now time.Time) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rate.perSecond(now)
}

// Latency returns the percentiles of the time from acknowledgement
// (queued) to applied of the transactions applied in the last
// LatencyWindow (at most LatencySamples of them, the latest).
func (t *Tracker) Latency(now time.Time) Latency {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.latency.percentiles(now)
}

// RateWindow is the span processing_rate averages over: long enough to
// smooth batch bursts, short enough to show a stall within seconds.
const RateWindow = 10 * time.Second

// rateWindow counts events per second over the last RateWindow seconds.
type rateWindow struct {
	buckets [10]int64
	secs    [10]int64
}

func (r *rateWindow) add(at time.Time) {
	sec := at.Unix()
	i := sec % int64(len(r.buckets))
	if r.secs[i] != sec {
		r.secs[i], r.buckets[i] = sec, 0
	}
	r.buckets[i]++
}

func (r *rateWindow) perSecond(now time.Time) float64 {
	sec := now.Unix()
	var n int64
	for i := range r.buckets {
		if sec-r.secs[i] < int64(len(r.buckets)) && r.secs[i] <= sec {
			n += r.buckets[i]
		}
	}
	return float64(n) / RateWindow.Seconds()
}

// Changed implements changes.Subscriber: queued transactions are counted,
// refused ones taken back, and the rest advanced.
func (t *Tracker) Changed(cs []changes.Change) {
	for _, c := range cs {
		switch {
		case c.Refused:
			t.Forget(c.ID)
		case c.Logged:
			// Counted when it was published queued.
		case c.State == txn.Queued:
			t.Queued()
		default:
			var principal string
			if c.Tx != nil {
				principal = c.Tx.Principal
			}
			t.advance(c.ID, c.State, c.At, c.LSN, c.Err, c.Code, principal)
		}
	}
}
