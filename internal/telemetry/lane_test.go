package telemetry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store/sqlite"
)

// readingRows makes n rows of sensor with seq from..from+n-1.
func readingRows(sensor string, from, n int) []map[string]any {
	rows := make([]map[string]any, n)
	for i := range rows {
		rows[i] = map[string]any{"sensor": sensor, "seq": json.Number(fmt.Sprint(from + i)),
			"value": json.Number(fmt.Sprintf("%d.25", from+i)), "meta": map[string]any{"i": from + i, "z": "last", "a": "first"}}
	}
	return rows
}

func ingest(t testing.TB, s *Service, table string, rows []map[string]any) Receipt {
	t.Helper()
	rc, err := s.Ingest(table, rows)
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func count(t testing.TB, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func laneStatus(s *Service, table string) LaneStatus {
	for _, ls := range s.Status() {
		if ls.Table == table {
			return ls
		}
	}
	return LaneStatus{}
}

// TestLaneIntoSQLite: samples flow through the ring and the writer into a
// real SQLite file, values intact.
func TestLaneIntoSQLite(t *testing.T) {
	t.Parallel()
	st, db := openSQLitePath(t)
	s := newService(t, Config{Lanes: []LaneConfig{{Table: "readings"}}, Tables: tablesOf(t, st), Inserter: st,
		FlushInterval: 20 * time.Millisecond, BatchSize: 100, MaxBatchSize: 100})
	total := 0
	for i := range 13 {
		total += ingest(t, s, "readings", readingRows("a", i*97, 97)).Accepted
	}
	eventually(t, 10*time.Second, "rows in the table", func() bool { return count(t, db, `select count(*) from readings`) == total })
	var (
		id, sensor, meta, takenAt string
		seq                       int64
		value                     float64
	)
	if err := db.QueryRow(`select id, sensor, seq, value, meta, taken_at from readings where seq = 5`).Scan(&id, &sensor, &seq, &value, &meta, &takenAt); err != nil {
		t.Fatal(err)
	}
	if len(id) != 36 || sensor != "a" || value != 5.25 || meta != `{"a":"first","i":5,"z":"last"}` || !strings.HasSuffix(takenAt, "Z") {
		t.Fatalf("row: %q %q %d %v %q %q", id, sensor, seq, value, meta, takenAt)
	}
	// The writer counts a batch once its insert has returned, after the
	// rows are visible: wait for the count rather than read it once.
	eventually(t, 10*time.Second, "every row counted as written", func() bool {
		return laneStatus(s, "readings").Writer.RowsWritten == uint64(total)
	})
	ls := laneStatus(s, "readings")
	if ls.Writer.RowsWritten != uint64(total) || ls.Writer.Batches < uint64(total/100) || ls.Writer.State != "writing" || ls.RowsDropped != 0 {
		t.Fatalf("status %+v", ls)
	}
}

// TestLaneRejectsBadRows: a row the database refuses is counted with its
// error; the rest of its batch is written.
func TestLaneRejectsBadRows(t *testing.T) {
	t.Parallel()
	st, db := openSQLitePath(t)
	s := newService(t, Config{Lanes: []LaneConfig{{Table: "readings"}}, Tables: tablesOf(t, st), Inserter: st,
		FlushInterval: 10 * time.Millisecond})
	rows := readingRows("a", 0, 50)
	rows[7]["value"] = json.Number("-5000")  // the CHECK refuses it
	rows[31]["value"] = json.Number("-9999") // and this one
	ingest(t, s, "readings", rows)
	eventually(t, 10*time.Second, "batch written", func() bool { return laneStatus(s, "readings").Writer.Batches > 0 })
	if n := count(t, db, `select count(*) from readings`); n != 48 {
		t.Fatalf("%d rows written, want 48", n)
	}
	ls := laneStatus(s, "readings")
	if ls.Writer.RowsRejected != 2 || len(ls.Writer.RecentRejections) != 2 || !strings.Contains(ls.Writer.RecentRejections[0].Error, "CHECK") {
		t.Fatalf("writer %+v", ls.Writer)
	}
}

// held is an Inserter whose calls wait until release is closed; it
// records the rows of each call.
type held struct {
	Inserter
	entered chan struct{} // closed by the first call
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	sizes   []int
}

func (h *held) InsertRows(ctx context.Context, t *schema.Table, cols []string, rows [][]any) (map[int]error, error) {
	h.once.Do(func() { close(h.entered) })
	select {
	case <-h.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	h.mu.Lock()
	h.sizes = append(h.sizes, len(rows))
	h.mu.Unlock()
	return h.Inserter.InsertRows(ctx, t, cols, rows)
}

// TestLaneCatchesUp: a writer that fell behind (its insert held while
// samples kept coming) takes up to MaxBatchSize rows a transaction until it
// has caught up, never more, and every row is written once.
func TestLaneCatchesUp(t *testing.T) {
	t.Parallel()
	st, db := openSQLitePath(t)
	h := &held{Inserter: st, entered: make(chan struct{}), release: make(chan struct{})}
	s := newService(t, Config{Lanes: []LaneConfig{{Table: "readings", Capacity: 1000}}, Tables: tablesOf(t, st), Inserter: h,
		FlushInterval: time.Hour, BatchSize: 10, MaxBatchSize: 40})
	total := ingest(t, s, "readings", readingRows("a", 0, 10)).Accepted
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first batch was not inserted within 10 s")
	}
	for i := range 20 {
		total += ingest(t, s, "readings", readingRows("a", 10+i*10, 10)).Accepted
	}
	close(h.release)
	eventually(t, 10*time.Second, "every row in the table", func() bool { return count(t, db, `select count(*) from readings`) == total })
	if n := count(t, db, `select count(distinct seq) from readings`); n != total {
		t.Fatalf("%d distinct rows of %d", n, total)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	largest := 0
	for _, n := range h.sizes {
		largest = max(largest, n)
	}
	if h.sizes[0] != 10 || largest != 40 {
		t.Fatalf("transactions of %v rows: want the first of 10, then up to 40 while behind", h.sizes)
	}
}

// TestLaneSpillAndReplay: while the database is unreachable, batches go to
// the spill files and intake never waits; when it answers again the files
// are replayed, in order, and every sample is in the table exactly once.
func TestLaneSpillAndReplay(t *testing.T) {
	t.Parallel()
	st, db := openSQLitePath(t)
	f := &flaky{Inserter: st}
	f.down.Store(true)
	dir := t.TempDir()
	s := newService(t, Config{Lanes: []LaneConfig{{Table: "readings", Capacity: 1000}}, Tables: tablesOf(t, st), Inserter: f,
		Dir: dir, FlushInterval: 5 * time.Millisecond, BatchSize: 50, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	accepted, dropped := 0, 0
	for i := range 40 {
		t0 := time.Now()
		rc := ingest(t, s, "readings", readingRows("a", i*25, 25))
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("Ingest took %v while the database was down", d)
		}
		accepted += rc.Accepted
		dropped += rc.Dropped
		eventually(t, 10*time.Second, "the writer to move the ring's rows to disk", func() bool {
			return laneStatus(s, "readings").CurrentSize == 0
		})
	}
	eventually(t, 10*time.Second, "everything spilled", func() bool {
		ls := laneStatus(s, "readings")
		return ls.CurrentSize == 0 && ls.Writer.SpillRowsPending == int64(accepted-dropped)
	})
	ls := laneStatus(s, "readings")
	if ls.Writer.State != "spilling" || ls.Writer.SpillFiles == 0 || ls.Writer.Errors == 0 || ls.Writer.RowsWritten != 0 {
		t.Fatalf("while down: %+v", ls.Writer)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "readings", "*.csv")); len(m) == 0 {
		t.Fatal("no spill file on disk")
	}
	h := s.Health()
	if h.Status != "degraded" || !strings.Contains(h.Reason, "database unreachable") {
		t.Fatalf("health while down: %+v", h)
	}

	f.down.Store(false)
	// Samples keep coming while the spill replays.
	for i := 40; i < 60; i++ {
		rc := ingest(t, s, "readings", readingRows("a", i*25, 25))
		accepted += rc.Accepted
		dropped += rc.Dropped
	}
	want := accepted - dropped - int(laneStatus(s, "readings").Writer.SpillRowsDropped)
	eventually(t, 20*time.Second, "replayed", func() bool {
		ls := laneStatus(s, "readings")
		return ls.Writer.SpillRowsPending == 0 && ls.CurrentSize == 0 && count(t, db, `select count(*) from readings`) == want
	})
	if n := count(t, db, `select count(distinct seq) from readings`); n != want {
		t.Fatalf("%d distinct samples for %d rows: a sample landed twice", n, want)
	}
	// In the order taken.
	if n := count(t, db, `select count(*) from (select seq, lag(seq) over (order by rowid) as prev from readings) where prev > seq`); n != 0 {
		t.Fatalf("%d rows out of order", n)
	}
	ls = laneStatus(s, "readings")
	if ls.Writer.State != "writing" || ls.Writer.RowsReplayed == 0 || ls.Writer.SpillFiles != 0 {
		t.Fatalf("after replay: %+v", ls.Writer)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "readings", "*")); len(m) != 0 {
		t.Fatalf("spill files left: %v", m)
	}
	if h := s.Health(); h.Status != "healthy" {
		t.Fatalf("health after replay: %+v", h)
	}
}

// TestStopFlushes: Stop writes what the ring holds at once, without
// waiting for FlushInterval.
func TestStopFlushes(t *testing.T) {
	t.Parallel()
	st, db := openSQLitePath(t)
	s := newService(t, Config{Lanes: []LaneConfig{{Table: "readings"}}, Tables: tablesOf(t, st), Inserter: st, FlushInterval: time.Hour})
	ingest(t, s, "readings", readingRows("a", 0, 123))
	s.Stop()
	if n := count(t, db, `select count(*) from readings`); n != 123 {
		t.Fatalf("%d rows after Stop, want 123", n)
	}
}

// TestRestartReplays: Stop with the database down leaves the ring in the
// spill files; the next start replays them.
func TestRestartReplays(t *testing.T) {
	t.Parallel()
	st, db := openSQLitePath(t)
	dir := t.TempDir()
	f := &flaky{Inserter: st}
	f.down.Store(true)
	cfg := Config{Lanes: []LaneConfig{{Table: "readings"}}, Tables: tablesOf(t, st), Inserter: f, Dir: dir,
		FlushInterval: time.Hour, StopTimeout: time.Second}
	s := newService(t, cfg)
	ingest(t, s, "readings", readingRows("a", 0, 700))
	s.Stop()
	if m, _ := filepath.Glob(filepath.Join(dir, "readings", "*.csv")); len(m) == 0 {
		t.Fatal("Stop with the database down spilled nothing")
	}
	if n := count(t, db, `select count(*) from readings`); n != 0 {
		t.Fatalf("%d rows written while down", n)
	}
	cfg.Inserter = st
	cfg.FlushInterval = 10 * time.Millisecond
	s2 := newService(t, cfg)
	eventually(t, 10*time.Second, "replayed after restart", func() bool { return count(t, db, `select count(*) from readings`) == 700 })
	eventually(t, 5*time.Second, "spill files removed", func() bool { return laneStatus(s2, "readings").Writer.SpillFiles == 0 })
}

// TestLaneShapes: rows that omit a column the database fills are written
// in their own statement, in one flush.
func TestLaneShapes(t *testing.T) {
	t.Parallel()
	st, db := openSQLitePath(t, `CREATE TABLE IF NOT EXISTS events (n integer PRIMARY KEY, kind text NOT NULL, v real);`)
	s := newService(t, Config{Lanes: []LaneConfig{{Table: "events"}}, Tables: tablesOf(t, st), Inserter: st, FlushInterval: time.Hour})
	ingest(t, s, "events", []map[string]any{{"kind": "a"}, {"n": json.Number("100"), "kind": "b"}, {"kind": "c", "v": 1.5}})
	s.Stop()
	if n := count(t, db, `select count(*) from events`); n != 3 {
		t.Fatalf("%d rows", n)
	}
	if n := count(t, db, `select count(*) from events where n = 100 and kind = 'b'`); n != 1 {
		t.Fatal("the row naming its key lost it")
	}
}

// TestSQLiteBulk exercises the SQLite bulk path directly: chunks over the
// bind-variable limit, a refused row in a later chunk, a row whose
// constraint rolls back the whole transaction, and a cancelled context.
func TestSQLiteBulk(t *testing.T) {
	t.Parallel()
	st, db := openSQLitePath(t, `CREATE TABLE IF NOT EXISTS strict_codes (code text PRIMARY KEY, n integer UNIQUE ON CONFLICT ROLLBACK);`)
	tables := tablesOf(t, st)
	ctx := context.Background()

	readings, _ := tables("readings")
	cols := []string{"id", "sensor", "seq", "value", "meta", "taken_at"}
	rows := make([][]any, 7000) // 42,000 values: two statements
	for i := range rows {
		rows[i] = []any{fmt.Sprintf("00000000-0000-7000-8000-%012d", i), "s", int64(i), float64(i), json.RawMessage(`{}`), "2026-11-23T21:00:00.000000000Z"}
	}
	rows[6500][3] = -2000.0  // refused by the CHECK, in the second chunk
	rows[10][0] = rows[9][0] // a duplicate key, in the first
	rejected, err := st.InsertRows(ctx, readings, cols, rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(rejected) != 2 || rejected[6500] == nil || rejected[10] == nil {
		t.Fatalf("rejected %v", rejected)
	}
	if n := count(t, db, `select count(*) from readings`); n != 6998 {
		t.Fatalf("%d rows, want 6998", n)
	}

	codes, _ := tables("strict_codes")
	rejected, err = st.InsertRows(ctx, codes, []string{"code", "n"}, [][]any{{"a", int64(1)}, {"b", int64(2)}, {"c", int64(1)}, {"d", int64(4)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rejected) != 1 || rejected[2] == nil {
		t.Fatalf("rejected %v", rejected)
	}
	if n := count(t, db, `select count(*) from strict_codes`); n != 3 {
		t.Fatalf("%d rows, want 3 (a, b, d)", n)
	}

	// A value SQLite cannot store is the row's fault, found before the
	// database sees it.
	rejected, err = st.InsertRows(ctx, codes, []string{"code", "n"}, [][]any{{"e", struct{}{}}, {"f", int64(6)}})
	if err != nil || len(rejected) != 1 || rejected[0] == nil {
		t.Fatalf("unbindable value: %v %v", rejected, err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = st.InsertRows(cancelled, codes, []string{"code", "n"}, [][]any{{"x", int64(9)}})
	if err == nil || !errors.Is(err, context.Canceled) || !sqlite.IsTransient(err) {
		t.Fatalf("cancelled: %v", err)
	}
	if n := count(t, db, `select count(*) from strict_codes`); n != 4 {
		t.Fatalf("a cancelled insert wrote: %d rows", n)
	}
}

// TestLaneSpillCap: an outage longer than the spill holds drops the oldest
// files, and counts them; every sample not counted is written once.
func TestLaneSpillCap(t *testing.T) {
	t.Parallel()
	st, db := openSQLitePath(t)
	f := &flaky{Inserter: st}
	f.down.Store(true)
	s := newService(t, Config{Lanes: []LaneConfig{{Table: "readings", Capacity: 5000}}, Tables: tablesOf(t, st), Inserter: f,
		FlushInterval: 5 * time.Millisecond, BatchSize: 100, SpillMaxFileBytes: 16 << 10, SpillMaxFiles: 3,
		RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	accepted := 0
	for i := range 30 {
		accepted += ingest(t, s, "readings", readingRows("a", i*100, 100)).Accepted
		eventually(t, 5*time.Second, "batch spilled", func() bool { return laneStatus(s, "readings").CurrentSize == 0 })
	}
	ls := laneStatus(s, "readings")
	if ls.Writer.SpillRowsDropped == 0 || ls.Writer.SpillFiles > 3 {
		t.Fatalf("cap not applied: %+v", ls.Writer)
	}
	f.down.Store(false)
	eventually(t, 10*time.Second, "replayed", func() bool { return laneStatus(s, "readings").Writer.SpillRowsPending == 0 })
	ls = laneStatus(s, "readings")
	want := accepted - int(ls.RowsDropped)
	if n := count(t, db, `select count(*) from readings`); n != want || ls.RowsDropped != ls.Writer.SpillRowsDropped {
		t.Fatalf("%d rows, want %d (accepted %d, dropped %d)", n, want, accepted, ls.RowsDropped)
	}
	if n := count(t, db, `select count(distinct seq) from readings`); n != want {
		t.Fatalf("%d distinct samples for %d rows", n, want)
	}
	// The newest samples survived, the oldest went.
	if n := count(t, db, `select count(*) from readings where seq = ?`, accepted-1); n != 1 {
		t.Fatal("the newest sample is missing")
	}
}

// TestSpillFailureIsUnhealthy: when the spill cannot take a batch, the
// rows are counted as dropped and health says samples are being lost.
func TestSpillFailureIsUnhealthy(t *testing.T) {
	t.Parallel()
	st, _ := openSQLitePath(t)
	f := &flaky{Inserter: st}
	f.down.Store(true)
	dir := t.TempDir()
	s := newService(t, Config{Lanes: []LaneConfig{{Table: "readings"}}, Tables: tablesOf(t, st), Inserter: f, Dir: dir,
		FlushInterval: 5 * time.Millisecond})
	// The table's spill directory becomes a file: no spill file can be made.
	if err := os.RemoveAll(filepath.Join(dir, "readings")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "readings"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ingest(t, s, "readings", readingRows("a", 0, 10))
	eventually(t, 5*time.Second, "spill failure counted", func() bool { return laneStatus(s, "readings").Writer.SpillRowsDropped == 10 })
	if h := s.Health(); h.Status != "unhealthy" || !strings.Contains(h.Reason, "samples are being lost") {
		t.Fatalf("health %+v", h)
	}
	if ls := laneStatus(s, "readings"); ls.RowsDropped != 10 || ls.Writer.SpillLastError == "" {
		t.Fatalf("status %+v", ls)
	}
}
