package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// ApplyBatch applies the batch in one database transaction; see
// store.Store and the package documentation for the planner and the
// executors.
func (s *Store) ApplyBatch(ctx context.Context, batch []*txn.Transaction, gate store.Gate) ([]store.Outcome, error) {
	if len(batch) == 0 {
		return []store.Outcome{}, nil
	}
	for _, t := range batch {
		if !txn.ValidID(t.ID) {
			return nil, fmt.Errorf("apply batch: transaction id %q is not a UUID", t.ID)
		}
	}
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply batch: %w", err)
	}
	defer pc.Release()
	c := pc.Conn()
	ran := make(map[string]bool) // shared by the attempts: one connection
	attempt := func(e executor) ([]store.Outcome, error) {
		defer rollback(ctx, c) // a no-op after commit
		return e.run(ctx, batch)
	}
	b := func() *batchRun {
		return &batchRun{s: s, c: c, sql: make(map[stmtKey]string), shapes: make(map[string]*insertShape)}
	}

	var out []store.Outcome
	err = errLookupFirst
	if !s.noLean {
		out, err = attempt(&leanExec{pipe: pipe{c: c, ran: ran}, b: b(), gate: gate, coalescing: !s.noCoalesce})
	}
	if errors.Is(err, errLookupFirst) {
		out, err = attempt(&fastExec{pipe: pipe{c: c, ran: ran}, b: b(), gate: gate, coalescing: !s.noCoalesce})
	}
	if errors.Is(err, errSlowPath) {
		out, err = attempt(&slowExec{pipe: pipe{c: c, ran: ran}, b: b(), gate: gate})
	}
	if errors.Is(err, errUncached) {
		out, err = attempt(&slowExec{pipe: pipe{c: c}, b: b(), gate: gate})
	}
	if err != nil {
		return nil, fmt.Errorf("apply batch: %w", err)
	}
	return out, nil
}

// executor runs one attempt at a batch, in a database transaction of its
// own, and commits it; the caller rolls back whatever it leaves open.
type executor interface {
	run(ctx context.Context, batch []*txn.Transaction) ([]store.Outcome, error)
}

var (
	_ executor = (*leanExec)(nil)
	_ executor = (*fastExec)(nil)
	_ executor = (*slowExec)(nil)
)

// batchRun turns the operations of an attempt into statements (ops.go),
// with the attempt's caches of SQL text and insert shapes. When the table
// an operation names is not in the catalog it reads the catalog again, on
// the attempt's connection, once a pipeline in flight (busy) is read.
type batchRun struct {
	s *Store
	c *pgx.Conn
	// busy, if set, reads the results of a pipeline still in flight on c;
	// settle calls it before c runs anything else.
	busy    func() error
	busyErr error
	// sql and shapes cache the SQL text of operations, and the shape of
	// inserts by their SQL, for the attempt.
	sql    map[stmtKey]string
	shapes map[string]*insertShape
	// reloaded is set once the attempt has read the catalog again.
	reloaded bool
}

// settle reads the results of the pipeline in flight, if any, and returns
// its error (again, if it was read before).
func (b *batchRun) settle() error {
	if b.busy != nil {
		b.busyErr, b.busy = b.busy(), nil
	}
	return b.busyErr
}

// buildAll turns the operations of each transaction of the batch into
// statements, nil for a second copy of a transaction (a duplicate). An
// operation that cannot be turned into one (an unknown table) sends the
// batch down the slow path, which finds out which transaction fails.
func (b *batchRun) buildAll(ctx context.Context, batch []*txn.Transaction) ([][]stmt, error) {
	built := make([][]stmt, len(batch))
	seen := make(map[string]bool, len(batch))
	for i, t := range batch {
		if seen[t.ID] {
			continue
		}
		seen[t.ID] = true
		ops, fail, err := b.plan(ctx, t)
		if err == nil && fail != nil {
			err = errSlowPath
		}
		if err != nil {
			return nil, err
		}
		built[i] = ops
	}
	return built, nil
}

// buildMerged builds the statements of the operations coalescing merged.
// One that cannot be built sends the batch down the slow path.
func (p *fastPlan) buildMerged(ctx context.Context, b *batchRun) error {
	for _, m := range p.merges {
		st, fail, err := b.opStmt(ctx, m.op, m.merged)
		if err != nil {
			return err
		}
		if fail != nil {
			return errSlowPath
		}
		p.body[m.at] = st
	}
	p.merges = nil
	return nil
}
