// Package overlay holds the pending state of every row touched by a
// transaction the database readers cannot see yet, and the rules for merging
// it over database rows.
//
// An Overlay is filled before a transaction's log append (and withdrawn if
// the append fails), so a transaction can never reach the applier, commit and
// be evicted before its overlay entry exists. It is emptied per transaction
// by Evict once readers see the transaction in the database, or when it
// fails.
//
// An overlay made by Open holds a bounded number of changes in memory;
// changes that come while that tier is full go to a tier on disk (a
// scratch SQLite file), and keep going there until it is empty again, so
// that every change in memory is older than every change on disk. A
// backlog of any size (a database down for hours) then costs a bounded
// heap; reads of rows on disk cost a query each.
package overlay

import (
	"context"
	"fmt"
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

// Decides reports whether the row p leads to does not depend on the
// database's: an insert or a delete is among the changes, and Apply starts
// afresh from the last of them.
func (p Pending) Decides() bool {
	for _, op := range p {
		if op.Kind == txn.Insert || op.Kind == txn.Delete {
			return true
		}
	}
	return false
}

type rowRef struct{ table, key string }

// DefaultMaxOps is how many changes an overlay made by Open holds in
// memory by default: a backlog of tens of seconds at the rates the local
// log takes, some tens of MiB.
const DefaultMaxOps = 20_000

// Overlay is the overlay of one spool process (local log).
type Overlay struct {
	mu sync.RWMutex
	// The tier in memory: tables holds the changes to each row, txns the
	// rows each transaction touches (for Evict), ops counts the changes.
	tables map[string]map[string]Pending
	txns   map[string][]rowRef
	ops    int
	// maxOps bounds ops when there is a tier on disk, spill (nil: none).
	maxOps int
	spill  *spill
	// normalize restores canonical values in changes read back from disk.
	normalize func(table string, values map[string]any)
}

// New returns an empty overlay held in memory alone, without bound.
func New() *Overlay {
	return &Overlay{tables: make(map[string]map[string]Pending), txns: make(map[string][]rowRef)}
}

// Open returns an empty overlay that holds up to maxOps changes in memory
// and the rest in a file at path, created anew (what a former run left
// there is removed). normalize restores canonical values (JSON turns
// integers into numbers and bytes into text) in the changes it reads back
// from disk: the catalog's (schema.Live.Normalize). Close it to remove the
// file.
func Open(ctx context.Context, path string, maxOps int, normalize func(table string, values map[string]any)) (*Overlay, error) {
	if maxOps < 1 {
		return nil, fmt.Errorf("overlay: %d changes in memory; at least 1", maxOps)
	}
	sp, err := openSpill(ctx, path)
	if err != nil {
		return nil, err
	}
	o := New()
	o.maxOps, o.spill, o.normalize = maxOps, sp, normalize
	return o, nil
}

// Close removes the tier on disk, if any.
func (o *Overlay) Close() error {
	if o.spill == nil {
		return nil
	}
	return o.spill.close()
}

// Add records the changes of tx. Adding a transaction twice is a no-op.
// It fails only if the tier on disk does: then nothing of tx is recorded.
func (o *Overlay) Add(ctx context.Context, tx *txn.Transaction) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.txns[tx.ID]; ok {
		return nil
	}
	if o.spilling(tx) {
		if o.onDisk() {
			if has, err := o.spill.has(ctx, tx.ID); err != nil || has {
				return err
			}
		}
		return o.spill.add(ctx, tx)
	}
	o.addMemory(tx)
	return nil
}

// Rebuild records the changes of txs, in order, into an overlay that holds
// none of them (as at start, from the log): those that go to disk go in
// one write, many times faster than one Add each. If it fails, the
// overlay is unusable.
func (o *Overlay) Rebuild(ctx context.Context, txs []*txn.Transaction) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, tx := range txs {
		if o.spilling(tx) {
			// Once one goes to disk, every later one does too.
			return o.spill.add(ctx, txs[i:]...)
		}
		o.addMemory(tx)
	}
	return nil
}

// spilling reports whether tx goes to the tier on disk: there is one, and
// it holds changes already or the tier in memory has no room for tx's.
func (o *Overlay) spilling(tx *txn.Transaction) bool {
	return o.onDisk() || (o.spill != nil && o.ops+len(tx.Operations) > o.maxOps)
}

