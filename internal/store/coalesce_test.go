package store

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// The tables of the tests. t is mergeable: n is NOT NULL without a
// default, small refuses values outside ±100 (as an int4 refuses an
// int8), s has a literal default and seq a sequence's (a side effect). u is
// mergeable with a text key, k is not mergeable (a foreign key, say) and b
// is a barrier (a trigger).
var (
	tableT = schema.NewTable("t", []*schema.Column{
		{Name: "id", Kind: schema.Integer, NotNull: true},
		{Name: "n", Kind: schema.Integer, NotNull: true},
		{Name: "small", Kind: schema.Integer},
		{Name: "s", Kind: schema.Text, Default: "'x'::text"},
		{Name: "seq", Kind: schema.Integer, Default: "nextval('t_seq'::regclass)"},
		{Name: "f", Kind: schema.Text},
	}, []string{"id"})
	tableU = schema.NewTable("u", []*schema.Column{
		{Name: "id", Kind: schema.Text, NotNull: true},
		{Name: "v", Kind: schema.Integer},
	}, []string{"id"})
	tableK = schema.NewTable("k", []*schema.Column{
		{Name: "id", Kind: schema.Integer, NotNull: true},
		{Name: "v", Kind: schema.Integer},
	}, []string{"id"})
	tableB = schema.NewTable("b", []*schema.Column{
		{Name: "id", Kind: schema.Integer, NotNull: true},
		{Name: "v", Kind: schema.Integer},
	}, []string{"id"})
)

// fitsSmall is the test's Fits: small takes only values within ±100.
func fitsSmall(c *schema.Column, v any) bool {
	if c.Name != "small" {
		return true
	}
	i, ok := v.(int64)
	return ok && i >= -100 && i <= 100
}

func testRules(table string) *MergeRules {
	switch table {
	case "t":
		return &MergeRules{Table: tableT, Mergeable: true, Fits: fitsSmall}
	case "u":
		return &MergeRules{Table: tableU, Mergeable: true}
	case "k":
		return &MergeRules{Table: tableK}
	case "b":
		return &MergeRules{Table: tableB, Barrier: true}
	}
	return nil
}

func ins(table string, key int64, kv ...any) txn.Operation {
	return txn.Operation{Op: txn.Insert, Table: table, ID: strconv.FormatInt(key, 10), Values: withKey(key, kv)}
}

func ups(table string, key int64, kv ...any) txn.Operation {
	return txn.Operation{Op: txn.Upsert, Table: table, ID: strconv.FormatInt(key, 10), Values: withKey(key, kv)}
}

func upd(table string, key int64, kv ...any) txn.Operation {
	return txn.Operation{Op: txn.Update, Table: table, ID: strconv.FormatInt(key, 10), Values: row(kv...)}
}

func dele(table string, key int64) txn.Operation {
	return txn.Operation{Op: txn.Delete, Table: table, ID: strconv.FormatInt(key, 10)}
}

func withKey(key int64, kv []any) map[string]any {
	v := row(kv...)
	v["id"] = key
	return v
}

