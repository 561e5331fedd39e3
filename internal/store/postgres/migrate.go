package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// migration is one versioned change to spool's own tables: statements run
// in order in one transaction.
type migration struct {
	version    int
	statements []string
}

// migrations are applied in order, each once, each in its own transaction.
// Never edit one that has shipped; add the next version. They hold the same
// tables as the SQLite store's, in PostgreSQL's types.
var migrations = []migration{
	{version: 1, statements: []string{
		`create table spool_applied (
			txn_id     uuid primary key,
			applied_at timestamptz not null default now()
		)`,
		`create table spool_kv (
			key        text primary key,
			value      text,
			updated_at timestamptz
		)`,
		`create table spool_dead_letters (
			txn_id    uuid primary key,
			tx        jsonb not null,
			error     text not null,
			code      text,
			failed_at timestamptz not null
		)`,
	}},
	{version: 2, statements: []string{
		`create table spool_fence (
			log   text primary key,
			token bigint not null
		)`,
	}},
	{version: 3, statements: []string{
		`alter table spool_dead_letters
			add column tables          text not null default '',
			add column attempts        integer not null default 1,
			add column first_failed_at timestamptz,
			add column retried_as      uuid,
			add column dropped_at      timestamptz,
			add column dropped_by      text`,
		`create index spool_dead_letters_failed on spool_dead_letters (failed_at, txn_id)`,
	}},
	{version: 4, statements: []string{
		`create table spool_log_heads (
			log         text primary key,
			oldest      timestamptz not null,
			recorded_at timestamptz not null default now()
		)`,
	}},
	{version: 5, statements: []string{
		`alter table spool_dead_letters add column retried_by text`,
	}},
}

// internalTables are spool's bookkeeping tables, hidden from the catalog.
// spool_kv is not among them: spool writes it through the normal path.
var internalTables = []string{"spool_migrations", "spool_applied", "spool_dead_letters", "spool_fence", "spool_log_heads"}

// migrationLock is the key of the transaction-scoped advisory lock that
// every migration holds, so that spool processes starting together apply
// each migration once and never race on CREATE TABLE IF NOT EXISTS. The
// value is "spool" in ASCII.
const migrationLock int64 = 0x73706f6f6c

const sqlCreateMigrations = `create table if not exists spool_migrations (
	version    integer primary key,
	applied_at timestamptz not null default now()
)`

// Migrate creates or upgrades spool's own tables. Each migration runs in its
// own transaction under the advisory lock, together with its row in
// spool_migrations, so a crash leaves it wholly applied or not at all. It is
// idempotent.
func (s *Store) Migrate(ctx context.Context) error {
	for _, m := range migrations {
		var applied bool
		err := s.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
			var err error
			applied, err = s.migrate(ctx, c, m)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate to version %d: %w", m.version, err)
		}
		if applied {
			s.logger.Info("postgres migration applied", "version", m.version)
		}
	}
	return nil
}

func (s *Store) migrate(ctx context.Context, pc *pgxpool.Conn, m migration) (applied bool, err error) {
	c := pc.Conn()
	if _, err := run(ctx, c, "begin"); err != nil {
		return false, err
	}
	defer rollback(ctx, c)
	if _, err := c.Exec(ctx, `select pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return false, fmt.Errorf("take the migration lock: %w", err)
	}
	if _, err := run(ctx, c, sqlCreateMigrations); err != nil {
		return false, fmt.Errorf("create spool_migrations: %w", err)
	}
	var done bool
	if err := c.QueryRow(ctx, `select exists (select 1 from spool_migrations where version = $1)`, m.version).Scan(&done); err != nil {
		return false, err
	}
	if done {
		return false, nil
	}
	for _, st := range m.statements {
		if _, err := run(ctx, c, st); err != nil {
			return false, err
		}
	}
	if _, err := c.Exec(ctx, `insert into spool_migrations (version) values ($1)`, m.version); err != nil {
		return false, err
	}
	if _, err := run(ctx, c, "commit"); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return true, nil
}
