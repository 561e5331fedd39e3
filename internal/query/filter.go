// Package query parses PostgREST-style filters and runs smart reads: rows
// from the database merged with the overlay's pending state.
package query

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/spoolgw/spool/internal/schema"
)

// Op is a comparison operator of a filter.
type Op string

// The operators, named as PostgREST names them.
const (
	Eq     Op = "eq"
	Neq    Op = "neq"
	Lt     Op = "lt"
	Lte    Op = "lte"
	Gt     Op = "gt"
	Gte    Op = "gte"
	In     Op = "in"
	IsNull Op = "is.null"
	// NotNull is "not.is.null" in a query string.
	NotNull Op = "not.is.null"
)

// Limits on a query.
const (
	// DefaultLimit is the number of rows a list returns when it names none.
	DefaultLimit = 100
	// MaxLimit bounds a list so one read cannot ask for a whole table.
	MaxLimit = 10000
	// MaxInItems bounds an in.(...) list.
	MaxInItems = 1000
)

// Cond is one condition: column op value(s). Values are canonical for the
// column's kind.
type Cond struct {
	Column *schema.Column
	Op     Op
	Value  any   // for eq, neq, lt, lte, gt, gte
	Values []any // for in
}

// Order is one sort key.
type Order struct {
	Column *schema.Column
	Desc   bool
}

// Query is a parsed list request on one table.
type Query struct {
	Table *schema.Table
	Conds []Cond
	// Order always ends with the primary key (when the table has one), so
	// the order of rows is total and the same in database and overlay.
	Order []Order
	Limit int
}

// Reserved query parameters that are not column filters.
var reserved = []string{"order", "limit", "consistency", "select"}

// Error is a bad query; its text names the problem for the client.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func errorf(format string, a ...any) error { return &Error{Msg: fmt.Sprintf(format, a...)} }

// Parse parses a list request's query string against table t.
func Parse(t *schema.Table, params url.Values) (*Query, error) {
	q := &Query{Table: t, Limit: DefaultLimit}
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	slices.Sort(names) // deterministic error messages
	for _, name := range names {
		if slices.Contains(reserved, name) {
			continue
		}
		col := t.Column(name)
		if col == nil {
			return nil, errorf("unknown column %q in filter on table %q", name, t.Name)
		}
		for _, expr := range params[name] {
			c, err := parseCond(col, expr)
			if err != nil {
				return nil, err
			}
			q.Conds = append(q.Conds, c)
		}
	}
	if v := params.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > MaxLimit {
			return nil, errorf("limit must be an integer from 0 to %d, not %q", MaxLimit, v)
		}
		q.Limit = n
	}
	if v := params.Get("order"); v != "" {
		for _, part := range strings.Split(v, ",") {
			name, dir, _ := strings.Cut(part, ".")
			col := t.Column(name)
			if col == nil {
				return nil, errorf("unknown column %q in order on table %q", name, t.Name)
			}
			o := Order{Column: col}
			switch dir {
			case "", "asc":
			case "desc":
				o.Desc = true
			default:
				return nil, errorf("order direction must be asc or desc, not %q", dir)
			}
			q.Order = append(q.Order, o)
		}
	}
	if t.Key != nil && !slices.ContainsFunc(q.Order, func(o Order) bool { return o.Column == t.Key }) {
		q.Order = append(q.Order, Order{Column: t.Key})
	}
	return q, nil
}

func parseCond(col *schema.Column, expr string) (Cond, error) {
	switch expr {
	case "is.null":
		return Cond{Column: col, Op: IsNull}, nil
	case "not.is.null":
		return Cond{Column: col, Op: NotNull}, nil
	}
	opText, arg, ok := strings.Cut(expr, ".")
	if !ok {
		return Cond{}, errorf("filter on %q must be op.value (eq, neq, lt, lte, gt, gte, in, is.null), not %q", col.Name, expr)
	}
	op := Op(opText)
	switch op {
	case Eq, Neq, Lt, Lte, Gt, Gte:
		v, err := parseValue(col, arg)
		if err != nil {
			return Cond{}, err
		}
		return Cond{Column: col, Op: op, Value: v}, nil
	case In:
		if !strings.HasPrefix(arg, "(") || !strings.HasSuffix(arg, ")") {
			return Cond{}, errorf("in filter on %q must be in.(a,b,…), not %q", col.Name, expr)
		}
		items := strings.Split(arg[1:len(arg)-1], ",")
		if len(items) > MaxInItems {
			return Cond{}, errorf("in filter on %q has %d items; at most %d", col.Name, len(items), MaxInItems)
		}
		c := Cond{Column: col, Op: In}
		for _, it := range items {
			v, err := parseValue(col, it)
			if err != nil {
				return Cond{}, err
			}
			c.Values = append(c.Values, v)
		}
		return c, nil
	}
	return Cond{}, errorf("unknown operator %q in filter on %q (want eq, neq, lt, lte, gt, gte, in, is.null)", opText, col.Name)
}

// parseValue turns the text of a filter value into the column's canonical
// form, so comparisons in SQL and in the overlay agree.
func parseValue(col *schema.Column, s string) (any, error) {
	var v any = s
	switch col.Kind {
	case schema.Integer, schema.Real, schema.Numeric:
		v = json.Number(s)
	case schema.Boolean:
		switch s {
		case "true":
			v = true
		case "false":
			v = false
		}
	case schema.JSON, schema.Bytes, schema.Array:
		return nil, errorf("column %q of kind %s cannot be filtered", col.Name, col.Kind)
	}
	n, err := col.Normalize(v)
	if err != nil {
		return nil, errorf("filter value for column %q %s", col.Name, err)
	}
	return n, nil
}

// Match reports whether row r satisfies every condition. It is the overlay's
// side of the filter; the stores translate the same conditions into SQL.
func (q *Query) Match(r schema.Row) bool {
	for _, c := range q.Conds {
		if !c.match(r[c.Column.Name]) {
			return false
		}
	}
	return true
}

func (c Cond) match(v any) bool {
	switch c.Op {
	case IsNull:
		return v == nil
	case NotNull:
		return v != nil
	}
	if v == nil {
		return false // SQL: a comparison with NULL is never true
	}
	switch c.Op {
	case Eq:
		return schema.Compare(v, c.Value) == 0
	case Neq:
		return schema.Compare(v, c.Value) != 0
	case Lt:
		return schema.Compare(v, c.Value) < 0
	case Lte:
		return schema.Compare(v, c.Value) <= 0
	case Gt:
		return schema.Compare(v, c.Value) > 0
	case Gte:
		return schema.Compare(v, c.Value) >= 0
	case In:
		return slices.ContainsFunc(c.Values, func(x any) bool { return schema.Compare(v, x) == 0 })
	}
	return false
}

// Less orders two rows by the query's order (nulls first ascending, as
// SQLite does; the stores are told to sort nulls the same way).
func (q *Query) Less(a, b schema.Row) int {
	for _, o := range q.Order {
		c := schema.Compare(a[o.Column.Name], b[o.Column.Name])
		if o.Desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}
