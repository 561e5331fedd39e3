package applier_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/poll"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/sqlite"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txlog/filelog"
	"github.com/spoolgw/spool/internal/txn"
)

// recorder is a Sink that keeps the ids it is told of, in order.
type recorder struct {
	mu  sync.Mutex
	ids []string
}

func (r *recorder) Committed(_ context.Context, results []applier.Result) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	settled := make(chan struct{})
	close(settled)
	for _, res := range results {
		if res.Err != nil {
			panic(fmt.Sprintf("transaction %s failed: %v", res.Tx.ID, res.Err))
		}
		r.ids = append(r.ids, res.Tx.ID)
	}
	return settled
}

func (r *recorder) reported() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

// stages is an Observer that counts batches, their transactions, and the
// observations of each stage, and keeps the longest acknowledgement.
type stages struct {
	mu      sync.Mutex
	batches int
	txs     int
	n       map[string]int
	maxAck  time.Duration
}

func (s *stages) ObserveBatch(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches++
	s.txs += n
}

func (s *stages) ObserveStage(stage string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]int{}
	}
	s.n[stage]++
	if stage == applier.StageAck {
		s.maxAck = max(s.maxAck, d)
	}
}

// open returns a SQLite store with a table obs (id text, n integer) and
// an empty local log, closed when the test ends.
func open(t *testing.T) (*sqlite.Store, *filelog.Log) {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "spool.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Exec(t.Context(), "create table obs (id text primary key, n integer)"); err != nil {
		t.Fatal(err)
	}
	lg, err := filelog.Open(filepath.Join(dir, "log"), filelog.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	return st, lg
}

// insertObs is a transaction inserting row key of obs with n.
func insertObs(key string, n int) *txn.Transaction {
	return &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "obs", ID: key,
		Values: map[string]any{"id": key, "n": int64(n)}}}}
}

// start runs an applier of lg into st until the test ends.
func start(t *testing.T, cfg applier.Config, lg txlog.Log, st store.Store, sink applier.Sink, logger *slog.Logger) *applier.Applier {
	t.Helper()
	ap, err := applier.New(cfg, lg, st, sink, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := ap.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ap.Stop)
	return ap
}

// slowAck is a log whose acknowledgements take a while, as Redis's may.
type slowAck struct{ txlog.Log }

func (l slowAck) Ack(ctx context.Context, entries []txlog.Entry) error {
	time.Sleep(20 * time.Millisecond) // the fault itself: not a wait for an outcome
	return l.Log.Ack(ctx, entries)
}

