package sqlgen

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// Exists is the statement kind of an update without values: it only
// checks that the row exists.
const Exists txn.Kind = "exists"

// Write is an operation checked against its table and bound: the
// statement it runs as, the columns that statement names and its
// parameters.
type Write struct {
	Table *schema.Table
	// Kind is the operation's, or Exists for an update without values.
	Kind txn.Kind
	// Names are the columns the statement names: those of the values in
	// order, and the key last for an insert or upsert whose values do not
	// name it.
	Names []string
	// Args are the parameters: one for each of Names, then the key's for
	// an update, a delete or an existence check.
	Args []any
}

// Key names the text of a statement: one per table, kind and columns.
type Key struct {
	Table string
	Kind  txn.Kind
	Cols  string
}

// Key is the key of w's statement text.
func (w *Write) Key() Key {
	return Key{Table: w.Table.Name, Kind: w.Kind, Cols: strings.Join(w.Names, "\x00")}
}

// TableFunc returns the table an operation names, given the values it
// names (a delete names none).
type TableFunc func(name string, values map[string]any) (*schema.Table, error)

// BindWrite checks op against its table, found by table, and binds its
// values and its key. fail is op's own fault, permanent: a table unknown
// (schema.ErrUnknownTable) or not writable, a column unknown, a value or
// key its column refuses, an unknown kind of operation. err is any other
// error of table, which may be transient.
func (b *Builder) BindWrite(op txn.Operation, table TableFunc) (w Write, fail, err error) {
	values := op.Values
	if op.Op == txn.Delete {
		values = nil // a delete names only its key
	}
	t, err := table(op.Table, values)
	if errors.Is(err, schema.ErrUnknownTable) {
		return Write{}, err, nil
	}
	if err != nil {
		return Write{}, nil, err
	}
	if err := t.Writable(); err != nil {
		return Write{}, err, nil
	}
	names := make([]string, 0, len(values)+1)
	for name := range values {
		if t.Column(name) == nil {
			return Write{}, fmt.Errorf("no such column %q", name), nil
		}
		names = append(names, name)
	}
	slices.Sort(names)
	args := make([]any, 0, len(names)+1)
	for _, name := range names {
		v, err := b.BindColumn(t.Column(name), values[name])
		if err != nil {
			return Write{}, err, nil
		}
		args = append(args, v)
	}
	kind := op.Op
	switch op.Op {
	case txn.Insert, txn.Upsert:
		if _, ok := values[t.Key.Name]; ok {
			break // the key is among the values
		}
		fallthrough
	case txn.Update, txn.Delete:
		key, err := b.BindColumn(t.Key, t.Key.KeyValue(op.ID))
		if err != nil {
			return Write{}, fmt.Errorf("key %q: %w", op.ID, err), nil
		}
		if op.Op == txn.Insert || op.Op == txn.Upsert {
			names = append(names, t.Key.Name)
		}
		if op.Op == txn.Update && len(names) == 0 {
			kind = Exists
		}
		args = append(args, key)
	default:
		return Write{}, fmt.Errorf("unknown operation %q", op.Op), nil
	}
	return Write{Table: t, Kind: kind, Names: names, Args: args}, nil, nil
}

// WriteSQL is the statement of w on tbl (the table's name as Table
// quotes it): an INSERT, an upsert, an UPDATE, a DELETE, or for Exists a
// SELECT 1 of the row; "" for another kind, which BindWrite refuses.
func (d Dialect) WriteSQL(tbl string, w *Write) string {
	key := d.Ident(w.Table.Key.Name)
	switch w.Kind {
	case txn.Insert:
		return d.Insert(tbl, w.Names, 1)
	case txn.Upsert:
		return d.Upsert(tbl, w.Table.Key.Name, w.Names)
	case txn.Update:
		return d.Update(tbl, w.Table.Key.Name, w.Names)
	case Exists:
		return "select 1 from " + tbl + " where " + key + " = " + d.Placeholder(1)
	case txn.Delete:
		return "delete from " + tbl + " where " + key + " = " + d.Placeholder(1)
	}
	return ""
}

