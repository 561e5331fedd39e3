package postgres

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/txn"
)

const pathsSchema = `create table paths (id uuid primary key, site text not null, n bigint, v double precision, at timestamptz)`

// pathRun is one way ApplyBatch can run a batch, as BenchmarkPaths times
// it: an executor, with or without the slow path's statement cache.
type pathRun struct {
	name     string
	p        path
	uncached bool
}

var pathRuns = []pathRun{
	{name: "lean", p: pathLean},
	{name: "fast", p: pathFast},
	{name: "slow", p: pathSlow},
	{name: "slow-uncached", p: pathSlow, uncached: true},
}

// BenchmarkPaths applies the same kind of batch of 500 transactions on each
// path of ApplyBatch alone, in turn on one connection of one database, and
// reports each path's transactions per second and the ratios that justify
// them: what the lean path's one round trip buys over the fast path's
// lookup (fast/lean, in time), what the fast path buys over a savepoint
// per transaction (slow/fast), and what the statement cache buys the slow
// path (uncached/slow). Workloads: inserts, 500 single-row inserts (the
// drain); mixed, 500 transactions each updating an existing row and
// inserting one (the update must find its row: its count is read before
// the commit, a round trip more). Each runs on the database as it is
// (rtt=0) and through a proxy that delays every packet by 0.5 ms each
// way, a database 1 ms away as in one cloud zone, where round trips cost
// most.
//
// Measured on 2026-11-24 on 2 shared cores under heavy load from other
// jobs (go test -run '^$' -bench . -benchtime 1s; rtt=1ms ran one
// iteration, so one sample), in transactions per second:
//
//	               lean    fast    slow  slow-uncached
//	inserts rtt=0  37,729  20,294  7,993  7,833   fast/lean 1.86, uncached/slow 1.02
//	inserts 1 ms   41,120  32,708    343    148   fast/lean 1.26, uncached/slow 2.32
//	mixed   rtt=0  11,469   8,989  3,390  3,754   fast/lean 1.28, uncached/slow 0.90
//	mixed   1 ms    8,219  16,213    327    178   fast/lean 0.51 (one sample), uncached/slow 1.84
//
// The lean path buys 1.3–1.9× over the fast path on the drain's single
// inserts; the fast path 2.5–100× over the slow one; the slow path's
// statement cache (the savepoint in the transaction's pipeline) nothing
// measurable on loopback and about 2× once a round trip costs 1 ms.
func BenchmarkPaths(b *testing.B) {
	for _, work := range []string{"inserts", "mixed"} {
		for _, rtt := range []time.Duration{0, time.Millisecond} {
			b.Run(fmt.Sprintf("%s/rtt=%v", work, rtt), func(b *testing.B) { benchPaths(b, work, rtt) })
		}
	}
}

func benchPaths(b *testing.B, work string, rtt time.Duration) {
	url := newDatabase(b)
	setup := openStore(b, url)
	ctx := context.Background()
	if err := setup.Exec(ctx, pathsSchema); err != nil {
		b.Fatal(err)
	}
	existing := make([]string, drainBatch)
	for i := range existing {
		existing[i] = txn.NewID()
	}
	if work == "mixed" {
		var seed []*txn.Transaction
		for i, id := range existing {
			seed = append(seed, pathsTx(pathsInsert(id, i)))
		}
		if _, err := setup.ApplyBatch(ctx, seed, nil); err != nil {
			b.Fatal(err)
		}
	}
	if rtt > 0 {
		url = delayProxy(b, url, rtt/2)
	}
	s := openStore(b, url)
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Release()
	spent := make([]time.Duration, len(pathRuns))
	apply := func(r pathRun) time.Duration {
		b.StopTimer()
		batch := pathsBatch(work, existing)
		ran := map[string]bool{}
		if r.uncached {
			ran = nil
		}
		b.StartTimer()
		start := time.Now()
		out, err := s.attempt(ctx, pc.Conn(), batch, nil, r.p, ran)
		took := time.Since(start)
		if err != nil {
			b.Fatalf("%s: %v", r.name, err)
		}
		for i, o := range out {
			if o.Err != nil || o.Duplicate {
				b.Fatalf("%s: transaction %d: %+v", r.name, i, o)
			}
		}
		return took
	}
	for _, r := range pathRuns { // warm pgx's statement cache, as a running applier has it
		apply(r)
	}
	b.ResetTimer()
	for b.Loop() {
		for k, r := range pathRuns {
			spent[k] += apply(r)
		}
	}
	for k, r := range pathRuns {
		b.ReportMetric(float64(b.N*drainBatch)/spent[k].Seconds(), r.name+"-txn/s")
	}
	b.ReportMetric(spent[1].Seconds()/spent[0].Seconds(), "fast/lean")
	b.ReportMetric(spent[2].Seconds()/spent[1].Seconds(), "slow/fast")
	b.ReportMetric(spent[3].Seconds()/spent[2].Seconds(), "uncached/slow")
	b.ReportMetric(0, "ns/op")
}

// pathsBatch is a batch of the workload: new rows, and for mixed an
// update of each existing row too.
func pathsBatch(work string, existing []string) []*txn.Transaction {
	batch := make([]*txn.Transaction, drainBatch)
	for i := range batch {
		ops := []txn.Operation{pathsInsert(txn.NewID(), i)}
		if work == "mixed" {
			ops = append([]txn.Operation{{Op: txn.Update, Table: "paths", ID: existing[i],
				Values: map[string]any{"n": int64(i), "v": float64(i) / 2}}}, ops...)
		}
		batch[i] = pathsTx(ops...)
	}
	return batch
}

func pathsTx(ops ...txn.Operation) *txn.Transaction {
	return &txn.Transaction{ID: txn.NewID(), Operations: ops}
}

func pathsInsert(id string, i int) txn.Operation {
	return txn.Operation{Op: txn.Insert, Table: "paths", ID: id, Values: map[string]any{"id": id,
		"site": fmt.Sprintf("site-%d", i%7), "n": int64(i), "v": float64(i) / 4, "at": "2026-11-23T00:00:00.000000000Z"}}
}

// delayProxy forwards connections to the server of dbURL, delaying every
// chunk of bytes by oneWay in each direction, and returns dbURL through
// it. It stops when the benchmark ends.
func delayProxy(tb testing.TB, dbURL string, oneWay time.Duration) string {
	tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	upstream := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); delayCopy(up, c, oneWay) }()
			go func() { defer wg.Done(); delayCopy(c, up, oneWay) }()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	u.Host = ln.Addr().String()
	return u.String()
}

// delayCopy copies src to dst, each chunk oneWay after it was read, until
// either ends; then it closes both.
func delayCopy(dst, src net.Conn, oneWay time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 4096)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now().Add(oneWay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	for range ch { // let the reader end
	}
}
