package sqlgen

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// table is t(id integer primary key, a text, b real).
func table() *schema.Table {
	return schema.NewTable("t", []*schema.Column{
		{Name: "id", Type: "integer", Kind: schema.Integer, NotNull: true},
		{Name: "a", Type: "text", Kind: schema.Text},
		{Name: "b", Type: "real", Kind: schema.Real},
	}, []string{"id"})
}

// plain binds values as they are.
func plain(d Dialect) *Builder {
	return &Builder{Dialect: d, Bind: func(_ *schema.Column, v any) (any, error) { return v, nil }}
}

func TestIdent(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"a", `we"ird`, "nul\x00in", `""`, ""} {
		if got, want := Postgres.Ident(name), (pgx.Identifier{name}).Sanitize(); got != want {
			t.Errorf("Postgres.Ident(%q) = %s, pgx quotes %s", name, got, want)
		}
		if got, want := Postgres.Table("s", name), (pgx.Identifier{"s", name}).Sanitize(); got != want {
			t.Errorf("Postgres.Table(s, %q) = %s, pgx quotes %s", name, got, want)
		}
	}
	if got, want := SQLite.Ident(`we"ird`), `"we""ird"`; got != want {
		t.Errorf("SQLite.Ident = %s, want %s", got, want)
	}
	if got, want := SQLite.Ident("nul\x00in"), "\"nul\x00in\""; got != want {
		t.Errorf("SQLite.Ident keeps a NUL: got %q, want %q", got, want)
	}
	if got, want := SQLite.Table("", "t"), `"t"`; got != want {
		t.Errorf("SQLite.Table without schema = %s, want %s", got, want)
	}
}

func TestWriteSQL(t *testing.T) {
	t.Parallel()
	tb := table()
	tests := []struct {
		kind   txn.Kind
		names  []string
		pg, sq string
	}{
		{txn.Insert, []string{"a", "b", "id"},
			`insert into "s"."t" ("a", "b", "id") values ($1, $2, $3)`,
			`insert into "t" ("a", "b", "id") values (?, ?, ?)`},
		{txn.Upsert, []string{"a", "id"},
			`insert into "s"."t" ("a", "id") values ($1, $2) on conflict ("id") do update set "a" = excluded."a"`,
			`insert into "t" ("a", "id") values (?, ?) on conflict ("id") do update set "a" = excluded."a"`},
		{txn.Upsert, []string{"id"},
			`insert into "s"."t" ("id") values ($1) on conflict ("id") do nothing`,
			`insert into "t" ("id") values (?) on conflict ("id") do nothing`},
		{txn.Update, []string{"a", "b"},
			`update "s"."t" set "a" = $1, "b" = $2 where "id" = $3`,
			`update "t" set "a" = ?, "b" = ? where "id" = ?`},
		{Exists, nil, `select 1 from "s"."t" where "id" = $1`, `select 1 from "t" where "id" = ?`},
		{txn.Delete, nil, `delete from "s"."t" where "id" = $1`, `delete from "t" where "id" = ?`},
		{"bogus", nil, "", ""},
	}
	for _, tt := range tests {
		w := &Write{Table: tb, Kind: tt.kind, Names: tt.names}
		if got := Postgres.WriteSQL(Postgres.Table("s", "t"), w); got != tt.pg {
			t.Errorf("Postgres %s:\n got %s\nwant %s", tt.kind, got, tt.pg)
		}
		if got := SQLite.WriteSQL(SQLite.Ident("t"), w); got != tt.sq {
			t.Errorf("SQLite %s:\n got %s\nwant %s", tt.kind, got, tt.sq)
		}
	}
}

func TestInsertRows(t *testing.T) {
	t.Parallel()
	if got, want := SQLite.Insert(`"t"`, []string{"a", "b"}, 3), `insert into "t" ("a", "b") values (?, ?), (?, ?), (?, ?)`; got != want {
		t.Errorf("SQLite:\n got %s\nwant %s", got, want)
	}
	if got, want := Postgres.Insert(`"t"`, []string{"a", "b"}, 2), `insert into "t" ("a", "b") values ($1, $2), ($3, $4)`; got != want {
		t.Errorf("Postgres:\n got %s\nwant %s", got, want)
	}
	if got, want := Postgres.Idents([]string{"a", `b"`}), `"a", "b"""`; got != want {
		t.Errorf("Idents = %s, want %s", got, want)
	}
}

