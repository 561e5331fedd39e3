package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// op runs operation i of a transaction. A permanent failure is an
// *store.ApplyError; any other error is transient.
func (b *batchRun) op(ctx context.Context, i int, op txn.Operation) error {
	p, err := b.prepare(ctx, i, op)
	if err != nil {
		return err
	}
	return b.run(ctx, i, op, p)
}

// run executes operation i, prepared as p.
func (b *batchRun) run(ctx context.Context, i int, op txn.Operation, p prepared) error {
	st, err := b.opStmt(ctx, p.t, p.kind, p.names)
	if err != nil {
		return b.dbError(ctx, i, op, err)
	}
	wantsRow := op.Op == txn.Update || op.Op == txn.Delete // 0 rows affected: the row does not exist
	var found bool
	if p.kind == exists {
		var one int
		err = st.QueryRowContext(ctx, p.args...).Scan(&one)
		found = err == nil
		if errors.Is(err, sql.ErrNoRows) {
			err = nil
		}
	} else {
		var res sql.Result
		if res, err = st.ExecContext(ctx, p.args...); err == nil && wantsRow {
			var n int64
			n, err = res.RowsAffected()
			found = n > 0
		}
	}
	if err != nil {
		return b.dbError(ctx, i, op, err)
	}
	if wantsRow && !found {
		return &store.ApplyError{Op: i, Table: op.Table, Msg: fmt.Sprintf("%s of %s: %v", op.Op, op.ID, store.ErrMissingRow), Err: store.ErrMissingRow}
	}
	return nil
}

// prepared is an operation checked against its table and bound: the
// statement's kind, its column names in order, and its arguments.
type prepared struct {
	t     *schema.Table
	kind  txn.Kind
	names []string
	args  []any
}

// prepare checks operation i against its table and binds its values. A
// value or name the table cannot take is an *store.ApplyError.
func (b *batchRun) prepare(ctx context.Context, i int, op txn.Operation) (prepared, error) {
	permanent := func(code, msg string, err error) error {
		return &store.ApplyError{Op: i, Table: op.Table, Code: code, Msg: msg, Err: err}
	}
	values := op.Values
	if op.Op == txn.Delete {
		values = nil // a delete names only its key
	}
	t, err := b.s.table(ctx, b.tx, op.Table, values)
	if errors.Is(err, schema.ErrUnknownTable) {
		return prepared{}, permanent("", err.Error(), err)
	}
	if err != nil {
		return prepared{}, err
	}
	if err := t.Writable(); err != nil {
		return prepared{}, permanent("", err.Error(), err)
	}
	names := make([]string, 0, len(values)+1)
	for name := range values {
		if t.Column(name) == nil {
			err := fmt.Errorf("no such column %q", name)
			return prepared{}, permanent("", err.Error(), err)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	args := make([]any, 0, len(names)+1)
	for _, name := range names {
		v, err := bindColumn(t.Column(name), values[name])
		if err != nil {
			return prepared{}, permanent("", err.Error(), err)
		}
		args = append(args, v)
	}
	key, err := bindColumn(t.Key, t.Key.KeyValue(op.ID))
	if err != nil {
		err = fmt.Errorf("key %q: %w", op.ID, err)
		return prepared{}, permanent("", err.Error(), err)
	}
	kind := op.Op
	switch op.Op {
	case txn.Insert, txn.Upsert:
		if _, ok := values[t.Key.Name]; !ok {
			names = append(names, t.Key.Name)
			args = append(args, key)
		}
	case txn.Update:
		if len(names) == 0 {
			kind = exists
		}
		args = append(args, key)
	case txn.Delete:
		args = append(args, key)
	default:
		err := fmt.Errorf("unknown operation %q", op.Op)
		return prepared{}, permanent("", err.Error(), err)
	}
	return prepared{t: t, kind: kind, names: names, args: args}, nil
}

// dbError classifies an error the database returned for operation i.
func (b *batchRun) dbError(ctx context.Context, i int, op txn.Operation, err error) error {
	code, permanent := classify(ctx, err)
	if !permanent {
		return err
	}
	return &store.ApplyError{Op: i, Table: op.Table, Code: code, Msg: err.Error(), Err: err}
}

// exists is the pseudo-operation of an update without values: it only
// checks that the row exists.
const exists txn.Kind = "exists"

// stmtKey names the statement of an operation: one per table, operation
// and set of columns.
type stmtKey struct {
	table string
	op    txn.Kind
	cols  string
}

// opStmt returns the prepared statement for op on t with the named columns
// (in order), building and preparing it once per batch.
func (b *batchRun) opStmt(ctx context.Context, t *schema.Table, op txn.Kind, names []string) (*sql.Stmt, error) {
	key := stmtKey{table: t.Name, op: op, cols: strings.Join(names, "\x00")}
	if st, ok := b.opStmts[key]; ok {
		return st, nil
	}
	var text string
	switch op {
	case txn.Insert, txn.Upsert:
		text = insertSQL(t, names, op == txn.Upsert)
	case txn.Update:
		text = updateSQL(t, names)
	case exists:
		text = "select 1 from " + quote(t.Name) + " where " + quote(t.Key.Name) + " = ?"
	case txn.Delete:
		text = "delete from " + quote(t.Name) + " where " + quote(t.Key.Name) + " = ?"
	}
	st, err := b.stmt(ctx, text)
	if err != nil {
		return nil, err
	}
	b.opStmts[key] = st
	return st, nil
}

// insertSQL is INSERT INTO "t" ("a","b") VALUES (?,?), and for an upsert
// ON CONFLICT ("key") DO UPDATE SET every other named column.
func insertSQL(t *schema.Table, names []string, upsert bool) string {
	var sb strings.Builder
	sb.WriteString("insert into ")
	sb.WriteString(quote(t.Name))
	sb.WriteString(" (")
	for i, n := range names {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(quote(n))
	}
	sb.WriteString(") values (")
	for i := range names {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('?')
	}
	sb.WriteByte(')')
	if !upsert {
		return sb.String()
	}
	sb.WriteString(" on conflict (")
	sb.WriteString(quote(t.Key.Name))
	sb.WriteString(") do ")
	first := true
	for _, n := range names {
		if n == t.Key.Name {
			continue
		}
		if first {
			sb.WriteString("update set ")
			first = false
		} else {
			sb.WriteString(", ")
		}
		sb.WriteString(quote(n))
		sb.WriteString(" = excluded.")
		sb.WriteString(quote(n))
	}
	if first {
		sb.WriteString("nothing")
	}
	return sb.String()
}

// updateSQL is UPDATE "t" SET "a" = ?, "b" = ? WHERE "key" = ?.
func updateSQL(t *schema.Table, names []string) string {
	var sb strings.Builder
	sb.WriteString("update ")
	sb.WriteString(quote(t.Name))
	sb.WriteString(" set ")
	for i, n := range names {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(quote(n))
		sb.WriteString(" = ?")
	}
	sb.WriteString(" where ")
	sb.WriteString(quote(t.Key.Name))
	sb.WriteString(" = ?")
	return sb.String()
}
