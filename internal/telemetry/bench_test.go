package telemetry

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store/sqlite"
)

// benchSample is a typical sample: about 200 bytes of JSON.
func benchSample(i int) string {
	return fmt.Sprintf(`{"sensor":"plc-07/boiler-3/temperature","seq":%d,"value":%d.125,"meta":{"unit":"degC","quality":"good","line":3,"shift":"night"},"taken_at":"2026-11-23T21:%02d:%02d.123456Z"}`,
		i, i%500, i/60%60, i%60)
}

// benchSamples returns n typical samples as the lane holds them.
func benchSamples(tb testing.TB, t *schema.Table, n int) []sample {
	tb.Helper()
	out := make([]sample, n)
	now := time.Now()
	for i := range out {
		d := json.NewDecoder(strings.NewReader(benchSample(i)))
		d.UseNumber()
		var row map[string]any
		if err := d.Decode(&row); err != nil {
			tb.Fatal(err)
		}
		s, err := sampleOf(t, row, now)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = s
	}
	return out
}

func readingsTable(tb testing.TB) *schema.Table {
	tb.Helper()
	st := openSQLite(tb)
	t, err := tablesOf(tb, st)("readings")
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// BenchmarkRing measures Put+Get: one goroutine putting and getting one
// sample at a time, the same in batches of 500 (the lane's pattern), and
// four producers putting while one consumer takes batches. ops/s counts
// every Put and every item a Get returned.
func BenchmarkRing(b *testing.B) {
	s := benchSamples(b, readingsTable(b), 1)[0]
	b.Run("put-get/single", func(b *testing.B) {
		r, _ := NewRing[sample](RingConfig{})
		buf := make([]sample, 0, 1)
		b.ResetTimer()
		for range b.N {
			r.Put(s)
			buf = r.AppendGet(buf[:0], 1)
		}
		b.ReportMetric(2*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	b.Run("put-get/single-batches-of-500", func(b *testing.B) {
		r, _ := NewRing[sample](RingConfig{})
		buf := make([]sample, 0, 500)
		b.ResetTimer()
		for i := range b.N {
			r.Put(s)
			if i%500 == 499 {
				buf = r.AppendGet(buf[:0], 500)
			}
		}
		b.ReportMetric(2*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	b.Run("put-get/4-producers", func(b *testing.B) {
		r, _ := NewRing[sample](RingConfig{})
		var wg sync.WaitGroup
		var producing atomic.Int32
		producing.Store(4)
		per := b.N/4 + 1
		var got int
		b.ResetTimer()
		for range 4 {
			wg.Go(func() {
				defer producing.Add(-1)
				for range per {
					r.Put(s)
				}
			})
		}
		buf := make([]sample, 0, 500)
		for {
			done := producing.Load() == 0
			buf = r.AppendGet(buf[:0], 500)
			got += len(buf)
			if done && len(buf) == 0 {
				break
			}
			if len(buf) == 0 {
				runtime.Gosched()
			}
		}
		wg.Wait()
		b.StopTimer()
		st := r.Stats()
		b.ReportMetric(float64(4*per+got)/b.Elapsed().Seconds(), "ops/s")
		b.ReportMetric(float64(st.OverflowCount)/float64(4*per)*100, "dropped-%")
	})
}

// BenchmarkRingMemory reports the ring's own memory for 10,000 typical
// (~200-byte JSON) samples, apart from the samples, and what one sample
// costs in the heap.
func BenchmarkRingMemory(b *testing.B) {
	t := readingsTable(b)
	const n = 10_000
	var ringBytes, sampleBytes float64
	for range b.N {
		before := heap()
		samples := benchSamples(b, t, n)
		afterSamples := heap()
		r, err := NewRing[sample](RingConfig{Capacity: n})
		if err != nil {
			b.Fatal(err)
		}
		r.PutAll(samples)
		afterRing := heap()
		ringBytes = float64(afterRing - afterSamples)
		sampleBytes = float64(afterSamples-before) / n
		runtime.KeepAlive(r)
		runtime.KeepAlive(samples)
	}
	b.ReportMetric(ringBytes, "ring-bytes")
	b.ReportMetric(ringBytes/n, "ring-bytes/sample")
	b.ReportMetric(sampleBytes, "heap-bytes/sample")
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// ingestBodies returns NDJSON bodies of 500 typical samples each.
func ingestBodies(n int) [][]byte {
	bodies := make([][]byte, n)
	for i := range bodies {
		var buf bytes.Buffer
		for j := range 500 {
			buf.WriteString(benchSample(i*500 + j))
			buf.WriteByte('\n')
		}
		bodies[i] = buf.Bytes()
	}
	return bodies
}

// rawRows returns the rows of ingestBodies as the database takes them.
func rawRows(tb testing.TB, t *schema.Table, batches int) (cols []string, rows [][]any) {
	samples := benchSamples(tb, t, batches*500)
	cols, rows = project(t, samples)
	return cols, rows
}

// ingestHTTP posts the bodies over loopback HTTP from 4 clients and waits
// until the lane has written every row; it reports rows/s end to end and
// at intake.
func ingestHTTP(b *testing.B, cfg Config, bodies [][]byte) {
	b.Helper()
	cfg.Lanes = []LaneConfig{{Table: "readings", Capacity: len(bodies) * 500}}
	cfg.Logger = testLogger(b)
	cfg.Dir = b.TempDir()
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	mux := http.NewServeMux()
	s.Routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 4 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(bodies)); i = next.Add(1) - 1 {
				res, err := client.Post(srv.URL+"/v1/ingest/readings", "application/x-ndjson", bytes.NewReader(bodies[i]))
				if err != nil {
					failed.Store(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusAccepted {
					failed.Store(fmt.Errorf("status %d", res.StatusCode))
					return
				}
			}
		})
	}
	wg.Wait()
	intake := time.Since(start)
	total := uint64(len(bodies) * 500)
	for {
		ls := s.Status()[0]
		if ls.Writer.RowsWritten+ls.Writer.RowsRejected+ls.RowsDropped >= total {
			if ls.Writer.RowsWritten != total {
				b.Fatalf("written %d of %d: %+v", ls.Writer.RowsWritten, total, ls)
			}
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(total)/intake.Seconds(), "intake-rows/s")
}

// BenchmarkIngestSQLite: NDJSON batches of 500 over HTTP into SQLite, next
// to the bulk path alone (InsertRows, batches of 500) and a raw prepared
// multi-row INSERT of the same rows in one transaction per 500, each into
// a fresh database file. Run with -benchtime Nx: N batches of 500 rows.
func BenchmarkIngestSQLite(b *testing.B) {
	b.Run("raw-multirow-insert", func(b *testing.B) {
		st := openSQLite(b)
		t, _ := tablesOf(b, st)("readings")
		cols, rows := rawRows(b, t, b.N)
		path := filepath.Join(b.TempDir(), "raw.db")
		db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		if _, err := db.Exec(readingsSQL); err != nil {
			b.Fatal(err)
		}
		q := "insert into readings (" + strings.Join(cols, ", ") + ") values " +
			strings.TrimSuffix(strings.Repeat("("+strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")+"), ", 500), ", ")
		b.ResetTimer()
		for i := 0; i < len(rows); i += 500 {
			args := make([]any, 0, 500*len(cols))
			for _, r := range rows[i : i+500] {
				for _, v := range r {
					if m, ok := v.(json.RawMessage); ok {
						v = string(m)
					}
					args = append(args, v)
				}
			}
			tx, err := db.Begin()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tx.Exec(q, args...); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(rows))/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("bulk-path", func(b *testing.B) {
		st := openSQLite(b)
		t, _ := tablesOf(b, st)("readings")
		cols, rows := rawRows(b, t, b.N)
		b.ResetTimer()
		for i := 0; i < len(rows); i += 500 {
			if rej, err := st.InsertRows(context.Background(), t, cols, rows[i:i+500]); err != nil || rej != nil {
				b.Fatal(rej, err)
			}
		}
		b.ReportMetric(float64(len(rows))/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("http-ingest", func(b *testing.B) {
		st := openSQLite(b)
		ingestHTTP(b, Config{Tables: tablesOf(b, st), Inserter: st}, ingestBodies(b.N))
	})
}

var _ Inserter = (*sqlite.Store)(nil)

// BenchmarkIngestPostgres: NDJSON batches of 500 over HTTP into
// PostgreSQL, next to the bulk path alone (InsertRows: COPY in text
// format, batches of 500) and a raw binary COPY (pgx CopyFrom) of the same
// rows in batches of 500, each into a fresh database. Run with -benchtime
// Nx.
func BenchmarkIngestPostgres(b *testing.B) {
	b.Run("raw-copy", func(b *testing.B) {
		st, url := pgDatabase(b)
		t, _ := tablesOf(b, st)("readings")
		cols, rows := rawRows(b, t, b.N)
		typed := make([][]any, len(rows))
		for i, r := range rows { // the Go types pgx's binary COPY wants
			tr := make([]any, len(r))
			for j, v := range r {
				switch cols[j] {
				case "id":
					v = [16]byte(uuid.MustParse(v.(string)))
				case "taken_at":
					v, _ = time.Parse(schema.TimeFormat, v.(string))
				case "meta":
					v = []byte(v.(json.RawMessage))
				}
				tr[j] = v
			}
			typed[i] = tr
		}
		ctx := context.Background()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close(ctx)
		b.ResetTimer()
		for i := 0; i < len(typed); i += 500 {
			tx, err := c.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"readings"}, cols, pgx.CopyFromRows(typed[i:i+500])); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(rows))/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("bulk-path", func(b *testing.B) {
		st, _ := pgDatabase(b)
		t, _ := tablesOf(b, st)("readings")
		cols, rows := rawRows(b, t, b.N)
		b.ResetTimer()
		for i := 0; i < len(rows); i += 500 {
			if rej, err := st.InsertRows(context.Background(), t, cols, rows[i:i+500]); err != nil || rej != nil {
				b.Fatal(rej, err)
			}
		}
		b.ReportMetric(float64(len(rows))/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("http-ingest", func(b *testing.B) {
		st, _ := pgDatabase(b)
		ingestHTTP(b, Config{Tables: tablesOf(b, st), Inserter: st}, ingestBodies(b.N))
	})
}