func TestBindWrite(t *testing.T) {
	t.Parallel()
	tb := table()
	lookup := func(name string, _ map[string]any) (*schema.Table, error) {
		if name != "t" {
			return nil, fmt.Errorf("table %q: %w", name, schema.ErrUnknownTable)
		}
		return tb, nil
	}
	b := plain(SQLite)
	tests := []struct {
		name  string
		op    txn.Operation
		want  Write
		fails bool
	}{
		{name: "insert names its key", op: txn.Operation{Op: txn.Insert, Table: "t", ID: "7", Values: map[string]any{"id": int64(7), "b": 1.5}},
			want: Write{Table: tb, Kind: txn.Insert, Names: []string{"b", "id"}, Args: []any{1.5, int64(7)}}},
		{name: "upsert without its key", op: txn.Operation{Op: txn.Upsert, Table: "t", ID: "7", Values: map[string]any{"a": "x"}},
			want: Write{Table: tb, Kind: txn.Upsert, Names: []string{"a", "id"}, Args: []any{"x", int64(7)}}},
		{name: "update", op: txn.Operation{Op: txn.Update, Table: "t", ID: "7", Values: map[string]any{"b": 2.0, "a": "y"}},
			want: Write{Table: tb, Kind: txn.Update, Names: []string{"a", "b"}, Args: []any{"y", 2.0, int64(7)}}},
		{name: "update without values", op: txn.Operation{Op: txn.Update, Table: "t", ID: "7"},
			want: Write{Table: tb, Kind: Exists, Names: []string{}, Args: []any{int64(7)}}},
		{name: "delete ignores values", op: txn.Operation{Op: txn.Delete, Table: "t", ID: "7", Values: map[string]any{"nope": 1}},
			want: Write{Table: tb, Kind: txn.Delete, Names: []string{}, Args: []any{int64(7)}}},
		{name: "unknown table", op: txn.Operation{Op: txn.Insert, Table: "u", ID: "7"}, fails: true},
		{name: "unknown column", op: txn.Operation{Op: txn.Insert, Table: "t", ID: "7", Values: map[string]any{"nope": 1}}, fails: true},
		{name: "bad value", op: txn.Operation{Op: txn.Update, Table: "t", ID: "7", Values: map[string]any{"b": "not a number"}}, fails: true},
		{name: "bad key", op: txn.Operation{Op: txn.Delete, Table: "t", ID: "seven"}, fails: true},
		{name: "unknown operation", op: txn.Operation{Op: "merge", Table: "t", ID: "7"}, fails: true},
	}
	for _, tt := range tests {
		w, fail, err := b.BindWrite(tt.op, lookup)
		if err != nil {
			t.Errorf("%s: transient error %v", tt.name, err)
			continue
		}
		if tt.fails {
			if fail == nil {
				t.Errorf("%s: no failure, bound %+v", tt.name, w)
			}
			continue
		}
		if fail != nil {
			t.Errorf("%s: %v", tt.name, fail)
			continue
		}
		if !reflect.DeepEqual(w, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, w, tt.want)
		}
	}
	down := errors.New("database down")
	if _, fail, err := b.BindWrite(txn.Operation{Op: txn.Delete, Table: "t", ID: "7"}, func(string, map[string]any) (*schema.Table, error) {
		return nil, down
	}); fail != nil || !errors.Is(err, down) {
		t.Errorf("lookup failure: fail %v, err %v; want err %v", fail, err, down)
	}
}