// onDisk reports whether the tier on disk holds changes.
func (o *Overlay) onDisk() bool {
	return o.spill != nil && o.spill.ops > 0
}

func (o *Overlay) addMemory(tx *txn.Transaction) {
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
func (o *Overlay) Evict(ctx context.Context, ids ...string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.evictLocked(ctx, ids)
}

// Has reports whether transaction id has changes in the overlay.
func (o *Overlay) Has(ctx context.Context, id string) (bool, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if _, ok := o.txns[id]; ok {
		return true, nil
	}
	if !o.onDisk() {
		return false, nil
	}
	return o.spill.has(ctx, id)
}

func (o *Overlay) evictLocked(ctx context.Context, ids []string) error {
	var spilled []string
	for _, id := range ids {
		if _, ok := o.txns[id]; ok {
			o.evictMemory(id)
		} else if o.onDisk() {
			spilled = append(spilled, id)
		}
	}
	if len(spilled) == 0 {
		return nil
	}
	return o.spill.evict(ctx, spilled)
}

func (o *Overlay) evictMemory(id string) {
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
func (o *Overlay) Withdraw(ctx context.Context, depends func(table, key string, op Op) bool) ([]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var ids []string
	seen := make(map[string]bool) // the transactions in ids
	consider := func(table, key string, op Op) {
		if !seen[op.Tx] && depends(table, key, op) {
			seen[op.Tx] = true
			ids = append(ids, op.Tx)
		}
	}
	for table, rows := range o.tables {
		for key, p := range rows {
			for _, op := range p {
				consider(table, key, op)
			}
		}
	}
	if o.onDisk() {
		if err := o.spill.all(ctx, o.normalize, consider); err != nil {
			return nil, err
		}
	}
	if err := o.evictLocked(ctx, ids); err != nil {
		return nil, err
	}
	return ids, nil
}

// Rows returns copies of the pending changes to each of keys' rows.
func (o *Overlay) Rows(ctx context.Context, table string, keys []string) ([]Pending, error) {
	out := make([]Pending, len(keys))
	for i, k := range keys {
		p, err := o.Row(ctx, table, k)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// Row returns a copy of the pending changes to one row, nil if none.
func (o *Overlay) Row(ctx context.Context, table, key string) (Pending, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	p := clonePending(o.tables[table][key])
	if !o.onDisk() {
		return p, nil
	}
	more, err := o.spill.row(ctx, table, key, o.normalize)
	if err != nil {
		return nil, err
	}
	return append(p, more...), nil
}

// Table returns the pending changes to every row of table, in a map of
// the caller's. The lists share their memory with the overlay (a list of
// a thousand rows is not copied at every read): callers must not modify
// them, nor the values of their changes.
func (o *Overlay) Table(ctx context.Context, table string) (map[string]Pending, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	// A list is never written in place once the lock is released: Add
	// appends past the length a reader holds, evictMemory makes new lists.
	out := maps.Clone(o.tables[table])
	if out == nil {
		out = make(map[string]Pending)
	}
	if !o.onDisk() {
		return out, nil
	}
	err := o.spill.table(ctx, table, o.normalize, func(key string, op Op) {
		// Clipped: appending must not write into the overlay's list.
		out[key] = append(slices.Clip(out[key]), op)
	})
	if err != nil {
		return nil, err
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
	// Rows counts the rows with pending changes; a row with changes in
	// memory and on disk counts once in each.
	Rows int `json:"rows"`
	Ops  int `json:"operations"`
	// SpilledOps counts the changes held on disk, part of Ops.
	SpilledOps int `json:"spilled_operations,omitempty"`
}

// Stats reports the overlay's size.
func (o *Overlay) Stats(ctx context.Context) (Stats, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	s := Stats{Transactions: len(o.txns), Ops: o.ops}
	for _, rows := range o.tables {
		s.Rows += len(rows)
	}
	if o.onDisk() {
		s.Transactions += o.spill.txns
		s.Rows += o.spill.rows
		s.Ops += o.spill.ops
		s.SpilledOps = o.spill.ops
	}
	return s, nil
}
