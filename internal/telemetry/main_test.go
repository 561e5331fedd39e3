package telemetry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/leakcheck"
	"github.com/spoolgw/spool/internal/poll"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store/sqlite"
	"github.com/spoolgw/spool/internal/testservers"
)

// pg is the PostgreSQL the integration tests start on first use (see
// needPostgres); TestMain stops it.
var (
	pg     *testservers.Postgres
	pgErr  error
	pgOnce sync.Once
)

// needPostgres starts the throwaway PostgreSQL once per package run, or
// skips (fails with SPOOL_REQUIRE_SERVERS=1) when it is not installed.
func needPostgres(t testing.TB) *testservers.Postgres {
	t.Helper()
	pgOnce.Do(func() {
		dir, err := testservers.TempDir("spool-telemetry-pg-")
		if err != nil {
			pgErr = err
			return
		}
		pg, pgErr = testservers.StartPostgres(dir)
		if pgErr != nil {
			os.RemoveAll(dir)
		}
	})
	testservers.Need(t, pgErr)
	return pg
}

// TestMain fails the package if a test leaves a writer or a database
// connection running: every Service must be stopped, every store closed.
func TestMain(m *testing.M) {
	leakcheck.Main(m, func() {
		if pg != nil {
			if err := pg.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			os.RemoveAll(pg.Dir)
		}
	})
}

// readingsSQL is the table the tests sample into; it reads the same in
// SQLite and PostgreSQL. The CHECK lets a test send a row the database
// refuses; taken_at has a default spool fills in at intake.
const readingsSQL = `
CREATE TABLE IF NOT EXISTS readings (
    id       uuid PRIMARY KEY,
    sensor   text NOT NULL,
    seq      integer NOT NULL,
    value    double precision CHECK (value IS NULL OR value > -1000),
    meta     jsonb,
    taken_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP
);
`

// openSQLite opens a real SQLite store in a temporary directory with the
// readings table (and more SQL if given); it is closed at the end.
func openSQLite(t testing.TB, more ...string) *sqlite.Store {
	t.Helper()
	st, _ := openSQLitePath(t, more...)
	return st
}

// openSQLitePath is openSQLite that also opens a plain database/sql
// connection to the same file, for the test's own queries.
func openSQLitePath(t testing.TB, more ...string) (*sqlite.Store, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spool.db")
	st, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Exec(context.Background(), readingsSQL+strings.Join(more, "\n")); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return st, db
}

// catalogStore is what the tests need of a store: its catalog.
type catalogStore interface {
	Catalog(ctx context.Context) (*schema.Catalog, error)
}

func tablesOf(t testing.TB, st catalogStore) func(string) (*schema.Table, error) {
	t.Helper()
	cat, err := st.Catalog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cat.Table
}

// newService builds and starts a Service; it is stopped at the end.
func newService(t testing.TB, cfg Config) *Service {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// errDown is the error of a database made unreachable by flaky.
var errDown = errors.New("database unreachable (test)")

// flaky wraps a real Inserter: while down, every call fails with a
// transient error before reaching the database.
type flaky struct {
	Inserter
	down  atomic.Bool
	calls atomic.Int64
}

func (f *flaky) InsertRows(ctx context.Context, t *schema.Table, cols []string, rows [][]any) (map[int]error, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return nil, errDown
	}
	return f.Inserter.InsertRows(ctx, t, cols, rows)
}

// memInserter keeps what it is given, for tests of the lane alone.
type memInserter struct {
	mu   sync.Mutex
	rows []map[string]any
	down atomic.Bool
	// refuse, if set, rejects the rows it returns an error for.
	refuse func(row map[string]any) error
}

func (m *memInserter) InsertRows(ctx context.Context, t *schema.Table, cols []string, rows [][]any) (map[int]error, error) {
	if m.down.Load() {
		return nil, errDown
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var rejected map[int]error
	for i, r := range rows {
		row := make(map[string]any, len(cols))
		for j, c := range cols {
			row[c] = r[j]
		}
		if m.refuse != nil {
			if err := m.refuse(row); err != nil {
				if rejected == nil {
					rejected = make(map[int]error)
				}
				rejected[i] = err
				continue
			}
		}
		m.rows = append(m.rows, row)
	}
	return rejected, nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, within, what, cond)
}

// logRecorder is a slog.Handler that keeps the records it is given.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// count returns how many records at level have msg containing substr.
func (h *logRecorder) count(level slog.Level, substr string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Level == level && strings.Contains(r.Message, substr) {
			n++
		}
	}
	return n
}

func (h *logRecorder) attr(level slog.Level, substr, key string) []slog.Value {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Value
	for _, r := range h.records {
		if r.Level == level && strings.Contains(r.Message, substr) {
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == key {
					out = append(out, a.Value)
				}
				return true
			})
		}
	}
	return out
}