func TestQuerySQL(t *testing.T) {
	t.Parallel()
	tb := table()
	id, a, bc := tb.Column("id"), tb.Column("a"), tb.Column("b")
	q := &query.Query{Table: tb,
		Conds: []query.Cond{
			{Column: bc, Op: query.Gt, Value: 1.5},
			{Column: id, Op: query.In, Values: []any{int64(1), int64(2)}},
			{Column: a, Op: query.IsNull},
			{Column: a, Op: query.In},
		},
		Order: []query.Order{{Column: bc, Desc: true}, {Column: id}},
	}
	text, args, err := plain(SQLite).QuerySQL(`"t"`, q, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := `select "id", "a", "b" from "t" as r where "b" > ? and "id" in (?, ?) and "a" is null and 0 order by r."b" desc nulls last, r."id" asc nulls first limit ?`
	if text != want {
		t.Errorf("SQLite:\n got %s\nwant %s", text, want)
	}
	if want := []any{1.5, int64(1), int64(2), int64(10)}; !reflect.DeepEqual(args, want) {
		t.Errorf("SQLite args %v, want %v", args, want)
	}

	// A store that selects and compares by expressions, casts and binds
	// lists as arrays, as the PostgreSQL store does.
	pg := &Builder{Dialect: Postgres,
		Bind:   func(_ *schema.Column, v any) (any, error) { return fmt.Sprint(v), nil },
		Select: func(c *schema.Column) string { return Postgres.Ident(c.Name) + "::text" },
		Compare: func(c *schema.Column, qual string, eq bool) string {
			if eq {
				return qual + Postgres.Ident(c.Name) + "::text"
			}
			return qual + Postgres.Ident(c.Name) + ` collate "C"`
		},
		Cast:      func(c *schema.Column) string { return c.Type },
		BindArray: func(_ *schema.Column, vs []any) (any, error) { return fmt.Sprint(vs), nil },
	}
	q.Conds = append(q.Conds, query.Cond{Column: a, Op: query.Neq, Value: "x"})
	text, args, err = pg.QuerySQL(`"s"."t"`, q, -1)
	if err != nil {
		t.Fatal(err)
	}
	want = `select "id"::text, "a"::text, "b"::text from "s"."t" as r where "b" collate "C" > $1::real and "id"::text = any($2::integer[]) and "a" is null and false and "a"::text <> $3::text order by r."b" collate "C" desc nulls last, r."id" collate "C" asc nulls first`
	if text != want {
		t.Errorf("Postgres:\n got %s\nwant %s", text, want)
	}
	if want := []any{"1.5", "[1 2]", "x"}; !reflect.DeepEqual(args, want) {
		t.Errorf("Postgres args %v, want %v", args, want)
	}

	q.Conds = []query.Cond{{Column: a, Op: "like", Value: "x"}}
	if _, _, err := pg.QuerySQL(`"t"`, q, 1); err == nil {
		t.Error("unknown operator: no error")
	}
	refuse := &Builder{Dialect: SQLite, Bind: func(*schema.Column, any) (any, error) { return nil, errors.New("no") }}
	for _, c := range []query.Cond{{Column: a, Op: query.Eq, Value: "x"}, {Column: a, Op: query.In, Values: []any{"x"}}} {
		q.Conds = []query.Cond{c}
		if _, _, err := refuse.QuerySQL(`"t"`, q, 1); err == nil {
			t.Errorf("%s with a value Bind refuses: no error", c.Op)
		}
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	tb := table()
	var text string
	var args []any
	scan := func(_ context.Context, _ *schema.Table, tx string, a []any) ([]schema.Row, error) {
		text, args = tx, a
		return nil, nil
	}
	_, found, err := plain(Postgres).Get(context.Background(), scan, `"t"`, tb, "42")
	if err != nil || found {
		t.Fatalf("found %v, err %v", found, err)
	}
	if want := `select "id", "a", "b" from "t" where "id" = $1`; text != want {
		t.Errorf("got %s, want %s", text, want)
	}
	if want := []any{int64(42)}; !reflect.DeepEqual(args, want) {
		t.Errorf("args %v, want %v", args, want)
	}
	if _, _, err := plain(Postgres).Get(context.Background(), scan, `"t"`, tb, "forty-two"); err == nil {
		t.Error("a key its column refuses: no error")
	}
}

func TestBindRows(t *testing.T) {
	t.Parallel()
	if _, _, err := BindRows(nil, [][]any{{1}}, nil); err == nil {
		t.Error("no columns: no error")
	}
	bind := func(col int, v any) (any, error) {
		if v == "bad" {
			return nil, fmt.Errorf("column %d: bad", col)
		}
		return v, nil
	}
	bound, rejected, err := BindRows([]string{"a", "b"}, [][]any{{1, 2}, {1}, {3, "bad"}, {4, nil}}, bind)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]any{{1, 2}, nil, nil, {4, nil}}; !reflect.DeepEqual(bound, want) {
		t.Errorf("bound %v, want %v", bound, want)
	}
	if len(rejected) != 2 || rejected[1] == nil || rejected[2] == nil {
		t.Errorf("rejected %v, want rows 1 and 2", rejected)
	}
}
