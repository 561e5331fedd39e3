package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// noop is the ceiling: plain net/http decoding the same JSON body and
// answering 202, with nothing durable behind it.
var noop = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	var v map[string]any
	if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, `{"id":"0190b5a0-0000-7000-8000-000000000000","transaction_id":"0190b5a0-0000-7000-8000-000000000000","state":"queued"}`)
})

// BenchmarkWriteHTTP measures acknowledged writes per second over real HTTP
// on loopback at 64 concurrent writers: spool (each 201 means fsynced in the
// log) against the no-op ceiling, in the same run. Compare the two ratios,
// not absolute figures: the load generator shares the machine's cores.
func BenchmarkWriteHTTP(b *testing.B) {
	writers := 64
	if s := os.Getenv("SPOOL_BENCH_WRITERS"); s != "" {
		writers, _ = strconv.Atoi(s)
	}
	b.Run(fmt.Sprintf("noop/c=%d", writers), func(b *testing.B) {
		srv := httptest.NewServer(noop)
		defer srv.Close()
		hammer(b, srv.URL+"/v1/tables/observations", writers, http.StatusAccepted)
	})
	b.Run(fmt.Sprintf("spool/c=%d", writers), func(b *testing.B) {
		e := setup(b, "")
		e.startApplier()
		hammer(b, e.srv.URL+"/v1/tables/observations", writers, http.StatusCreated)
	})
	// The intake alone: the applier stopped, so the figure shows what the
	// drain costs the writers on a two-core machine.
	b.Run(fmt.Sprintf("spool-intake-only/c=%d", writers), func(b *testing.B) {
		e := setup(b, "")
		hammer(b, e.srv.URL+"/v1/tables/observations", writers, http.StatusCreated)
	})
}

func hammer(b *testing.B, url string, writers int, want int) {
	tr := &http.Transport{MaxIdleConnsPerHost: writers, MaxConnsPerHost: writers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var next atomic.Int64
	lat := make([][]time.Duration, writers)
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				body := fmt.Sprintf(`{"target":"bench-%d","exposure_s":%d,"meta":{"w":%d}}`, i, i%600, w)
				t0 := time.Now()
				res, err := client.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					failed.Store(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != want {
					failed.Store(fmt.Errorf("status %d", res.StatusCode))
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}
