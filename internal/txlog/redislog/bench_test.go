package redislog

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/testservers"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// benchWriters are the concurrent appenders each benchmark runs with: one
// alone (a round trip and an fsync per append), and the concurrency the
// HTTP layer is measured at on this machine.
var benchWriters = []int{1, 16, 64}

// benchTx is a transaction of about 200 bytes of JSON, the size the
// machine's measurements used.
func benchTx() *txn.Transaction {
	return &txn.Transaction{
		ID: txn.NewID(),
		Operations: []txn.Operation{{
			Op: txn.Insert, Table: "samples", ID: txn.NewID(),
			Values: map[string]any{"sensor": "dome-t3", "value": 21.5, "ok": true},
		}},
		CreatedAt: time.Now().UTC(),
	}
}

// BenchmarkAppend appends ~200-byte transactions from 1, 16 and 64
// goroutines to the package's redis-server (AOF, appendfsync always) and
// reports appends/s, the 99th percentile of an append's latency, and how
// many appends one script call carried on average (the group size).
func BenchmarkAppend(b *testing.B) {
	for _, writers := range benchWriters {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			benchAppend(b, Config{}, writers)
		})
	}
}

// BenchmarkAppendInFlight compares MaxInFlight settings at 64 writers.
func BenchmarkAppendInFlight(b *testing.B) {
	for _, n := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("inflight=%d", n), func(b *testing.B) {
			benchAppend(b, Config{MaxInFlight: n}, 64)
		})
	}
}

func benchAppend(b *testing.B, cfg Config, writers int) {
	l := openLog(b, cfg)
	// Every append is a new transaction (the same one would be
	// deduplicated), made before the clock starts.
	txs := make([]*txn.Transaction, b.N)
	for i := range txs {
		txs[i] = benchTx()
	}
	calls0, appended0 := l.calls.Load(), l.appended.Load()
	usec0 := evalshaStat(b, l.client, "usec")
	runWriters(b, writers, func(ctx context.Context, i int) error {
		_, err := l.Append(ctx, txs[i])
		return err
	})
	appended := l.appended.Load() - appended0
	if n := l.calls.Load() - calls0; n > 0 {
		b.ReportMetric(float64(appended)/float64(n), "appends/call")
	}
	if usec := evalshaStat(b, l.client, "usec") - usec0; appended > 0 && usec > 0 {
		// Redis's own time running the script, per append: what bounds
		// the appends one Redis takes, whatever the load on the client.
		b.ReportMetric(float64(usec)/float64(appended), "redis-us/append")
	}
}

// runWriters calls appendOne b.N times from writers goroutines and reports
// appends per second and the 99th percentile of one append's latency (the
// time a writer waits for its acknowledgement).
func runWriters(b *testing.B, writers int, appendOne func(ctx context.Context, i int) error) {
	ctx := b.Context()
	lat := make([][]time.Duration, writers)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := appendOne(ctx, int(i)); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	p99 := all[(len(all)*99)/100]
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "appends/s")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ack-ms")
}

// BenchmarkTable reads a table of 1,000 and 10,000 rows with one pending
// change each, as a list merging the overlay does, with a normaliser set
// (as the gateway sets one): unchanged between reads ("static"), and with
// one transaction appended and the oldest evicted before each read
// ("churn", outside the timer), as while writes arrive and drain.
func BenchmarkTable(b *testing.B) {
	for _, rows := range []int{1000, 10000} {
		for _, churn := range []bool{false, true} {
			name := fmt.Sprintf("rows=%d/static", rows)
			if churn {
				name = fmt.Sprintf("rows=%d/churn", rows)
			}
			b.Run(name, func(b *testing.B) { benchTable(b, rows, churn) })
		}
	}
}

func benchTable(b *testing.B, rows int, churn bool) {
	l := openLog(b, Config{Normalize: func(string, map[string]any) {}})
	o := l.Overlay()
	ctx := b.Context()
	var ids []string
	appendOne := func(i int) {
		tx := benchTx()
		tx.Operations[0].ID = strconv.Itoa(i)
		if _, err := l.Append(ctx, tx); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, tx.ID)
	}
	for i := range rows {
		appendOne(i)
	}
	next := rows
	for b.Loop() {
		if churn {
			b.StopTimer()
			appendOne(next)
			next++
			if err := o.Evict(ctx, ids[0]); err != nil {
				b.Fatal(err)
			}
			ids = ids[1:]
			b.StartTimer()
		}
		tbl, err := o.Table(ctx, "samples")
		if err != nil {
			b.Fatal(err)
		}
		if len(tbl) != rows {
			b.Fatalf("%d rows, want %d", len(tbl), rows)
		}
	}
}

