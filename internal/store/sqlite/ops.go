package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/sqlgen"
	"github.com/spoolgw/spool/internal/txn"
)

// op runs operation i of a transaction. A permanent failure is an
// *store.ApplyError; any other error is transient.
func (b *batchRun) op(ctx context.Context, i int, op txn.Operation) error {
	w, err := b.prepare(ctx, i, op)
	if err != nil {
		return err
	}
	return b.run(ctx, i, op, &w)
}

// run executes operation i, bound as w.
func (b *batchRun) run(ctx context.Context, i int, op txn.Operation, w *sqlgen.Write) error {
	st, err := b.opStmt(ctx, w)
	if err != nil {
		return b.dbError(ctx, i, op, err)
	}
	wantsRow := op.Op == txn.Update || op.Op == txn.Delete // 0 rows affected: the row does not exist
	var found bool
	if w.Kind == sqlgen.Exists {
		var one int
		err = st.QueryRowContext(ctx, w.Args...).Scan(&one)
		found = err == nil
		if errors.Is(err, sql.ErrNoRows) {
			err = nil
		}
	} else {
		var res sql.Result
		if res, err = st.ExecContext(ctx, w.Args...); err == nil && wantsRow {
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

// prepare checks operation i against its table and binds its values. A
// value or name the table cannot take is an *store.ApplyError.
func (b *batchRun) prepare(ctx context.Context, i int, op txn.Operation) (sqlgen.Write, error) {
	w, fail, err := gen.BindWrite(op, func(name string, values map[string]any) (*schema.Table, error) {
		return b.s.table(ctx, b.tx, name, values)
	})
	if fail != nil {
		return sqlgen.Write{}, &store.ApplyError{Op: i, Table: op.Table, Msg: fail.Error(), Err: fail}
	}
	return w, err
}

// dbError classifies an error the database returned for operation i.
func (b *batchRun) dbError(ctx context.Context, i int, op txn.Operation, err error) error {
	code, permanent := classify(ctx, err)
	if !permanent {
		return err
	}
	return &store.ApplyError{Op: i, Table: op.Table, Code: code, Msg: err.Error(), Err: err}
}

// opStmt returns the prepared statement of w, building and preparing it
// once per batch.
func (b *batchRun) opStmt(ctx context.Context, w *sqlgen.Write) (*sql.Stmt, error) {
	key := w.Key()
	if st, ok := b.opStmts[key]; ok {
		return st, nil
	}
	st, err := b.stmt(ctx, gen.WriteSQL(gen.Ident(w.Table.Name), w))
	if err != nil {
		return nil, err
	}
	b.opStmts[key] = st
	return st, nil
}
