package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/storetest"
	"github.com/spoolgw/spool/internal/txn"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "spool.db"), options{busyTimeout: BusyTimeout})
	})
}

func openTest(t *testing.T, path string, opt options) *Store {
	t.Helper()
	s, err := open(t.Context(), path, slog.New(slog.DiscardHandler), opt)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

// openOther opens a second connection pool on the store's file, behind the
// store's back; it is closed at the end.
func openOther(t *testing.T, path string) *sql.DB {
	t.Helper()
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	return other
}

// setup opens a store with the suite's tables; it is closed at the end.
func setup(t *testing.T, opt options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openTest(t, path, opt)
	t.Cleanup(func() { s.Close() })
	if err := s.Exec(t.Context(), storetest.Schema); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	return s, path
}

func TestMigrationsIdempotent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "spool.db")
	for range 3 {
		s := openTest(t, path, options{busyTimeout: BusyTimeout})
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("migrate again: %v", err)
		}
		var n, max int
		if err := s.rdb.QueryRowContext(t.Context(), `select count(*), max(version) from spool_migrations`).Scan(&n, &max); err != nil {
			t.Fatal(err)
		}
		if n != len(migrations) || max != migrations[len(migrations)-1].version {
			t.Fatalf("spool_migrations holds %d rows up to %d, want %d", n, max, len(migrations))
		}
		var mode string
		if err := s.rdb.QueryRowContext(t.Context(), `pragma journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			t.Fatalf("journal mode %q, %v; want wal", mode, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
	}
}

// TestErrorCodes checks the SQLite code names that dead letters carry.
func TestErrorCodes(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, options{busyTimeout: BusyTimeout})
	ctx := t.Context()
	taken := txn.NewID()
	if _, err := s.ApplyBatch(ctx, []*txn.Transaction{obsTx(taken, "code", "taken")}, nil); err != nil {
		t.Fatal(err)
	}
	frame := txn.NewID()
	cases := []struct {
		tx   *txn.Transaction
		code string
	}{
		{obsTx(txn.NewID(), "code", "taken"), "SQLITE_CONSTRAINT_UNIQUE"},
		{obsTx(taken), "SQLITE_CONSTRAINT_PRIMARYKEY"},
		{&txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "obs", ID: frame,
			Values: map[string]any{"id": frame}}}}, "SQLITE_CONSTRAINT_NOTNULL"},
		{&txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "frames", ID: frame,
			Values: map[string]any{"id": frame, "obs_id": txn.NewID()}}}}, "SQLITE_CONSTRAINT_FOREIGNKEY"},
	}
	for _, c := range cases {
		out, err := s.ApplyBatch(ctx, []*txn.Transaction{c.tx}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ae *store.ApplyError
		if !errors.As(out[0].Err, &ae) || ae.Code != c.code {
			t.Errorf("error %v, want code %s", out[0].Err, c.code)
		}
	}
}

func obsTx(id string, kv ...string) *txn.Transaction {
	v := map[string]any{"id": id, "target": "M31"}
	for i := 0; i+1 < len(kv); i += 2 {
		v[kv[i]] = kv[i+1]
	}
	return &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "obs", ID: id, Values: v}}}
}

// TestBusy holds the write lock from a second connection: the batch fails
// with SQLITE_BUSY after the busy timeout, as a transient error, and applies
// once the lock is gone.
func TestBusy(t *testing.T) {
	t.Parallel()
	s, path := setup(t, options{busyTimeout: 50 * time.Millisecond})
	ctx := t.Context()
	other := openOther(t, path)
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "begin immediate"); err != nil {
		t.Fatal(err)
	}
	id := txn.NewID()
	batch := []*txn.Transaction{obsTx(id)}
	_, err = s.ApplyBatch(ctx, batch, nil)
	var se *sqlite.Error
	if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY {
		t.Fatalf("apply under a held lock: %v, want SQLITE_BUSY", err)
	}
	if code, permanent := classify(ctx, err); permanent {
		t.Fatalf("SQLITE_BUSY (%s) classified permanent", code)
	}
	if _, err := conn.ExecContext(ctx, "rollback"); err != nil {
		t.Fatal(err)
	}
	out, err := s.ApplyBatch(ctx, batch, nil)
	if err != nil || out[0].Err != nil || out[0].Duplicate {
		t.Fatalf("apply after the lock: %+v, %v", out, err)
	}
}

// TestCatalogRefresh writes to a table created behind the store's back: the
// store reads the catalog again when it meets a table or column it does not
// know.
func TestCatalogRefresh(t *testing.T) {
	t.Parallel()
	s, path := setup(t, options{busyTimeout: BusyTimeout})
	ctx := t.Context()
	other := openOther(t, path)
	if _, err := other.ExecContext(ctx, `create table "odd ""name""" (id text primary key, v integer); alter table obs add column seeing real`); err != nil {
		t.Fatal(err)
	}
	id := txn.NewID()
	batch := []*txn.Transaction{
		{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: `odd "name"`, ID: "k", Values: map[string]any{"id": "k", "v": int64(3)}}}},
		{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "obs", ID: id, Values: map[string]any{"id": id, "target": "M1", "seeing": 0.8}}}},
		{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "nope", ID: "x", Values: map[string]any{"id": "x"}}}},
	}
	out, err := s.ApplyBatch(ctx, batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Err != nil || out[1].Err != nil {
		t.Fatalf("outcomes %+v, want the first two applied", out)
	}
	if !errors.Is(out[2].Err, schema.ErrUnknownTable) {
		t.Fatalf("unknown table: %v, want schema.ErrUnknownTable", out[2].Err)
	}
	cat, err := s.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	odd, err := cat.Table(`odd "name"`)
	if err != nil {
		t.Fatal(err)
	}
	row, ok, err := s.Get(ctx, odd, "k")
	if err != nil || !ok || row["v"] != int64(3) {
		t.Fatalf("get: %v, %v, %v", row, ok, err)
	}
}

// TestReadForms reads values SQLite itself wrote (CURRENT_TIMESTAMP, integer
// booleans, numeric text) in their canonical forms.
func TestReadForms(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, options{busyTimeout: BusyTimeout})
	ctx := t.Context()
	if err := s.Exec(ctx, `create table stamps (id integer primary key, at timestamp default current_timestamp, at2 datetime, n numeric, ok bool);
		insert into stamps (id, at2, n, ok) values (1, '2024-03-04 05:06:07', '7.25', 1)`); err != nil {
		t.Fatal(err)
	}
	cat, err := s.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := cat.Table("stamps")
	row, ok, err := s.Get(ctx, tb, "1")
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	at, isString := row["at"].(string)
	if _, err := time.Parse(schema.TimeFormat, at); !isString || err != nil {
		t.Errorf("at = %#v, want canonical timestamp text", row["at"])
	}
	if row["at2"] != "2024-03-04T05:06:07.000000000Z" || fmt.Sprint(row["n"]) != "7.25" || row["ok"] != true {
		t.Errorf("row %#v", row)
	}
}

func BenchmarkApplyBatch(b *testing.B) {
	const batchSize = 500
	path := filepath.Join(b.TempDir(), "spool.db")
	s, err := Open(context.Background(), path, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Exec(context.Background(), storetest.Schema); err != nil {
		b.Fatal(err)
	}
	rows := 0
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		batch := make([]*txn.Transaction, batchSize)
		for i := range batch {
			id := txn.NewID()
			batch[i] = &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "obs", ID: id,
				Values: map[string]any{"id": id, "target": "M31", "exposure": 30.5, "frames": int64(i), "done": true,
					"started_at": "2024-05-06T07:08:09.123456000Z"}}}}
		}
		b.StartTimer()
		out, err := s.ApplyBatch(context.Background(), batch, nil)
		if err != nil {
			b.Fatal(err)
		}
		if out[0].Err != nil {
			b.Fatal(out[0].Err)
		}
		rows += batchSize
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

// TestClosed: a closed store fails batches with an error (transient), never
// with a dead letter.
func TestClosed(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, options{busyTimeout: BusyTimeout})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := s.ApplyBatch(t.Context(), []*txn.Transaction{obsTx(txn.NewID())}, nil); err == nil {
		t.Fatalf("apply on a closed store: %+v, no error", out)
	}
}

// TestStatementsKeptAcrossBatches: batches of an odd size reuse the
// statements the first prepared (multi-row inserts of power-of-two sizes),
// every row lands, and kept statements follow the table when it changes
// behind the store's back.
func TestStatementsKeptAcrossBatches(t *testing.T) {
	t.Parallel()
	s, path := setup(t, options{busyTimeout: BusyTimeout})
	ctx := t.Context()
	other := openOther(t, path)
	total := 0
	apply := func(kv ...string) {
		t.Helper()
		batch := make([]*txn.Transaction, 37) // 32 + 4 + 1
		for i := range batch {
			batch[i] = obsTx(txn.NewID(), kv...)
		}
		storetest.MustApply(t, s, batch...)
		total += len(batch)
		var n int
		if err := other.QueryRowContext(ctx, "select count(*) from obs").Scan(&n); err != nil || n != total {
			t.Fatalf("%d rows in obs (%v), want %d", n, err, total)
		}
	}
	apply()
	kept := len(s.stmts.stmts)
	if kept == 0 {
		t.Fatal("no statement kept after a batch")
	}
	apply()
	if len(s.stmts.stmts) != kept {
		t.Fatalf("%d statements kept after a second batch of the same shape, want the first's %d", len(s.stmts.stmts), kept)
	}
	if _, err := other.ExecContext(ctx, "alter table obs add column note text"); err != nil {
		t.Fatal(err)
	}
	apply()
	apply("note", "x")
	if _, err := other.ExecContext(ctx, "delete from obs; drop table obs; create table obs (id text primary key, target text)"); err != nil {
		t.Fatal(err)
	}
	total = 0
	apply()
}

// TestBulkStatementsKept: the telemetry lane's bulk inserts reuse the
// statements the first call prepared (a full batch one statement, a
// partial one power-of-two sizes), every row lands, and a refused row is
// still left out alone.
func TestBulkStatementsKept(t *testing.T) {
	t.Parallel()
	s, path := setup(t, options{busyTimeout: BusyTimeout})
	ctx := t.Context()
	cat, err := s.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := cat.Table("obs")
	if err != nil {
		t.Fatal(err)
	}
	other := openOther(t, path)
	total := 0
	insert := func(n int, bad int) {
		t.Helper()
		rows := make([][]any, n)
		for i := range rows {
			rows[i] = []any{txn.NewID(), "M31"}
		}
		if bad >= 0 {
			rows[bad][1] = nil // target is NOT NULL
		}
		rejected, err := s.InsertRows(ctx, tbl, []string{"id", "target"}, rows)
		if err != nil {
			t.Fatal(err)
		}
		if bad >= 0 && (len(rejected) != 1 || rejected[bad] == nil) {
			t.Fatalf("rejected %v, want row %d alone", rejected, bad)
		}
		if bad < 0 && len(rejected) != 0 {
			t.Fatalf("rejected %v, want none", rejected)
		}
		total += n - len(rejected)
		var got int
		if err := other.QueryRowContext(ctx, "select count(*) from obs").Scan(&got); err != nil || got != total {
			t.Fatalf("%d rows in obs (%v), want %d", got, err, total)
		}
	}
	insert(maxGroupRows, -1)
	insert(37, -1) // 32 + 4 + 1
	kept := len(s.stmts.stmts)
	if kept != 4 {
		t.Fatalf("%d statements kept after batches of 500 and 37 rows, want 4", kept)
	}
	insert(maxGroupRows, -1)
	insert(37, 5)
	if len(s.stmts.stmts) != kept {
		t.Fatalf("%d statements kept after the same batches again, want %d", len(s.stmts.stmts), kept)
	}
}

// TestStatementCacheBound: past stmtCacheSize texts the oldest statements
// are closed and dropped, and the kept ones still run.
func TestStatementCacheBound(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, options{busyTimeout: BusyTimeout})
	ctx := t.Context()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	text := func(i int) string { return fmt.Sprintf("select %d", i) }
	for i := range stmtCacheSize + 10 {
		s.stmts.miss(text(i))
	}
	s.stmts.fill(ctx)
	if n := len(s.stmts.stmts); n != stmtCacheSize {
		t.Fatalf("%d statements kept, want %d", n, stmtCacheSize)
	}
	for i := range 10 {
		if s.stmts.get(text(i)) != nil {
			t.Fatalf("statement %d of the oldest ten still kept", i)
		}
	}
	var got int
	if err := s.stmts.get(text(stmtCacheSize + 9)).QueryRowContext(ctx).Scan(&got); err != nil || got != stmtCacheSize+9 {
		t.Fatalf("the newest kept statement returned %d, %v", got, err)
	}
	s.stmts.reset()
	if len(s.stmts.stmts) != 0 || len(s.stmts.order) != 0 {
		t.Fatal("reset left statements behind")
	}
}

// BenchmarkPruneApplied: one pruning statement of 10,000 records, which
// holds SQLite's one writer for its time.
func BenchmarkPruneApplied(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "spool.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchPruneApplied(b, s)
}
