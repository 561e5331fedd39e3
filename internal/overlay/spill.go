package overlay

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// spill is the overlay's tier on disk: the pending changes that came while
// the tier in memory was full, in a SQLite file of their own. The file is
// scratch: the log holds every transaction, and the gateway rebuilds the
// overlay from it at start, so nothing here is ever synced, and Open
// starts it empty. SQLite keeps its pages outside the Go heap, in a cache
// of bounded size.
type spill struct {
	db   *sql.DB
	path string
	// Prepared statements of the hot paths.
	insert, rowOps, txExists, evictTxs, rowsHeld *sql.Stmt
	// ops, txns and rows count what the tier holds (rows: the rows it
	// holds changes to): Add asks ops at every write, Stats all three.
	// add and evict keep rows by probing ops_row for the rows a call
	// touches, one query per table, in the call's SQLite transaction.
	ops, txns, rows int
}

const spillSchema = `
create table ops (
	seq  integer primary key, -- the order changes were added in
	tx   text not null,
	tbl  text not null,
	key  text not null,
	kind text not null,
	vals blob                 -- the values, as JSON
);
create index ops_row on ops (tbl, key);
create index ops_tx on ops (tx);`

// openSpill creates the tier's file at path, replacing what an earlier
// run left there.
func openSpill(ctx context.Context, path string) (*spill, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("overlay spill: path %q must be a plain file path", path)
	}
	for _, p := range []string{path, path + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("overlay spill: remove the last run's file: %w", err)
		}
	}
	// Rollback journal in memory (a failed add is rolled back), no syncs,
	// the file this process's alone, a cache of 8 MiB.
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(MEMORY)&_pragma=synchronous(OFF)"+
		"&_pragma=locking_mode(EXCLUSIVE)&_pragma=cache_size(-8192)&_pragma=temp_store(MEMORY)")
	if err != nil {
		return nil, fmt.Errorf("overlay spill %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s := &spill{db: db, path: path}
	if _, err := db.ExecContext(ctx, spillSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("overlay spill %s: create: %w", path, err)
	}
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{
		{&s.insert, `insert into ops (tx, tbl, key, kind, vals) values (?, ?, ?, ?, ?)`},
		{&s.rowOps, `select tx, kind, vals from ops where tbl = ? and key = ? order by seq`},
		{&s.txExists, `select exists (select 1 from ops where tx = ?)`},
		{&s.evictTxs, `delete from ops where tx in (select value from json_each(?)) returning tx, tbl, key`},
		// Of the rows of a table named (a JSON array of their keys), how
		// many the tier holds changes to: one probe of ops_row each.
		{&s.rowsHeld, `select count(*) from json_each(?2) as k where exists
			(select 1 from ops where tbl = ?1 and key = k.value)`},
	} {
		if *p.st, err = db.PrepareContext(ctx, p.sql); err != nil {
			db.Close()
			return nil, fmt.Errorf("overlay spill %s: prepare: %w", path, err)
		}
	}
	return s, nil
}

// close closes the file and removes it.
func (s *spill) close() error {
	err := s.db.Close()
	if rmErr := os.Remove(s.path); err == nil && !errors.Is(rmErr, os.ErrNotExist) {
		err = rmErr
	}
	if err != nil {
		return fmt.Errorf("overlay spill %s: close: %w", s.path, err)
	}
	return nil
}

// inTx runs fn in one SQLite transaction, committed if fn succeeds and
// rolled back if not; then counts what it added to the tier (negative:
// took away).
func (s *spill) inTx(ctx context.Context, fn func(*sql.Tx) (ops, txns, rows int, err error)) error {
	sqlTx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	ops, txns, rows, err := fn(sqlTx)
	if err != nil {
		_ = sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return err
	}
	s.ops, s.txns, s.rows = s.ops+ops, s.txns+txns, s.rows+rows
	return nil
}

// add records the changes of txs in one SQLite transaction, all or none.
func (s *spill) add(ctx context.Context, txs ...*txn.Transaction) error {
	err := s.inTx(ctx, func(sqlTx *sql.Tx) (ops, txns, rows int, err error) {
		// The rows the call touches that the tier held no change to
		// before it are the rows it adds.
		touched := make(rowSet)
		for _, tx := range txs {
			for _, op := range tx.Operations {
				touched.add(op.Table, op.ID)
			}
		}
		held, err := s.countHeld(ctx, sqlTx, touched)
		if err != nil {
			return 0, 0, 0, err
		}
		insert := sqlTx.StmtContext(ctx, s.insert)
		for _, tx := range txs {
			for _, op := range tx.Operations {
				var vals []byte
				if op.Values != nil {
					if vals, err = json.Marshal(op.Values); err != nil {
						return 0, 0, 0, fmt.Errorf("%s: %w", tx.ID, err)
					}
				}
				if _, err = insert.ExecContext(ctx, tx.ID, op.Table, op.ID, string(op.Op), vals); err != nil {
					return 0, 0, 0, fmt.Errorf("%s: %w", tx.ID, err)
				}
			}
			ops += len(tx.Operations)
		}
		return ops, len(txs), touched.len() - held, nil
	})
	if err != nil {
		return fmt.Errorf("overlay spill: add: %w", err)
	}
	return nil
}

// has reports whether transaction id has changes in the tier.
func (s *spill) has(ctx context.Context, id string) (bool, error) {
	var ok bool
	if err := s.txExists.QueryRowContext(ctx, id).Scan(&ok); err != nil {
		return false, fmt.Errorf("overlay spill: look up %s: %w", id, err)
	}
	return ok, nil
}

// evict removes the changes of the transactions ids, all or none; ids
// the tier does not hold are skipped.
func (s *spill) evict(ctx context.Context, ids []string) error {
	list, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("overlay spill: evict: %w", err)
	}
	err = s.inTx(ctx, func(sqlTx *sql.Tx) (ops, txns, rows int, err error) {
		// One statement deletes them all; each change it deletes names
		// its transaction and row, to count them.
		rs, err := sqlTx.StmtContext(ctx, s.evictTxs).QueryContext(ctx, list)
		if err != nil {
			return 0, 0, 0, err
		}
		defer rs.Close()
		gone := make(map[string]bool)
		touched := make(rowSet)
		for rs.Next() {
			var tx, table, key string
			if err := rs.Scan(&tx, &table, &key); err != nil {
				return 0, 0, 0, err
			}
			ops++
			gone[tx] = true
			touched.add(table, key)
		}
		if err := rs.Err(); err != nil {
			return 0, 0, 0, err
		}
		// The rows touched that the tier holds no change to now are
		// the rows it no longer holds.
		held, err := s.countHeld(ctx, sqlTx, touched)
		if err != nil {
			return 0, 0, 0, err
		}
		return -ops, -len(gone), -(touched.len() - held), nil
	})
	if err != nil {
		return fmt.Errorf("overlay spill: evict: %w", err)
	}
	return nil
}

