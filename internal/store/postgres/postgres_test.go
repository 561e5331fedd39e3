package postgres

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/storetest"
	"github.com/spoolgw/spool/internal/txn"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openStore(t, newDatabase(t))
	})
}

// setup opens a store on a fresh database with the suite's tables.
func setup(t *testing.T) (*Store, string) {
	t.Helper()
	url := newDatabase(t)
	s := openStore(t, url)
	if err := s.Exec(t.Context(), storetest.Schema); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	return s, url
}

func obsTx(id string, kv ...any) *txn.Transaction {
	v := map[string]any{"id": id, "target": "M31"}
	for i := 0; i+1 < len(kv); i += 2 {
		v[kv[i].(string)] = kv[i+1]
	}
	return &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "obs", ID: id, Values: v}}}
}

func table(t *testing.T, s *Store, name string) *schema.Table {
	t.Helper()
	cat, err := s.Catalog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tb, err := cat.Table(name)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func wantRow(t *testing.T, s *Store, tb *schema.Table, key string, want schema.Row) {
	t.Helper()
	got, ok, err := s.Get(t.Context(), tb, key)
	if err != nil || !ok {
		t.Fatalf("get %s %s: %v, %v", tb.Name, key, ok, err)
	}
	if !reflect.DeepEqual(got, want) {
		for k := range want {
			if !reflect.DeepEqual(got[k], want[k]) {
				t.Errorf("%s.%s = %#v (%T), want %#v (%T)", tb.Name, k, got[k], got[k], want[k], want[k])
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s.%s = %#v, not wanted", tb.Name, k, got[k])
			}
		}
	}
}

func TestMigrationsConcurrentAndIdempotent(t *testing.T) {
	t.Parallel()
	url := newDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := Open(t.Context(), url, slog.New(slog.DiscardHandler))
			if err != nil {
				errs <- err
				return
			}
			errs <- errors.Join(s.Migrate(t.Context()), s.Close())
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("open or migrate while others do: %v", err)
		}
	}
	c := connect(t, url)
	var n, max int
	if err := c.QueryRow(t.Context(), `select count(*), max(version) from spool_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != len(migrations) || max != migrations[len(migrations)-1].version {
		t.Fatalf("spool_migrations holds %d rows up to %d, want %d", n, max, len(migrations))
	}
	s := openStore(t, url)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// TestCatalogTypes reads columns of PostgreSQL's types into kinds.
func TestCatalogTypes(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	if err := s.Exec(ctx, `
		create type mood as enum ('sad', 'ok', 'happy');
		create domain percent as numeric(5,2) check (value between 0 and 100);
		create table kinds (
			id bigint generated always as identity primary key,
			s smallint, i integer, serial_col serial,
			r real, d double precision, n numeric(10,2), p percent,
			b boolean, u uuid,
			t text, vc varchar(5), ch char(3), nm name,
			ts timestamp, tstz timestamptz(3), dt date,
			j json, jb jsonb, by bytea,
			ai int[], at text[], au uuid[], an numeric[], ats timestamptz[], ajb jsonb[], aby bytea[],
			m mood, iv interval, ip inet,
			g integer generated always as (i * 2) stored
		);
		create table part (id int, at date, primary key (id, at)) partition by range (at);
		create table part_2024 partition of part for values from ('2024-01-01') to ('2025-01-01');
		create view v as select 1 as one;`); err != nil {
		t.Fatal(err)
	}
	cat, err := s.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k, err := cat.Table("kinds")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]schema.Kind{
		"id": {schema.Integer}, "s": {schema.Integer}, "i": {schema.Integer}, "serial_col": {schema.Integer},
		"r": {schema.Real}, "d": {schema.Real}, "n": {schema.Numeric}, "p": {schema.Numeric},
		"b": {schema.Boolean}, "u": {schema.UUID},
		"t": {schema.Text}, "vc": {schema.Text}, "ch": {schema.Text}, "nm": {schema.Text},
		"ts": {schema.Timestamp}, "tstz": {schema.Timestamp}, "dt": {schema.Timestamp},
		"j": {schema.JSON}, "jb": {schema.JSON}, "by": {schema.Bytes},
		"ai": {schema.Array, schema.Integer}, "at": {schema.Array, schema.Text}, "au": {schema.Array, schema.UUID},
		"an": {schema.Array, schema.Numeric}, "ats": {schema.Array, schema.Timestamp}, "ajb": {schema.Array, schema.JSON},
		"aby": {schema.Array, schema.Bytes},
		"m":   {schema.Text}, "iv": {schema.Text}, "ip": {schema.Text}, "g": {schema.Integer},
	}
	if len(k.Columns) != len(want) {
		t.Errorf("kinds has %d columns, want %d", len(k.Columns), len(want))
	}
	for name, w := range want {
		c := k.Column(name)
		if c == nil {
			t.Errorf("no column %s", name)
			continue
		}
		if c.Kind != w[0] || (c.Kind == schema.Array && c.Elem != w[1]) {
			t.Errorf("%s (%s): kind %s elem %s, want %s %s", name, c.Type, c.Kind, c.Elem, w[0], w[1])
		}
	}
	types := map[string]string{"vc": "character varying(5)", "n": "numeric(10,2)", "tstz": "timestamp(3) with time zone", "ai": "integer[]", "p": "percent"}
	for name, typ := range types {
		if c := k.Column(name); c.Type != typ {
			t.Errorf("%s type %q, want %q", name, c.Type, typ)
		}
	}
	if k.Key == nil || k.Key.Name != "id" || !k.Key.HasDefault() {
		t.Errorf("key %+v, want id with a default (identity)", k.Key)
	}
	if c := k.Column("serial_col"); !c.HasDefault() || !c.NotNull {
		t.Errorf("serial_col: default %q, not null %v", c.Default, c.NotNull)
	}
	if c := k.Column("g"); !c.HasDefault() {
		t.Errorf("generated column g has no default: %+v", c)
	}
	if _, err := cat.Table("part"); err != nil {
		t.Errorf("partitioned table: %v", err)
	}
	for _, hidden := range []string{"part_2024", "v", "spool_fence", "spool_applied"} {
		if _, err := cat.Table(hidden); !errors.Is(err, schema.ErrUnknownTable) {
			t.Errorf("catalog shows %s (err %v)", hidden, err)
		}
	}
}

// TestRoundTripTypes writes and reads back arrays, exact numerics and
// other forms through the store, by Get and by Query.
func TestRoundTripTypes(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	if err := s.Exec(ctx, `create table vals (
		id text primary key, n numeric, n2 numeric(10,2), big numeric,
		ai int[], at text[], au uuid[], an numeric[], ats timestamptz[], ajb jsonb[], aby bytea[], ab boolean[], af float8[],
		ch char(4), r real, ts timestamp, dt date, m text)`); err != nil {
		t.Fatal(err)
	}
	u1, u2 := txn.NewID(), txn.NewID()
	row := schema.Row{
		"id": "a", "n": json.Number("1.50"), "n2": json.Number("2.50"), "big": json.Number("123456789012345678901234567890.000000000000000001"),
		"ai": []any{int64(1), nil, int64(-3)}, "at": []any{"x", `q"uo\te`, "", "NULL", "a,b{c}"},
		"au": []any{u1, u2}, "an": []any{json.Number("1.50"), json.Number("-0.001")},
		"ats": []any{"2024-05-06T07:08:09.123456000Z", nil}, "ajb": []any{json.RawMessage(`{"a":1}`), json.RawMessage(`[1,"x"]`)},
		"aby": []any{[]byte{0, 1, 0xff}, []byte{}}, "ab": []any{true, false}, "af": []any{0.1, 1e300},
		"ch": "ab  ", "r": 0.1, "ts": "2024-02-29T12:00:00.500000000Z", "dt": "2024-03-01T00:00:00.000000000Z", "m": "tab\there",
	}
	insert := func(id string, r schema.Row) *txn.Transaction {
		v := map[string]any(clone(r))
		v["id"] = id
		return &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "vals", ID: id, Values: v}}}
	}
	// Two transactions: the second runs after a JSON round trip, as the log
	// gives it.
	second := insert("b", row)
	body, _ := json.Marshal(second)
	var decoded txn.Transaction
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&decoded); err != nil {
		t.Fatal(err)
	}
	storetest.MustApply(t, s, insert("a", row), &decoded, insert("empty", schema.Row{"ai": []any{}, "at": []any{}}))

	vals := table(t, s, "vals")
	want := clone(row)
	want["ch"] = "ab" // char(n) reads back without its padding
	for _, id := range []string{"a", "b"} {
		want["id"] = id
		wantRow(t, s, vals, id, want)
	}
	empty := schema.Row{"id": "empty", "ai": []any{}, "at": []any{}}
	for _, c := range vals.Columns {
		if _, ok := empty[c.Name]; !ok {
			empty[c.Name] = nil
		}
	}
	wantRow(t, s, vals, "empty", empty)

	// Exact numerics compare by value: 1.5 finds "1.50".
	q := &query.Query{Table: vals, Conds: []query.Cond{{Column: vals.Column("n"), Op: query.Eq, Value: json.Number("1.5")}},
		Order: []query.Order{{Column: vals.Key}}}
	rows, err := s.Query(ctx, q, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0]["n"] != json.Number("1.50") {
		t.Fatalf("query n = 1.5: %v", rows)
	}
	q.Conds = []query.Cond{{Column: vals.Column("big"), Op: query.Gt, Value: json.Number("123456789012345678901234567890")}}
	if rows, err := s.Query(ctx, q, -1); err != nil || len(rows) != 2 {
		t.Fatalf("query big > …: %d rows, %v", len(rows), err)
	}
	q.Conds = []query.Cond{{Column: vals.Column("ts"), Op: query.Gte, Value: "2024-02-29T12:00:00.500000000Z"},
		{Column: vals.Column("dt"), Op: query.Lt, Value: "2024-03-01T00:00:00.000001000Z"}}
	if rows, err := s.Query(ctx, q, -1); err != nil || len(rows) != 2 {
		t.Fatalf("query on timestamp and date: %d rows, %v", len(rows), err)
	}
}

