package redislog

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/overlay"
	"github.com/spoolgw/spool/internal/testservers"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

func TestRowMemberUnambiguous(t *testing.T) {
	t.Parallel()
	pairs := [][2]string{{"a:b", "c"}, {"a", "b:c"}, {"a:b:c", ""}, {"", "a:b:c"}, {"1:a", "b"}, {"1", "a:b"}}
	seen := map[string][2]string{}
	for _, p := range pairs {
		m := rowMember(p[0], p[1])
		if q, dup := seen[m]; dup {
			t.Fatalf("rows %q/%q and %q/%q share the member %q", q[0], q[1], p[0], p[1], m)
		}
		seen[m] = p
	}
}

func TestComparePos(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"1-0", "1-0", 0},
		{"1-0", "1-1", -1},
		{"9-0", "10-0", -1}, // numerically, not as text
		{"10-2", "10-10", -1},
		{"1700000000000-5", "1699999999999-99", 1},
		{"1-0", "junk", -1},
		{"junk", "1-0", 1},
	} {
		if got := ComparePos(tt.a, tt.b); got != tt.want {
			t.Errorf("ComparePos(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestEntryEncoding: an entry written from its parts is the JSON of its
// opEntry, and starts with its transaction's entryPrefix.
func TestEntryEncoding(t *testing.T) {
	t.Parallel()
	id := txn.NewID()
	for _, e := range []opEntry{
		{Tx: id, Kind: "insert", Values: map[string]any{"a": 1, "b": "<x&y>", "c": []any{"é"}}},
		{Tx: id, Kind: "delete"},
	} {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var vals []byte
		if e.Values != nil {
			if vals, err = json.Marshal(e.Values); err != nil {
				t.Fatal(err)
			}
		}
		got := encodeEntry(entryPrefix(id), txn.Kind(e.Kind), vals)
		if string(got) != string(want) {
			t.Errorf("encodeEntry = %s, want %s", got, want)
		}
		if !strings.HasPrefix(string(got), entryPrefix(id)) {
			t.Errorf("entry %s does not start with %s", got, entryPrefix(id))
		}
	}
}

// op builds an operation.
func op(kind txn.Kind, table, key string, values map[string]any) txn.Operation {
	return txn.Operation{Op: kind, Table: table, ID: key, Values: values}
}

func newTxn(ops ...txn.Operation) *txn.Transaction {
	return &txn.Transaction{ID: txn.NewID(), Operations: ops, CreatedAt: time.Now().UTC()}
}

// pendingJSON is p as JSON, so that values that went through the overlay
// (numbers as json.Number) compare with the originals.
func pendingJSON(t *testing.T, p any) string {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatalf("encode %v: %v", p, err)
	}
	return string(b)
}

func TestAppendFillsOverlay(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	o := l.Overlay()
	ctx := testCtx(t)
	tx := newTxn(
		op(txn.Insert, "sensors:dome", "t:1", map[string]any{"v": 1.5, "big": json.Number("9007199254740993")}),
		op(txn.Update, "sensors:dome", "t:1", map[string]any{"v": 2.5}),
		op(txn.Upsert, "sensors", "dome:t:1", map[string]any{"name": "x"}),
		op(txn.Delete, "sensors", "dome:t:2", nil),
	)
	e, err := l.Append(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := o.Has(ctx, tx.ID); err != nil || !ok {
		t.Fatalf("has %s after append: %v, %v; want true", tx.ID, ok, err)
	}
	row, err := o.Row(ctx, "sensors:dome", "t:1")
	if err != nil {
		t.Fatal(err)
	}
	want := overlay.Pending{
		{Tx: tx.ID, Kind: txn.Insert, Values: tx.Operations[0].Values},
		{Tx: tx.ID, Kind: txn.Update, Values: tx.Operations[1].Values},
	}
	if got, w := pendingJSON(t, row), pendingJSON(t, want); got != w {
		t.Fatalf("row sensors:dome/t:1\n got %s\nwant %s", got, w)
	}
	if n, ok := row[0].Values["big"].(json.Number); !ok || n.String() != "9007199254740993" {
		t.Fatalf("big value came back as %#v, want json.Number 9007199254740993", row[0].Values["big"])
	}
	// The other table holds the other two rows, and no row of the first.
	tbl, err := o.Table(ctx, "sensors")
	if err != nil {
		t.Fatal(err)
	}
	if len(tbl) != 2 || len(tbl["dome:t:1"]) != 1 || len(tbl["dome:t:2"]) != 1 || tbl["dome:t:2"][0].Kind != txn.Delete {
		t.Fatalf("table sensors: %s", pendingJSON(t, tbl))
	}
	if p, err := o.Row(ctx, "sensors", "t:1"); err != nil || p != nil {
		t.Fatalf("row sensors/t:1: %v, %v; want none", p, err)
	}
	if p, err := o.Row(ctx, "sensors:dome:t", "1"); err != nil || p != nil {
		t.Fatalf("row sensors:dome:t/1: %v, %v; want none", p, err)
	}
	st, err := o.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st != (overlay.Stats{Transactions: 1, Rows: 3, Ops: 4}) {
		t.Fatalf("stats %+v, want 1 transaction, 3 rows, 4 operations", st)
	}
	// The stream has it too.
	var got []string
	if err := l.Pending(ctx, func(p txlog.Entry) error { got = append(got, p.Pos+" "+p.Tx.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{e.Pos + " " + tx.ID}; !slices.Equal(got, want) {
		t.Fatalf("pending %v, want %v", got, want)
	}
}

func TestOverlayColonsDoNotCollide(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	o := l.Overlay()
	ctx := testCtx(t)
	a := newTxn(op(txn.Insert, "a:b", "c", map[string]any{"n": "a:b/c"}))
	b := newTxn(op(txn.Insert, "a", "b:c", map[string]any{"n": "a/b:c"}))
	for _, tx := range []*txn.Transaction{a, b} {
		if _, err := l.Append(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ table, key, tx string }{{"a:b", "c", a.ID}, {"a", "b:c", b.ID}} {
		p, err := o.Row(ctx, c.table, c.key)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 1 || p[0].Tx != c.tx {
			t.Fatalf("row %q/%q: %s, want only tx %s", c.table, c.key, pendingJSON(t, p), c.tx)
		}
		tbl, err := o.Table(ctx, c.table)
		if err != nil {
			t.Fatal(err)
		}
		if len(tbl) != 1 || len(tbl[c.key]) != 1 {
			t.Fatalf("table %q: %s, want only key %q", c.table, pendingJSON(t, tbl), c.key)
		}
	}
	if err := o.Evict(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if p, _ := o.Row(ctx, "a:b", "c"); p != nil {
		t.Fatalf("row a:b/c after evicting its transaction: %s", pendingJSON(t, p))
	}
	if p, _ := o.Row(ctx, "a", "b:c"); len(p) != 1 {
		t.Fatalf("row a/b:c after evicting the other transaction: %s", pendingJSON(t, p))
	}
}

func TestEvict(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	o := l.Overlay()
	ctx := testCtx(t)
	t1 := newTxn(op(txn.Insert, "t", "1", map[string]any{"v": 1}), op(txn.Insert, "t", "2", map[string]any{"v": 1}))
	t2 := newTxn(op(txn.Update, "t", "1", map[string]any{"v": 2}), op(txn.Update, "t", "1", map[string]any{"v": 2}))
	t3 := newTxn(op(txn.Update, "t", "1", map[string]any{"v": 3}), op(txn.Insert, "u", "9", map[string]any{"v": 9}))
	for _, tx := range []*txn.Transaction{t1, t2, t3} {
		if _, err := l.Append(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	// Evict the middle one: its two identical changes go, the others stay in order.
	if err := o.Evict(ctx, t2.ID, "no-such-transaction"); err != nil {
		t.Fatal(err)
	}
	row, err := o.Row(ctx, "t", "1")
	if err != nil {
		t.Fatal(err)
	}
	if len(row) != 2 || row[0].Tx != t1.ID || row[1].Tx != t3.ID {
		t.Fatalf("row t/1 after evicting %s: %s", t2.ID, pendingJSON(t, row))
	}
	if ok, _ := o.Has(ctx, t2.ID); ok {
		t.Fatalf("has %s after evicting it", t2.ID)
	}
	if st, _ := o.Stats(ctx); st != (overlay.Stats{Transactions: 2, Rows: 3, Ops: 4}) {
		t.Fatalf("stats after evicting one: %+v", st)
	}
	// Evict the rest in one call, t3 named twice: nothing is left but the
	// stream and the counters.
	if err := o.Evict(ctx, t1.ID, t3.ID, t3.ID); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"t", "u"} {
		if tbl, err := o.Table(ctx, table); err != nil || len(tbl) != 0 {
			t.Fatalf("table %s after evicting everything: %v, %v", table, tbl, err)
		}
	}
	if st, _ := o.Stats(ctx); st != (overlay.Stats{}) {
		t.Fatalf("stats after evicting everything: %+v", st)
	}
	checkEmptied(t, l, "t", "u")
}

// checkEmptied fails unless l holds no keys but those an overlay with
// nothing pending keeps: the stream, the counts, the layout, and the
// counters of tables (see tableScript).
func checkEmptied(t *testing.T, l *Log, tables ...string) {
	t.Helper()
	left, err := l.client.Keys(testCtx(t), l.keys.prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	// The events stream is history, trimmed by length, not by eviction.
	left = slices.DeleteFunc(left, func(k string) bool { return k == l.keys.events })
	want := []string{l.keys.counts, l.keys.layout, l.keys.stream}
	for _, table := range tables {
		want = append(want, l.keys.seq(table))
	}
	slices.Sort(left)
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Fatalf("keys after evicting everything: %q, want %q", left, want)
	}
}

func TestWithdraw(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	o := l.Overlay()
	ctx := testCtx(t)
	failed := newTxn(op(txn.Insert, "t:x", "r:1", map[string]any{"v": 1}))
	dep1 := newTxn(op(txn.Update, "t:x", "r:1", map[string]any{"v": 2}))
	dep2 := newTxn( // depends twice: withdrawn once
		op(txn.Update, "t:x", "r:1", map[string]any{"v": 3}),
		op(txn.Insert, "other", "r:1", map[string]any{"ref": "r:1"}),
	)
	free := newTxn(op(txn.Insert, "t:x", "r:2", map[string]any{"v": 1}))
	for _, tx := range []*txn.Transaction{failed, dep1, dep2, free} {
		if _, err := l.Append(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Evict(ctx, failed.ID); err != nil { // the applier evicts the failed one
		t.Fatal(err)
	}
	calls := 0
	ids, err := o.Withdraw(ctx, func(table, key string, op overlay.Op) bool {
		calls++
		return key == "r:1" && op.Tx != free.ID
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	want := []string{dep1.ID, dep2.ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("withdrew %v, want %v", ids, want)
	}
	if calls != 3 { // dep1's change, dep2's first (its second is skipped), free's
		t.Fatalf("depends called %d times, want 3", calls)
	}
	for _, id := range want {
		if ok, _ := o.Has(ctx, id); ok {
			t.Fatalf("has %s after withdrawing it", id)
		}
	}
	if ok, _ := o.Has(ctx, free.ID); !ok {
		t.Fatalf("transaction %s that depends on nothing was withdrawn", free.ID)
	}
	if st, _ := o.Stats(ctx); st != (overlay.Stats{Transactions: 1, Rows: 1, Ops: 1}) {
		t.Fatalf("stats after withdrawing: %+v", st)
	}
}

func TestAppendSameTransactionTwice(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	ctx := testCtx(t)
	tx := newTxn(op(txn.Insert, "t", "1", map[string]any{"v": 1}))
	first, err := l.Append(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.Append(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	if again.Pos != first.Pos {
		t.Fatalf("appending a pending transaction again gave position %s, want its first %s", again.Pos, first.Pos)
	}
	if st, _ := l.Stats(ctx); st.Depth != 1 {
		t.Fatalf("depth %d after appending one transaction twice, want 1", st.Depth)
	}
	if st, _ := l.Overlay().Stats(ctx); st.Ops != 1 {
		t.Fatalf("overlay holds %d operations after appending one transaction twice, want 1", st.Ops)
	}
}

// TestOverlayMatchesInMemory runs random appends, evictions and
// withdrawals against the Redis overlay and the in-memory one, and
// compares every table, the stats and Has after each step, from four
// seeds.
func TestOverlayMatchesInMemory(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			overlayMatchesInMemory(t, seed)
		})
	}
}

// overlayMatchesInMemory is one run of TestOverlayMatchesInMemory. Every
// table is read at each step, so most reads take only what changed since
// the one before (see tableScript).
func overlayMatchesInMemory(t *testing.T, seed uint64) {
	l := openLog(t, Config{})
	o := l.Overlay()
	mem := overlay.New()
	ctx := testCtx(t)
	rng := rand.New(rand.NewPCG(1, seed))
	tables := []string{"t", "t:x", "x"}
	keys := []string{"1", "1:2", "2", ":"}
	kinds := []txn.Kind{txn.Insert, txn.Update, txn.Upsert, txn.Delete}
	var ids []string
	for step := range 150 {
		switch r := rng.IntN(10); {
		case r < 6 || len(ids) == 0:
			var ops []txn.Operation
			for range 1 + rng.IntN(3) {
				k := kinds[rng.IntN(len(kinds))]
				var v map[string]any
				if k != txn.Delete {
					v = map[string]any{"step": step, "s": fmt.Sprint(rng.IntN(3))}
				}
				ops = append(ops, op(k, tables[rng.IntN(len(tables))], keys[rng.IntN(len(keys))], v))
			}
			tx := newTxn(ops...)
			mem.Add(ctx, tx)
			if _, err := l.Append(ctx, tx); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, tx.ID)
		case r < 9:
			// Evict a few, mostly the oldest (as the applier does), sometimes any.
			n := 1 + rng.IntN(min(3, len(ids)))
			var ev []string
			for range n {
				i := 0
				if rng.IntN(3) == 0 {
					i = rng.IntN(len(ids))
				}
				ev = append(ev, ids[i])
				ids = slices.Delete(ids, i, i+1)
				if len(ids) == 0 {
					break
				}
			}
			_ = mem.Evict(ctx, ev...)
			if err := o.Evict(ctx, ev...); err != nil {
				t.Fatal(err)
			}
		default:
			s := fmt.Sprint(rng.IntN(3))
			depends := func(table, key string, op overlay.Op) bool { return op.Kind == txn.Update && op.Values["s"] == s }
			want, _ := mem.Withdraw(ctx, depends)
			got, err := o.Withdraw(ctx, func(table, key string, op overlay.Op) bool {
				return op.Kind == txn.Update && op.Values["s"] == s
			})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: withdrew %v, in memory %v", step, got, want)
			}
			ids = slices.DeleteFunc(ids, func(id string) bool { return slices.Contains(got, id) })
		}
		for _, table := range tables {
			got, err := o.Table(ctx, table)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := mem.Table(ctx, table)
			if g, w := pendingJSON(t, got), pendingJSON(t, want); g != w {
				t.Fatalf("step %d: table %q\n got %s\nwant %s", step, table, g, w)
			}
			many, err := o.Rows(ctx, table, keys)
			if err != nil {
				t.Fatal(err)
			}
			for i, key := range keys {
				got, _ := o.Row(ctx, table, key)
				want, _ := mem.Row(ctx, table, key)
				gr, gok := got.Apply(nil)
				wr, wok := want.Apply(nil)
				if gok != wok || pendingJSON(t, gr) != pendingJSON(t, wr) {
					t.Fatalf("step %d: row %q/%q applies to %v %v, in memory %v %v", step, table, key, gr, gok, wr, wok)
				}
				if pendingJSON(t, many[i]) != pendingJSON(t, got) {
					t.Fatalf("step %d: Rows gave %q/%q %s, Row %s", step, table, key, pendingJSON(t, many[i]), pendingJSON(t, got))
				}
			}
		}
		gs, err := o.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ws, _ := mem.Stats(ctx); gs != ws {
			t.Fatalf("step %d: stats %+v, in memory %+v", step, gs, ws)
		}
	}
}

// TestLargeTransaction: a transaction touching more rows than one HSET of
// the append script takes, some of them twice, appends and evicts whole.
func TestLargeTransaction(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	o := l.Overlay()
	ctx := testCtx(t)
	var ops []txn.Operation
	for i := range 1200 {
		ops = append(ops, op(txn.Upsert, "big", fmt.Sprint(i%1100), map[string]any{"i": i}))
	}
	tx := newTxn(ops...)
	if _, err := l.Append(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if st, _ := o.Stats(ctx); st != (overlay.Stats{Transactions: 1, Rows: 1100, Ops: 1200}) {
		t.Fatalf("stats after a 1200-operation transaction on 1100 rows: %+v", st)
	}
	n, err := l.client.HLen(ctx, l.keys.tx(tx.ID)).Result()
	if err != nil || n != 1101 {
		t.Fatalf("transaction hash has %d fields, %v; want 1101 (pos and 1100 rows)", n, err)
	}
	if p, _ := o.Row(ctx, "big", "5"); len(p) != 2 {
		t.Fatalf("row big/5 has %d changes, want 2", len(p))
	}
	tbl, err := o.Table(ctx, "big")
	if err != nil || len(tbl) != 1100 {
		t.Fatalf("table big: %d rows, %v; want 1100", len(tbl), err)
	}
	if err := o.Evict(ctx, tx.ID); err != nil {
		t.Fatal(err)
	}
	if st, _ := o.Stats(ctx); st != (overlay.Stats{}) {
		t.Fatalf("stats after evicting it: %+v", st)
	}
}

// TestTableDecodesOnce: with a normaliser set, Table decodes (and
// normalises) each pending change once, however often the table is read,
// returns the same changes as without, and forgets what was evicted.
func TestTableDecodesOnce(t *testing.T) {
	t.Parallel()
	var normalised atomic.Int64
	l := openLog(t, Config{Normalize: func(table string, values map[string]any) {
		normalised.Add(1)
		if n, ok := values["v"].(json.Number); ok {
			values["v"], _ = n.Int64()
		}
	}})
	o := l.Overlay()
	ctx := testCtx(t)
	t1 := newTxn(op(txn.Insert, "t", "1", map[string]any{"v": 1}), op(txn.Insert, "t", "2", map[string]any{"v": 2}))
	t2 := newTxn(op(txn.Update, "t", "1", map[string]any{"v": 3}))
	for _, tx := range []*txn.Transaction{t1, t2} {
		if _, err := l.Append(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	read := func() map[string]overlay.Pending {
		t.Helper()
		tbl, err := o.Table(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		return tbl
	}
	first := read()
	if n := normalised.Load(); n != 3 {
		t.Fatalf("%d changes normalised at the first read, want 3", n)
	}
	if v := first["1"][1].Values["v"]; v != int64(3) {
		t.Fatalf("t/1's update holds %v (%T), want the normalised int64 3", v, v)
	}
	second := read()
	if n := normalised.Load(); n != 3 {
		t.Fatalf("%d changes normalised after a second read, want still 3 (decoded once)", n)
	}
	if pendingJSON(t, second) != pendingJSON(t, first) {
		t.Fatalf("second read %s, first %s", pendingJSON(t, second), pendingJSON(t, first))
	}
	if err := o.Evict(ctx, t2.ID); err != nil {
		t.Fatal(err)
	}
	t3 := newTxn(op(txn.Delete, "t", "2", nil))
	if _, err := l.Append(ctx, t3); err != nil {
		t.Fatal(err)
	}
	third := read()
	if n := normalised.Load(); n != 4 {
		t.Fatalf("%d changes normalised after an append, want 4 (only the new one)", n)
	}
	if len(third["1"]) != 1 || len(third["2"]) != 2 || third["2"][1].Kind != txn.Delete {
		t.Fatalf("after evicting %s and deleting t/2: %s", t2.ID, pendingJSON(t, third))
	}
	o.mu.Lock()
	kept := len(o.read["t"].ops)
	o.mu.Unlock()
	if kept != 3 {
		t.Fatalf("%d decoded changes kept, want 3 (the evicted update forgotten)", kept)
	}
}

// TestTableKeepsAtMostMaxDecoded: a table with more pending changes than
// MaxDecoded is read whole every time and nothing of it is kept; once
// evictions bring it under, it is kept again.
func TestTableKeepsAtMostMaxDecoded(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	o := l.Overlay()
	ctx := testCtx(t)
	const perTx = 1000
	var ids []string
	for i := 0; i*perTx <= MaxDecoded; i++ {
		var ops []txn.Operation
		for j := range perTx {
			ops = append(ops, op(txn.Insert, "big", fmt.Sprint(i*perTx+j), map[string]any{"v": j}))
		}
		tx := newTxn(ops...)
		if _, err := l.Append(ctx, tx); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tx.ID)
	}
	kept := func() int {
		o.mu.Lock()
		defer o.mu.Unlock()
		if r := o.read["big"]; r != nil {
			return len(r.ops)
		}
		return -1
	}
	for range 2 {
		tbl, err := o.Table(ctx, "big")
		if err != nil || len(tbl) != len(ids)*perTx {
			t.Fatalf("table big: %d rows, %v; want %d", len(tbl), err, len(ids)*perTx)
		}
		if n := kept(); n != -1 {
			t.Fatalf("%d changes kept of a table of %d, past MaxDecoded %d", n, len(ids)*perTx, MaxDecoded)
		}
	}
	if err := o.Evict(ctx, ids[:2]...); err != nil {
		t.Fatal(err)
	}
	want := (len(ids) - 2) * perTx
	if tbl, err := o.Table(ctx, "big"); err != nil || len(tbl) != want {
		t.Fatalf("table big after evicting two: %d rows, %v; want %d", len(tbl), err, want)
	}
	if n := kept(); n != want {
		t.Fatalf("%d changes kept after evicting two, want %d", n, want)
	}
}

// TestTableConcurrentReaders: readers of one table race one another and a
// writer that appends rows 0, 1, 2, … and evicts them in the same order
// (as the applier does), so the pending rows are always a contiguous run
// of keys. Every read, whatever the reads before it left behind for the
// next, must return such a run.
func TestTableConcurrentReaders(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{Normalize: func(string, map[string]any) {}})
	o := l.Overlay()
	ctx := testCtx(t)
	const rows = 600
	done := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				tbl, err := o.Table(ctx, "w")
				if err != nil {
					errs <- err
					return
				}
				lo, hi := rows, -1
				for k, p := range tbl {
					n, err := strconv.Atoi(k)
					if err != nil || len(p) != 1 {
						errs <- fmt.Errorf("row %q with %d changes", k, len(p))
						return
					}
					lo, hi = min(lo, n), max(hi, n)
				}
				if len(tbl) > 0 && hi-lo+1 != len(tbl) {
					errs <- fmt.Errorf("read rows %d to %d, but %d of them: not a contiguous run", lo, hi, len(tbl))
					return
				}
			}
		})
	}
	var ids []string
	for i := range rows {
		tx := newTxn(op(txn.Insert, "w", strconv.Itoa(i), map[string]any{"i": i}))
		if _, err := l.Append(ctx, tx); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tx.ID)
		if i%3 == 2 { // evict the oldest two of every three, in order
			if err := o.Evict(ctx, ids[:2]...); err != nil {
				t.Fatal(err)
			}
			ids = ids[2:]
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	tbl, err := o.Table(ctx, "w")
	if err != nil || len(tbl) != len(ids) {
		t.Fatalf("final read: %d rows, %v; want %d", len(tbl), err, len(ids))
	}
}

// TestTableReadsOwnWrites: writers that each append a row and read the
// table at once, all at the same time, each see their own row: a read
// shared between callers began after each of them called.
func TestTableReadsOwnWrites(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{Normalize: func(string, map[string]any) {}})
	o := l.Overlay()
	ctx := testCtx(t)
	const writers, rounds = 8, 40
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				key := fmt.Sprintf("%d-%d", w, r)
				if _, err := l.Append(ctx, newTxn(op(txn.Insert, "own", key, map[string]any{"w": w}))); err != nil {
					errs <- err
					return
				}
				tbl, err := o.Table(ctx, "own")
				if err != nil {
					errs <- err
					return
				}
				if _, ok := tbl[key]; !ok {
					errs <- fmt.Errorf("writer %d did not read its own row %s (%d rows read)", w, key, len(tbl))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestTableSharesConcurrentReads: readers of one table that call while a
// read of it is under way share one read after it, however many they
// are. Redis is paused (CLIENT PAUSE, 2 s: ample for eight goroutines to
// start, even on a loaded machine) while they call, so that the first
// read is held in Redis until all of them have called; its script calls
// are counted by Redis (INFO commandstats). The test has a server of its
// own: it pauses it and counts every script call it serves.
func TestTableSharesConcurrentReads(t *testing.T) {
	t.Parallel()
	testservers.Need(t, srvErr) // the binary is there
	dir, err := testservers.TempDir("spool-redislog-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	srv, err := testservers.StartRedis(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() }) // after the log's Close
	l := openLog(t, Config{URL: srv.URL, Normalize: func(string, map[string]any) {}})
	o := l.Overlay()
	ctx := testCtx(t)
	for i := range 100 {
		if _, err := l.Append(ctx, newTxn(op(txn.Insert, "shared", strconv.Itoa(i), map[string]any{"i": i}))); err != nil {
			t.Fatal(err)
		}
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	calls := func() int64 { return evalshaStat(t, admin, "calls") }
	if _, err := o.Table(ctx, "shared"); err != nil { // loads the script
		t.Fatal(err)
	}
	before := calls()
	const readers = 8
	// Redis holds the first read until every reader has called: a pause
	// that ends by itself would let a reader that a loaded machine starts
	// late arrive after it, and read a third time.
	// (WRITE holds scripts, which may write, but lets CLIENT UNPAUSE in.)
	if err := admin.Do(ctx, "CLIENT", "PAUSE", 30000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, readers)
	calling := make(chan struct{}, readers)
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			calling <- struct{}{}
			tbl, err := o.Table(ctx, "shared")
			if err == nil && len(tbl) != 100 {
				err = fmt.Errorf("read %d rows, want 100", len(tbl))
			}
			errs <- err
		})
	}
	for range readers {
		<-calling
	}
	// Every reader is in Table, or about to be: once the first read is
	// held in Redis and others have joined the next, let it go.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		o.mu.Lock()
		fs := o.flights["shared"]
		held := fs != nil && fs.running != nil && fs.next != nil
		o.mu.Unlock()
		if held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no reader joined the next read while the first was held")
		}
	}
	if err := admin.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// The first read, held by the pause, and one that every other reader
	// joined while it was held.
	if n := calls() - before; n != 2 {
		t.Fatalf("%d readers calling while one read was held made %d reads, want 2", readers, n)
	}
}
