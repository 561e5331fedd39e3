package overlay

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

func tx(id string, ops ...txn.Operation) *txn.Transaction {
	return &txn.Transaction{ID: id, Operations: ops}
}

func op(kind txn.Kind, key string, values schema.Row) txn.Operation {
	return txn.Operation{Op: kind, Table: "t", ID: key, Values: values}
}

var ctx = context.Background()

func row(o *Overlay, key string) Pending {
	p, _ := o.Row(ctx, "t", key)
	return p
}

func TestApply(t *testing.T) {
	t.Parallel()
	base := schema.Row{"id": "a", "x": int64(1), "y": "db"}
	cases := []struct {
		name    string
		base    schema.Row
		pending Pending
		want    schema.Row
		exists  bool
	}{
		{"nothing pending", base, nil, base, true},
		{"insert alone", nil, Pending{{Kind: txn.Insert, Values: schema.Row{"id": "a", "x": int64(5)}}}, schema.Row{"id": "a", "x": int64(5)}, true},
		{"update over db", base, Pending{{Kind: txn.Update, Values: schema.Row{"x": int64(2)}}}, schema.Row{"id": "a", "x": int64(2), "y": "db"}, true},
		{"update of nothing", nil, Pending{{Kind: txn.Update, Values: schema.Row{"x": int64(2)}}}, nil, false},
		{"insert then update", nil, Pending{{Kind: txn.Insert, Values: schema.Row{"id": "a", "x": int64(5)}}, {Kind: txn.Update, Values: schema.Row{"x": int64(6)}}}, schema.Row{"id": "a", "x": int64(6)}, true},
		{"delete", base, Pending{{Kind: txn.Delete}}, nil, false},
		{"delete then upsert", base, Pending{{Kind: txn.Delete}, {Kind: txn.Upsert, Values: schema.Row{"id": "a", "x": int64(9)}}}, schema.Row{"id": "a", "x": int64(9)}, true},
		{"upsert over db", base, Pending{{Kind: txn.Upsert, Values: schema.Row{"id": "a", "y": "new"}}}, schema.Row{"id": "a", "x": int64(1), "y": "new"}, true},
		// The database already holds the first update; applying the
		// suffix again gives the same row.
		{"suffix already applied", schema.Row{"id": "a", "x": int64(2), "y": "db"}, Pending{{Kind: txn.Update, Values: schema.Row{"x": int64(2)}}, {Kind: txn.Update, Values: schema.Row{"y": "z"}}}, schema.Row{"id": "a", "x": int64(2), "y": "z"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := maps.Clone(c.base)
			got, exists := c.pending.Apply(c.base)
			if exists != c.exists || !maps.Equal(got, c.want) {
				t.Fatalf("Apply = %v, %v; want %v, %v", got, exists, c.want, c.exists)
			}
			if !maps.Equal(before, c.base) {
				t.Fatalf("Apply changed its base row: %v, was %v", c.base, before)
			}
		})
	}
}

func TestAddEvict(t *testing.T) {
	t.Parallel()
	o := New()
	o.Add(ctx, tx("t1", op(txn.Insert, "a", schema.Row{"id": "a"}), op(txn.Insert, "b", schema.Row{"id": "b"})))
	o.Add(ctx, tx("t2", op(txn.Update, "a", schema.Row{"x": int64(1)})))
	o.Add(ctx, tx("t2", op(txn.Update, "a", schema.Row{"x": int64(1)}))) // twice: no-op
	if s, _ := o.Stats(ctx); s.Transactions != 2 || s.Rows != 2 || s.Ops != 3 {
		t.Fatalf("stats = %+v", s)
	}
	if p := row(o, "a"); len(p) != 2 || p[0].Tx != "t1" || p[1].Tx != "t2" {
		t.Fatalf("row a = %+v", p)
	}
	o.Evict(ctx, "t1")
	if p := row(o, "a"); len(p) != 1 || p[0].Tx != "t2" {
		t.Fatalf("after evicting t1, row a = %+v", p)
	}
	if p := row(o, "b"); p != nil {
		t.Fatalf("after evicting t1, row b = %+v", p)
	}
	o.Evict(ctx, "t2")
	o.Evict(ctx, "unknown")
	if s, _ := o.Stats(ctx); s != (Stats{}) {
		t.Fatalf("empty overlay stats = %+v", s)
	}
}

func TestWithdraw(t *testing.T) {
	t.Parallel()
	o := New()
	o.Add(ctx, tx("t1", op(txn.Insert, "a", schema.Row{"id": "a"})))
	o.Add(ctx, tx("t2", op(txn.Update, "a", schema.Row{"x": int64(1)}), op(txn.Insert, "c", schema.Row{"id": "c"})))
	o.Add(ctx, tx("t3", op(txn.Insert, "d", schema.Row{"id": "d"})))
	o.Evict(ctx, "t1") // t1 failed
	ids, _ := o.Withdraw(ctx, func(table, key string, op Op) bool { return key == "a" })
	if len(ids) != 1 || ids[0] != "t2" {
		t.Fatalf("withdrew %v, want [t2]", ids)
	}
	if row(o, "c") != nil || row(o, "d") == nil {
		t.Fatal("withdrawing t2 must remove all its rows and keep t3's")
	}
}

func BenchmarkMergeTable(b *testing.B) {
	o := New()
	for i := range 1000 {
		o.Add(ctx, tx(fmt.Sprint("t", i), op(txn.Insert, fmt.Sprint(i), schema.Row{"id": fmt.Sprint(i), "x": int64(i)}), op(txn.Update, fmt.Sprint(i/2), schema.Row{"y": "u"})))
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		tbl, _ := o.Table(ctx, "t")
		for _, p := range tbl {
			if _, ok := p.Apply(nil); ok {
				n++
			}
		}
		if n != 1000 {
			b.Fatalf("merged %d rows", n)
		}
	}
}

// BenchmarkWithdraw: the 500 dependents of failed transactions (the
// changes to 100 rows of 4,000, five each) leave an overlay of 20,000
// pending transactions, its tier in memory full.
func BenchmarkWithdraw(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		o := New()
		for i := range 20_000 {
			key := fmt.Sprint(i % 4000)
			o.Add(ctx, tx(fmt.Sprint("t", i), op(txn.Update, key, schema.Row{"x": int64(i)})))
		}
		b.StartTimer()
		ids, err := o.Withdraw(ctx, func(table, key string, op Op) bool { return len(key) == 3 && key[0] == '1' })
		if err != nil || len(ids) != 500 {
			b.Fatalf("withdrew %d, %v; want 500", len(ids), err)
		}
	}
}