func clone(r schema.Row) schema.Row {
	c := make(schema.Row, len(r))
	for k, v := range r {
		c[k] = v
	}
	return c
}

// TestTextOrderBytewise: text sorts and compares byte-wise in the
// database, as schema.Compare does in the overlay, whatever the
// database's collation.
func TestTextOrderBytewise(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	if err := s.Exec(ctx, `create type mood as enum ('sad', 'ok', 'happy');
		create table words (id integer primary key, w text collate "en_US" , m mood)`); err != nil {
		// en_US may not exist; the column's collation is what matters, and
		// the C default of the test server would hide the bug.
		if err := s.Exec(ctx, `create type mood as enum ('sad', 'ok', 'happy');
			create table words (id integer primary key, w text collate "und-x-icu", m mood)`); err != nil {
			t.Skipf("no non-C collation to test with: %v", err)
		}
	}
	var batch []*txn.Transaction
	for i, w := range []string{"b", "B", "a", "Ä", "_"} {
		id := fmt.Sprint(i + 1)
		batch = append(batch, &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "words", ID: id,
			Values: map[string]any{"id": int64(i + 1), "w": w, "m": []string{"sad", "ok", "happy", "ok", "sad"}[i]}}}})
	}
	storetest.MustApply(t, s, batch...)
	words := table(t, s, "words")
	for _, o := range []struct {
		col  string
		want []string
	}{
		{"w", []string{"B", "_", "a", "b", "Ä"}},
		{"m", []string{"happy", "ok", "ok", "sad", "sad"}},
	} {
		q := &query.Query{Table: words, Order: []query.Order{{Column: words.Column(o.col)}, {Column: words.Key}}}
		rows, err := s.Query(ctx, q, -1)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rows {
			got = append(got, r[o.col].(string))
		}
		if !reflect.DeepEqual(got, o.want) {
			t.Errorf("order by %s: %q, want %q", o.col, got, o.want)
		}
	}
	q := &query.Query{Table: words, Conds: []query.Cond{{Column: words.Column("w"), Op: query.Lt, Value: "a"}}, Order: []query.Order{{Column: words.Key}}}
	if rows, err := s.Query(ctx, q, -1); err != nil || len(rows) != 2 {
		t.Errorf("w < 'a': %v, %v; want B and _", rows, err)
	}
	q.Conds = []query.Cond{{Column: words.Column("m"), Op: query.In, Values: []any{"ok", "nope"}}}
	if rows, err := s.Query(ctx, q, -1); err != nil || len(rows) != 2 {
		t.Errorf("m in (ok, nope): %v, %v", rows, err)
	}
}

