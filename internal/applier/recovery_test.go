package applier_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/poll"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/sqlite"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// failingAck is a log whose first n Acks fail, as a Redis log's do while
// Redis restarts.
type failingAck struct {
	txlog.Log
	mu     sync.Mutex
	failed int
	n      int
}

func (l *failingAck) Ack(ctx context.Context, entries []txlog.Entry) error {
	l.mu.Lock()
	if l.failed < l.n {
		l.failed++
		l.mu.Unlock()
		return errors.New("connection refused")
	}
	l.mu.Unlock()
	return l.Log.Ack(ctx, entries)
}

// TestAckRetriedAfterCommit: acknowledgements that fail after the commit
// are retried while the term lasts, so that the batch does not stay
// pending behind the claim's position (where nothing in this term would
// deliver it again): the log drains to nothing.
func TestAckRetriedAfterCommit(t *testing.T) {
	ctx := t.Context()
	st, lg := open(t)
	flaky := &failingAck{Log: lg, n: 3}
	sink := &recorder{}
	start(t, applier.Config{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}, flaky, st, sink, nil)
	for i := range 10 {
		if _, err := lg.Append(ctx, insertObs(fmt.Sprintf("k%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 10*time.Second, "every transaction reported", func() bool { return len(sink.reported()) == 10 })
	poll.Until(t, 10*time.Second, "the log drained to nothing", func() bool {
		s, err := lg.Stats(ctx)
		return err == nil && s.Depth == 0
	})
	flaky.mu.Lock()
	defer flaky.mu.Unlock()
	if flaky.failed != 3 {
		t.Fatalf("%d acks failed, want the 3 the log refused", flaky.failed)
	}
}

// downStore is a store whose database is down until up is called: every
// batch fails with a transient error and every ping fails.
type downStore struct {
	*sqlite.Store
	mu       sync.Mutex
	down     bool
	attempts int
	pings    int
}

func (s *downStore) isDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

func (s *downStore) up() {
	s.mu.Lock()
	s.down = false
	s.mu.Unlock()
}

func (s *downStore) ApplyBatch(ctx context.Context, batch []*txn.Transaction, gate store.Gate) ([]store.Outcome, error) {
	s.mu.Lock()
	s.attempts++
	down := s.down
	s.mu.Unlock()
	if down {
		return nil, errors.New("connection refused")
	}
	return s.Store.ApplyBatch(ctx, batch, gate)
}

func (s *downStore) Ping(ctx context.Context) error {
	s.mu.Lock()
	s.pings++
	s.mu.Unlock()
	if s.isDown() {
		return errors.New("connection refused")
	}
	return nil
}

// TestBackoffNoticesDatabaseBack: with a backoff grown long (MinBackoff
// 20 s here, as after a long outage), a database that comes back is
// noticed by the probe within ProbeInterval, and the batch is applied at
// once, not when the backoff ends.
func TestBackoffNoticesDatabaseBack(t *testing.T) {
	ctx := t.Context()
	st, lg := open(t)
	db := &downStore{Store: st, down: true}
	sink := &recorder{}
	start(t, applier.Config{MinBackoff: 20 * time.Second, MaxBackoff: 20 * time.Second, ProbeInterval: 50 * time.Millisecond}, lg, db, sink, nil)
	if _, err := lg.Append(ctx, insertObs("k", 1)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "a failed attempt", func() bool {
		db.mu.Lock()
		defer db.mu.Unlock()
		return db.attempts > 0 && db.pings > 0 // backing off, probing
	})
	back := time.Now()
	db.up()
	poll.Until(t, 10*time.Second, "the batch applied", func() bool { return len(sink.reported()) == 1 })
	if took := time.Since(back); took > 5*time.Second {
		t.Fatalf("applied %v after the database came back, want within a few probes (the backoff is 10–20 s)", took)
	}
}

// TestBackoffKeptWhenDatabaseAnswers: a batch that fails while the
// database answers pings (a lock, a serialization failure) keeps its
// backoff: the probe ends a wait only for a database that was down.
func TestBackoffKeptWhenDatabaseAnswers(t *testing.T) {
	ctx := t.Context()
	st, lg := open(t)
	db := &failingBatches{downStore: downStore{Store: st}, fail: 1}
	sink := &recorder{}
	start(t, applier.Config{MinBackoff: 2 * time.Second, MaxBackoff: 2 * time.Second, ProbeInterval: 20 * time.Millisecond}, lg, db, sink, nil)
	if _, err := lg.Append(ctx, insertObs("k", 1)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "a failed attempt", func() bool {
		db.mu.Lock()
		defer db.mu.Unlock()
		return db.attempts > 0
	})
	failed := time.Now()
	poll.Until(t, 10*time.Second, "the batch applied", func() bool { return len(sink.reported()) == 1 })
	if took := time.Since(failed); took < 900*time.Millisecond {
		t.Fatalf("retried %v after the failure, want the backoff (1–2 s) kept while the database answers", took)
	}
}

// failingBatches fails its first fail batches while answering pings.
type failingBatches struct {
	downStore
	fail int
}

func (s *failingBatches) ApplyBatch(ctx context.Context, batch []*txn.Transaction, gate store.Gate) ([]store.Outcome, error) {
	s.mu.Lock()
	s.attempts++
	fail := s.attempts <= s.fail
	s.mu.Unlock()
	if fail {
		return nil, errors.New("deadlock detected")
	}
	return s.Store.ApplyBatch(ctx, batch, gate)
}

// heldSink is a Sink whose batches settle only when release is called:
// a read replica that has not replayed them yet.
type heldSink struct {
	recorder
	release chan struct{}
}

func (s *heldSink) Committed(ctx context.Context, results []applier.Result) <-chan struct{} {
	s.recorder.Committed(ctx, results)
	return s.release
}

// TestAckWaitsForSettle: a committed batch stays in the log until the
// sink says its transactions left the overlay (the replicas have them),
// so that a process that dies before leaves them to be delivered again
// rather than orphaned in a shared overlay; then it is acknowledged.
func TestAckWaitsForSettle(t *testing.T) {
	ctx := t.Context()
	st, lg := open(t)
	sink := &heldSink{release: make(chan struct{})}
	start(t, applier.Config{}, lg, st, sink, nil)
	t.Cleanup(func() {
		select {
		case <-sink.release:
		default:
			close(sink.release) // before Stop, if the test fails
		}
	})
	for i := range 5 {
		if _, err := lg.Append(ctx, insertObs(fmt.Sprintf("k%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 10*time.Second, "every transaction reported", func() bool { return len(sink.reported()) == 5 })
	if s, err := lg.Stats(ctx); err != nil || s.Depth != 5 {
		t.Fatalf("log depth %d (%v) while the batch has not settled, want the 5 kept", s.Depth, err)
	}
	close(sink.release)
	poll.Until(t, 10*time.Second, "the log drained once the batch settled", func() bool {
		s, err := lg.Stats(ctx)
		return err == nil && s.Depth == 0
	})
}

// unreachableBatches fails its first fail batches as a database that
// could not be reached would (down, starting up), while answering pings.
type unreachableBatches struct{ failingBatches }

func (s *unreachableBatches) Unreachable(err error) bool { return err != nil }

// TestBackoffEndsWhenUnreachableDatabaseAnswers: a batch that failed
// because the database could not be reached (it was starting up, say) is
// retried as soon as the database answers a probe, even if it answers the
// first: the backoff is not kept as for a lock.
func TestBackoffEndsWhenUnreachableDatabaseAnswers(t *testing.T) {
	ctx := t.Context()
	st, lg := open(t)
	db := &unreachableBatches{failingBatches{downStore: downStore{Store: st}, fail: 1}}
	sink := &recorder{}
	start(t, applier.Config{MinBackoff: 20 * time.Second, MaxBackoff: 20 * time.Second, ProbeInterval: 20 * time.Millisecond}, lg, db, sink, nil)
	if _, err := lg.Append(ctx, insertObs("k", 1)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "the batch applied after one probe, not after the 10–20 s backoff", func() bool { return len(sink.reported()) == 1 })
}
