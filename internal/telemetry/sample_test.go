package telemetry

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/schema"
)

// kitchenSink is a table with a column of every kind.
func kitchenSink() *schema.Table {
	col := func(name, typ string, notNull bool) *schema.Column {
		c := &schema.Column{Name: name, Type: typ, Kind: schema.KindOfDeclared(typ), NotNull: notNull}
		if c.Kind == schema.Array {
			c.Elem = schema.KindOfDeclared(strings.TrimSuffix(typ, "[]"))
		}
		return c
	}
	cols := []*schema.Column{
		col("id", "uuid", true), col("t", "text", false), col("i", "bigint", false), col("r", "double precision", false),
		col("n", "numeric", false), col("b", "boolean", false), col("ts", "timestamptz", false), col("j", "jsonb", false),
		col("by", "bytea", false), col("a", "integer[]", false), col("nn", "text", true),
	}
	cols[len(cols)-1].Default = "'dflt'"
	return schema.NewTable("sink", cols, []string{"id"})
}

// TestCellRoundTrip checks that every canonical value survives the spill
// encoding unchanged.
func TestCellRoundTrip(t *testing.T) {
	t.Parallel()
	tab := kitchenSink()
	values := map[string][]any{
		"id": {"0190b5a0-0000-7000-8000-000000000000"},
		"t":  {"", "plain", "with,comma", `with "quotes"`, "line\nbreak", `\N`, "null", "<&>", "ünïcode ✓"},
		"i":  {int64(0), int64(-1), int64(1<<63 - 1), int64(-1 << 63)},
		"r":  {0.0, -0.5, 1e300, 3.141592653589793, 1e-7, 123456789.0},
		"n":  {json.Number("1.50"), json.Number("-12345678901234567890.000001")},
		"b":  {true, false},
		"ts": {"2026-11-23T21:00:00.123456789Z"},
		"j":  {json.RawMessage(`{"z":1,"a":[1,2,{"b":null}],"s":"x,y"}`), json.RawMessage(`null`), json.RawMessage(`"str"`), json.RawMessage(`12.50`)},
		"by": {[]byte{}, []byte{0, 1, 2, 255}},
		"a":  {[]any{int64(1), nil, int64(3)}, []any{}},
		"nn": {"x"},
	}
	for name, vs := range values {
		c := tab.Column(name)
		for _, v := range append(vs, nil, omitted{}) {
			if v == nil && c.NotNull {
				continue
			}
			cell, err := appendCell(nil, v)
			if err != nil {
				t.Fatalf("%s %#v: %v", name, v, err)
			}
			got, err := decodeCell(c, string(cell))
			if err != nil {
				t.Fatalf("%s %#v: decode %q: %v", name, v, cell, err)
			}
			if !reflect.DeepEqual(got, v) {
				t.Errorf("%s: %#v → %q → %#v", name, v, cell, got)
			}
		}
	}
	// SQL NULL and a JSON null stay apart.
	a, _ := appendCell(nil, nil)
	b, _ := appendCell(nil, json.RawMessage(`null`))
	if string(a) == string(b) {
		t.Fatalf("SQL NULL and JSON null both encode as %q", a)
	}
}

func TestSampleOf(t *testing.T) {
	t.Parallel()
	tab := kitchenSink()
	now := time.Date(2026, 11, 23, 21, 0, 0, 0, time.UTC)
	s, err := sampleOf(tab, map[string]any{"t": "x", "i": json.Number("7")}, now)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := s[0].(string)
	if !ok || len(id) != 36 {
		t.Fatalf("key not generated: %#v", s[0])
	}
	if s[1] != "x" || s[2] != int64(7) || s[len(s)-1] != "dflt" || !isOmitted(s[3]) {
		t.Fatalf("sample %#v", s)
	}
	if _, err := sampleOf(tab, map[string]any{"i": "seven"}, now); err == nil || !strings.Contains(err.Error(), `"i"`) {
		t.Fatalf("bad value: %v", err)
	}
	if _, err := sampleOf(tab, map[string]any{"nope": 1}, now); err == nil || !strings.Contains(err.Error(), "no such column") {
		t.Fatalf("unknown column: %v", err)
	}
}

func TestGroupsAndProject(t *testing.T) {
	t.Parallel()
	tab := schema.NewTable("g", []*schema.Column{{Name: "a"}, {Name: "b"}, {Name: "c"}}, nil)
	o := omitted{}
	batch := []sample{{1, 2, 3}, {4, o, 6}, {7, 8, 9}, {10, o, 12}, {o, o, o}}
	gs := groups(batch)
	if len(gs) != 3 || len(gs[0]) != 2 || len(gs[1]) != 2 || len(gs[2]) != 1 {
		t.Fatalf("groups %v", gs)
	}
	if gs[0][1][0] != 7 || gs[1][1][0] != 10 {
		t.Fatalf("order within groups lost: %v", gs)
	}
	cols, rows := project(tab, gs[1])
	if !reflect.DeepEqual(cols, []string{"a", "c"}) || !reflect.DeepEqual(rows, [][]any{{4, 6}, {10, 12}}) {
		t.Fatalf("project: %v %v", cols, rows)
	}
	if one := groups(batch[:1]); len(one) != 1 || &one[0][0] != &batch[0] {
		t.Fatal("a uniform batch is copied")
	}
}

// FuzzDecodeCell checks that no cell text panics the decoder and that a
// decoded value encodes back to a cell that decodes to the same value.
func FuzzDecodeCell(f *testing.F) {
	for _, s := range []string{"", `\N`, "1", "-1.5e3", `"x"`, "true", `{"a":1}`, `[1,null]`, `"AAE="`, `"2026-11-23T21:00:00Z"`} {
		f.Add(s)
	}
	tab := kitchenSink()
	f.Fuzz(func(t *testing.T, cell string) {
		for _, c := range tab.Columns {
			v, err := decodeCell(c, cell)
			if err != nil {
				continue
			}
			again, err := appendCell(nil, v)
			if err != nil {
				t.Fatalf("%s: %q decoded to %#v, which does not encode: %v", c.Name, cell, v, err)
			}
			w, err := decodeCell(c, string(again))
			if err != nil || !reflect.DeepEqual(v, w) {
				t.Fatalf("%s: %q → %#v → %q → %#v, %v", c.Name, cell, v, again, w, err)
			}
		}
	})
}
