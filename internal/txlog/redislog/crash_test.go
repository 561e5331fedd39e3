package redislog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/testservers"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// snapshot reads, in one MULTI, the transaction ids in the stream and those
// with a hash in the overlay, and the overlay's counters; and then (not in
// the MULTI) checks the rows.
type snapshot struct {
	stream  map[string]string // tx id → stream id
	overlay map[string]bool   // tx ids with a hash
	counts  map[string]string
}

func takeSnapshot(ctx context.Context, l *Log) (snapshot, error) {
	var xr *redis.XMessageSliceCmd
	var kr *redis.StringSliceCmd
	var cr *redis.MapStringStringCmd
	_, err := l.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		xr = p.XRange(ctx, l.keys.stream, "-", "+")
		kr = p.Keys(ctx, l.keys.prefix+"tx:*")
		cr = p.HGetAll(ctx, l.keys.counts)
		return nil
	})
	if err != nil {
		return snapshot{}, err
	}
	s := snapshot{stream: map[string]string{}, overlay: map[string]bool{}, counts: cr.Val()}
	for _, m := range xr.Val() {
		e, err := decodeMessage(m)
		if err != nil {
			return snapshot{}, err
		}
		s.stream[e.Tx.ID] = m.ID
	}
	for _, k := range kr.Val() {
		s.overlay[strings.TrimPrefix(k, l.keys.prefix+"tx:")] = true
	}
	return s, nil
}

// agree fails unless the stream and the overlay hold the same transactions
// (nothing is acknowledged or evicted in this test) and the counters match.
func (s snapshot) agree() error {
	for id := range s.stream {
		if !s.overlay[id] {
			return fmt.Errorf("transaction %s is in the stream but not in the overlay", id)
		}
	}
	for id := range s.overlay {
		if _, ok := s.stream[id]; !ok {
			return fmt.Errorf("transaction %s is in the overlay but not in the stream", id)
		}
	}
	if n := fmt.Sprint(len(s.stream)); len(s.stream) > 0 && s.counts["txs"] != n {
		return fmt.Errorf("overlay counts %v transactions, the stream holds %s", s.counts["txs"], n)
	}
	return nil
}

