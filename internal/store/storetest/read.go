package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

func testGet(t *testing.T, f *fixture) {
	id := txn.NewID()
	f.mustApply(
		tx(insertObs(id, fullObs(id))),
		tx(insert("counters", "n", "-3", int64(-3), schema.Row{"label": "minus three"})),
	)
	f.wantRow("obs", id, fullObs(id))
	f.wantNoRow("obs", txn.NewID())
	f.wantRow("counters", "-3", schema.Row{"n": int64(-3), "label": "minus three"})
	f.wantNoRow("counters", "3")
}

// queryRows inserts four obs rows with nulls in several columns and returns
// them by name, as canonical rows. Their ids sort in the order r1…r4.
func queryRows(t *testing.T, f *fixture) map[string]schema.Row {
	t.Helper()
	day := func(d int) string { return fmt.Sprintf("2024-01-%02dT00:00:00.000000000Z", d) }
	rows := map[string]schema.Row{}
	add := func(name, target, code string, exposure any, frames int64, done any, started any, price any) {
		id := txn.NewID()
		rows[name] = merge(emptyObs(id, target), schema.Row{
			"code": code, "exposure": exposure, "frames": frames, "done": done, "started_at": started, "price": price,
		})
	}
	add("r1", "M31", "a", 10.0, 1, true, day(1), json.Number("1.5"))
	add("r2", "M42", "b", 20.0, 2, false, day(2), json.Number("2.5"))
	add("r3", "M31", "c", nil, 3, nil, nil, nil)
	add("r4", "M51", "d", 40.0, 4, true, day(4), json.Number("10"))
	var batch []*txn.Transaction
	for _, name := range []string{"r1", "r2", "r3", "r4"} {
		r := rows[name]
		batch = append(batch, tx(insertObs(r["id"].(string), r)))
	}
	f.mustApply(batch...)
	return rows
}

// runQuery runs q and checks the result is exactly the named rows, in order,
// and that the overlay's rules (Query.Match, Query.Less) agree.
func runQuery(t *testing.T, f *fixture, rows map[string]schema.Row, q *query.Query, limit int, want []string) {
	t.Helper()
	got, err := f.s.Query(f.ctx, q, limit)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	name := map[string]string{}
	for n, r := range rows {
		name[r["id"].(string)] = n
	}
	var gotNames []string
	for _, r := range got {
		gotNames = append(gotNames, name[r["id"].(string)])
	}
	if !slices.Equal(gotNames, want) {
		t.Fatalf("rows %v, want %v", gotNames, want)
	}
	for i, r := range got {
		equalRow(t, r, rows[want[i]])
	}
	var overlay []schema.Row
	for _, n := range []string{"r1", "r2", "r3", "r4"} {
		if q.Match(rows[n]) {
			overlay = append(overlay, rows[n])
		}
	}
	slices.SortStableFunc(overlay, q.Less)
	if limit >= 0 && len(overlay) > limit {
		overlay = overlay[:limit]
	}
	var overlayNames []string
	for _, r := range overlay {
		overlayNames = append(overlayNames, name[r["id"].(string)])
	}
	if !slices.Equal(gotNames, overlayNames) {
		t.Fatalf("database gives %v, the overlay's rules %v", gotNames, overlayNames)
	}
}

