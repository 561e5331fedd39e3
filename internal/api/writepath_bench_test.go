package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/events"
	"github.com/spoolgw/spool/internal/txlog/filelog"
	"github.com/spoolgw/spool/internal/txn"
)

// writePathBody is the i-th write of the write-path benchmark: the
// bench's ~70-byte observation.
func writePathBody(i int64) string {
	return fmt.Sprintf(`{"target":"bench-%d","exposure_s":%d,"meta":{"n":%d}}`, i, i%600, i)
}

// BenchmarkWritePath measures the CPU and allocations of one write through
// the whole in-process write path, without a network: the API's handler
// (decoding, checks, the receipt) in front of the gateway, the local log
// (group-committed fdatasync), the overlay, the status tracker and live
// events' intake, the applier stopped. Beside it, in the same run, the
// floor: decoding the same body and appending it to the same kind of log,
// durable, and nothing else. 64 writers, so that the log commits in groups
// as it does under load. Compare cpu-ns/op (the process's CPU time, user
// and system, per write) and allocs/op of the two; ns/op is wall time,
// which the disk's fdatasync decides as much as the CPU.
//
//	go test -run '^$' -bench BenchmarkWritePath -benchmem ./internal/api/
func BenchmarkWritePath(b *testing.B) {
	const writers = 64
	b.Run("floor", func(b *testing.B) {
		lg, err := filelog.Open(filepath.Join(b.TempDir(), "log"), filelog.Config{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer lg.Close()
		var seq atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(writers / max(1, runtime.GOMAXPROCS(0)))
		defer reportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				var values map[string]any
				if err := json.Unmarshal([]byte(writePathBody(seq.Add(1))), &values); err != nil {
					panic(err)
				}
				tx := &txn.Transaction{ID: txn.NewID(), CreatedAt: time.Now(), Operations: []txn.Operation{{Op: txn.Insert, Table: "observations", ID: txn.NewID(), Values: values}}}
				if _, err := lg.Append(b.Context(), tx); err != nil {
					panic(err)
				}
			}
		})
	})
	b.Run("spool", func(b *testing.B) {
		e := setupWith(b, "", options{events: &events.Config{}})
		h := e.srv.Config.Handler
		var seq atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(writers / max(1, runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		defer reportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1/v1/tables/observations", strings.NewReader(writePathBody(seq.Add(1))))
				if err != nil {
					panic(err)
				}
				r.Header.Set("Content-Type", "application/json")
				r.RemoteAddr = "127.0.0.1:40000"
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusCreated {
					panic(fmt.Sprintf("status %d: %s", w.Code, w.Body))
				}
			}
		})
	})
}

// reportCPU starts counting the process's CPU time; the function it
// returns reports it per operation as cpu-ns/op.
func reportCPU(b *testing.B) func() {
	start := cpuTime(b)
	return func() {
		b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// cpuTime is the CPU time, user and system, the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
