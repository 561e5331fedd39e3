package query_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spoolgw/spool/internal/overlay"
	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store/sqlite"
	"github.com/spoolgw/spool/internal/txn"
)

// limits is a real store that records the limit of every query it runs.
type limits struct {
	*sqlite.Store
	asked []int
}

func (l *limits) Query(ctx context.Context, q *query.Query, limit int) ([]schema.Row, error) {
	l.asked = append(l.asked, limit)
	return l.Store.Query(ctx, q, limit)
}

// itemsTable opens a SQLite store in a temporary directory with the table
// items (id text key, n integer, tag text), fills it with rows (VALUES
// text, or none), and returns the store and the table. The store closes
// when the test ends.
func itemsTable(tb testing.TB, rows string) (*sqlite.Store, *schema.Table) {
	tb.Helper()
	ctx := tb.Context()
	st, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "read.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	ddl := "create table items (id text primary key, n integer not null, tag text)"
	if rows != "" {
		ddl += "; insert into items values " + rows
	}
	if err := st.Exec(ctx, ddl); err != nil {
		tb.Fatal(err)
	}
	cat, err := st.Catalog(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	items, err := cat.Table("items")
	if err != nil {
		tb.Fatal(err)
	}
	return st, items
}

// TestListMergesLikeApplyingEverything compares smart lists, on a real
// SQLite database under an overlay of random pending inserts (of new keys
// and of keys the database has), updates and deletes, with the answer of
// applying every pending change to the whole table and then filtering,
// sorting and cutting: the same rows, in the same order.
func TestListMergesLikeApplyingEverything(t *testing.T) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	tags := []string{"a", "b"}
	var ins []string
	for i := range 60 {
		ins = append(ins, fmt.Sprintf("('k%02d', %d, '%s')", i, rng.IntN(40), tags[rng.IntN(2)]))
	}
	st, items := itemsTable(t, strings.Join(ins, ","))
	db := &limits{Store: st}
	for trial := range 200 {
		ov := overlay.New()
		for range rng.IntN(30) {
			key := fmt.Sprintf("k%02d", rng.IntN(90)) // a third are new keys
			op := txn.Operation{Table: "items", ID: key}
			switch rng.IntN(4) {
			case 0:
				op.Op, op.Values = txn.Insert, map[string]any{"id": key, "n": int64(rng.IntN(40)), "tag": tags[rng.IntN(2)]}
			case 1:
				op.Op, op.Values = txn.Update, map[string]any{"n": int64(rng.IntN(40))}
			case 2:
				op.Op, op.Values = txn.Update, map[string]any{"tag": tags[rng.IntN(2)]}
			default:
				op.Op = txn.Delete
			}
			ov.Add(ctx, &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{op}})
		}
		params := url.Values{"order": {"n.desc"}, "limit": {fmt.Sprint(1 + rng.IntN(15))}}
		if rng.IntN(2) == 0 {
			params.Set("tag", "eq."+tags[rng.IntN(2)])
		}
		q, err := query.Parse(items, params)
		if err != nil {
			t.Fatal(err)
		}
		r := &query.Reader{DB: db, Overlay: ov}
		got, _, err := r.List(ctx, q, true)
		if err != nil {
			t.Fatal(err)
		}
		want := applyEverything(t, ctx, st, ov, q)
		if !slices.EqualFunc(got, want, func(a, b schema.Row) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
			t.Fatalf("trial %d, %s: smart list\n%v\nwant\n%v", trial, params.Encode(), got, want)
		}
		// GetMany of every key reads what Get reads of each.
		var keys []string
		for i := range 90 {
			keys = append(keys, fmt.Sprintf("k%02d", i))
		}
		many, err := r.GetMany(ctx, items, keys, true)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			row, _, found, err := r.Get(ctx, items, k, true)
			if err != nil {
				t.Fatal(err)
			}
			if found != (many[i] != nil) || fmt.Sprint(row) != fmt.Sprint(many[i]) {
				t.Fatalf("trial %d: GetMany(%s) = %v, Get = %v (found %v)", trial, k, many[i], row, found)
			}
		}
	}
}

// applyEverything is the slow, obvious answer: the whole table, every
// pending change applied, then filtered, sorted and cut.
func applyEverything(t *testing.T, ctx context.Context, st *sqlite.Store, ov *overlay.Overlay, q *query.Query) []schema.Row {
	t.Helper()
	all, err := st.Query(ctx, &query.Query{Table: q.Table, Order: []query.Order{{Column: q.Table.Key}}}, query.MaxLimit)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := ov.Table(ctx, q.Table.Name)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]schema.Row{}
	for _, row := range all {
		rows[row["id"].(string)] = row
	}
	for key, p := range pending {
		if merged, exists := p.Apply(rows[key]); exists {
			rows[key] = merged
		} else {
			delete(rows, key)
		}
	}
	var out []schema.Row
	for _, row := range rows {
		for _, c := range q.Table.Columns {
			if _, ok := row[c.Name]; !ok {
				row[c.Name] = nil
			}
		}
		if q.Match(row) {
			out = append(out, row)
		}
	}
	slices.SortFunc(out, q.Less)
	return out[:min(len(out), q.Limit)]
}