// TestReportedInOrderAndAckedByStop drains 300 transactions in batches of
// 7 from a log slow to acknowledge: the sink hears of every one once, in
// log order, and once Stop returns the log holds none, since
// acknowledging a reported batch goes on beside the next batch and Stop
// waits for it. The observer hears of every batch and each of its stages
// once, and the acknowledgements' times are the slow log's.
func TestReportedInOrderAndAckedByStop(t *testing.T) {
	ctx := t.Context()
	st, lg := open(t)
	sink := &recorder{}
	obs := &stages{}
	ap := start(t, applier.Config{BatchSize: 7, BatchTimeout: -1, Observer: obs}, slowAck{lg}, st, sink, nil)
	var want []string
	for i := range 300 {
		tx := insertObs(fmt.Sprintf("k%03d", i), i)
		if _, err := lg.Append(ctx, tx); err != nil {
			t.Fatal(err)
		}
		want = append(want, tx.ID)
	}
	poll.Until(t, 30*time.Second, fmt.Sprintf("%d transactions reported", len(want)), func() bool { return len(sink.reported()) >= len(want) })
	ap.Stop()
	if got := sink.reported(); !slices.Equal(got, want) {
		t.Fatalf("reported %d transactions, not each once in log order", len(got))
	}
	stats, err := lg.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Depth != 0 {
		t.Fatalf("log depth %d once Stop returned, want every reported batch acknowledged", stats.Depth)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.txs != len(want) || obs.batches < len(want)/7 {
		t.Fatalf("observed %d batches of %d transactions in all, want %d transactions in at least %d batches", obs.batches, obs.txs, len(want), len(want)/7)
	}
	for _, stage := range []string{applier.StageClaimWait, applier.StageApply, applier.StageFinishWait, applier.StageReport, applier.StageAck} {
		if obs.n[stage] != obs.batches {
			t.Errorf("stage %s observed %d times, want once per batch (%d)", stage, obs.n[stage], obs.batches)
		}
	}
	if obs.maxAck < 20*time.Millisecond {
		t.Errorf("longest acknowledgement observed %v, want the slow log's 20 ms at least", obs.maxAck)
	}
}

// heldStore is a store whose first ApplyBatch waits for release, and
// which records the size of every batch it is given.
type heldStore struct {
	*sqlite.Store
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	sizes   []int
}

func newHeldStore(st *sqlite.Store) *heldStore {
	return &heldStore{Store: st, release: make(chan struct{})}
}

// Release lets the first batch go. Safe to call twice: a test registers
// it as a cleanup to run before the applier's Stop, which would otherwise
// wait for the batch for ever if the test failed while it was held.
func (s *heldStore) Release() { s.once.Do(func() { close(s.release) }) }

func (s *heldStore) ApplyBatch(ctx context.Context, batch []*txn.Transaction, gate store.Gate) ([]store.Outcome, error) {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(batch))
	first := len(s.sizes) == 1
	s.mu.Unlock()
	if first {
		<-s.release
	}
	return s.Store.ApplyBatch(ctx, batch, gate)
}

func (s *heldStore) batches() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sizes)
}

// fillWatch is a log that counts the claims whose filling ended at the
// batch's timeout: each is a batch closed.
type fillWatch struct {
	txlog.Log
	closed atomic.Int32
}

func (l *fillWatch) Claim(ctx context.Context, max int) ([]txlog.Entry, error) {
	entries, err := l.Log.Claim(ctx, max)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		l.closed.Add(1)
	}
	return entries, err
}

// TestBatchTopUp holds the first batch in the database while one
// transaction arrives (the next batch, claimed ahead, closes with it after
// BatchTimeout) and then twenty more: the next batch applied holds all
// twenty-one, not the one it closed with.
func TestBatchTopUp(t *testing.T) {
	ctx := t.Context()
	st, lg := open(t)
	held := newHeldStore(st)
	sink := &recorder{}
	watch := &fillWatch{Log: lg}
	const batchTimeout = 10 * time.Millisecond
	start(t, applier.Config{BatchSize: 100, BatchTimeout: batchTimeout}, watch, held, sink, nil)
	t.Cleanup(held.Release) // before Stop, if the test fails while the batch is held
	n := 0
	add := func() {
		t.Helper()
		if _, err := lg.Append(ctx, insertObs(fmt.Sprintf("k%03d", n), n)); err != nil {
			t.Fatal(err)
		}
		n++
	}
	add()
	poll.Until(t, 10*time.Second, "the first batch held", func() bool { return len(held.batches()) == 1 })
	add() // claimed ahead, alone
	poll.Until(t, 10*time.Second, "the batch claimed ahead closed", func() bool { return watch.closed.Load() == 2 })
	// The scenario, not a wait: the applier tops up only a batch claimed
	// at least BatchTimeout ago, by its own clock.
	time.Sleep(2 * batchTimeout)
	for range 20 {
		add()
	}
	held.Release()
	poll.Until(t, 30*time.Second, fmt.Sprintf("%d transactions reported", n), func() bool { return len(sink.reported()) >= n })
	if got := held.batches(); !slices.Equal(got, []int{1, 21}) {
		t.Fatalf("batches of %v, want 1 then 21 (the batch claimed ahead, topped up)", got)
	}
}
