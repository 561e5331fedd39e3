package sqlgen

import (
	"context"
	"fmt"
	"strings"

	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
)

// ScanFunc runs text, a select of every column of t in order (see
// Builder.Select), and decodes its rows into canonical values.
type ScanFunc func(ctx context.Context, t *schema.Table, text string, args []any) ([]schema.Row, error)

// Get reads the row of t whose key has the text key, from tbl (t's name
// as Table quotes it), with scan; found is false if there is none.
func (b *Builder) Get(ctx context.Context, scan ScanFunc, tbl string, t *schema.Table, key string) (row schema.Row, found bool, err error) {
	if err := t.Writable(); err != nil {
		return nil, false, fmt.Errorf("get: %w", err)
	}
	k, err := b.BindColumn(t.Key, t.Key.KeyValue(key))
	if err != nil {
		return nil, false, fmt.Errorf("get %s %q: key %w", t.Name, key, err)
	}
	text := "select " + b.columns(t) + " from " + tbl + " where " + b.Ident(t.Key.Name) + " = " + b.Placeholder(1)
	rows, err := scan(ctx, t, text, []any{k})
	if err != nil {
		return nil, false, fmt.Errorf("get %s %q: %w", t.Name, key, err)
	}
	if len(rows) == 0 {
		return nil, false, nil
	}
	return rows[0], true, nil
}

// Query reads the rows matching q in q's order, at most limit of them (no
// limit if limit is negative), from tbl (q.Table's name as Table quotes
// it), with scan.
func (b *Builder) Query(ctx context.Context, scan ScanFunc, tbl string, q *query.Query, limit int) ([]schema.Row, error) {
	text, args, err := b.QuerySQL(tbl, q, limit)
	if err == nil {
		var rows []schema.Row
		if rows, err = scan(ctx, q.Table, text, args); err == nil {
			return rows, nil
		}
	}
	return nil, fmt.Errorf("query %s: %w", q.Table.Name, err)
}

// QuerySQL is the text and the parameters of Query's select. The table is
// named r, and the order qualifies its columns with it: a select list of
// expressions (casts to text) names them after their columns, and a bare
// name would order by the expression. Ascending order puts nulls first and
// descending order last, as schema.Compare does.
func (b *Builder) QuerySQL(tbl string, q *query.Query, limit int) (string, []any, error) {
	var sb strings.Builder
	p := &params{d: b.Dialect}
	sb.WriteString("select " + b.columns(q.Table) + " from " + tbl + " as r")
	for i, c := range q.Conds {
		if i == 0 {
			sb.WriteString(" where ")
		} else {
			sb.WriteString(" and ")
		}
		if err := b.cond(&sb, p, c); err != nil {
			return "", nil, err
		}
	}
	for i, o := range q.Order {
		if i == 0 {
			sb.WriteString(" order by ")
		} else {
			sb.WriteString(", ")
		}
		sb.WriteString(b.compared(o.Column, "r.", false))
		if o.Desc {
			sb.WriteString(" desc nulls last")
		} else {
			sb.WriteString(" asc nulls first")
		}
	}
	if limit >= 0 {
		sb.WriteString(" limit " + p.add(int64(limit)))
	}
	return sb.String(), p.args, nil
}

// condOps maps the comparison operators onto SQL.
var condOps = map[query.Op]string{
	query.Eq: "=", query.Neq: "<>", query.Lt: "<", query.Lte: "<=", query.Gt: ">", query.Gte: ">=",
}

// cond writes one condition, its parameters added to p. A comparison with
// NULL is never true in SQL, which is what Cond.match does too (neq
// excludes nulls).
func (b *Builder) cond(sb *strings.Builder, p *params, c query.Cond) error {
	col := c.Column
	switch c.Op {
	case query.IsNull:
		sb.WriteString(b.Ident(col.Name) + " is null")
		return nil
	case query.NotNull:
		sb.WriteString(b.Ident(col.Name) + " is not null")
		return nil
	case query.In:
		return b.in(sb, p, c)
	}
	op, ok := condOps[c.Op]
	if !ok {
		return fmt.Errorf("unknown operator %q", c.Op)
	}
	v, err := b.Bind(col, c.Value)
	if err != nil {
		return fmt.Errorf("filter on %q: %w", col.Name, err)
	}
	sb.WriteString(b.compared(col, "", c.Op == query.Eq || c.Op == query.Neq) + " " + op + " " + b.param(p, col, v, ""))
	return nil
}

// in writes an IN condition: false for no values, = any() of one array
// where the store binds arrays, else IN (…) of a parameter per value.
func (b *Builder) in(sb *strings.Builder, p *params, c query.Cond) error {
	col := c.Column
	if len(c.Values) == 0 {
		sb.WriteString(b.falseLit)
		return nil
	}
	lhs := b.compared(col, "", true)
	if b.BindArray != nil {
		list, err := b.BindArray(col, c.Values)
		if err != nil {
			return fmt.Errorf("filter on %q: %w", col.Name, err)
		}
		sb.WriteString(lhs + " = any(" + b.param(p, col, list, "[]") + ")")
		return nil
	}
	phs := make([]string, len(c.Values))
	for i, v := range c.Values {
		a, err := b.Bind(col, v)
		if err != nil {
			return fmt.Errorf("filter on %q: %w", col.Name, err)
		}
		phs[i] = b.param(p, col, a, "")
	}
	sb.WriteString(lhs + " in (" + strings.Join(phs, ", ") + ")")
	return nil
}

// columns is the select list of every column of t, in order.
func (b *Builder) columns(t *schema.Table) string {
	exprs := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		exprs[i] = b.selected(c)
	}
	return strings.Join(exprs, ", ")
}
