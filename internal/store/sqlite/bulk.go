package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store/sqlgen"
)

// The bulk path of the telemetry lane (telemetry.Inserter).

// bulkMaxVars is SQLite's limit on the bind variables of one statement
// (SQLITE_MAX_VARIABLE_NUMBER, 32766 since SQLite 3.32); a batch with more
// values is split into several statements in the same transaction.
const bulkMaxVars = 32766

// The savepoints that isolate a refused statement or row.
const (
	sqlBulkSavepoint = `savepoint spool_bulk`
	sqlBulkRelease   = `release spool_bulk`
	sqlBulkRollback  = `rollback to spool_bulk`
)

// InsertRows inserts rows, each the canonical values of cols in order,
// into t in one BEGIN IMMEDIATE transaction: one prepared multi-row INSERT
// per chunk of rows (maxGroupRows, or as many as fit under bulkMaxVars,
// else the largest power of two of the rest), each in a savepoint; the
// statements stay prepared across calls (stmtCache). A chunk that fails
// for good is rolled back to its savepoint and inserted again row by row,
// each row in a savepoint of its own, so that a refused row (constraint,
// type) is left out and returned in rejected, and the others are written. Any returned error is transient
// and nothing was committed.
//
// A row whose failure ends the whole transaction (a constraint declared ON
// CONFLICT ROLLBACK, a trigger's RAISE(ROLLBACK)) is rejected and the
// transaction started again without it.
func (s *Store) InsertRows(ctx context.Context, t *schema.Table, cols []string, rows [][]any) (rejected map[int]error, err error) {
	if len(rows) == 0 {
		return nil, nil
	}
	b := &bulkRun{s: s, t: t, cols: cols}
	// Bind once: a value SQLite cannot store is the row's fault.
	b.bound, b.rejected, err = sqlgen.BindRows(cols, rows, func(j int, v any) (any, error) {
		a, err := bind(v)
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", cols[j], err)
		}
		return a, nil
	})
	if err != nil {
		return nil, fmt.Errorf("insert rows into %q: %w", t.Name, err)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	defer s.stmts.fill(context.WithoutCancel(ctx)) // once the transactions have ended
	for {
		err := b.once(ctx)
		if errors.Is(err, errTxEnded) {
			continue // a row ended the transaction; it is rejected now
		}
		if err != nil {
			return nil, fmt.Errorf("insert rows into %q: %w", t.Name, err)
		}
		if len(b.rejected) == 0 {
			return nil, nil
		}
		return b.rejected, nil
	}
}

// errTxEnded says a refused statement ended the whole transaction, not
// just itself: the rollback to its savepoint found no savepoint.
var errTxEnded = errors.New("the transaction was rolled back")

// bulkRun is one InsertRows call, over as many transactions as it takes.
type bulkRun struct {
	s        *Store
	t        *schema.Table
	cols     []string
	bound    [][]any // nil for a row bind rejected
	rejected map[int]error
	// rowByRow is set once a multi-row statement ended a transaction:
	// from then on every row is inserted alone.
	rowByRow bool
	tx       *sql.Tx
	stmts    map[int]*sql.Stmt // by rows per statement
	args     []any
}