func testQuery(t *testing.T, f *fixture) {
	rows := queryRows(t, f)
	obs := f.table("obs")
	col := obs.Column
	day2 := "2024-01-02T00:00:00.000000000Z"
	cases := []struct {
		name  string
		conds []query.Cond
		want  []string
	}{
		{"none", nil, []string{"r1", "r2", "r3", "r4"}},
		{"eq text", []query.Cond{{Column: col("target"), Op: query.Eq, Value: "M31"}}, []string{"r1", "r3"}},
		{"eq key", []query.Cond{{Column: col("id"), Op: query.Eq, Value: rows["r2"]["id"]}}, []string{"r2"}},
		{"neq text", []query.Cond{{Column: col("target"), Op: query.Neq, Value: "M31"}}, []string{"r2", "r4"}},
		{"neq excludes null", []query.Cond{{Column: col("exposure"), Op: query.Neq, Value: 10.0}}, []string{"r2", "r4"}},
		{"lt real", []query.Cond{{Column: col("exposure"), Op: query.Lt, Value: 20.0}}, []string{"r1"}},
		{"lte real", []query.Cond{{Column: col("exposure"), Op: query.Lte, Value: 20.0}}, []string{"r1", "r2"}},
		{"gt integer", []query.Cond{{Column: col("frames"), Op: query.Gt, Value: int64(2)}}, []string{"r3", "r4"}},
		{"gte integer", []query.Cond{{Column: col("frames"), Op: query.Gte, Value: int64(2)}}, []string{"r2", "r3", "r4"}},
		{"in integer", []query.Cond{{Column: col("frames"), Op: query.In, Values: []any{int64(1), int64(4), int64(9)}}}, []string{"r1", "r4"}},
		{"in text", []query.Cond{{Column: col("code"), Op: query.In, Values: []any{"b", "c"}}}, []string{"r2", "r3"}},
		{"is null", []query.Cond{{Column: col("exposure"), Op: query.IsNull}}, []string{"r3"}},
		{"not null", []query.Cond{{Column: col("exposure"), Op: query.NotNull}}, []string{"r1", "r2", "r4"}},
		{"eq true", []query.Cond{{Column: col("done"), Op: query.Eq, Value: true}}, []string{"r1", "r4"}},
		{"eq false", []query.Cond{{Column: col("done"), Op: query.Eq, Value: false}}, []string{"r2"}},
		{"gt timestamp", []query.Cond{{Column: col("started_at"), Op: query.Gt, Value: "2024-01-01T12:00:00.000000000Z"}}, []string{"r2", "r4"}},
		{"lte timestamp", []query.Cond{{Column: col("started_at"), Op: query.Lte, Value: day2}}, []string{"r1", "r2"}},
		{"lt numeric", []query.Cond{{Column: col("price"), Op: query.Lt, Value: json.Number("3")}}, []string{"r1", "r2"}},
		{"gte numeric", []query.Cond{{Column: col("price"), Op: query.Gte, Value: json.Number("2.5")}}, []string{"r2", "r4"}},
		{"eq uuid", []query.Cond{{Column: col("id"), Op: query.In, Values: []any{rows["r1"]["id"], rows["r3"]["id"]}}}, []string{"r1", "r3"}},
		{"two conditions", []query.Cond{
			{Column: col("target"), Op: query.Eq, Value: "M31"},
			{Column: col("exposure"), Op: query.NotNull},
		}, []string{"r1"}},
		{"nothing", []query.Cond{{Column: col("target"), Op: query.Eq, Value: "M99"}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := &query.Query{Table: obs, Conds: c.conds, Order: []query.Order{{Column: obs.Key}}}
			runQuery(t, f, rows, q, query.DefaultLimit, c.want)
		})
	}
}

func testQueryOrder(t *testing.T, f *fixture) {
	rows := queryRows(t, f)
	obs := f.table("obs")
	by := func(name string, desc bool) query.Order { return query.Order{Column: obs.Column(name), Desc: desc} }
	key := query.Order{Column: obs.Key}
	cases := []struct {
		name  string
		conds []query.Cond
		order []query.Order
		limit int
		want  []string
	}{
		{"asc nulls first", nil, []query.Order{by("exposure", false), key}, 100, []string{"r3", "r1", "r2", "r4"}},
		{"desc nulls last", nil, []query.Order{by("exposure", true), key}, 100, []string{"r4", "r2", "r1", "r3"}},
		{"boolean asc", nil, []query.Order{by("done", false), key}, 100, []string{"r3", "r2", "r1", "r4"}},
		{"boolean desc", nil, []query.Order{by("done", true), key}, 100, []string{"r1", "r4", "r2", "r3"}},
		{"numeric asc", nil, []query.Order{by("price", false), key}, 100, []string{"r3", "r1", "r2", "r4"}},
		{"timestamp desc", nil, []query.Order{by("started_at", true), key}, 100, []string{"r4", "r2", "r1", "r3"}},
		{"two keys", nil, []query.Order{by("target", false), by("exposure", true), key}, 100, []string{"r1", "r3", "r2", "r4"}},
		{"key desc", nil, []query.Order{{Column: obs.Key, Desc: true}}, 100, []string{"r4", "r3", "r2", "r1"}},
		{"limit", nil, []query.Order{by("exposure", false), key}, 2, []string{"r3", "r1"}},
		{"limit zero", nil, []query.Order{key}, 0, nil},
		{"filter order limit", []query.Cond{{Column: obs.Column("frames"), Op: query.Gte, Value: int64(2)}},
			[]query.Order{by("frames", true), key}, 2, []string{"r4", "r3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := &query.Query{Table: obs, Conds: c.conds, Order: c.order}
			runQuery(t, f, rows, q, c.limit, c.want)
		})
	}
}

// testReadOnlyTable reads a table without a primary key, which spool can
// read but not write: a write to it is dead-lettered.
func testReadOnlyTable(t *testing.T, f *fixture) {
	if err := f.s.Exec(f.ctx, `insert into readings (ts, v) values ('a', 1.5); insert into readings (ts, v) values ('b', null)`); err != nil {
		t.Fatalf("insert readings: %v", err)
	}
	readings := f.table("readings")
	q := &query.Query{Table: readings, Order: []query.Order{{Column: readings.Column("v"), Desc: true}}}
	got, err := f.s.Query(f.ctx, q, query.DefaultLimit)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("rows %v, want 2", got)
	}
	equalRow(t, got[0], schema.Row{"ts": "a", "v": 1.5})
	equalRow(t, got[1], schema.Row{"ts": "b", "v": nil})

	write := tx(txn.Operation{Op: txn.Insert, Table: "readings", ID: "c", Values: map[string]any{"ts": "c", "v": 2.0}})
	out := f.apply(nil, write)
	if out[0].Err == nil {
		t.Fatal("write to a table without a primary key: applied")
	}
	f.wantApplied(write.ID, false)
}
