package filelog

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/txn"
)

// benchWriters are the concurrent appenders each benchmark runs with: one
// alone (the fsync floor), and the concurrency the HTTP layer is measured
// at on this machine.
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

func BenchmarkAppend(b *testing.B) {
	for _, writers := range benchWriters {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l, err := Open(b.TempDir(), Config{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			tx := benchTx()
			runWriters(b, writers, func(ctx context.Context) error {
				_, err := l.Append(ctx, tx)
				return err
			})
			if n := l.syncs.Load(); n > 0 {
				b.ReportMetric(float64(b.N)/float64(n), "appends/sync")
			}
		})
	}
}

// runWriters calls appendOne b.N times from writers goroutines and reports
// appends per second and the 99th percentile of one append's latency (the
// time a writer waits for its acknowledgement).
func runWriters(b *testing.B, writers int, appendOne func(context.Context) error) {
	ctx := b.Context()
	lat := make([][]time.Duration, writers)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := appendOne(ctx); err != nil {
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
