package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/sqlgen"
)

// Defaults of the store.
const (
	// RollbackTimeout bounds a rollback after a failed attempt. It runs on a
	// context detached from the caller's (which may be what was cancelled),
	// so a connection that can still be saved goes back to the pool clean;
	// one that cannot is closed by the pool.
	RollbackTimeout = 5 * time.Second
)

// sessionParams are set on every connection. UTC and ISO make timestamp
// text unambiguous both ways; extra_float_digits=3 makes float text exact
// on every server version; hex is the bytea text form decode expects.
// idle_in_transaction_session_timeout ends a transaction its applier left
// open and silent (a process paused by SIGSTOP, a frozen VM): spool never
// idles inside a transaction for more than the moments between two
// pipelines, and a paused former holder must not keep the fence row and
// the rows it wrote locked from the applier that took over its lease.
var sessionParams = map[string]string{
	"idle_in_transaction_session_timeout": "5s",
	"timezone":                            "UTC",
	"datestyle":                           "ISO, YMD",
	"extra_float_digits":                  "3",
	"bytea_output":                        "hex",
}

var _ store.Store = (*Store)(nil)

// Store is a PostgreSQL database spool drains into and reads from. It is
// safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger

	// cat is the catalog last read, with the schema its tables are in.
	cat atomic.Pointer[catalog]
	// stale is set when the database said a table or column does not
	// exist: the next lookup reads the catalog again.
	stale atomic.Bool
	// noCoalesce turns write coalescing off (the benchmark's baseline).
	noCoalesce bool
	// noLean makes the fast path look up earlier runs in a round trip of
	// its own, before it asks the gate (tests that act from the gate on
	// a transaction already begun).
	noLean bool

	closeOnce sync.Once
}

// Open connects to the database at url (a PostgreSQL URL or key=value
// string; pool settings such as pool_max_conns are read from it too),
// applies spool's migrations and reads the catalog.
func Open(ctx context.Context, url string, logger *slog.Logger) (*Store, error) {
	return open(ctx, url, logger, true)
}

func open(ctx context.Context, url string, logger *slog.Logger, migrate bool) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if cfg.ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeSimpleProtocol {
		return nil, errors.New("open postgres: default_query_exec_mode=simple_protocol is not supported: spool binds every value with the extended protocol")
	}
	for k, v := range sessionParams {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "spool"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	s := &Store{pool: pool, logger: logger}
	if err := s.start(ctx, migrate); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// start checks that the database answers, applies spool's migrations if
// migrate is set, and reads the catalog.
func (s *Store) start(ctx context.Context, migrate bool) error {
	if err := s.Ping(ctx); err != nil {
		return err
	}
	if migrate {
		if err := s.Migrate(ctx); err != nil {
			return err
		}
	}
	_, err := s.Catalog(ctx)
	return err
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// Exec runs the operator's SQL text, which may hold several statements, on
// one connection with the simple protocol (the one place spool uses it:
// the text is the operator's, never a client's, and carries no values).
// PostgreSQL runs such text as one implicit transaction unless it says
// BEGIN and COMMIT itself. The catalog is read again afterwards.
func (s *Store) Exec(ctx context.Context, text string) error {
	err := s.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		_, err := c.Conn().PgConn().Exec(ctx, text).ReadAll()
		return err
	})
	_, catErr := s.Catalog(ctx)
	if err != nil {
		return fmt.Errorf("exec sql: %w", err)
	}
	return catErr
}

// Close closes the pool, waiting for connections in use to come back. It is
// safe to call twice.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// run executes a statement without parameters with the extended protocol
// (pgx's Exec would send a statement without arguments as a simple query).
func run(ctx context.Context, c *pgx.Conn, sql string) (pgconn.CommandTag, error) {
	return c.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Close()
}

// rollback ends the transaction on c, on a context of its own (see
// RollbackTimeout). If it fails the connection is left in its transaction,
// and the pool closes it on release.
func rollback(ctx context.Context, c *pgx.Conn) {
	if c.PgConn().TxStatus() == 'I' || c.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RollbackTimeout)
	defer cancel()
	_, _ = run(ctx, c, "rollback") //nolint:errcheck // on failure the pool discards the connection
}

// catalog is the catalog last read, the schema its tables live in, and the
// type of each of its columns without a type modifier ("character varying"
// for varchar(20)).
type catalog struct {
	cat    *schema.Catalog
	schema string
	types  map[*schema.Column]string
}

// tableIdent quotes the name of a table of the catalog, qualified with the
// schema the catalog was read from.
func (s *Store) tableIdent(name string) string {
	if c := s.cat.Load(); c != nil {
		return gen.Table(c.schema, name)
	}
	return gen.Ident(name)
}

// ident quotes the name of a column.
func ident(name string) string { return sqlgen.Postgres.Ident(name) }

// gen builds the store's statements: PostgreSQL's syntax, every value a
// parameter in its text form (see bind), read back as text (selectExpr),
// and a filter's value cast to its column kind's base type (castType).
var gen = &sqlgen.Builder{
	Dialect:   sqlgen.Postgres,
	Bind:      func(c *schema.Column, v any) (any, error) { return bind(c.Kind, c.Elem, v) },
	Select:    selectExpr,
	Compare:   compareExpr,
	Cast:      castType,
	BindArray: func(c *schema.Column, values []any) (any, error) { return arrayLiteral(c.Kind, values) },
}

// Get reads one row of t by the text of its key.
func (s *Store) Get(ctx context.Context, t *schema.Table, key string) (schema.Row, bool, error) {
	return gen.Get(ctx, s.scan, s.tableIdent(t.Name), t, key)
}

// Query reads the rows matching q in q's order, at most limit of them (no
// limit if limit is negative). Ascending order puts nulls first and
// descending order last, as schema.Compare does.
func (s *Store) Query(ctx context.Context, q *query.Query, limit int) ([]schema.Row, error) {
	return gen.Query(ctx, s.scan, s.tableIdent(q.Table.Name), q, limit)
}
