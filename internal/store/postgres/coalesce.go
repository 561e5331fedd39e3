package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// sqlMergeFacts says, for every table of the current schema, what decides
// whether the fast path may coalesce writes to it (see store.Coalesce):
// bound if a constraint or unique index besides the primary key and NOT
// NULL could see a row's intermediate states or another row (CHECK,
// foreign keys from or to it, UNIQUE, EXCLUDE), barrier if a statement on
// it may read other tables (user triggers, rules, row security) or reach
// other relations (partitions, inheritance children). It runs in the fast
// path's first pipeline, in the batch's own database transaction, so a
// constraint added while spool runs is seen by the next batch.
const sqlMergeFacts = `select c.relname::text,
	c.relhasrules or c.relrowsecurity or c.relhassubclass or c.relkind = 'p'
		or exists (select 1 from pg_trigger g where g.tgrelid = c.oid and not g.tgisinternal),
	exists (select 1 from pg_constraint k where (k.conrelid = c.oid and k.contype in ('c', 'f', 'u', 'x'))
			or (k.confrelid = c.oid and k.contype = 'f'))
		or exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisunique and not i.indisprimary)
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = current_schema() and c.relkind in ('r', 'p')`

// mergeFact is sqlMergeFacts's answer for one table.
type mergeFact struct{ barrier, bound bool }

// readMergeFacts reads the result of sqlMergeFacts.
func readMergeFacts(br pgx.BatchResults) (map[string]mergeFact, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("read merge facts: %w", err)
	}
	defer rows.Close()
	facts := make(map[string]mergeFact)
	for rows.Next() {
		var (
			name string
			f    mergeFact
		)
		if err := rows.Scan(&name, &f.barrier, &f.bound); err != nil {
			return nil, fmt.Errorf("read merge facts: %w", err)
		}
		facts[name] = f
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read merge facts: %w", err)
	}
	return facts, nil
}

// mergeRules returns the store.Coalesce rules of each table, from the
// catalog c and the facts read at the start of the attempt; nil for a
// table either does not know.
func mergeRules(c *catalog, facts map[string]mergeFact) func(string) *store.MergeRules {
	cache := make(map[string]*store.MergeRules)
	return func(name string) *store.MergeRules {
		if r, ok := cache[name]; ok {
			return r
		}
		var r *store.MergeRules
		f, known := facts[name]
		if known && c != nil {
			if t, err := c.cat.Table(name); err == nil {
				r = &store.MergeRules{Table: t, Mergeable: !f.bound && !f.barrier, Barrier: f.barrier,
					Fits: func(col *schema.Column, v any) bool { return fits(c.types[col], v) }}
			}
		}
		cache[name] = r
		return r
	}
}

// fits reports whether a column of type typ (without modifiers) takes the
// canonical value v whatever it is: only then may a merge overwrite v
// before the database sees it. Types with a range, length or precision
// narrower than the value's kind (integer, real, numeric, varchar(n),
// domains, enums, …) may refuse a value, so their values are never
// dropped; text and jsonb refuse a NUL.
func fits(typ string, v any) bool {
	switch typ {
	case "bigint", "double precision", "boolean", "uuid", "bytea",
		"timestamp with time zone", "timestamp without time zone":
		return true
	case "text":
		s, ok := v.(string)
		return ok && !strings.ContainsRune(s, 0)
	case "jsonb", "json":
		raw, ok := v.(json.RawMessage)
		return ok && !bytes.Contains(raw, []byte(`\u0000`))
	}
	return false
}

// coalesce merges the statements of ops (planned, one each, in log order)
// where store.Coalesce allows; rules nil coalesces nothing. A merged
// operation's statement is left empty (its SQL ""), and merges lists it,
// to be built on the connection (see fastPlan.buildMerged): its table may
// need the catalog read again.
func coalesce(ops []txn.Operation, planned []stmt, rules func(string) *store.MergeRules) (out []stmt, merges []mergedOp) {
	if rules == nil || len(ops) < 2 {
		return planned, nil
	}
	plan := store.Coalesce(ops, rules)
	if len(plan) == len(ops) {
		return planned, nil
	}
	out = make([]stmt, 0, len(plan))
	for _, m := range plan {
		first := planned[m.Steps[0]]
		if len(m.Steps) > 1 {
			merges = append(merges, mergedOp{at: len(out), op: first.op, merged: m.Op})
			first = stmt{op: first.op}
		}
		out = append(out, first)
	}
	return out, merges
}

// repeats reports whether the batch touches a row twice (store.Repeats).
func repeats(batch []*txn.Transaction) bool {
	var ops []txn.Operation
	for _, t := range batch {
		ops = append(ops, t.Operations...)
	}
	return store.Repeats(ops)
}
