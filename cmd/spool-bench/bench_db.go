package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spoolgw/spool/internal/txn"
)

// obsRow is one row of the observations table as the bench writes it.
type obsRow struct {
	id       string
	target   string
	exposure float64
	meta     string // JSON text
}

// obsRowFor is the row the load generator's i-th write holds.
func obsRowFor(tag string, i int64) obsRow {
	return obsRow{id: txn.NewID(), target: fmt.Sprintf("%s-%d", tag, i), exposure: float64(i % 600), meta: fmt.Sprintf(`{"n":%d}`, i)}
}

// obsRowFromBody is the row a synchronous handler inserts for a request
// body decoded the way spool decodes it.
func obsRowFromBody(v map[string]any) (obsRow, error) {
	target, ok := v["target"].(string)
	if !ok {
		return obsRow{}, fmt.Errorf("target must be a string")
	}
	exp, _ := v["exposure_s"].(float64)
	meta, err := json.Marshal(v["meta"])
	if err != nil {
		return obsRow{}, fmt.Errorf("meta: %w", err)
	}
	return obsRow{id: txn.NewID(), target: target, exposure: exp, meta: string(meta)}, nil
}

// bulk writes observations with db.bulkRows.
func bulk(ctx context.Context, db benchDB, rows []obsRow) error {
	return db.bulkRows(ctx, "observations", []string{"id", "target", "exposure_s", "meta"}, len(rows), func(i int) []any {
		r := rows[i]
		return []any{r.id, r.target, r.exposure, r.meta}
	})
}

// benchDB is the bench's own access to a database: the baselines' writes,
// and counts of what spool wrote.
type benchDB interface {
	exec(ctx context.Context, sql string) error
	// insert writes one row in its own transaction.
	insert(ctx context.Context, r obsRow) error
	// bulkRows writes n rows into table in one transaction with the
	// database's fastest path: COPY (PostgreSQL), one multi-row INSERT
	// (SQLite). row(i) is the i-th row's values, in the order of cols.
	bulkRows(ctx context.Context, table string, cols []string, n int, row func(i int) []any) error
	// count counts the observations whose target starts with prefix.
	count(ctx context.Context, prefix string) (int64, error)
	Close()
}

// benchSQLite is a SQLite file opened with the pragmas spool's store uses,
// one connection (SQLite has one writer).
type benchSQLite struct{ db *sql.DB }

func openBenchSQLite(path string) (*benchSQLite, error) {
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("bench: open sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	return &benchSQLite{db: db}, nil
}

func (s *benchSQLite) exec(ctx context.Context, q string) error {
	if _, err := s.db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("bench: sqlite exec: %w", err)
	}
	return nil
}

func (s *benchSQLite) insert(ctx context.Context, r obsRow) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO observations (id, target, exposure_s, meta) VALUES (?, ?, ?, ?)`, r.id, r.target, r.exposure, r.meta)
	if err != nil {
		return fmt.Errorf("bench: sqlite insert: %w", err)
	}
	return nil
}

func (s *benchSQLite) bulkRows(ctx context.Context, table string, cols []string, n int, row func(int) []any) error {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", table, strings.Join(cols, ", "))
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
	args := make([]any, 0, n*len(cols))
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(one)
		args = append(args, row(i)...)
	}
	if _, err := s.db.ExecContext(ctx, b.String(), args...); err != nil {
		return fmt.Errorf("bench: sqlite multi-row insert: %w", err)
	}
	return nil
}

func (s *benchSQLite) count(ctx context.Context, prefix string) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM observations WHERE target LIKE ? || '%'`, prefix).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("bench: sqlite count: %w", err)
	}
	return n, nil
}

func (s *benchSQLite) Close() { s.db.Close() }

// sqliteLock holds SQLite's write lock from another connection, as an
// operator's shell or another program would: spool's applier then waits
// and backs off (SQLITE_BUSY is transient) while intake and reads go on.
type sqliteLock struct {
	db   *sql.DB
	conn *sql.Conn
}

func lockSQLite(ctx context.Context, path string) (*sqliteLock, error) {
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(30000)")
	if err != nil {
		return nil, fmt.Errorf("bench: open sqlite %s: %w", path, err)
	}
	conn, err := db.Conn(ctx)
	if err == nil {
		_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	}
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		db.Close()
		return nil, fmt.Errorf("bench: take the sqlite write lock: %w", err)
	}
	return &sqliteLock{db: db, conn: conn}, nil
}

func (l *sqliteLock) release() error {
	_, err := l.conn.ExecContext(context.Background(), "ROLLBACK")
	l.conn.Close()
	l.db.Close()
	if err != nil {
		return fmt.Errorf("bench: release the sqlite write lock: %w", err)
	}
	return nil
}

// benchPostgres is a pool on one PostgreSQL database.
type benchPostgres struct{ pool *pgxpool.Pool }

func openBenchPostgres(ctx context.Context, url string) (*benchPostgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cfg.MaxConns = 64
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bench: connect to postgres: %w", err)
	}
	return &benchPostgres{pool: pool}, nil
}

func (p *benchPostgres) exec(ctx context.Context, q string) error {
	if _, err := p.pool.Exec(ctx, q); err != nil {
		return fmt.Errorf("bench: postgres exec: %w", err)
	}
	return nil
}

func (p *benchPostgres) insert(ctx context.Context, r obsRow) error {
	_, err := p.pool.Exec(ctx, `INSERT INTO observations (id, target, exposure_s, meta) VALUES ($1, $2, $3, $4)`, r.id, r.target, r.exposure, r.meta)
	if err != nil {
		return fmt.Errorf("bench: postgres insert: %w", err)
	}
	return nil
}

func (p *benchPostgres) bulkRows(ctx context.Context, table string, cols []string, n int, row func(int) []any) error {
	src := pgx.CopyFromSlice(n, func(i int) ([]any, error) { return row(i), nil })
	if _, err := p.pool.CopyFrom(ctx, pgx.Identifier{table}, cols, src); err != nil {
		return fmt.Errorf("bench: postgres copy: %w", err)
	}
	return nil
}

func (p *benchPostgres) count(ctx context.Context, prefix string) (int64, error) {
	var n int64
	if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM observations WHERE target LIKE $1 || '%'`, prefix).Scan(&n); err != nil {
		return 0, fmt.Errorf("bench: postgres count: %w", err)
	}
	return n, nil
}

func (p *benchPostgres) Close() { p.pool.Close() }
