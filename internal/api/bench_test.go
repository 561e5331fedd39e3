package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
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

	"github.com/jackc/pgx/v5"

	"github.com/spoolgw/spool/internal/api"
	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/pipeline"
	"github.com/spoolgw/spool/internal/txlog/redislog"
	"github.com/spoolgw/spool/internal/txn"
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
	// The Redis log (AOF always) in front of PostgreSQL, and the "before
	// spool" baseline: each request inserted straight into PostgreSQL.
	if serversErr == nil {
		b.Run(fmt.Sprintf("spool-redis/c=%d", writers), func(b *testing.B) {
			srv := redisPostgresServer(b)
			hammer(b, srv.URL+"/v1/tables/observations", writers, http.StatusCreated)
		})
		b.Run(fmt.Sprintf("sync-postgres/c=%d", writers), func(b *testing.B) {
			srv := syncPostgresServer(b)
			hammer(b, srv.URL+"/v1/tables/observations", writers, http.StatusCreated)
		})
	}
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

// redisPostgresServer is spool with a Redis log and its shared overlay in
// front of PostgreSQL, the applier draining.
func redisPostgresServer(b *testing.B) *httptest.Server {
	st, _, _ := newPostgres(b)
	b.Cleanup(func() { st.Close() })
	ctx := context.Background()
	cat := catalogOf(b, st)
	lg, err := redislog.Open(ctx, redislog.Config{URL: redisSrv.URL, Name: fmt.Sprintf("bench-%d", rand.Uint32()), Normalize: cat.Normalize}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lg.Close() })
	p := build(b, pipeline.Config{Store: st, Catalog: cat, Log: lg, Shared: lg.Overlay(), SharedKeys: lg,
		Applier: &applier.Config{LogName: lg.Name(), Lease: lg.Lease(redislog.LeaseConfig{})}})
	ap := p.Applier
	if err := ap.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ap.Stop)
	srv := httptest.NewServer(api.New(p.Gateway, p.Queue, ap, api.Config{}, nil))
	b.Cleanup(srv.Close)
	return srv
}

// syncPostgresServer answers each insert after committing it in PostgreSQL
// itself: what writers did before spool. It checks the row against the
// catalog as spool does, then applies a one-transaction batch.
func syncPostgresServer(b *testing.B) *httptest.Server {
	st, _, _ := newPostgres(b)
	b.Cleanup(func() { st.Close() })
	cat, err := st.Catalog(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	obs, err := cat.Table("observations")
	if err != nil {
		b.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var values map[string]any
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		if err := dec.Decode(&values); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		id := txn.NewID()
		values["id"] = id
		if err := obs.CheckValues(values, true); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		tx := &txn.Transaction{ID: txn.NewID(), CreatedAt: time.Now(), Operations: []txn.Operation{{Op: txn.Insert, Table: "observations", ID: id, Values: values}}}
		out, err := st.ApplyBatch(r.Context(), []*txn.Transaction{tx}, nil)
		if err != nil || out[0].Err != nil {
			http.Error(w, fmt.Sprint(err, out), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%q,"transaction_id":%q,"state":"replicated"}`, id, tx.ID)
	})
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkVisibility measures, at a steady write rate, the time from
// applied to replicated of each transaction, beside the raw replica lag
// measured in the same run (a commit on the primary until the replica's
// replay position passes it, polled every 0.2 ms). The target: the first
// within one poll interval (20 ms) of the second.
func BenchmarkVisibility(b *testing.B) {
	e := setupPostgres(b)
	e.startApplier()
	const rate = 1000 // writes/s: about half of what the path takes here
	var txs []string
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	b.ResetTimer()
	for range b.N {
		<-tick.C
		r := e.must(201, "POST", "/v1/tables/observations", `{"target":"visibility"}`)
		txs = append(txs, r.body["transaction_id"].(string))
	}
	e.waitState(txs[len(txs)-1], "replicated")
	b.StopTimer()
	var vis []time.Duration
	for _, id := range txs {
		s, ok := e.gw.Tracker().Get(id)
		if !ok || s.ReplicatedAt.IsZero() {
			continue
		}
		vis = append(vis, s.ReplicatedAt.Sub(s.AppliedAt))
	}
	raw := rawReplicaLag(b, e.primary, 200)
	p := func(d []time.Duration, q int) float64 {
		slices.Sort(d)
		return float64(d[len(d)*q/100].Microseconds()) / 1000
	}
	b.ReportMetric(p(vis, 50), "applied→replicated-p50-ms")
	b.ReportMetric(p(vis, 99), "applied→replicated-p99-ms")
	b.ReportMetric(p(raw, 50), "raw-lag-p50-ms")
	b.ReportMetric(p(raw, 99), "raw-lag-p99-ms")
}

// rawReplicaLag commits n single-row inserts on the primary and times each
// until the replica's replay position passes its commit.
func rawReplicaLag(b *testing.B, primaryURL string, n int) []time.Duration {
	ctx := context.Background()
	pc, err := pgx.Connect(ctx, primaryURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close(ctx)
	rc, err := pgx.Connect(ctx, pgSrv.ReplicaURL)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close(ctx)
	if _, err := pc.Exec(ctx, "create table if not exists lag_probe (n int)"); err != nil {
		b.Fatal(err)
	}
	var out []time.Duration
	for i := range n {
		var lsn string
		t0 := time.Now()
		if err := pc.QueryRow(ctx, "with i as (insert into lag_probe values ($1)) select pg_current_wal_lsn()::text", i).Scan(&lsn); err != nil {
			b.Fatal(err)
		}
		for {
			var caught bool
			if err := rc.QueryRow(ctx, "select pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&caught); err != nil {
				b.Fatal(err)
			}
			if caught {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		out = append(out, time.Since(t0))
	}
	return out
}
