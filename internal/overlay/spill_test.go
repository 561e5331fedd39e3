package overlay

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// normalizeX makes the test table's values canonical again after JSON, as
// the gateway's normalizer does: x is an integer column.
func normalizeX(table string, values map[string]any) {
	if n, ok := values["x"].(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			values["x"] = i
		}
	}
}

func openSpilling(t *testing.T, maxOps int) *Overlay {
	t.Helper()
	o, err := Open(ctx, filepath.Join(t.TempDir(), "spill.db"), maxOps, normalizeX)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// An overlay that spills answers every read exactly as one held in memory
// alone, through any sequence of adds, evictions and withdrawals.
func TestSpillMatchesMemory(t *testing.T) {
	t.Parallel()
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 1))
			mem, sp := New(), openSpilling(t, 1+rng.IntN(6))
			var live []string // ids added and not yet evicted, oldest first
			spilled := false
			for step := range 400 {
				switch r := rng.IntN(10); {
				case r < 6: // add a transaction of 1 to 3 changes to 8 rows
					id := fmt.Sprintf("t%d", step)
					var ops []txn.Operation
					for range 1 + rng.IntN(3) {
						key := fmt.Sprint(rng.IntN(8))
						kinds := []txn.Kind{txn.Insert, txn.Update, txn.Upsert, txn.Delete}
						k := kinds[rng.IntN(len(kinds))]
						var v schema.Row
						if k != txn.Delete {
							v = schema.Row{"id": key, "x": int64(rng.IntN(1 << 60)), "y": fmt.Sprint(step)}
						}
						ops = append(ops, txn.Operation{Op: k, Table: "t", ID: key, Values: v})
					}
					for _, o := range []*Overlay{mem, sp} {
						if err := o.Add(ctx, tx(id, ops...)); err != nil {
							t.Fatal(err)
						}
					}
					live = append(live, id)
				case r < 9 && len(live) > 0: // evict the oldest few, as the applier does
					n := 1 + rng.IntN(min(3, len(live)))
					ids := append([]string{"unknown"}, live[:n]...)
					for _, o := range []*Overlay{mem, sp} {
						if err := o.Evict(ctx, ids...); err != nil {
							t.Fatal(err)
						}
					}
					live = live[n:]
				default: // withdraw whatever touches one row
					key := fmt.Sprint(rng.IntN(8))
					dep := func(_, k string, _ Op) bool { return k == key }
					a, err := mem.Withdraw(ctx, dep)
					if err != nil {
						t.Fatal(err)
					}
					b, err := sp.Withdraw(ctx, dep)
					if err != nil {
						t.Fatal(err)
					}
					slices.Sort(a)
					slices.Sort(b)
					if !slices.Equal(a, b) {
						t.Fatalf("step %d: Withdraw = %v, want %v", step, b, a)
					}
					live = slices.DeleteFunc(live, func(id string) bool { return slices.Contains(a, id) })
				}
				compare(t, step, mem, sp)
				s, _ := sp.Stats(ctx)
				spilled = spilled || s.SpilledOps > 0
			}
			if !spilled {
				t.Fatal("nothing was ever spilled: the test proves nothing")
			}
		})
	}
}

func compare(t *testing.T, step int, mem, sp *Overlay) {
	t.Helper()
	want, _ := mem.Table(ctx, "t")
	got, err := sp.Table(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("step %d: Table =\n%v\nwant\n%v", step, got, want)
	}
	for key := range 8 {
		w, _ := mem.Row(ctx, "t", fmt.Sprint(key))
		g, err := sp.Row(ctx, "t", fmt.Sprint(key))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("step %d: Row(%d) = %v, want %v", step, key, g, w)
		}
	}
	ws, _ := mem.Stats(ctx)
	gs, _ := sp.Stats(ctx)
	if gs.Ops != ws.Ops || gs.Transactions != ws.Transactions || gs.Rows < ws.Rows {
		t.Fatalf("step %d: Stats = %+v, want %+v", step, gs, ws)
	}
	var onDisk int
	q := `select count(*) from (select 1 from ops group by tbl, key)`
	if err := sp.spill.db.QueryRowContext(ctx, q).Scan(&onDisk); err != nil {
		t.Fatal(err)
	}
	if counted := sp.spill.rows; counted != onDisk {
		t.Fatalf("step %d: the disk tier counts %d rows, holds changes to %d", step, counted, onDisk)
	}
	for id := range step + 1 {
		id := fmt.Sprintf("t%d", id)
		w, _ := mem.Has(ctx, id)
		g, err := sp.Has(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if g != w {
			t.Fatalf("step %d: Has(%s) = %v, want %v", step, id, g, w)
		}
	}
}

