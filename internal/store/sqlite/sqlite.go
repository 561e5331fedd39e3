package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/sqlgen"
)

// Defaults of the store.
const (
	// BusyTimeout is how long a statement waits for a lock another
	// connection holds (a checkpoint, an operator's sqlite3 shell) before
	// it fails with SQLITE_BUSY, a transient error. Five seconds rides out
	// any checkpoint; longer waits are the applier's backoff's business.
	BusyTimeout = 5 * time.Second
	// ReadConns bounds the read pool. WAL readers do not block each other
	// or the writer; four keeps a 2-core machine busy without piling up
	// page caches.
	ReadConns = 4
)

var _ store.Store = (*Store)(nil)

// Store is a SQLite database spool drains into and reads from. It is safe
// for concurrent use.
type Store struct {
	path   string
	logger *slog.Logger
	// wdb is the write pool: exactly one connection, BEGIN IMMEDIATE.
	wdb *sql.DB
	// rdb is the read pool: query-only connections.
	rdb *sql.DB
	// writeMu serialises batches, so a batch never waits inside database/sql
	// for the one write connection while holding nothing.
	writeMu sync.Mutex
	// stmts keeps the batches' statements prepared; under writeMu.
	stmts *stmtCache

	cat atomic.Pointer[schema.Catalog]
	// noCoalesce turns write coalescing off (the benchmark's baseline).
	noCoalesce bool

	closeOnce sync.Once
	closeErr  error
}

// options are the knobs tests turn; Open uses the defaults.
type options struct {
	busyTimeout time.Duration
}

// Open opens (creating if needed) the SQLite database file at path, applies
// spool's migrations and reads the catalog. path must be a file: the write
// and read pools are separate connections, which an in-memory database
// cannot share.
func Open(ctx context.Context, path string, logger *slog.Logger) (*Store, error) {
	return open(ctx, path, logger, options{busyTimeout: BusyTimeout})
}

func open(ctx context.Context, path string, logger *slog.Logger, opt options) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open sqlite: path %q must be a plain file path", path)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)",
		opt.busyTimeout.Milliseconds())
	wdb, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	// The write connection goes first: it switches the file to WAL, which
	// the read connections then find.
	if err := wdb.PingContext(ctx); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	rdb, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("open sqlite %s for reading: %w", path, err)
	}
	rdb.SetMaxOpenConns(ReadConns)
	rdb.SetMaxIdleConns(ReadConns)
	s := &Store{path: path, logger: logger, wdb: wdb, rdb: rdb, stmts: newStmtCache(wdb)}
	err = s.Migrate(ctx)
	if err == nil {
		_, err = s.Catalog(ctx)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Exec runs the operator's SQL text, which may hold several statements
// (each committed on its own unless the text says BEGIN), on the write
// connection, then reads the catalog again.
func (s *Store) Exec(ctx context.Context, text string) error {
	s.writeMu.Lock()
	_, err := s.wdb.ExecContext(ctx, text)
	s.stmts.reset() // what they name may have changed or gone
	s.writeMu.Unlock()
	// Statements before a failing one have run: read the catalog either way.
	_, catErr := s.Catalog(ctx)
	if err != nil {
		return fmt.Errorf("exec sql: %w", err)
	}
	return catErr
}

// Close closes both pools. It is safe to call twice.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.writeMu.Lock()
		s.stmts.reset()
		s.writeMu.Unlock()
		s.closeErr = errors.Join(s.rdb.Close(), s.wdb.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("close sqlite %s: %w", s.path, s.closeErr)
		}
	})
	return s.closeErr
}

// gen builds the store's statements: SQLite's syntax, every value a
// parameter in the form SQLite stores it (see bind).
var gen = &sqlgen.Builder{
	Dialect: sqlgen.SQLite,
	Bind:    func(_ *schema.Column, v any) (any, error) { return bind(v) },
}

// Get reads one row of t by the text of its key.
func (s *Store) Get(ctx context.Context, t *schema.Table, key string) (schema.Row, bool, error) {
	return gen.Get(ctx, s.scan, gen.Ident(t.Name), t, key)
}

// Query reads the rows matching q in q's order, at most limit of them (no
// limit if limit is negative). Ascending order puts nulls first and
// descending order last, as schema.Compare does.
func (s *Store) Query(ctx context.Context, q *query.Query, limit int) ([]schema.Row, error) {
	return gen.Query(ctx, s.scan, gen.Ident(q.Table.Name), q, limit)
}
