// Package overlay holds the pending state of every row touched by a
// transaction the database readers cannot see yet, and the rules for merging
// it over database rows.
//
// An Overlay is filled before a transaction's log append (and withdrawn if
// the append fails), so a transaction can never reach the applier, commit and
// be evicted before its overlay entry exists. It is emptied per transaction
// by Evict once readers see the transaction in the database, or when it
// fails.
package overlay

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// Op is one pending change to one row.
type Op struct {
	Tx     string
	Kind   txn.Kind
	Values schema.Row
}

// Pending is the list of pending changes to one row, in log order.
type Pending []Op

// Apply merges the pending changes over base, the row as the database has it
// (nil when the database has none), and returns the row readers should see
// and whether it exists. Every change sets values, so applying a suffix of a
// row's history to a database row that already holds part of it gives the
// same result as applying it once.
func (p Pending) Apply(base schema.Row) (schema.Row, bool) {
	row, exists := base, base != nil
	copied := false
	for _, op := range p {
		switch op.Kind {
		case txn.Insert:
			row, exists, copied = maps.Clone(op.Values), true, true
		case txn.Upsert, txn.Update:
			if !exists {
				if op.Kind == txn.Update {
					continue // an update of nothing changes nothing
				}
				row, exists, copied = maps.Clone(op.Values), true, true
				continue
			}
			if !copied {
				row, copied = maps.Clone(row), true
			}
			maps.Copy(row, op.Values)
		case txn.Delete:
			row, exists, copied = nil, false, false
		}
	}
	return row, exists
}

type rowRef struct{ table, key string }

// Overlay is the in-memory overlay of one spool process (local log).
type Overlay struct {
	mu     sync.RWMutex
	tables map[string]map[string]Pending
	// txns lists the rows each pending transaction touches, for Evict.
	txns map[string][]rowRef
	ops  int
}

// New returns an empty overlay.
func New() *Overlay {
	return &Overlay{tables: make(map[string]map[string]Pending), txns: make(map[string][]rowRef)}
}

// Add records the changes of tx. Adding a transaction twice is a no-op.
func (o *Overlay) Add(tx *txn.Transaction) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.txns[tx.ID]; ok {
		return
	}
	refs := make([]rowRef, 0, len(tx.Operations))
	for _, op := range tx.Operations {
		rows := o.tables[op.Table]
		if rows == nil {
			rows = make(map[string]Pending)
			o.tables[op.Table] = rows
		}
		rows[op.ID] = append(rows[op.ID], Op{Tx: tx.ID, Kind: op.Op, Values: op.Values})
		refs = append(refs, rowRef{op.Table, op.ID})
		o.ops++
	}
	o.txns[tx.ID] = refs
}

// Evict removes the changes of transactions ids; rows left with no pending
// change leave the overlay. Evicting an unknown transaction is a no-op.
func (o *Overlay) Evict(_ context.Context, ids ...string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		o.evictLocked(id)
	}
	return nil
}

// Has reports whether transaction id has changes in the overlay.
func (o *Overlay) Has(_ context.Context, id string) (bool, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	_, ok := o.txns[id]
	return ok, nil
}

func (o *Overlay) evictLocked(id string) {
	for _, ref := range o.txns[id] {
		rows := o.tables[ref.table]
		kept := rows[ref.key][:0:0]
		for _, op := range rows[ref.key] {
			if op.Tx != id {
				kept = append(kept, op)
			} else {
				o.ops--
			}
		}
		if len(kept) == 0 {
			delete(rows, ref.key)
		} else {
			rows[ref.key] = kept
		}
	}
	delete(o.txns, id)
}

// Withdraw evicts every pending transaction one of whose changes depends
// reports true (a transaction once, however many of its changes do), and
// returns their ids: the transactions that depend on one
// that failed. Their effects leave the overlay at once; the applier fails
// them when it reaches them.
func (o *Overlay) Withdraw(_ context.Context, depends func(table, key string, op Op) bool) ([]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var ids []string
	for table, rows := range o.tables {
		for key, p := range rows {
			for _, op := range p {
				if !slices.Contains(ids, op.Tx) && depends(table, key, op) {
					ids = append(ids, op.Tx)
				}
			}
		}
	}
	for _, id := range ids {
		o.evictLocked(id)
	}
	return ids, nil
}

// Row returns a copy of the pending changes to one row, nil if none.
func (o *Overlay) Row(_ context.Context, table, key string) (Pending, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return clonePending(o.tables[table][key]), nil
}

// Table returns a copy of the pending changes to every row of table.
func (o *Overlay) Table(_ context.Context, table string) (map[string]Pending, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	rows := o.tables[table]
	out := make(map[string]Pending, len(rows))
	for k, p := range rows {
		out[k] = clonePending(p)
	}
	return out, nil
}

func clonePending(p Pending) Pending {
	if p == nil {
		return nil
	}
	return append(Pending(nil), p...)
}

// Stats is the overlay's size.
type Stats struct {
	Transactions int `json:"transactions"`
	Rows         int `json:"rows"`
	Ops          int `json:"operations"`
}

// Stats reports the overlay's size.
func (o *Overlay) Stats(context.Context) (Stats, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	s := Stats{Transactions: len(o.txns), Ops: o.ops}
	for _, rows := range o.tables {
		s.Rows += len(rows)
	}
	return s, nil
}
