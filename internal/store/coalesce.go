package store

import (
	"maps"
	"reflect"
	"time"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// Write coalescing: within one batch, successive operations on one row are
// merged into one statement before they reach the database. The merged plan
// runs in one go; a backend falls back to its per-transaction path (which
// runs every operation as written) when any statement of the plan fails
// permanently. So the plan needs only this property: whenever it succeeds,
// every operation in log order would have succeeded too, and would have
// left every row, and everything else the database holds, as the plan
// leaves it.
//
// A merge changes two things the database could notice: the intermediate
// states of a row are never written, and the later operations of a row run
// at the position of its first, ahead of operations on other rows in
// between. Coalesce only merges where neither can be seen:
//
//   - only on tables the backend reports Mergeable: nothing but the row's
//     own primary key and per-column checks can refuse a write to it, and no
//     other row can see it (no CHECK, no foreign key from or to the table, no
//     UNIQUE or EXCLUDE besides the key, no trigger or rule). Its rows can
//     then move past operations on other rows unseen;
//   - an operation on a Barrier table (one with triggers, rules or row
//     security, which may read any table) or on an unknown table, or one
//     whose key cannot be told, closes every open merge: nothing moves past
//     it;
//   - a row's merge starts at an insert, an upsert or an update. An insert
//     or upsert starts one only if it names every NOT NULL column without a
//     default: otherwise it may fail as written and succeed once a later
//     update fills the column in;
//   - updates and upserts merge into it, column-wise over its values, in
//     log order. An insert never merges (after the row's first operation
//     the row exists, so it fails as written), nor does a delete (an insert
//     or update followed by a delete must still be checked): each closes
//     the row's merge and runs at its own position, and the row's later
//     operations start a new one;
//   - a merge never drops a value the database might refuse (Fits; NULL in
//     a NOT NULL column): a later value of the same column stops the merge
//     instead, and the refused value reaches the database as written;
//   - a merge into an insert or upsert never sets a column whose default
//     has side effects (a sequence, a function): written in order, the
//     insert would have evaluated it. A literal or current-time default is
//     overwritten unseen.
//
// The merged operation keeps the kind of the first: insert + updates is an
// insert of the union of values, upsert + updates an upsert of it (on an
// existing row it sets every column the operations named, as they would
// one after the other), update + updates or upserts an update that still
// requires the row to exist.

// MergeRules is what the backend's catalog says about one table: whether
// Coalesce may merge operations on its rows.
type MergeRules struct {
	Table *schema.Table
	// Mergeable is set when no constraint lets the database see a row's
	// intermediate states, nor lets another row see it: no CHECK, no
	// foreign key from or to the table, no UNIQUE or EXCLUDE constraint or
	// unique index besides the primary key, no trigger, rule or row
	// security policy.
	Mergeable bool
	// Barrier is set when a statement on the table may read or write rows
	// of other tables (a trigger, a rule, a row security policy): no merge
	// moves an operation past one on this table.
	Barrier bool
	// Fits reports whether the database takes the non-NULL value v in
	// column c whatever the row's other values. A value that does not is
	// never dropped by a merge. Nil means every value fits (SQLite, where a
	// column's type refuses nothing it was normalised to).
	Fits func(c *schema.Column, v any) bool
}

// fits reports whether v may be overwritten unseen in column c.
func (r *MergeRules) fits(c *schema.Column, v any) bool {
	if v == nil {
		return !c.NotNull
	}
	return r.Fits == nil || r.Fits(c, v)
}

// Merged is one operation of a coalesced plan: the operations at Steps
// (indices into Coalesce's input, ascending) merged into Op. It runs at
// the position of Steps[0].
type Merged struct {
	Op    txn.Operation
	Steps []int
}

// Repeats reports whether two of ops name one row by the same table and
// id: only then can Coalesce merge anything, so a backend need not read
// its merge rules (a catalog query) for a batch that touches every row
// once. Ids are compared as written; a row named twice in two spellings
// only goes unmerged.
func Repeats(ops []txn.Operation) bool {
	seen := make(map[[2]string]bool, len(ops))
	for _, op := range ops {
		k := [2]string{op.Table, op.ID}
		if seen[k] {
			return true
		}
		seen[k] = true
	}
	return false
}

// rowID names a row: its table and the canonical text of its key.
type rowID struct{ table, key string }

// Coalesce plans ops, the operations of a batch's transactions that are to
// run, in log order, as fewer operations with the same effect (see the
// rules above). rules returns what the catalog says of a table, nil for
// one it does not know. The plan is in the order of each merged
// operation's first step; every input index appears in exactly one step
// list. Values of the input are not modified.
func Coalesce(ops []txn.Operation, rules func(table string) *MergeRules) []Merged {
	plan := make([]Merged, 0, len(ops))
	open := make(map[rowID]int) // a row's merge still open: its index in plan
	for i, op := range ops {
		single := Merged{Op: op, Steps: []int{i}}
		r := rules(op.Table)
		if r == nil || r.Barrier {
			clear(open)
			plan = append(plan, single)
			continue
		}
		if !r.Mergeable {
			plan = append(plan, single) // unseen by the rows of mergeable tables
			continue
		}
		id, ok := rowOf(r.Table, op)
		if !ok {
			clear(open) // it might touch any row
			plan = append(plan, single)
			continue
		}
		if at, ok := open[id]; ok {
			if m, ok := absorb(r, plan[at].Op, op); ok {
				plan[at].Op = m
				plan[at].Steps = append(plan[at].Steps, i)
				continue
			}
		}
		delete(open, id)
		plan = append(plan, single)
		if starts(r.Table, op) {
			open[id] = len(plan) - 1
		}
	}
	return plan
}

// rowOf returns the row op touches, if it can be told for sure: the table
// has a single-column key, the operation's id is a valid key, and a key
// among its values (inserts and upserts carry one) names the same row.
func rowOf(t *schema.Table, op txn.Operation) (rowID, bool) {
	if t == nil || t.Key == nil {
		return rowID{}, false
	}
	key, err := t.Key.NormalizeKey(op.ID)
	if err != nil {
		return rowID{}, false
	}
	if v, ok := op.Values[t.Key.Name]; ok && op.Op != txn.Delete {
		n, err := t.Key.Normalize(v)
		if err != nil || schema.KeyText(n) != key {
			return rowID{}, false
		}
	}
	return rowID{t.Name, key}, true
}

// starts reports whether op may start a merge that later operations on its
// row join.
func starts(t *schema.Table, op txn.Operation) bool {
	switch op.Op {
	case txn.Update:
		return true
	case txn.Insert, txn.Upsert:
		for _, c := range t.Columns {
			if _, ok := op.Values[c.Name]; !ok && c.NotNull && !c.HasDefault() && !c.PrimaryKey {
				return false // may fail as written, and not once a later update names the column
			}
		}
		return true
	}
	return false
}

// absorb merges op into the open merge m of the same row, if the rules
// allow it, and returns the merged operation. m is not modified.
func absorb(r *MergeRules, m, op txn.Operation) (txn.Operation, bool) {
	if op.Op != txn.Update && op.Op != txn.Upsert {
		return m, false
	}
	t := r.Table
	for name, v := range op.Values {
		c := t.Column(name)
		if c == nil {
			return m, false // fails as written; let it fail alone
		}
		if c == t.Key {
			continue // the same row (see rowOf)
		}
		if old, set := m.Values[name]; set {
			if !reflect.DeepEqual(old, v) && !r.fits(c, old) {
				return m, false
			}
			continue
		}
		if m.Op != txn.Update && c.HasDefault() {
			if _, literal := c.DefaultValue(time.Time{}); !literal {
				return m, false
			}
		}
	}
	out := m
	out.Values = make(map[string]any, len(m.Values)+len(op.Values))
	maps.Copy(out.Values, m.Values)
	for name, v := range op.Values {
		if name == t.Key.Name && m.Op == txn.Update {
			continue // an update names its row by id, not by setting the key
		}
		if name == t.Key.Name {
			if _, set := out.Values[name]; set {
				continue // keep the first's form of the same key
			}
		}
		out.Values[name] = v
	}
	return out, true
}
