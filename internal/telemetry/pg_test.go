package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spoolgw/spool/internal/store/postgres"
)

var _ Inserter = (*postgres.Store)(nil)

// pgDatabase creates a fresh database on the throwaway primary and opens
// a store on it with the readings table (and more SQL if given); it is
// closed at the end. It returns the database's URL for the test's own
// queries.
func pgDatabase(t testing.TB, more ...string) (*postgres.Store, string) {
	t.Helper()
	p := needPostgres(t)
	var b [8]byte
	rand.Read(b[:])
	name := "tel_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, p.PrimaryURL)
	if err != nil {
		t.Fatalf("connect to the primary: %v", err)
	}
	_, err = admin.Exec(ctx, "create database "+pgx.Identifier{name}.Sanitize(), pgx.QueryExecModeSimpleProtocol)
	admin.Close(ctx)
	if err != nil {
		t.Fatalf("create database: %v", err)
	}
	url, _ := p.DatabaseURLs(name)
	st, err := postgres.Open(ctx, url, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Exec(ctx, readingsSQL+strings.Join(more, "\n")); err != nil {
		t.Fatal(err)
	}
	return st, url
}

// pgCount runs a count query on a connection of its own (the database
// may have been restarted since the last one).
func pgCount(t testing.TB, url, query string) int {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPostgresBulk exercises the PostgreSQL bulk path: values of every
// kind through COPY's text format and back, refused rows (a CHECK, a
// duplicate key, an out-of-range integer) left out of their batch, and a
// deferred foreign key that only the commit refuses.
func TestPostgresBulk(t *testing.T) {
	st, url := pgDatabase(t, `
create table kinds (id uuid primary key, t text, i bigint, r double precision, n numeric, b boolean,
    ts timestamptz, j jsonb, by bytea, a integer[], tags text[]);
create table parent (id integer primary key);
create table child (id integer primary key, parent_id integer references parent deferrable initially deferred);
insert into parent values (1), (2);`)
	ctx := context.Background()
	tables := tablesOf(t, st)

	kinds, _ := tables("kinds")
	cols := []string{"id", "t", "i", "r", "n", "b", "ts", "j", "by", "a", "tags"}
	rows := [][]any{
		{"0190b5a0-0000-7000-8000-000000000001", "tab\there\nnewline \\ back\\slash \\N", int64(-1 << 63), 3.141592653589793,
			json.Number("-12345678901234567890.000001"), true, "2026-11-23T21:00:00.123456000Z",
			json.RawMessage(`{"a":[1,2,{"b":null}],"z":"x\ty"}`), []byte{0, 1, '\\', '\t', 255},
			[]any{int64(1), nil, int64(3)}, []any{`qu"ote`, `back\slash`, "tab\t", nil}},
		{"0190b5a0-0000-7000-8000-000000000002", nil, nil, nil, nil, nil, nil, nil, nil, nil, nil},
	}
	rejected, err := st.InsertRows(ctx, kinds, cols, rows)
	if err != nil || rejected != nil {
		t.Fatalf("insert: %v %v", rejected, err)
	}
	for _, want := range rows {
		got, found, err := st.Get(ctx, kinds, want[0].(string))
		if err != nil || !found {
			t.Fatalf("get %s: %v %v", want[0], found, err)
		}
		for i, c := range cols {
			if !reflect.DeepEqual(got[c], want[i]) {
				t.Errorf("%s: read back %#v, wrote %#v", c, got[c], want[i])
			}
		}
	}

	readings, _ := tables("readings")
	rcols := []string{"id", "sensor", "seq", "value"}
	var rrows [][]any
	for i := range 1000 {
		rrows = append(rrows, []any{fmt.Sprintf("00000000-0000-7000-8000-%012d", i), "s", int64(i), float64(i)})
	}
	rrows[100][3] = -5000.0        // CHECK
	rrows[200][0] = rrows[199][0]  // duplicate key
	rrows[300][2] = int64(1 << 40) // out of range for integer
	rejected, err = st.InsertRows(ctx, readings, rcols, rrows)
	if err != nil {
		t.Fatal(err)
	}
	if len(rejected) != 3 || rejected[100] == nil || rejected[200] == nil || rejected[300] == nil {
		t.Fatalf("rejected %v", rejected)
	}
	if !strings.Contains(rejected[100].Error(), "23514") || !strings.Contains(rejected[200].Error(), "23505") || !strings.Contains(rejected[300].Error(), "22003") {
		t.Fatalf("rejections do not carry the SQLSTATE: %v", rejected)
	}
	if n := pgCount(t, url, `select count(*) from readings`); n != 997 {
		t.Fatalf("%d rows, want 997", n)
	}

	child, _ := tables("child")
	rejected, err = st.InsertRows(ctx, child, []string{"id", "parent_id"}, [][]any{{int64(1), int64(1)}, {int64(2), int64(99)}, {int64(3), int64(2)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rejected) != 1 || rejected[1] == nil {
		t.Fatalf("deferred constraint: rejected %v", rejected)
	}
	if n := pgCount(t, url, `select count(*) from child`); n != 2 {
		t.Fatalf("%d child rows, want 2", n)
	}

	// A value that cannot be bound is the row's fault, found before the
	// database sees it.
	rejected, err = st.InsertRows(ctx, kinds, []string{"id", "by"}, [][]any{
		{"0190b5a0-0000-7000-8000-000000000003", "not bytes"}, {"0190b5a0-0000-7000-8000-000000000004", []byte{1}}})
	if err != nil || len(rejected) != 1 || rejected[0] == nil {
		t.Fatalf("unbindable value: %v %v", rejected, err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := st.InsertRows(cancelled, child, []string{"id", "parent_id"}, [][]any{{int64(9), int64(1)}}); err == nil || !postgres.IsTransient(err) {
		t.Fatalf("cancelled: %v (transient %v)", err, postgres.IsTransient(err))
	}
}

// TestPostgresOutage is the integration test: the database is
// stopped while samples flow; the spill files grow and intake never
// blocks; the database comes back; the spill is replayed; and every sample
// not counted as dropped is in the table exactly once.
func TestPostgresOutage(t *testing.T) {
	st, url := pgDatabase(t)
	p := needPostgres(t)
	dir := t.TempDir()
	s := newService(t, Config{Lanes: []LaneConfig{{Table: "readings", Capacity: 5000}}, Tables: tablesOf(t, st), Inserter: st, Dir: dir,
		FlushInterval: 20 * time.Millisecond, WriteTimeout: 2 * time.Second, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})

	var (
		accepted, dropped atomic.Int64
		maxLatency        atomic.Int64
		seq               int
		stop              = make(chan struct{})
		wg                sync.WaitGroup
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			rows := readingRows("pg", seq, 50)
			seq += 50
			t0 := time.Now()
			rc, err := s.Ingest("readings", rows)
			if d := time.Since(t0); int64(d) > maxLatency.Load() {
				maxLatency.Store(int64(d))
			}
			if err != nil {
				t.Errorf("ingest: %v", err)
				return
			}
			accepted.Add(int64(rc.Accepted))
			dropped.Add(int64(rc.Dropped))
			time.Sleep(2 * time.Millisecond) // the load's pace (~20k samples/s), not a wait
		}
	})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	eventually(t, 10*time.Second, "rows landing", func() bool { return laneStatus(s, "readings").Writer.RowsWritten > 1000 })
	if err := p.StopPrimary(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			p.StartPrimary()
		}
	}()
	eventually(t, 15*time.Second, "spill files growing", func() bool {
		ls := laneStatus(s, "readings")
		return ls.Writer.State == "spilling" && ls.Writer.SpillRowsPending > 5000
	})
	pending := laneStatus(s, "readings").Writer.SpillRowsPending
	eventually(t, 10*time.Second, "spill files still growing", func() bool {
		return laneStatus(s, "readings").Writer.SpillRowsPending > pending+2000
	})
	if ls := laneStatus(s, "readings"); ls.Writer.SpillFiles == 0 || ls.OverflowCount != 0 {
		t.Fatalf("while down: %+v", ls)
	}
	if err := p.StartPrimary(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	eventually(t, 30*time.Second, "replay under way", func() bool { return laneStatus(s, "readings").Writer.RowsReplayed > 0 })
	close(stop)
	wg.Wait()

	eventually(t, 60*time.Second, "spill replayed and ring drained", func() bool {
		ls := laneStatus(s, "readings")
		return ls.Writer.SpillRowsPending == 0 && ls.CurrentSize == 0 && ls.Writer.State == "writing"
	})
	ls := laneStatus(s, "readings")
	// Every sample not counted as dropped is in the table exactly once. A
	// batch whose commit answer was lost with the connection is written
	// again on replay and its rows rejected as duplicates of themselves:
	// rejected, yet present.
	want := int(accepted.Load()) - int(ls.RowsDropped)
	n := pgCount(t, url, `select count(*) from readings`)
	distinct := pgCount(t, url, `select count(distinct seq) from readings`)
	t.Logf("accepted %d, dropped %d (ring %d, spill %d), rejected %d, replayed %d, in table %d; max Ingest latency %v",
		accepted.Load(), ls.RowsDropped, ls.OverflowCount, ls.Writer.SpillRowsDropped, ls.Writer.RowsRejected, ls.Writer.RowsReplayed,
		n, time.Duration(maxLatency.Load()))
	if n != want || distinct != n {
		t.Fatalf("table holds %d rows (%d distinct samples); want %d, each once", n, distinct, want)
	}
	if ls.Writer.SpillRowsDropped != 0 {
		t.Fatalf("spill files dropped samples in an outage they could hold: %+v", ls)
	}
	if d := time.Duration(maxLatency.Load()); d > 500*time.Millisecond {
		t.Fatalf("Ingest blocked for %v", d)
	}
}