// rowSet is a set of rows: the keys of each table.
type rowSet map[string]map[string]struct{}

func (r rowSet) add(table, key string) {
	keys := r[table]
	if keys == nil {
		keys = make(map[string]struct{})
		r[table] = keys
	}
	keys[key] = struct{}{}
}

func (r rowSet) len() int {
	n := 0
	for _, keys := range r {
		n += len(keys)
	}
	return n
}

// countHeld returns how many of rows the tier holds changes to, with one
// query per table.
func (s *spill) countHeld(ctx context.Context, sqlTx *sql.Tx, rows rowSet) (int, error) {
	held := 0
	for table, keys := range rows {
		list, err := json.Marshal(slices.Collect(maps.Keys(keys)))
		if err != nil {
			return 0, err
		}
		var n int
		if err := sqlTx.StmtContext(ctx, s.rowsHeld).QueryRowContext(ctx, table, list).Scan(&n); err != nil {
			return 0, fmt.Errorf("count rows held: %w", err)
		}
		held += n
	}
	return held, nil
}

// row returns the changes to one row, in the order they were added.
func (s *spill) row(ctx context.Context, table, key string, normalize func(string, map[string]any)) (Pending, error) {
	rs, err := s.rowOps.QueryContext(ctx, table, key)
	if err != nil {
		return nil, fmt.Errorf("overlay spill: read %s %s: %w", table, key, err)
	}
	var p Pending
	if err := scanOps(rs, table, normalize, func(_, _ string, op Op) { p = append(p, op) }); err != nil {
		return nil, fmt.Errorf("overlay spill: read %s %s: %w", table, key, err)
	}
	return p, nil
}

// table calls fn for every change to a row of table, the changes of each
// row in the order they were added.
func (s *spill) table(ctx context.Context, table string, normalize func(string, map[string]any), fn func(key string, op Op)) error {
	rs, err := s.db.QueryContext(ctx, `select key, tx, kind, vals from ops where tbl = ? order by key, seq`, table)
	if err == nil {
		err = scanOps(rs, table, normalize, func(_, key string, op Op) { fn(key, op) })
	}
	if err != nil {
		return fmt.Errorf("overlay spill: read %s: %w", table, err)
	}
	return nil
}

// all calls fn for every change the tier holds.
func (s *spill) all(ctx context.Context, normalize func(string, map[string]any), fn func(table, key string, op Op)) error {
	rs, err := s.db.QueryContext(ctx, `select tbl, key, tx, kind, vals from ops order by seq`)
	if err == nil {
		err = scanOps(rs, "", normalize, fn)
	}
	if err != nil {
		return fmt.Errorf("overlay spill: read: %w", err)
	}
	return nil
}

// scanOps reads changes from rows whose columns are tx, kind and vals,
// after key, or after tbl and key; a query without tbl reads table's.
// It makes their values canonical with normalize, if set, and closes rs.
func scanOps(rs *sql.Rows, table string, normalize func(string, map[string]any), fn func(table, key string, op Op)) error {
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		return err
	}
	for rs.Next() {
		tbl, key := table, ""
		var op Op
		var vals []byte
		dest := []any{&op.Tx, &op.Kind, &vals}
		switch len(cols) {
		case 4:
			dest = append([]any{&key}, dest...)
		case 5:
			dest = append([]any{&tbl, &key}, dest...)
		}
		if err := rs.Scan(dest...); err != nil {
			return err
		}
		if op.Values, err = decodeValues(vals); err != nil {
			return fmt.Errorf("%s %s: %w", tbl, key, err)
		}
		if normalize != nil && op.Values != nil {
			normalize(tbl, op.Values)
		}
		fn(tbl, key, op)
	}
	return rs.Err()
}

// decodeValues decodes values as the log's replay does: numbers as
// json.Number, for the normalizer to make canonical again.
func decodeValues(vals []byte) (schema.Row, error) {
	if vals == nil {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(vals))
	dec.UseNumber()
	var row schema.Row
	if err := dec.Decode(&row); err != nil {
		return nil, fmt.Errorf("decode values: %w", err)
	}
	return row, nil
}
