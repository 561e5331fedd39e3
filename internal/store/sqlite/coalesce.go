package sqlite

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"strings"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// The savepoint of the coalesced run, apart from each transaction's.
const (
	sqlBatchSavepoint = `savepoint spool_batch`
	sqlBatchRelease   = `release spool_batch`
	sqlBatchRollback  = `rollback to spool_batch`
)

// runCoalesced runs the batch in one savepoint: the transactions to run
// (see judge) have their operations coalesced (store.Coalesce) and their
// ids recorded. ok is false if a statement failed permanently: the
// savepoint is rolled back, what the run learnt of the batch is forgotten,
// and the caller runs the transactions one by one. A returned error is
// transient.
func (b *batchRun) runCoalesced(ctx context.Context, batch []*txn.Transaction) (out []store.Outcome, ok bool, err error) {
	if _, err := b.exec(ctx, sqlBatchSavepoint); err != nil {
		return nil, false, fmt.Errorf("savepoint: %w", err)
	}
	applied, dead, retries := maps.Clone(b.applied), maps.Clone(b.dead), maps.Clone(b.retries)
	out = make([]store.Outcome, len(batch))
	var (
		ops  []txn.Operation
		from []int // the index in its transaction of each of ops
		run  []*txn.Transaction
	)
	for i, t := range batch {
		o, runIt, err := b.judge(ctx, t)
		if err != nil {
			return nil, false, fmt.Errorf("transaction %s: %w", t.ID, err)
		}
		out[i] = o
		if !runIt {
			continue
		}
		b.applied[t.ID] = true // a second copy is a duplicate
		run = append(run, t)
		for k, op := range t.Operations {
			ops = append(ops, op)
			from = append(from, k)
		}
	}
	plan := uncoalesced(ops)
	if !b.s.noCoalesce && store.Repeats(ops) {
		rules, err := b.mergeRules(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("read merge rules: %w", err)
		}
		plan = store.Coalesce(ops, rules)
	}
	for k := 0; k < len(plan); {
		n, err := b.runGroup(ctx, plan[k:], from)
		k += n
		var ae *store.ApplyError
		if errors.As(err, &ae) {
			if _, err := b.exec(ctx, sqlBatchRollback); err != nil {
				return nil, false, fmt.Errorf("roll back to savepoint: %w", err)
			}
			if _, err := b.exec(ctx, sqlBatchRelease); err != nil {
				return nil, false, fmt.Errorf("release savepoint: %w", err)
			}
			b.applied, b.dead, b.retries = applied, dead, retries
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
	if err := b.recordApplied(ctx, run); err != nil {
		return nil, false, err
	}
	if _, err := b.exec(ctx, sqlBatchRelease); err != nil {
		return nil, false, fmt.Errorf("release savepoint: %w", err)
	}
	return out, true, nil
}

// uncoalesced is the plan that runs every operation as written: the
// benchmark's baseline.
func uncoalesced(ops []txn.Operation) []store.Merged {
	plan := make([]store.Merged, len(ops))
	for i, op := range ops {
		plan[i] = store.Merged{Op: op, Steps: []int{i}}
	}
	return plan
}

// mergeRules reads, in the batch's transaction, what decides whether
// writes to a table may be coalesced (see store.MergeRules). It reads the
// schema's SQL text and errs on the safe side: a table whose definition
// mentions a CHECK, UNIQUE, REFERENCES or FOREIGN KEY anywhere (a column
// named "checked" too), that has a unique index, or whose name appears in
// another table's definition that holds REFERENCES, is not mergeable; a
// table with a trigger, and a virtual table, is a barrier.
func (b *batchRun) mergeRules(ctx context.Context) (func(string) *store.MergeRules, error) {
	rows, err := b.tx.QueryContext(ctx, `select type, tbl_name, coalesce(sql, '') from sqlite_master where type in ('table', 'index', 'trigger')`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		defs    = make(map[string]string) // table → its SQL, lower case
		bound   = make(map[string]bool)
		barrier = make(map[string]bool)
	)
	for rows.Next() {
		var typ, table, text string
		if err := rows.Scan(&typ, &table, &text); err != nil {
			return nil, err
		}
		text = strings.ToLower(text)
		switch typ {
		case "table":
			defs[table] = text
			barrier[table] = barrier[table] || strings.HasPrefix(text, "create virtual")
		case "index":
			bound[table] = bound[table] || strings.Contains(text, "unique")
		case "trigger":
			barrier[table] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for name, text := range defs {
		for _, word := range []string{"check", "unique", "references", "foreign"} {
			bound[name] = bound[name] || strings.Contains(text, word)
		}
		if strings.Contains(text, "references") {
			for other := range defs {
				bound[other] = bound[other] || strings.Contains(text, strings.ToLower(other))
			}
		}
	}
	cache := make(map[string]*store.MergeRules)
	return func(name string) *store.MergeRules {
		if r, ok := cache[name]; ok {
			return r
		}
		var r *store.MergeRules
		if _, known := defs[name]; known {
			if cat := b.s.cat.Load(); cat != nil {
				if t, err := cat.Table(name); err == nil {
					r = &store.MergeRules{Table: t, Mergeable: !bound[name] && !barrier[name], Barrier: barrier[name], Fits: fits}
				}
			}
		}
		cache[name] = r
		return r
	}, nil
}

// fits reports whether SQLite takes v in column c: a column's type refuses
// nothing (outside STRICT tables, and a value normalised to the column's
// kind fits a STRICT one), so only a value that cannot be bound may fail,
// and is never overwritten unseen.
func fits(c *schema.Column, v any) bool {
	_, err := gen.BindColumn(c, v)
	return err == nil
}

// Bounds of a multi-row statement of the coalesced run: enough rows that
// one statement carries a batch's inserts into a table, few enough
// parameters for any SQLite build (SQLITE_MAX_VARIABLE_NUMBER is 32766
// since 3.32).
const (
	maxGroupRows   = 500
	maxGroupParams = 30000
)

// runGroup runs the first of plan and returns how many of plan it ran:
// successive plain inserts into one table naming the same columns run as
// one multi-row INSERT, as many a batch holds; anything else runs alone.
// A failed group is a failure of its first operation: the caller then
// runs the batch one transaction at a time, which names the culprit.
func (b *batchRun) runGroup(ctx context.Context, plan []store.Merged, from []int) (int, error) {
	first := plan[0]
	i := from[first.Steps[0]]
	if first.Op.Op != txn.Insert {
		return 1, b.op(ctx, i, first.Op)
	}
	w, err := b.prepare(ctx, i, first.Op)
	if err != nil {
		return 1, err
	}
	args := w.Args
	n, most := 1, groupRows(min(len(plan), maxGroupRows, maxGroupParams/max(1, len(w.Names))))
	for n < most {
		m := plan[n]
		if m.Op.Op != txn.Insert || m.Op.Table != first.Op.Table || len(m.Op.Values) != len(first.Op.Values) {
			break
		}
		q, err := b.prepare(ctx, from[m.Steps[0]], m.Op)
		if err != nil || !slices.Equal(q.Names, w.Names) {
			break // it runs (and fails, if it must) in a group of its own
		}
		args = append(args, q.Args...)
		n++
	}
	if n = groupRows(n); n == 1 {
		return 1, b.run(ctx, i, first.Op, &w)
	}
	args = args[:n*len(w.Names)]
	if _, err := b.exec(ctx, gen.Insert(gen.Ident(w.Table.Name), w.Names, n), args...); err != nil {
		return n, b.dbError(ctx, i, first.Op, err)
	}
	return n, nil
}

// groupRows returns how many of n rows (n ≥ 1) a multi-row statement
// takes: all of a full group, else the largest power of two, so that a
// handful of texts serve every batch and stay prepared (stmtCache). The
// rest of the rows go in the next statements.
func groupRows(n int) int {
	if n >= maxGroupRows {
		return maxGroupRows
	}
	return 1 << (bits.Len(uint(n)) - 1)
}

// recordApplied records the transactions run in spool_applied, many rows
// per statement, and links the dead letters that retries among them retry.
func (b *batchRun) recordApplied(ctx context.Context, run []*txn.Transaction) error {
	args := make([]any, 0, 2*min(len(run), maxGroupRows))
	for rest := run; len(rest) > 0; {
		chunk := rest[:groupRows(len(rest))]
		rest = rest[len(chunk):]
		args = args[:0]
		for _, t := range chunk {
			args = append(args, t.ID, b.now)
		}
		text := sqlMarkApplied + strings.Repeat(", (?, ?)", len(chunk)-1)
		if _, err := b.exec(ctx, text, args...); err != nil {
			return fmt.Errorf("record applied: %w", err)
		}
	}
	for _, t := range run {
		if t.RetryOf == "" {
			continue
		}
		if _, err := b.exec(ctx, sqlMarkRetried, t.ID, t.Principal, t.RetryOf); err != nil {
			return fmt.Errorf("transaction %s: record retry: %w", t.ID, err)
		}
	}
	return nil
}
