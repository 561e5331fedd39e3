package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store/sqlgen"
)

// The bulk path of the telemetry lane (telemetry.Inserter).

// The statements of a bulk insert.
const (
	sqlBulkBegin      = `begin isolation level read committed`
	sqlBulkSavepoint  = `savepoint spool_bulk`
	sqlBulkRelease    = `release savepoint spool_bulk`
	sqlBulkRollbackTo = `rollback to savepoint spool_bulk`
)

// InsertRows inserts rows, each the canonical values of cols in order,
// into t in one database transaction with one COPY … FROM STDIN, in the
// text format: every value is sent as the same text a bind parameter would
// carry (see bind), so PostgreSQL's input function of the column's type
// judges it, whatever the type (a domain, an enum, an array).
//
// If the COPY fails for good (a constraint, a value the type refuses), the
// transaction is rolled back and the rows are inserted one by one in a new
// one, each in a savepoint of its own, so that a refused row is left out
// and returned in rejected and the others are written. A deferred
// constraint that fails the commit sends the rows down that path with SET
// CONSTRAINTS ALL IMMEDIATE. Any returned error is transient and nothing
// was committed.
func (s *Store) InsertRows(ctx context.Context, t *schema.Table, cols []string, rows [][]any) (rejected map[int]error, err error) {
	if len(rows) == 0 {
		return nil, nil
	}
	b := &bulkRun{s: s, t: t, cols: cols}
	if err := b.encode(rows); err != nil {
		return nil, fmt.Errorf("insert rows into %q: %w", t.Name, err)
	}
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("insert rows into %q: %w", t.Name, err)
	}
	defer pc.Release()
	b.c = pc.Conn()
	err = b.attempt(ctx, bulkCopy)
	if errors.Is(err, errCopyRefused) {
		err = b.attempt(ctx, bulkRows)
	}
	if errors.Is(err, errCommitRefused) {
		err = b.attempt(ctx, bulkRowsImmediate)
		if errors.Is(err, errCommitRefused) {
			// Even row by row with immediate constraints the commit is
			// refused: no row of this call can ever go in.
			for i := range rows {
				if b.rejected[i] == nil {
					b.rejected[i] = err
				}
			}
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("insert rows into %q: %w", t.Name, err)
	}
	if len(b.rejected) == 0 {
		return nil, nil
	}
	return b.rejected, nil
}

// How an attempt writes the rows.
type bulkMode int

const (
	bulkCopy          bulkMode = iota // one COPY
	bulkRows                          // one INSERT per row, each in a savepoint
	bulkRowsImmediate                 // the same with SET CONSTRAINTS ALL IMMEDIATE
)

var (
	// errCopyRefused says the COPY failed for good: a row is at fault.
	errCopyRefused = errors.New("copy refused")
	// errCommitRefused says the commit failed for good: a deferred
	// constraint.
	errCommitRefused = errors.New("commit refused")
)

// bulkRun is one InsertRows call.
type bulkRun struct {
	s    *Store
	t    *schema.Table
	cols []string
	// bound holds each row's parameters, nil for a row bind rejected.
	bound [][]any
	c     *pgx.Conn
	// rejected holds the rows refused so far: by bind (a value that
	// cannot be bound) or by the database.
	rejected map[int]error
	// copyData is the COPY text of every row not rejected by bind.
	copyData []byte
}

// encode binds every value of rows, rejecting a row with a value that
// cannot be bound, and writes the COPY text of the others.
func (b *bulkRun) encode(rows [][]any) error {
	var err error
	if b.bound, b.rejected, err = sqlgen.BindRows(b.cols, rows, b.bind); err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, args := range b.bound {
		if args == nil {
			continue
		}
		for j, a := range args {
			if j > 0 {
				buf.WriteByte('\t')
			}
			buf.Write(appendCopyText(buf.AvailableBuffer(), a))
		}
		buf.WriteByte('\n')
	}
	b.copyData = buf.Bytes()
	return nil
}

// bind binds a value of the j-th column.
func (b *bulkRun) bind(j int, v any) (any, error) {
	c := b.t.Column(b.cols[j])
	if c == nil {
		return nil, fmt.Errorf("no such column %q", b.cols[j])
	}
	a, err := bind(c.Kind, c.Elem, v)
	if err != nil {
		return nil, fmt.Errorf("column %q: %w", c.Name, err)
	}
	return a, nil
}

// appendCopyText appends a bound value in COPY's text format: \N for
// NULL, and backslash, newline, carriage return and tab escaped.
func appendCopyText(dst []byte, v any) []byte {
	var s string
	switch x := v.(type) {
	case nil:
		return append(dst, `\N`...)
	case string:
		s = x
	case []byte:
		s = string(x)
	default:
		s = fmt.Sprint(x) // bind returns strings; kept total for safety
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			dst = append(dst, `\\`...)
		case '\n':
			dst = append(dst, `\n`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\t':
			dst = append(dst, `\t`...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// attempt runs one database transaction: the COPY, or one insert per
// row; then the commit.
func (b *bulkRun) attempt(ctx context.Context, mode bulkMode) error {
	defer rollback(ctx, b.c) // a no-op after commit
	if _, err := run(ctx, b.c, sqlBulkBegin); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	switch mode {
	case bulkCopy:
		if len(b.copyData) == 0 {
			return nil // every row was refused by bind
		}
		if _, err := b.c.PgConn().CopyFrom(ctx, bytes.NewReader(b.copyData), b.copySQL()); err != nil {
			if _, permanent := classify(err); permanent {
				return fmt.Errorf("%w: %w", errCopyRefused, err)
			}
			return fmt.Errorf("copy: %w", err)
		}
	case bulkRowsImmediate:
		if _, err := run(ctx, b.c, sqlImmediate); err != nil {
			return fmt.Errorf("set constraints: %w", err)
		}
		fallthrough
	case bulkRows:
		if err := b.eachRow(ctx); err != nil {
			return err
		}
	}
	if _, err := run(ctx, b.c, sqlCommit); err != nil {
		if code, permanent := classify(err); permanent {
			return fmt.Errorf("%w (%s): %w", errCommitRefused, code, err)
		}
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// eachRow inserts the rows not yet rejected one by one, each in a
// savepoint, rejecting those PostgreSQL refuses for good.
func (b *bulkRun) eachRow(ctx context.Context) error {
	sql := gen.Insert(b.s.tableIdent(b.t.Name), b.cols, 1)
	for i, args := range b.bound {
		if b.rejected[i] != nil {
			continue
		}
		if _, err := run(ctx, b.c, sqlBulkSavepoint); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		if _, err := b.c.Exec(ctx, sql, args...); err != nil {
			code, permanent := classify(err)
			if !permanent {
				return fmt.Errorf("insert row %d: %w", i, err)
			}
			b.rejected[i] = fmt.Errorf("%s: %w", code, err)
			if _, err := run(ctx, b.c, sqlBulkRollbackTo); err != nil {
				return fmt.Errorf("roll back to savepoint: %w", err)
			}
		}
		if _, err := run(ctx, b.c, sqlBulkRelease); err != nil {
			return fmt.Errorf("release savepoint: %w", err)
		}
	}
	return nil
}

// copySQL is COPY "t" ("a", "b") FROM STDIN.
func (b *bulkRun) copySQL() string {
	return "copy " + b.s.tableIdent(b.t.Name) + " (" + gen.Idents(b.cols) + ") from stdin"
}