// once runs one transaction over the rows not yet rejected.
func (b *bulkRun) once(ctx context.Context) error {
	tx, err := b.s.wdb.BeginTx(ctx, nil) // BEGIN IMMEDIATE, by the DSN's _txlock
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	b.tx, b.stmts = tx, make(map[int]*sql.Stmt)
	defer func() {
		for _, st := range b.stmts {
			st.Close()
		}
		tx.Rollback() //nolint:errcheck // ErrTxDone after Commit; a failed rollback is reported by the error already returned
	}()
	good := make([]int, 0, len(b.bound))
	for i := range b.bound {
		if b.rejected[i] == nil {
			good = append(good, i)
		}
	}
	per := max(1, bulkMaxVars/len(b.cols))
	for rest := good; len(rest) > 0; {
		// A full batch in one statement, a partial one in statements of
		// power-of-two sizes: a handful of texts serve every batch and
		// stay prepared (stmtCache).
		chunk := rest[:groupRows(min(len(rest), per))]
		rest = rest[len(chunk):]
		if b.rowByRow {
			if err := b.each(ctx, chunk); err != nil {
				return err
			}
			continue
		}
		err := b.multi(ctx, chunk)
		if errors.Is(err, errRefused) {
			err = b.each(ctx, chunk)
		}
		if err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// errRefused says a multi-row statement failed for good and was rolled
// back to its savepoint: its rows are tried one by one.
var errRefused = errors.New("refused")

// multi inserts chunk with one statement in a savepoint.
func (b *bulkRun) multi(ctx context.Context, chunk []int) error {
	st, err := b.stmt(ctx, len(chunk))
	if err != nil {
		if err := b.refused(ctx, err, -1); err != nil {
			return err
		}
		return errRefused
	}
	b.args = b.args[:0]
	for _, i := range chunk {
		b.args = append(b.args, b.bound[i]...)
	}
	if _, err := b.tx.ExecContext(ctx, sqlBulkSavepoint); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if _, err := st.ExecContext(ctx, b.args...); err != nil {
		if err := b.refused(ctx, err, -1); err != nil {
			return err
		}
		if err := b.rollbackToSavepoint(ctx); err != nil {
			b.rowByRow = true // which row it was is not known
			return err
		}
		if _, err := b.tx.ExecContext(ctx, sqlBulkRelease); err != nil {
			return fmt.Errorf("release savepoint: %w", err)
		}
		return errRefused
	}
	if _, err := b.tx.ExecContext(ctx, sqlBulkRelease); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

// each inserts the rows of chunk one by one, each in a savepoint, and
// rejects those SQLite refuses for good.
func (b *bulkRun) each(ctx context.Context, chunk []int) error {
	st, err := b.stmt(ctx, 1)
	if err != nil {
		if err := b.refused(ctx, err, -1); err != nil {
			return err
		}
		for _, i := range chunk { // the statement itself is refused: no row can go in
			b.rejected[i] = err
		}
		return nil
	}
	for _, i := range chunk {
		if _, err := b.tx.ExecContext(ctx, sqlBulkSavepoint); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		if _, err := st.ExecContext(ctx, b.bound[i]...); err != nil {
			if err := b.refused(ctx, err, i); err != nil {
				return err
			}
			if err := b.rollbackToSavepoint(ctx); err != nil {
				return err
			}
		}
		if _, err := b.tx.ExecContext(ctx, sqlBulkRelease); err != nil {
			return fmt.Errorf("release savepoint: %w", err)
		}
	}
	return nil
}

// refused returns err if it is transient; if it is permanent it returns
// nil, after rejecting row i (i ≥ 0) with it.
func (b *bulkRun) refused(ctx context.Context, err error, i int) error {
	code, permanent := classify(ctx, err)
	if !permanent {
		return err
	}
	if i >= 0 {
		b.rejected[i] = fmt.Errorf("%s: %w", code, err)
	}
	return nil
}

// rollbackToSavepoint undoes the refused statement; errTxEnded if SQLite
// ended the whole transaction instead.
func (b *bulkRun) rollbackToSavepoint(ctx context.Context) error {
	if _, err := b.tx.ExecContext(ctx, sqlBulkRollback); err != nil {
		if code, permanent := classify(ctx, err); permanent {
			return fmt.Errorf("%w (%s: %v)", errTxEnded, code, err)
		}
		return fmt.Errorf("roll back to savepoint: %w", err)
	}
	return nil
}

// stmt returns the INSERT of n rows on the transaction: the one the store
// keeps prepared, or else prepared now, once per transaction.
func (b *bulkRun) stmt(ctx context.Context, n int) (*sql.Stmt, error) {
	if st, ok := b.stmts[n]; ok {
		return st, nil
	}
	st, err := b.s.stmts.on(ctx, b.tx, gen.Insert(gen.Ident(b.t.Name), b.cols, n))
	if err != nil {
		return nil, err
	}
	b.stmts[n] = st
	return st, nil
}