// BenchmarkEvict evicts batches of 500 one-row transactions in log order,
// in one call, as the applier does after each batch it commits (the
// appends are outside the timer). It reports the time per transaction.
func BenchmarkEvict(b *testing.B) {
	const batch = 500
	l := openLog(b, Config{})
	o := l.Overlay()
	ctx := b.Context()
	m := newRedisMeter(b)
	ids := make([]string, batch)
	for b.Loop() {
		b.StopTimer()
		for i := range ids {
			tx := benchTx()
			if _, err := l.Append(ctx, tx); err != nil {
				b.Fatal(err)
			}
			ids[i] = tx.ID
		}
		b.StartTimer()
		m.around(func() {
			if err := o.Evict(ctx, ids...); err != nil {
				b.Fatal(err)
			}
		})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/tx")
	m.report(b.N*batch, "tx")
}

// BenchmarkClaim claims batches of 500 entries under the log's lease, as
// the applier does, with a backlog of 5,000 behind them (the appends and
// the acknowledgements are outside the timer). It reports the time per
// entry and Redis's CPU time per entry, which the round trips hide from
// the caller's clock.
func BenchmarkClaim(b *testing.B) {
	const batch, backlog = 500, 5000
	l := openLog(b, Config{})
	ctx := b.Context()
	if _, _, err := l.Lease(LeaseConfig{}).Acquire(ctx); err != nil {
		b.Fatal(err)
	}
	appendBench(b, l, backlog)
	m := newRedisMeter(b)
	for b.Loop() {
		b.StopTimer()
		appendBench(b, l, batch)
		b.StartTimer()
		var claimed []txlog.Entry
		m.around(func() { claimed = claimN(b, l, batch) })
		b.StopTimer()
		if err := l.Ack(ctx, claimed); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/entry")
	m.report(b.N*batch, "entry")
}

// appendBench appends n transactions of benchTx to l.
func appendBench(b *testing.B, l *Log, n int) {
	for range n {
		if _, err := l.Append(b.Context(), benchTx()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAck acknowledges batches of 500 claimed entries in one call, as
// the applier does after each batch it commits, with a backlog of 5,000
// behind them (the appends and the claim are outside the timer). It
// reports the time per entry.
func BenchmarkAck(b *testing.B) {
	const batch, backlog = 500, 5000
	l := openLog(b, Config{})
	ctx := b.Context()
	appendBench(b, l, backlog)
	m := newRedisMeter(b)
	for b.Loop() {
		b.StopTimer()
		appendBench(b, l, batch)
		claimed := claimN(b, l, batch)
		b.StartTimer()
		m.around(func() {
			if err := l.Ack(ctx, claimed); err != nil {
				b.Fatal(err)
			}
		})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/entry")
	m.report(b.N*batch, "entry")
}

// redisMeter adds up what the package's Redis spends during the calls it
// is put around: its time in scripts (EVALSHA's usec, by INFO
// commandstats: the server's own work, which the round trip and the AOF's
// fsync hide from the caller's clock) and its CPU time, user and system,
// whatever the commands (INFO cpu: the server process's own rusage, which
// counts reading requests and writing replies too).
type redisMeter struct {
	b    *testing.B
	c    *redis.Client
	usec int64
	cpu  time.Duration
}

func newRedisMeter(b *testing.B) *redisMeter {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b.Cleanup(func() { c.Close() })
	return &redisMeter{b: b, c: c}
}

// around runs fn and adds Redis's time meanwhile.
func (m *redisMeter) around(fn func()) {
	usec, cpu := evalshaStat(m.b, m.c, "usec"), m.cpuTime()
	fn()
	m.usec += evalshaStat(m.b, m.c, "usec") - usec
	m.cpu += m.cpuTime() - cpu
}

// cpuTime returns the CPU time Redis has used so far.
func (m *redisMeter) cpuTime() time.Duration {
	info, err := m.c.Info(m.b.Context(), "cpu").Result()
	if err != nil {
		m.b.Fatal(err)
	}
	fields := testservers.ParseInfo(info)
	var used time.Duration
	for _, k := range []string{"used_cpu_user", "used_cpu_sys"} {
		sec, err := strconv.ParseFloat(fields[k], 64)
		if err != nil {
			m.b.Fatalf("INFO cpu %s: %v", k, err)
		}
		used += time.Duration(sec * float64(time.Second))
	}
	return used
}

// report reports Redis's time in scripts (if any) and its CPU time per
// unit, n units in all.
func (m *redisMeter) report(n int, unit string) {
	if m.usec > 0 {
		m.b.ReportMetric(float64(m.usec*1000)/float64(n), "redis-ns/"+unit)
	}
	m.b.ReportMetric(float64(m.cpu.Nanoseconds())/float64(n), "redis-cpu-ns/"+unit)
}
