package telemetry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// A sample is one row as its lane holds it: the canonical value of every
// column of the table, in catalog order. A slice, not a map: it costs a
// fraction of the memory, and a batch of samples of one shape goes to the
// database as it is.
type sample = []any

// omitted marks a column a sample leaves to the database: the row did not
// name it and its default is one only the database can evaluate (a
// sequence, gen_random_uuid()). Samples of different shapes are inserted
// in separate statements, since neither COPY nor SQLite's multi-row INSERT
// can ask for the default of one cell.
type omitted struct{}

func isOmitted(v any) bool {
	_, ok := v.(omitted)
	return ok
}

// sampleOf checks a decoded row against t (unknown columns, types, NOT
// NULL; values normalised in place) and turns it into a sample: a missing
// key spool can generate gets a UUIDv7, a missing column with a literal
// default gets it now (so a default of now() is the time spool took the
// sample, not the time a replay wrote it), and any other missing column is
// omitted.
func sampleOf(t *schema.Table, row map[string]any, now time.Time) (sample, error) {
	if err := t.CheckValues(row, true); err != nil {
		return nil, err
	}
	s := make(sample, len(t.Columns))
	for i, c := range t.Columns {
		v, ok := row[c.Name]
		if !ok {
			v = omitted{}
			if c == t.Key && t.GeneratesKey() {
				v = c.KeyValue(txn.NewID())
			} else if dv, ok := c.DefaultValue(now); ok {
				v = dv
			}
		}
		s[i] = v
	}
	return s, nil
}

// sameShape reports whether two samples omit the same columns.
func sameShape(a, b sample) bool {
	for i := range a {
		if isOmitted(a[i]) != isOmitted(b[i]) {
			return false
		}
	}
	return true
}

// groups splits a batch into runs of one shape each, in the order each
// shape first appears. A batch of one shape, the usual case, is returned
// as it is.
func groups(batch []sample) [][]sample {
	if len(batch) == 0 {
		return nil
	}
	uniform := true
	for _, s := range batch[1:] {
		if !sameShape(batch[0], s) {
			uniform = false
			break
		}
	}
	if uniform {
		return [][]sample{batch}
	}
	var out [][]sample
next:
	for _, s := range batch {
		for i, g := range out {
			if sameShape(g[0], s) {
				out[i] = append(g, s)
				continue next
			}
		}
		out = append(out, []sample{s})
	}
	return out
}

// project returns the columns a group of one shape names and its rows with
// just those values. A group that omits nothing is returned as it is.
func project(t *schema.Table, rows []sample) (cols []string, out [][]any) {
	cols = make([]string, 0, len(t.Columns))
	var idx []int
	for i, c := range t.Columns {
		if !isOmitted(rows[0][i]) {
			cols = append(cols, c.Name)
			idx = append(idx, i)
		}
	}
	if len(idx) == len(t.Columns) {
		return cols, rows
	}
	out = make([][]any, len(rows))
	for r, s := range rows {
		p := make([]any, len(idx))
		for j, i := range idx {
			p[j] = s[i]
		}
		out[r] = p
	}
	return cols, out
}

// The spill files hold one cell per column: the canonical value as JSON
// text, so that decoding it and normalising it against the column restores
// the same value; nullCell for SQL NULL (not JSON, so a JSON column's
// literal null stays apart); and an empty cell for an omitted column.
const nullCell = `\N`

// appendCell appends the cell text of a canonical value.
func appendCell(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case omitted:
		return dst, nil
	case nil:
		return append(dst, nullCell...), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case json.Number:
		return append(dst, x...), nil
	case json.RawMessage:
		return append(dst, x...), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return append(dst, b...), nil
}

// decodeCell turns a cell back into the canonical value of column c.
func decodeCell(c *schema.Column, cell string) (any, error) {
	switch cell {
	case "":
		return omitted{}, nil
	case nullCell:
		return c.Normalize(nil)
	}
	var v any
	if c.Kind == schema.JSON {
		v = json.RawMessage(cell) // kept as it is: decoding would reorder object keys
	} else {
		d := json.NewDecoder(bytes.NewReader([]byte(cell)))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			return nil, fmt.Errorf("cell %q is not JSON: %v", cell, err)
		}
	}
	return c.Normalize(v)
}