// TestErrorCodes checks the SQLSTATEs that dead letters carry, among them
// a column dropped after the store read the catalog.
func TestErrorCodes(t *testing.T) {
	t.Parallel()
	s, url := setup(t)
	ctx := t.Context()
	if err := s.Exec(ctx, `create table limits (id text primary key, small smallint, short varchar(3), pos integer check (pos > 0), gone text)`); err != nil {
		t.Fatal(err)
	}
	taken := txn.NewID()
	storetest.MustApply(t, s, obsTx(taken, "code", "taken"))
	row := func(v map[string]any) *txn.Transaction {
		id := txn.NewID()
		v["id"] = id
		return &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "limits", ID: id, Values: v}}}
	}
	frame := txn.NewID()
	cases := []struct {
		tx   *txn.Transaction
		code string
	}{
		{obsTx(txn.NewID(), "code", "taken"), "23505"},
		{obsTx(taken), "23505"},
		{&txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "obs", ID: frame,
			Values: map[string]any{"id": frame}}}}, "23502"},
		{&txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "frames", ID: frame,
			Values: map[string]any{"id": frame, "obs_id": txn.NewID()}}}}, "23503"},
		{row(map[string]any{"small": int64(70000)}), "22003"},
		{row(map[string]any{"short": "four"}), "22001"},
		{row(map[string]any{"pos": int64(-1)}), "23514"},
		{row(map[string]any{"short": "nul\x00"}), "22021"},
		{row(map[string]any{"gone": "x"}), "42703"},
	}
	// The column goes after the store read the catalog: the write was
	// queued against a column that no longer exists.
	c := connect(t, url)
	if _, err := run(ctx, c, `alter table limits drop column gone`); err != nil {
		t.Fatal(err)
	}
	// All in one batch with a good transaction at the end: the fast path
	// fails, the slow path finds each.
	var batch []*txn.Transaction
	for _, c := range cases {
		batch = append(batch, c.tx)
	}
	good := obsTx(txn.NewID())
	out, err := s.ApplyBatch(ctx, append(batch, good), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		checkCode(t, i, out[i].Err, c.code)
		dl, err := s.DeadLetter(ctx, c.tx.ID)
		if err != nil || dl.Code != c.code {
			t.Errorf("case %d: dead letter %+v, %v; want code %s", i, dl, err, c.code)
		}
	}
	if o := out[len(out)-1]; o.Err != nil || o.Duplicate {
		t.Errorf("good transaction: %+v", o)
	}
	// Each alone, under fresh ids. The store has read the catalog again
	// since the database said the column is gone: it knows now, and fails
	// the write to it without asking the database.
	cases[len(cases)-1].code = ""
	for i, c := range cases {
		out, err := s.ApplyBatch(ctx, []*txn.Transaction{{ID: txn.NewID(), Operations: c.tx.Operations}}, nil)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		checkCode(t, i, out[0].Err, c.code)
	}
}

