package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// path names an executor, for tests and benchmarks that run a batch on
// one of them alone.
type path int

const (
	pathLean path = iota
	pathFast
	pathSlow
)

func (p path) String() string {
	return [...]string{"lean", "fast", "slow"}[p]
}

// attempt runs batch once on path p, on c, as ApplyBatch would, and rolls
// back whatever the executor leaves open. ran is the statement cache's
// record (nil: rely on none).
func (s *Store) attempt(ctx context.Context, c *pgx.Conn, batch []*txn.Transaction, gate store.Gate, p path, ran map[string]bool) ([]store.Outcome, error) {
	defer rollback(ctx, c)
	b := &batchRun{s: s, c: c, sql: make(map[stmtKey]string), shapes: make(map[string]*insertShape)}
	var e executor
	switch p {
	case pathLean:
		e = &leanExec{pipe: pipe{c: c, ran: ran}, b: b, gate: gate, coalescing: !s.noCoalesce}
	case pathFast:
		e = &fastExec{pipe: pipe{c: c, ran: ran}, b: b, gate: gate, coalescing: !s.noCoalesce}
	case pathSlow:
		e = &slowExec{pipe: pipe{c: c, ran: ran}, b: b, gate: gate}
	}
	return e.run(ctx, batch)
}