func row(kv ...any) map[string]any {
	m := make(map[string]any, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func TestCoalesce(t *testing.T) {
	t.Parallel()
	type want struct {
		op    txn.Operation
		steps []int
	}
	tests := []struct {
		name string
		ops  []txn.Operation
		want []want
	}{
		{
			name: "insert then updates",
			ops:  []txn.Operation{ins("t", 1, "n", int64(1)), upd("t", 1, "f", "a"), upd("t", 1, "f", "b", "n", int64(3))},
			want: []want{{ins("t", 1, "n", int64(3), "f", "b"), []int{0, 1, 2}}},
		},
		{
			name: "interleaved rows each merge at their first position",
			ops:  []txn.Operation{ins("t", 1, "n", int64(1)), ins("t", 2, "n", int64(2)), upd("t", 1, "f", "a"), upd("t", 2, "f", "b"), upd("t", 1, "n", int64(5))},
			want: []want{{ins("t", 1, "n", int64(5), "f", "a"), []int{0, 2, 4}}, {ins("t", 2, "n", int64(2), "f", "b"), []int{1, 3}}},
		},
		{
			name: "updates of a row not in the batch stay an update",
			ops:  []txn.Operation{upd("t", 1, "f", "a"), upd("t", 1, "small", int64(2)), upd("t", 1)},
			want: []want{{upd("t", 1, "f", "a", "small", int64(2)), []int{0, 1, 2}}},
		},
		{
			name: "upsert then update then upsert",
			ops:  []txn.Operation{ups("t", 1, "n", int64(1)), upd("t", 1, "f", "a"), ups("t", 1, "n", int64(2))},
			want: []want{{ups("t", 1, "n", int64(2), "f", "a"), []int{0, 1, 2}}},
		},
		{
			name: "update then upsert: an update without setting the key",
			ops:  []txn.Operation{upd("t", 1, "f", "a"), ups("t", 1, "n", int64(2))},
			want: []want{{upd("t", 1, "f", "a", "n", int64(2)), []int{0, 1}}},
		},
		{
			name: "insert after the row's first operation is left to fail",
			ops:  []txn.Operation{upd("t", 1, "f", "a"), ins("t", 1, "n", int64(1)), upd("t", 1, "f", "b")},
			want: []want{{upd("t", 1, "f", "a"), []int{0}}, {ins("t", 1, "n", int64(1), "f", "b"), []int{1, 2}}},
		},
		{
			name: "delete closes the merge; insert after delete starts a new one",
			ops:  []txn.Operation{ins("t", 1, "n", int64(1)), upd("t", 1, "f", "a"), dele("t", 1), ins("t", 1, "n", int64(7)), upd("t", 1, "f", "c")},
			want: []want{{ins("t", 1, "n", int64(1), "f", "a"), []int{0, 1}}, {dele("t", 1), []int{2}}, {ins("t", 1, "n", int64(7), "f", "c"), []int{3, 4}}},
		},
		{
			name: "an insert missing a NOT NULL column starts no merge",
			ops:  []txn.Operation{ins("t", 1, "f", "a"), upd("t", 1, "n", int64(1))},
			want: []want{{ins("t", 1, "f", "a"), []int{0}}, {upd("t", 1, "n", int64(1)), []int{1}}},
		},
		{
			name: "a value the database may refuse is not overwritten",
			ops:  []txn.Operation{ins("t", 1, "n", int64(1), "small", int64(500)), upd("t", 1, "small", int64(5)), upd("t", 1, "small", int64(6))},
			want: []want{{ins("t", 1, "n", int64(1), "small", int64(500)), []int{0}}, {upd("t", 1, "small", int64(6)), []int{1, 2}}},
		},
		{
			name: "the same refused value again is not dropped",
			ops:  []txn.Operation{upd("t", 1, "small", int64(500)), upd("t", 1, "small", int64(500), "f", "a")},
			want: []want{{upd("t", 1, "small", int64(500), "f", "a"), []int{0, 1}}},
		},
		{
			name: "NULL in a NOT NULL column is not overwritten",
			ops:  []txn.Operation{upd("t", 1, "n", nil), upd("t", 1, "n", int64(2))},
			want: []want{{upd("t", 1, "n", nil), []int{0}}, {upd("t", 1, "n", int64(2)), []int{1}}},
		},
		{
			name: "a column with a sequence default is not merged into an insert",
			ops:  []txn.Operation{ins("t", 1, "n", int64(1)), upd("t", 1, "seq", int64(9)), upd("t", 1, "s", "y")},
			want: []want{{ins("t", 1, "n", int64(1)), []int{0}}, {upd("t", 1, "seq", int64(9), "s", "y"), []int{1, 2}}},
		},
		{
			name: "a literal default is overwritten",
			ops:  []txn.Operation{ins("t", 1, "n", int64(1)), upd("t", 1, "s", "y")},
			want: []want{{ins("t", 1, "n", int64(1), "s", "y"), []int{0, 1}}},
		},
		{
			name: "a table that is not mergeable keeps every operation, and no merge crosses a barrier",
			ops:  []txn.Operation{ins("k", 1), upd("k", 1, "v", int64(1)), ins("t", 1, "n", int64(1)), ins("b", 1), upd("t", 1, "f", "a")},
			want: []want{{ins("k", 1), []int{0}}, {upd("k", 1, "v", int64(1)), []int{1}}, {ins("t", 1, "n", int64(1)), []int{2}}, {ins("b", 1), []int{3}}, {upd("t", 1, "f", "a"), []int{4}}},
		},
		{
			name: "operations on tables that are not mergeable are crossed",
			ops:  []txn.Operation{ins("t", 1, "n", int64(1)), upd("k", 1, "v", int64(1)), upd("t", 1, "f", "a")},
			want: []want{{ins("t", 1, "n", int64(1), "f", "a"), []int{0, 2}}, {upd("k", 1, "v", int64(1)), []int{1}}},
		},
		{
			name: "an unknown table is a barrier",
			ops:  []txn.Operation{upd("t", 1, "f", "a"), upd("nope", 1, "v", int64(1)), upd("t", 1, "f", "b")},
			want: []want{{upd("t", 1, "f", "a"), []int{0}}, {upd("nope", 1, "v", int64(1)), []int{1}}, {upd("t", 1, "f", "b"), []int{2}}},
		},
		{
			name: "a key among the values naming another row is a barrier",
			ops: []txn.Operation{upd("t", 1, "f", "a"),
				{Op: txn.Insert, Table: "t", ID: "2", Values: map[string]any{"id": int64(1), "n": int64(1)}},
				upd("t", 1, "f", "b")},
			want: []want{{upd("t", 1, "f", "a"), []int{0}}, {txn.Operation{Op: txn.Insert, Table: "t", ID: "2", Values: map[string]any{"id": int64(1), "n": int64(1)}}, []int{1}}, {upd("t", 1, "f", "b"), []int{2}}},
		},
		{
			name: "an unknown column is left to fail alone",
			ops:  []txn.Operation{upd("t", 1, "f", "a"), upd("t", 1, "zz", "b")},
			want: []want{{upd("t", 1, "f", "a"), []int{0}}, {upd("t", 1, "zz", "b"), []int{1}}},
		},
		{
			name: "keys are compared in canonical form",
			ops:  []txn.Operation{ins("t", 1, "n", int64(1)), {Op: txn.Update, Table: "t", ID: "01", Values: row("f", "a")}},
			want: []want{{ins("t", 1, "n", int64(1), "f", "a"), []int{0, 1}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := cloneOps(tt.ops)
			got := Coalesce(tt.ops, testRules)
			if !reflect.DeepEqual(tt.ops, before) {
				t.Errorf("Coalesce modified its input")
			}
			if len(got) != len(tt.want) {
				t.Fatalf("plan of %d operations, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				if !reflect.DeepEqual(got[i].Op, w.op) || !slices.Equal(got[i].Steps, w.steps) {
					t.Errorf("plan[%d] = %+v steps %v, want %+v steps %v", i, got[i].Op, got[i].Steps, w.op, w.steps)
				}
			}
		})
	}
}

func cloneOps(ops []txn.Operation) []txn.Operation {
	out := slices.Clone(ops)
	for i := range out {
		out[i].Values = maps.Clone(out[i].Values)
	}
	return out
}

// FuzzCoalesce checks the property backends rely on: whenever the
// coalesced plan runs without a failure, running every transaction in log
// order (each atomic) fails none of them and leaves the same database. The
// database is a model of the test tables' rules (see tableT).
func FuzzCoalesce(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte{0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98, 0xa9, 0xba, 0xcb})
	f.Add([]byte("insert then update, update, upsert, delete"))
	f.Fuzz(func(t *testing.T, data []byte) {
		batch := decodeBatch(data)
		var ops []txn.Operation
		for _, tx := range batch {
			ops = append(ops, tx...)
		}
		plan := Coalesce(ops, testRules)
		checkCover(t, plan, len(ops))

		seq := newModel()
		failed := 0
		for _, tx := range batch {
			if seq.applyAtomically(tx) != nil {
				failed++
			}
		}
		merged := newModel()
		for _, m := range plan {
			if err := merged.apply(m.Op); err != nil {
				return // the backend falls back to the transactions one by one
			}
		}
		if failed > 0 {
			t.Fatalf("plan succeeded, %d transactions fail in order\nbatch %v\nplan %+v", failed, batch, plan)
		}
		if !reflect.DeepEqual(seq, merged) {
			t.Fatalf("states differ\nin order %+v\nplanned  %+v\nbatch %v\nplan %+v", seq, merged, batch, plan)
		}
	})
}

// checkCover fails unless every operation index appears in exactly one
// step list, each list ascending, the plan ordered by first step.
func checkCover(t *testing.T, plan []Merged, n int) {
	t.Helper()
	seen := make([]bool, n)
	for i, m := range plan {
		if len(m.Steps) == 0 || (i > 0 && m.Steps[0] <= plan[i-1].Steps[0]) || !slices.IsSorted(m.Steps) {
			t.Fatalf("plan[%d] steps %v out of order", i, m.Steps)
		}
		for _, s := range m.Steps {
			if seen[s] {
				t.Fatalf("step %d planned twice", s)
			}
			seen[s] = true
		}
	}
	if i := slices.Index(seen, false); i >= 0 {
		t.Fatalf("step %d not planned", i)
	}
}

// decodeBatch turns fuzz bytes into transactions of one to three
// operations on a few rows of the test tables.
func decodeBatch(data []byte) [][]txn.Operation {
	var batch [][]txn.Operation
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	for len(data) > 0 && len(batch) < 32 {
		n := 1 + int(next()%3)
		var tx []txn.Operation
		for range n {
			tx = append(tx, decodeOp(next(), next(), next()))
		}
		batch = append(batch, tx)
	}
	return batch
}

func decodeOp(a, b, c byte) txn.Operation {
	tables := []string{"t", "t", "t", "u", "k", "b"}
	table := tables[int(a>>4)%len(tables)]
	key := int64(a & 3)
	op := txn.Operation{Table: table, ID: strconv.FormatInt(key, 10)}
	var keyValue any = key
	if table == "u" {
		op.ID = "r" + op.ID
		keyValue = op.ID
	}
	op.Op = []txn.Kind{txn.Insert, txn.Update, txn.Update, txn.Upsert, txn.Delete}[int(a>>2&3+b>>7)%5]
	if op.Op == txn.Delete {
		return op
	}
	values := map[string]any{}
	if op.Op != txn.Update {
		values["id"] = keyValue
		if b&0x40 != 0 && table == "t" {
			values["id"] = int64(b & 3) // perhaps another row's key
		}
	}
	pick := func(bit byte, name string, v any) {
		if c&bit != 0 {
			values[name] = v
		}
	}
	switch table {
	case "t":
		pick(1, "n", []any{int64(b & 7), nil}[b>>3&1])
		pick(2, "small", []any{int64(b & 7), int64(200), nil}[int(b>>4&3)%3])
		pick(4, "s", fmt.Sprint("s", c>>4))
		pick(8, "seq", int64(c>>5))
		pick(16, "f", []any{"f", nil}[c>>5&1])
	default:
		pick(1, "v", int64(c>>1))
	}
	if len(values) > 0 {
		op.Values = values
	}
	return op
}

// model is a database holding the test tables, with their rules.
type model struct {
	Rows map[string]map[string]map[string]any
	Seq  int64 // t_seq, which an insert into t without seq advances
}

func newModel() *model { return &model{Rows: map[string]map[string]map[string]any{}} }

func (m *model) clone() *model {
	c := &model{Rows: map[string]map[string]map[string]any{}, Seq: m.Seq}
	for tb, rows := range m.Rows {
		c.Rows[tb] = map[string]map[string]any{}
		for k, r := range rows {
			c.Rows[tb][k] = maps.Clone(r)
		}
	}
	return c
}

var errModel = errors.New("refused")

// applyAtomically applies a transaction's operations, or none of them.
func (m *model) applyAtomically(tx []txn.Operation) error {
	saved := m.clone()
	for _, op := range tx {
		if err := m.apply(op); err != nil {
			*m = *saved
			return err
		}
	}
	return nil
}

// apply does what the stores' statements do: inserts take the key from
// their values if named, else from the id; updates and deletes need the row.
func (m *model) apply(op txn.Operation) error {
	r := testRules(op.Table)
	if r == nil {
		return errModel
	}
	t := r.Table
	key := op.ID
	if v, ok := op.Values["id"]; ok && op.Op != txn.Delete && op.Op != txn.Update {
		key = schema.KeyText(v)
	}
	if k, err := t.Key.NormalizeKey(key); err == nil {
		key = k
	}
	rows := m.Rows[op.Table]
	if rows == nil {
		rows = map[string]map[string]any{}
		m.Rows[op.Table] = rows
	}
	cur, exists := rows[key]
	set := func(row map[string]any, skipKey bool) error {
		for name, v := range op.Values {
			c := t.Column(name)
			if c == nil || !r.fits(c, v) {
				return errModel
			}
			if skipKey && name == "id" {
				continue
			}
			row[name] = v
		}
		return nil
	}
	switch op.Op {
	case txn.Insert, txn.Upsert:
		if exists {
			if op.Op == txn.Insert {
				return errModel
			}
			return set(cur, true)
		}
		row := map[string]any{}
		for _, c := range t.Columns {
			row[c.Name] = nil
		}
		row["id"] = t.Key.KeyValue(key)
		if err := set(row, false); err != nil {
			return err
		}
		if t == tableT {
			if _, ok := op.Values["s"]; !ok {
				row["s"] = "x"
			}
			if _, ok := op.Values["seq"]; !ok {
				m.Seq++
				row["seq"] = m.Seq
			}
		}
		for _, c := range t.Columns {
			if c.NotNull && row[c.Name] == nil {
				return errModel
			}
		}
		rows[key] = row
	case txn.Update:
		if !exists {
			return errModel
		}
		return set(cur, false)
	case txn.Delete:
		if !exists {
			return errModel
		}
		delete(rows, key)
	}
	return nil
}

func TestRepeats(t *testing.T) {
	op := func(table, id string) txn.Operation { return txn.Operation{Op: txn.Update, Table: table, ID: id} }
	for _, tc := range []struct {
		ops  []txn.Operation
		want bool
	}{
		{nil, false},
		{[]txn.Operation{op("t", "1"), op("t", "2"), op("u", "1")}, false},
		{[]txn.Operation{op("t", "1"), op("u", "1"), op("t", "1")}, true},
	} {
		if got := Repeats(tc.ops); got != tc.want {
			t.Errorf("Repeats(%v) = %v, want %v", tc.ops, got, tc.want)
		}
	}
}