func checkCode(t *testing.T, i int, err error, code string) {
	t.Helper()
	var ae *store.ApplyError
	if !errors.As(err, &ae) || ae.Code != code {
		t.Errorf("case %d: error %v, want code %s", i, err, code)
	}
}

// TestDeferredConstraint: a deferred foreign key fails the transaction that
// broke it, not the commit of the whole batch.
func TestDeferredConstraint(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	if err := s.Exec(ctx, `create table parent (id text primary key);
		create table child (id text primary key, parent text references parent (id) deferrable initially deferred)`); err != nil {
		t.Fatal(err)
	}
	ins := func(table, id string, v map[string]any) *txn.Transaction {
		v["id"] = id
		return &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: table, ID: id, Values: v}}}
	}
	batch := []*txn.Transaction{
		ins("parent", "p1", map[string]any{}),
		ins("child", "c1", map[string]any{"parent": "p1"}),
		ins("child", "c2", map[string]any{"parent": "nobody"}),
		ins("child", "c3", map[string]any{"parent": "p1"}),
	}
	out, err := s.ApplyBatch(ctx, batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if (o.Err != nil) != (i == 2) {
			t.Errorf("transaction %d: %+v", i, o.Err)
		}
	}
	checkCode(t, 2, out[2].Err, "23503")
}

