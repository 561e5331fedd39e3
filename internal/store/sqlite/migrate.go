package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/spoolgw/spool/internal/schema"
)

// migration is one versioned change to spool's own tables.
type migration struct {
	version int
	sql     string
}

// migrations are applied in order, each once, each in its own transaction.
// Never edit one that has shipped; add the next version.
var migrations = []migration{
	{version: 1, sql: `
create table spool_applied (
	txn_id     text primary key,
	applied_at text not null
) without rowid;
create table spool_kv (
	key        text primary key,
	value      text,
	updated_at timestamp
);
create table spool_dead_letters (
	txn_id    text primary key,
	tx        text not null, -- JSON of the transaction
	error     text not null,
	code      text,
	failed_at text not null
);`},
	{version: 2, sql: `
create table spool_fence (
	log   text primary key,
	token integer not null
);`},
	{version: 3, sql: `
alter table spool_dead_letters add column tables text not null default '';
alter table spool_dead_letters add column attempts integer not null default 1;
alter table spool_dead_letters add column first_failed_at text;
alter table spool_dead_letters add column retried_as text;
alter table spool_dead_letters add column dropped_at text;
alter table spool_dead_letters add column dropped_by text;
create index spool_dead_letters_failed on spool_dead_letters (failed_at, txn_id);`},
	{version: 4, sql: `
create table spool_log_heads (
	log         text primary key,
	oldest      text not null, -- when the oldest transaction the log holds was made
	recorded_at text not null
);`},
	{version: 5, sql: `
alter table spool_dead_letters add column retried_by text;`},
}

// internalTables are spool's bookkeeping tables, hidden from the catalog.
// spool_kv is not among them: spool writes it through the normal path.
var internalTables = []string{"spool_migrations", "spool_applied", "spool_dead_letters", "spool_fence", "spool_log_heads"}

// Migrate creates or upgrades spool's own tables. Each migration runs in its
// own transaction together with its row in spool_migrations, so a crash
// leaves it either wholly applied or not at all.
func (s *Store) Migrate(ctx context.Context) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.wdb.ExecContext(ctx,
		`create table if not exists spool_migrations (version integer primary key, applied_at text)`); err != nil {
		return fmt.Errorf("migrate: create spool_migrations: %w", err)
	}
	for _, m := range migrations {
		applied, err := s.migrate(ctx, m)
		if err != nil {
			return fmt.Errorf("migrate to version %d: %w", m.version, err)
		}
		if applied {
			s.logger.Info("sqlite migration applied", "path", s.path, "version", m.version)
		}
	}
	return nil
}

func (s *Store) migrate(ctx context.Context, m migration) (applied bool, err error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var one int
	err = tx.QueryRowContext(ctx, `select 1 from spool_migrations where version = ?`, m.version).Scan(&one)
	switch {
	case err == nil:
		return false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return false, err
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `insert into spool_migrations (version, applied_at) values (?, ?)`,
		m.version, time.Now().UTC().Format(schema.TimeFormat)); err != nil {
		return false, err
	}
	return true, tx.Commit()
}
