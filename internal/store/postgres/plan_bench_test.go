package postgres

import (
	"context"
	"testing"

	"github.com/spoolgw/spool/internal/schema"
)

// BenchmarkPlan measures the client's side of a batch: turning 500
// single-insert transactions into the merged statement. It needs no
// database: the catalog is made up.
func BenchmarkPlan(b *testing.B) {
	cols := []*schema.Column{
		{Name: "id", Type: "uuid", Kind: schema.UUID, NotNull: true},
		{Name: "site", Type: "text", Kind: schema.Text, NotNull: true},
		{Name: "n", Type: "bigint", Kind: schema.Integer},
		{Name: "v", Type: "double precision", Kind: schema.Real},
		{Name: "at", Type: "timestamp with time zone", Kind: schema.Timestamp},
	}
	types := map[*schema.Column]string{cols[0]: "uuid", cols[1]: "text", cols[2]: "bigint", cols[3]: "double precision", cols[4]: "timestamp with time zone"}
	s := &Store{}
	s.cat.Store(&catalog{cat: schema.NewCatalog([]*schema.Table{schema.NewTable("drain", cols, []string{"id"})}), schema: "public", types: types})
	batches, _ := drainWork(drainBatch)
	batch := batches[0]
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r := &batchRun{s: s, sql: map[stmtKey]string{}, shapes: map[string]*insertShape{}}
		var stmts []stmt
		for _, t := range batch {
			ops, fail, err := r.plan(ctx, t)
			if err != nil || fail != nil {
				b.Fatal(err, fail)
			}
			stmts = append(stmts, ops...)
		}
		if m := merge(stmts); len(m) != 1 {
			b.Fatalf("%d statements", len(m))
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "rows/s")
}