// TestMergedInserts puts a bad row in the middle of a run of inserts that
// the fast path merges into one statement: that one is dead-lettered, the
// rest applied, and an update between inserts keeps its order.
func TestMergedInserts(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	taken := txn.NewID()
	storetest.MustApply(t, s, obsTx(taken, "code", "taken"))
	var batch []*txn.Transaction
	var ids []string
	for i := range 50 {
		id := txn.NewID()
		ids = append(ids, id)
		code := fmt.Sprintf("c%d", i)
		if i == 20 {
			code = "taken"
		}
		batch = append(batch, obsTx(id, "code", code, "frames", int64(i)))
		if i == 30 {
			batch = append(batch, &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{
				{Op: txn.Update, Table: "obs", ID: ids[29], Values: map[string]any{"frames": int64(-29)}}}})
		}
	}
	out, err := s.ApplyBatch(ctx, batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if (o.Err != nil) != (i == 20) || o.Duplicate {
			t.Errorf("transaction %d: %+v", i, o)
		}
	}
	obs := table(t, s, "obs")
	q := &query.Query{Table: obs, Conds: []query.Cond{{Column: obs.Column("code"), Op: query.Neq, Value: "taken"}}, Order: []query.Order{{Column: obs.Key}}}
	rows, err := s.Query(ctx, q, -1)
	if err != nil || len(rows) != 49 {
		t.Fatalf("%d rows, %v; want 49", len(rows), err)
	}
	if r, _, _ := s.Get(ctx, obs, ids[29]); r["frames"] != int64(-29) {
		t.Errorf("updated row: %v", r)
	}
	// The same batch again is all duplicates (its dead letter keeps its fate).
	out, err = s.ApplyBatch(ctx, batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if (i == 20) != (o.Err != nil) || (i != 20) != o.Duplicate {
			t.Errorf("replayed transaction %d: %+v", i, o)
		}
	}
}