// TestListBacklogOfInserts: a backlog of new rows in the overlay does not
// make a list read that many more database rows.
func TestListBacklogOfInserts(t *testing.T) {
	ctx := t.Context()
	st, items := itemsTable(t, "('a', 1, 'x'), ('b', 2, 'x')")
	ov := overlay.New()
	for i := range 1000 {
		key := fmt.Sprintf("new%04d", i)
		ov.Add(ctx, &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "items", ID: key,
			Values: map[string]any{"id": key, "n": int64(i), "tag": "x"}}}})
	}
	db := &limits{Store: st}
	q, err := query.Parse(items, url.Values{"order": {"n.asc"}, "limit": {"10"}})
	if err != nil {
		t.Fatal(err)
	}
	rows, src, err := (&query.Reader{DB: db, Overlay: ov}).List(ctx, q, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 10 || rows[0]["id"] != "new0000" || rows[1]["id"] != "a" || src != query.FromMerged {
		t.Fatalf("list: %d rows from %s, first %v", len(rows), src, rows[:min(3, len(rows))])
	}
	if !slices.Equal(db.asked, []int{10}) {
		t.Fatalf("database asked for limits %v, want [10]: pending inserts of new rows need no larger page", db.asked)
	}
}

// BenchmarkList reads a filtered page of 50 from a table of 1,000 database
// rows under 0, 1k and 10k buffered inserts; the 0 case is the baseline of
// the same run (the database alone, through the same reader).
func BenchmarkList(b *testing.B) {
	ctx := b.Context()
	var ins []string
	for i := range 1000 {
		ins = append(ins, fmt.Sprintf("('db%04d', %d, '%s')", i, i, []string{"a", "b"}[i%2]))
	}
	st, items := itemsTable(b, strings.Join(ins, ","))
	q, err := query.Parse(items, url.Values{"tag": {"eq.a"}, "order": {"n.desc"}, "limit": {"50"}})
	if err != nil {
		b.Fatal(err)
	}
	for _, buffered := range []int{0, 1000, 10000} {
		ov := overlay.New()
		for i := range buffered {
			key := fmt.Sprintf("ov%05d", i)
			ov.Add(ctx, &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{{Op: txn.Insert, Table: "items", ID: key,
				Values: map[string]any{"id": key, "n": int64(i), "tag": []string{"a", "b"}[i%2]}}}})
		}
		r := &query.Reader{DB: st, Overlay: ov}
		b.Run(fmt.Sprintf("buffered=%d", buffered), func(b *testing.B) {
			for b.Loop() {
				if _, _, err := r.List(ctx, q, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// With the database gone, a row whose insert or delete is buffered still
// reads (from the overlay alone); any other read fails with ErrDatabase.
func TestGetWithoutDatabase(t *testing.T) {
	ctx := t.Context()
	st, items := itemsTable(t, "('old', 1, 'a')")
	ov := overlay.New()
	add := func(op txn.Operation) {
		op.Table = "items"
		if err := ov.Add(ctx, &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{op}}); err != nil {
			t.Fatal(err)
		}
	}
	add(txn.Operation{Op: txn.Insert, ID: "new", Values: map[string]any{"id": "new", "n": int64(5), "tag": "b"}})
	add(txn.Operation{Op: txn.Update, ID: "new", Values: map[string]any{"n": int64(6)}})
	add(txn.Operation{Op: txn.Delete, ID: "gone"})
	add(txn.Operation{Op: txn.Update, ID: "old", Values: map[string]any{"n": int64(2)}})
	r := &query.Reader{DB: st, Overlay: ov}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	row, src, found, err := r.Get(ctx, items, "new", true)
	if err != nil || !found || src != query.FromOverlay || row["n"] != int64(6) || row["tag"] != "b" {
		t.Fatalf("Get(new) = %v, %s, %v, %v; want n 6 from the overlay", row, src, found, err)
	}
	if _, _, found, err := r.Get(ctx, items, "gone", true); err != nil || found {
		t.Fatalf("Get(gone) = found %v, %v; want not found, without the database", found, err)
	}
	for _, key := range []string{"old", "absent"} {
		if _, _, _, err := r.Get(ctx, items, key, true); !errors.Is(err, query.ErrDatabase) {
			t.Fatalf("Get(%s) with the database closed: %v, want ErrDatabase", key, err)
		}
	}
	q, err := query.Parse(items, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.List(ctx, q, true); !errors.Is(err, query.ErrDatabase) {
		t.Fatalf("List with the database closed: %v, want ErrDatabase", err)
	}
}