// Insert is INSERT INTO tbl ("a", "b") VALUES ($1, $2), … with rows rows
// (rows ≥ 1), their parameters row after row.
func (d Dialect) Insert(tbl string, cols []string, rows int) string {
	var sb strings.Builder
	sb.Grow(32 + len(tbl) + len(cols)*16 + rows*(len(cols)*4+4))
	d.writeInsert(&sb, tbl, cols, rows)
	return sb.String()
}

func (d Dialect) writeInsert(sb *strings.Builder, tbl string, cols []string, rows int) {
	sb.WriteString("insert into ")
	sb.WriteString(tbl)
	sb.WriteString(" (")
	d.writeIdents(sb, cols)
	sb.WriteString(") values ")
	var row string // every row's text, where parameters are not numbered
	if !d.numbered && len(cols) > 0 {
		row = "(?" + strings.Repeat(", ?", len(cols)-1) + ")"
	}
	for r := range rows {
		if r > 0 {
			sb.WriteString(", ")
		}
		if row != "" {
			sb.WriteString(row)
			continue
		}
		sb.WriteByte('(')
		for i := range cols {
			if i > 0 {
				sb.WriteString(", ")
			}
			d.writePlaceholder(sb, r*len(cols)+i+1)
		}
		sb.WriteByte(')')
	}
}

// Upsert is the one-row Insert of cols with ON CONFLICT (key) DO UPDATE
// SET every other column of cols to the row's value, or DO NOTHING if
// cols holds only the key.
func (d Dialect) Upsert(tbl, key string, cols []string) string {
	var sb strings.Builder
	d.writeInsert(&sb, tbl, cols, 1)
	sb.WriteString(" on conflict (")
	sb.WriteString(d.Ident(key))
	sb.WriteString(") do ")
	first := true
	for _, n := range cols {
		if n == key {
			continue
		}
		if first {
			sb.WriteString("update set ")
			first = false
		} else {
			sb.WriteString(", ")
		}
		sb.WriteString(d.Ident(n))
		sb.WriteString(" = excluded.")
		sb.WriteString(d.Ident(n))
	}
	if first {
		sb.WriteString("nothing")
	}
	return sb.String()
}

// Update is UPDATE tbl SET "a" = $1, "b" = $2 WHERE "key" = $3.
func (d Dialect) Update(tbl, key string, cols []string) string {
	var sb strings.Builder
	sb.WriteString("update ")
	sb.WriteString(tbl)
	sb.WriteString(" set ")
	for i, n := range cols {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(d.Ident(n))
		sb.WriteString(" = ")
		d.writePlaceholder(&sb, i+1)
	}
	sb.WriteString(" where ")
	sb.WriteString(d.Ident(key))
	sb.WriteString(" = ")
	d.writePlaceholder(&sb, len(cols)+1)
	return sb.String()
}

// BindRows binds the rows of a bulk insert into cols: each value by bind,
// given its column's index. A row of another length than cols, or with a
// value bind refuses, is left nil in bound and its error is in rejected.
// err refuses every row: there are no columns.
func BindRows(cols []string, rows [][]any, bind func(col int, v any) (any, error)) (bound [][]any, rejected map[int]error, err error) {
	if len(cols) == 0 {
		return nil, nil, errors.New("no columns")
	}
	bound, rejected = make([][]any, len(rows)), make(map[int]error)
	for i, row := range rows {
		if len(row) != len(cols) {
			rejected[i] = fmt.Errorf("row has %d values for %d columns", len(row), len(cols))
			continue
		}
		vals := make([]any, len(row))
		for j, v := range row {
			if vals[j], err = bind(j, v); err != nil {
				break
			}
		}
		if err != nil {
			rejected[i], err = err, nil
			continue
		}
		bound[i] = vals
	}
	return bound, rejected, nil
}