// TestCatalogRefresh writes to a table and a column created behind the
// store's back.
func TestCatalogRefresh(t *testing.T) {
	t.Parallel()
	s, url := setup(t)
	ctx := t.Context()
	c := connect(t, url)
	if _, err := run(ctx, c, `create table "odd ""name""" (id text primary key, v integer)`); err != nil {
		t.Fatal(err)
	}
	if _, err := run(ctx, c, `alter table obs add column seeing real`); err != nil {
		t.Fatal(err)
	}
	id := txn.NewID()
	batch := []*txn.Transaction{
		{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: `odd "name"`, ID: "k", Values: map[string]any{"id": "k", "v": int64(3)}}}},
		obsTx(id, "seeing", 0.75),
		{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "nope", ID: "x", Values: map[string]any{"id": "x"}}}},
	}
	out, err := s.ApplyBatch(ctx, batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Err != nil || out[1].Err != nil {
		t.Fatalf("outcomes %+v, want the first two applied", out)
	}
	if !errors.Is(out[2].Err, schema.ErrUnknownTable) {
		t.Fatalf("unknown table: %v, want schema.ErrUnknownTable", out[2].Err)
	}
	row, ok, err := s.Get(ctx, table(t, s, `odd "name"`), "k")
	if err != nil || !ok || row["v"] != int64(3) {
		t.Fatalf("get: %v, %v, %v", row, ok, err)
	}
	if r, _, _ := s.Get(ctx, table(t, s, "obs"), id); r["seeing"] != 0.75 {
		t.Errorf("seeing = %v", r["seeing"])
	}
}

// TestReadForms reads values PostgreSQL wrote itself in canonical forms.
func TestReadForms(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	if err := s.Exec(ctx, `create table stamps (id integer primary key, at timestamptz default now(), loc timestamp default localtimestamp,
			d date, f real, n numeric(6,3), ok bool, j json, iv interval, u uuid);
		insert into stamps (id, d, f, n, ok, j, iv, u) values (1, '2024-03-04', 0.1, 7.25, true, '{"b": [1, 2],  "a": null}', '1 day', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11')`); err != nil {
		t.Fatal(err)
	}
	row, ok, err := s.Get(ctx, table(t, s, "stamps"), "1")
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	for _, col := range []string{"at", "loc"} {
		at, isString := row[col].(string)
		ts, err := time.Parse(schema.TimeFormat, at)
		if !isString || err != nil || time.Since(ts).Abs() > time.Hour {
			t.Errorf("%s = %#v, want canonical timestamp text of about now", col, row[col])
		}
	}
	want := schema.Row{"id": int64(1), "d": "2024-03-04T00:00:00.000000000Z", "f": 0.1, "n": json.Number("7.250"), "ok": true,
		"j": json.RawMessage(`{"b":[1,2],"a":null}`), "iv": "1 day", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}
	for k, v := range want {
		if !reflect.DeepEqual(row[k], v) {
			t.Errorf("%s = %#v, want %#v", k, row[k], v)
		}
	}
}

// TestExec runs several statements at once, and reports an error.
func TestExec(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	if err := s.Exec(ctx, `create table a (id text primary key); create table b (id text primary key); insert into a values ('x')`); err != nil {
		t.Fatal(err)
	}
	if row, ok, err := s.Get(ctx, table(t, s, "a"), "x"); err != nil || !ok {
		t.Fatalf("get: %v %v %v", row, ok, err)
	}
	table(t, s, "b")
	if err := s.Exec(ctx, `create table c (id text primary key); select * from nowhere`); err == nil {
		t.Fatal("exec with a failing statement: no error")
	}
}

// TestCommitLSN: every outcome carries the batch's commit position, which
// grows from batch to batch and which the primary has passed.
func TestCommitLSN(t *testing.T) {
	t.Parallel()
	s, url := setup(t)
	ctx := t.Context()
	var last txn.LSN
	for _, batch := range [][]*txn.Transaction{obsBatch(3), obsBatch(1)} {
		out, err := s.ApplyBatch(ctx, batch, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range out {
			if o.LSN == 0 || o.LSN != out[0].LSN {
				t.Errorf("outcome %d: LSN %v, want the batch's", i, o.LSN)
			}
		}
		if out[0].LSN <= last {
			t.Errorf("LSN %v after %v", out[0].LSN, last)
		}
		last = out[0].LSN
	}
	var text string
	if err := connect(t, url).QueryRow(ctx, `select pg_current_wal_insert_lsn()::text`).Scan(&text); err != nil {
		t.Fatal(err)
	}
	if now, err := txn.ParseLSN(text); err != nil || now < last {
		t.Errorf("WAL at %v (%v), before the last commit %v", now, err, last)
	}
}
