package postgres

import (
	"context"
	"strings"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/sqlgen"
	"github.com/spoolgw/spool/internal/txn"
)

// check is what to verify of a statement's command tag.
type check int

const (
	// checkRow: an update, delete or existence check must touch a row; 0
	// rows is store.ErrMissingRow.
	checkRow check = iota + 1
	// checkCount: the statement must touch exactly stmt.n rows (the ids
	// recorded in spool_applied; fewer means another applier recorded
	// some first).
	checkCount
)

// stmt is one statement of a pipeline.
type stmt struct {
	sql   string
	args  []any
	check check
	n     int64
	// op is the index of the operation in its transaction, -1 for spool's
	// own statements.
	op int
	// ins is set for a plain insert that the fast path may merge with the
	// inserts of the same shape next to it (see merge).
	ins *insertShape
}

// insertShape is a table and a list of columns that plain inserts name.
type insertShape struct {
	table string   // quoted
	cols  []string // quoted
	types []string // the columns' types without modifiers
}

// stmtKey names the SQL text of an operation: one per table, operation and
// set of columns.
type stmtKey = sqlgen.Key

// plan turns the operations of t into statements. If operation k cannot be
// turned into one (unknown table or column, a value that does not fit its
// column), fail is its permanent error and stmts are those of the
// operations before it, which must still run first: the transaction fails
// at the first operation that fails, in order, as it would one by one.
// err is transient.
func (b *batchRun) plan(ctx context.Context, t *txn.Transaction) (stmts []stmt, fail *store.ApplyError, err error) {
	for i, op := range t.Operations {
		st, fail, err := b.opStmt(ctx, i, op)
		if err != nil || fail != nil {
			return stmts, fail, err
		}
		stmts = append(stmts, st)
	}
	return stmts, nil, nil
}

// opStmt builds the statement of operation i.
func (b *batchRun) opStmt(ctx context.Context, i int, op txn.Operation) (stmt, *store.ApplyError, error) {
	w, fail, err := gen.BindWrite(op, func(name string, values map[string]any) (*schema.Table, error) {
		return b.table(ctx, name, values)
	})
	if fail != nil {
		return stmt{}, &store.ApplyError{Op: i, Table: op.Table, Msg: fail.Error(), Err: fail}, nil
	}
	if err != nil {
		return stmt{}, nil, err
	}
	st := stmt{sql: b.opSQL(&w), args: w.Args, op: i}
	switch op.Op {
	case txn.Update, txn.Delete:
		st.check = checkRow
	case txn.Insert:
		st.ins = b.shape(w.Table, st.sql, w.Names)
	}
	return st, nil, nil
}

// shape returns the insert shape of t with the named columns, once per
// attempt for each statement; nil if one of the columns is an array (which
// unnest would flatten) or has no known type.
func (b *batchRun) shape(t *schema.Table, sql string, names []string) *insertShape {
	if sh, ok := b.shapes[sql]; ok {
		return sh
	}
	cat := b.s.cat.Load()
	sh := &insertShape{table: b.s.tableIdent(t.Name)}
	for _, n := range names {
		c := t.Column(n)
		typ, ok := cat.types[c]
		if !ok || c.Kind == schema.Array {
			sh = nil
			break
		}
		// Without a length, character and bit mean character(1) and bit(1):
		// casting to them would cut values short.
		switch typ {
		case "character":
			typ = "bpchar"
		case "bit":
			typ = "bit varying"
		}
		sh.cols = append(sh.cols, ident(n))
		sh.types = append(sh.types, typ)
	}
	b.shapes[sql] = sh
	return sh
}

// mergeMin is the shortest run of inserts merged into one statement.
const mergeMin = 2

// merge turns every run of consecutive plain inserts of one shape into a
// single INSERT … SELECT FROM unnest() of one array per column, so that a
// batch of many small inserts costs the database one statement per run
// instead of one per row. Order is kept: only neighbours are merged. The
// merged statement fails as a whole; the slow path then runs the inserts
// one by one and finds the one at fault.
func merge(stmts []stmt) []stmt {
	out := make([]stmt, 0, len(stmts))
	for i := 0; i < len(stmts); {
		sh, j := stmts[i].ins, i+1
		for sh != nil && j < len(stmts) && stmts[j].ins == sh {
			j++
		}
		if sh == nil || j-i < mergeMin {
			out = append(out, stmts[i:j]...)
			i = j
			continue
		}
		out = append(out, bulkInsert(sh, stmts[i:j]))
		i = j
	}
	return out
}

// bulkInsert is the statement of a run of inserts: INSERT INTO "t" ("a",
// "b") SELECT * FROM unnest($1::type_a[], $2::type_b[]).
func bulkInsert(sh *insertShape, run []stmt) stmt {
	var sb strings.Builder
	sb.WriteString("insert into " + sh.table + " (" + strings.Join(sh.cols, ", ") + ") select * from unnest(")
	args := make([]any, len(sh.cols))
	for k := range sh.cols {
		if k > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(gen.Placeholder(k+1) + "::" + sh.types[k] + "[]")
		col := make([]any, len(run))
		for r, st := range run {
			col[r] = st.args[k]
		}
		args[k] = textArray(col)
	}
	sb.WriteByte(')')
	return stmt{sql: sb.String(), args: args, op: -1}
}

// table returns the table from the catalog, reading it again (once per
// attempt, on the batch's connection) when the table or one of the named
// columns is not in it, or when the database said it is out of date.
func (b *batchRun) table(ctx context.Context, name string, values map[string]any) (*schema.Table, error) {
	c := b.s.cat.Load()
	if c != nil && (b.reloaded || !b.s.stale.Load()) {
		t, err := c.cat.Table(name)
		if b.reloaded || (err == nil && hasColumns(t, values)) {
			return t, err
		}
	}
	b.reloaded = true
	// On the batch's connection, not another of the pool: appliers waiting
	// for a second connection while holding one could wait for each other.
	if err := b.settle(); err != nil {
		return nil, err
	}
	cat, err := b.s.loadCatalog(ctx, b.c)
	if err != nil {
		return nil, err
	}
	b.sql = make(map[stmtKey]string) // the schema may be another
	b.shapes = make(map[string]*insertShape)
	return cat.Table(name)
}

// opSQL returns the SQL text of w, built once per attempt.
func (b *batchRun) opSQL(w *sqlgen.Write) string {
	key := w.Key()
	if text, ok := b.sql[key]; ok {
		return text
	}
	text := gen.WriteSQL(b.s.tableIdent(w.Table.Name), w)
	b.sql[key] = text
	return text
}