// Rebuild in chunks gives the overlay that one Add per transaction gives.
func TestRebuildMatchesAdd(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 7))
	var txs []*txn.Transaction
	for i := range 300 {
		var ops []txn.Operation
		for range 1 + rng.IntN(3) {
			key := fmt.Sprint(rng.IntN(8))
			ops = append(ops, txn.Operation{Op: txn.Upsert, Table: "t", ID: key, Values: schema.Row{"id": key, "x": int64(i)}})
		}
		txs = append(txs, tx(fmt.Sprintf("t%d", i), ops...))
	}
	added, rebuilt := openSpilling(t, 50), openSpilling(t, 50)
	for _, tx := range txs {
		if err := added.Add(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	for c := range slices.Chunk(txs, 64) {
		if err := rebuilt.Rebuild(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if s, _ := rebuilt.Stats(ctx); s.SpilledOps == 0 || len(rebuilt.txns) == 0 {
		t.Fatalf("Stats = %+v: the rebuild should fill memory and spill the rest", s)
	}
	compare(t, len(txs)-1, added, rebuilt)
	ws, _ := added.Stats(ctx)
	gs, _ := rebuilt.Stats(ctx)
	if gs != ws {
		t.Fatalf("Stats after Rebuild = %+v, after Add = %+v", gs, ws)
	}
}

// The tier in memory holds at most its bound; the rest goes to disk, and
// back to memory once the disk is empty.
func TestSpillBoundsMemory(t *testing.T) {
	t.Parallel()
	o := openSpilling(t, 10)
	for i := range 100 {
		if err := o.Add(ctx, tx(fmt.Sprint("t", i), op(txn.Insert, fmt.Sprint(i), schema.Row{"id": fmt.Sprint(i)}))); err != nil {
			t.Fatal(err)
		}
	}
	if s, _ := o.Stats(ctx); s.Ops != 100 || s.SpilledOps != 90 || len(o.txns) != 10 {
		t.Fatalf("Stats = %+v with %d in memory; want 100 changes, 90 on disk, 10 in memory", s, len(o.txns))
	}
	// Memory drains first; while the disk holds changes, new ones go there.
	for i := range 10 {
		o.Evict(ctx, fmt.Sprint("t", i))
	}
	o.Add(ctx, tx("late", op(txn.Insert, "late", schema.Row{"id": "late"})))
	if s, _ := o.Stats(ctx); s.SpilledOps != 91 || len(o.txns) != 0 {
		t.Fatalf("Stats = %+v with %d in memory; want 91 on disk, none in memory", s, len(o.txns))
	}
	ids := []string{"late"}
	for i := 10; i < 100; i++ {
		ids = append(ids, fmt.Sprint("t", i))
	}
	if err := o.Evict(ctx, ids...); err != nil {
		t.Fatal(err)
	}
	o.Add(ctx, tx("next", op(txn.Insert, "next", schema.Row{"id": "next"})))
	if s, _ := o.Stats(ctx); s.SpilledOps != 0 || s.Rows != 1 || len(o.txns) != 1 {
		t.Fatalf("Stats = %+v with %d in memory; want the one change back in memory", s, len(o.txns))
	}
}

// An add that fails part-way leaves nothing of its transaction behind.
func TestSpillAddAllOrNothing(t *testing.T) {
	t.Parallel()
	o := openSpilling(t, 1)
	o.Add(ctx, tx("t0", op(txn.Insert, "a", schema.Row{"id": "a"})))
	bad := tx("t1", op(txn.Insert, "b", schema.Row{"id": "b"}), op(txn.Insert, "c", schema.Row{"id": "c", "x": math.Inf(1)}))
	if err := o.Add(ctx, bad); err == nil {
		t.Fatal("Add of a value JSON cannot hold succeeded")
	}
	if has, _ := o.Has(ctx, "t1"); has || row(o, "b") != nil {
		t.Fatal("a failed add left part of its transaction in the overlay")
	}
	if s, _ := o.Stats(ctx); s.Ops != 1 || s.SpilledOps != 0 || s.Transactions != 1 {
		t.Fatalf("Stats = %+v after a failed add, want the one change before it", s)
	}
	// The tier on disk failing outright fails the add, and the read.
	o.Add(ctx, tx("t2", op(txn.Insert, "d", schema.Row{"id": "d"})))
	o.spill.db.Close()
	if err := o.Add(ctx, tx("t3", op(txn.Insert, "e", schema.Row{"id": "e"}))); err == nil {
		t.Fatal("Add succeeded with the spill file closed")
	}
	if _, err := o.Row(ctx, "t", "d"); err == nil {
		t.Fatal("Row succeeded with the spill file closed")
	}
}

func TestSpillFileLifetime(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "spill.db")
	if err := os.WriteFile(path, []byte("left by a crashed run"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := Open(ctx, path, 1, normalizeX)
	if err != nil {
		t.Fatalf("Open over a former run's file: %v", err)
	}
	o.Add(ctx, tx("t0", op(txn.Insert, "a", schema.Row{"id": "a"})))
	o.Add(ctx, tx("t1", op(txn.Insert, "b", schema.Row{"id": "b"})))
	if s, _ := o.Stats(ctx); s.SpilledOps != 1 {
		t.Fatalf("Stats = %+v, want one change on disk", s)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the spill file is still there after Close: %v", err)
	}
	if _, err := Open(ctx, filepath.Join(t.TempDir(), "spill.db"), 0, normalizeX); err == nil {
		t.Fatal("Open with no room in memory succeeded")
	}
}

// BenchmarkAdd: one transaction of two changes into the tier in memory,
// and into the tier on disk (what each write costs during a long outage).
func BenchmarkAdd(b *testing.B) {
	for _, tier := range []string{"memory", "disk"} {
		b.Run(tier, func(b *testing.B) {
			o := benchOverlay(b, tier)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				key := fmt.Sprint(i)
				err := o.Add(ctx, tx(fmt.Sprint("t", i),
					op(txn.Insert, key, schema.Row{"id": key, "x": int64(i), "y": "some text of a row"}),
					op(txn.Update, fmt.Sprint(i/2), schema.Row{"y": "u"})))
				if err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkRebuild: a start with a backlog on disk, a transaction of one
// change at a time, by Add and by Rebuild in chunks of 1,000.
func BenchmarkRebuild(b *testing.B) {
	for _, how := range []string{"add", "rebuild"} {
		b.Run(how, func(b *testing.B) {
			o := benchOverlay(b, "disk")
			var chunk []*txn.Transaction
			i := 0
			for b.Loop() {
				key := fmt.Sprint(i)
				t := tx(fmt.Sprint("t", i), op(txn.Insert, key, schema.Row{"id": key, "x": int64(i), "y": "some text of a row"}))
				i++
				if how == "add" {
					if err := o.Add(ctx, t); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if chunk = append(chunk, t); len(chunk) == 1000 {
					if err := o.Rebuild(ctx, chunk); err != nil {
						b.Fatal(err)
					}
					chunk = chunk[:0]
				}
			}
		})
	}
}

// BenchmarkRow reads one row's pending changes among 10,000 buffered, in
// memory and on disk.
func BenchmarkRow(b *testing.B) {
	for _, tier := range []string{"memory", "disk"} {
		b.Run(tier, func(b *testing.B) {
			o := benchOverlay(b, tier)
			for i := range 10_000 {
				key := fmt.Sprint(i)
				o.Add(ctx, tx(fmt.Sprint("t", i), op(txn.Insert, key, schema.Row{"id": key, "x": int64(i), "y": "some text of a row"})))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if p, err := o.Row(ctx, "t", fmt.Sprint(i%10_000)); err != nil || len(p) != 1 {
					b.Fatalf("Row = %v, %v", p, err)
				}
				i++
			}
		})
	}
}

// benchOverlay returns an overlay whose changes go to memory, or (after a
// first one) to disk.
func benchOverlay(b *testing.B, tier string) *Overlay {
	if tier == "memory" {
		return New()
	}
	o, err := Open(ctx, filepath.Join(b.TempDir(), "spill.db"), 1, normalizeX)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { o.Close() })
	o.Add(ctx, tx("fill", op(txn.Insert, "fill", schema.Row{"id": "fill"})))
	return o
}

// BenchmarkStats: the overlay's size with 100,000 changes to 50,000 rows
// on disk.
func BenchmarkStats(b *testing.B) {
	o := benchOverlay(b, "disk")
	var txs []*txn.Transaction
	for i := range 100_000 {
		key := fmt.Sprint(i % 50_000)
		txs = append(txs, tx(fmt.Sprint("t", i), op(txn.Upsert, key, schema.Row{"id": key, "x": int64(i)})))
	}
	if err := o.Rebuild(ctx, txs); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if s, err := o.Stats(ctx); err != nil || s.Rows != 50_001 {
			b.Fatalf("Stats = %+v, %v; want 50,001 rows", s, err)
		}
	}
}

// BenchmarkEvictDisk: the applier's eviction of a committed batch of 500
// one-change transactions from the tier on disk (the drain of a backlog
// that spilled).
func BenchmarkEvictDisk(b *testing.B) {
	o := benchOverlay(b, "disk")
	n := 0
	for b.Loop() {
		b.StopTimer()
		txs := make([]*txn.Transaction, 500)
		ids := make([]string, len(txs))
		for i := range txs {
			key := fmt.Sprint(n)
			ids[i] = fmt.Sprint("t", n)
			txs[i] = tx(ids[i], op(txn.Insert, key, schema.Row{"id": key, "x": int64(n)}))
			n++
		}
		if err := o.Rebuild(ctx, txs); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := o.Evict(ctx, ids...); err != nil {
			b.Fatal(err)
		}
	}
	if s, err := o.Stats(ctx); err != nil || s.Transactions != 1 {
		b.Fatalf("after the evictions: %+v, %v; want the fill alone", s, err)
	}
}