// TestRedisCrashKeepsLogAndOverlayInStep appends from many writers while
// readers check, in MULTI snapshots, that the stream and the overlay always
// hold the same transactions; then kills redis-server (SIGKILL) under the
// load, restarts it from its AOF, and checks that every acknowledged append
// survived in both, and that the two still agree.
func TestRedisCrashKeepsLogAndOverlayInStep(t *testing.T) {
	t.Parallel()
	testservers.Need(t, srvErr) // the binary is there
	dir, err := testservers.TempDir("spool-redislog-crash-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	own, err := testservers.StartRedis(dir) // its own server: this test kills it
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = own.Stop() }()

	cfg := Config{URL: own.URL, Name: uniqueName(t), Consumer: "crash"}
	ctx := testCtx(t)
	l, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		acked   = map[string]txlog.Entry{} // tx id → entry, for every Append that returned nil
		killed  atomic.Bool
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		failure = make(chan error, 32)
	)
	fail := func(err error) {
		select {
		case failure <- err:
		default:
		}
	}
	const writers = 16
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tx := newTxn(
					op(txn.Insert, "readings:dome", fmt.Sprintf("w%d:%d", w, i), map[string]any{"v": i}),
					op(txn.Upsert, "latest", fmt.Sprintf("w%d", w), map[string]any{"v": i}),
				)
				e, err := l.Append(ctx, tx)
				if err != nil {
					if !killed.Load() {
						fail(fmt.Errorf("append before the kill: %w", err))
						return
					}
					continue // Redis is down: this one was never acknowledged
				}
				mu.Lock()
				acked[tx.ID] = e
				mu.Unlock()
			}
		})
	}
	// Readers: every MULTI snapshot must show the log and the overlay in step.
	var snapshots atomic.Int64
	for range 2 {
		wg.Go(func() {
			for !killed.Load() {
				s, err := takeSnapshot(ctx, l)
				if err != nil {
					if !killed.Load() {
						fail(fmt.Errorf("snapshot: %w", err))
					}
					return
				}
				if err := s.agree(); err != nil {
					fail(err)
					return
				}
				snapshots.Add(1)
			}
		})
	}
	// Let the load run until enough is acknowledged and checked.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 2000 && snapshots.Load() >= 20 {
			break
		}
		select {
		case err := <-failure:
			t.Fatal(err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s only %d appends acknowledged and %d snapshots taken", n, snapshots.Load())
		}
		time.Sleep(10 * time.Millisecond) // polling the load's progress
	}
	killed.Store(true)
	own.Kill()
	mu.Lock()
	ackedAtKill := len(acked)
	mu.Unlock()
	close(stop)
	wg.Wait()
	select {
	case err := <-failure:
		t.Fatal(err)
	default:
	}
	_ = l.Close()

	if err := own.Start(); err != nil {
		t.Fatalf("restart redis-server: %v", err)
	}
	l, err = Open(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("open after the restart: %v", err)
	}
	defer l.Close()
	s, err := takeSnapshot(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.agree(); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	for _, id := range slices.Sorted(maps.Keys(acked)) {
		e := acked[id]
		if pos, ok := s.stream[id]; !ok || pos != e.Pos {
			t.Fatalf("acknowledged transaction %s (position %s) lost by the crash: stream has %q", id, e.Pos, pos)
		}
		op := e.Tx.Operations[0]
		p, err := l.Overlay().Row(ctx, op.Table, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 1 || p[0].Tx != id {
			t.Fatalf("acknowledged transaction %s: its row %s/%s has %d overlay entries", id, op.Table, op.ID, len(p))
		}
	}
	// The counters agree with what the keys hold.
	st, err := l.Overlay().Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Transactions != len(s.stream) || st.Ops != 2*len(s.stream) || st.Rows != len(s.stream)+writers {
		t.Fatalf("overlay stats %+v after the restart; the stream holds %d transactions of 2 operations by %d writers", st, len(s.stream), writers)
	}
	// The restarted server lost its script cache: appends load it again.
	tx := newTxn(op(txn.Insert, "readings:dome", "after", nil))
	if _, err := l.Append(ctx, tx); err != nil {
		t.Fatalf("append after the restart: %v", err)
	}
	if ok, err := l.Overlay().Has(ctx, tx.ID); err != nil || !ok {
		t.Fatalf("overlay has the append after the restart: %v, %v", ok, err)
	}
	t.Logf("%d appends acknowledged before the kill, %d in the log after the restart, %d snapshots agreed under load",
		ackedAtKill, len(s.stream), snapshots.Load())
}

// TestOpenWaitsForLoading: a Redis just restarted answers LOADING until
// its dataset is read back; Open waits for it instead of failing, and the
// log holds what it held. The server is made to load slowly: its dataset
// rewritten into the AOF's base file (2,000 filler keys beside the log's),
// then read back with a delay per key.
func TestOpenWaitsForLoading(t *testing.T) {
	t.Parallel()
	testservers.Need(t, srvErr) // the binary is there
	dir, err := testservers.TempDir("spool-redislog-loading-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	own, err := testservers.StartRedis(dir) // its own server: this test restarts it
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = own.Stop() }()
	cfg := Config{URL: own.URL, Name: uniqueName(t)}
	ctx := testCtx(t)
	l, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	es := appendN(t, l, 3)
	fill := `for i = 1, 2000 do redis.call('SET', 'filler:' .. i, 'x') end`
	if err := l.client.Eval(ctx, fill, nil).Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	if err := l.client.BgRewriteAOF(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := l.client.Info(ctx, "persistence").Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the AOF rewrite did not end in 20 s")
		}
	}
	_ = l.Close()
	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}

	// 2,000 keys and more at 0.5 ms each: a second of LOADING at least.
	own.Args = []string{"--key-load-delay", "500", "--loading-process-events-interval-bytes", "1024"}
	if err := own.Start(); err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(&redis.Options{Addr: own.Addr})
	defer raw.Close()
	if err := raw.Ping(ctx).Err(); !redis.HasErrorPrefix(err, "LOADING") {
		t.Fatalf("PING just after the restart: %v; want LOADING (the test needs a slow load)", err)
	}
	logger, logged := testLogger()
	l, err = Open(ctx, cfg, logger)
	if err != nil {
		t.Fatalf("open while Redis loads: %v", err)
	}
	defer l.Close()
	if !strings.Contains(logged.String(), "Redis is loading its dataset") {
		t.Errorf("Open did not say it waited for the load; its log:\n%s", logged.String())
	}
	samePositions(t, "pending after the restart", pending(t, l), es)
}
