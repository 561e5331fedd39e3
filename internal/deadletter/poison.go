package deadletter

import (
	"fmt"
	"sync"

	"github.com/spoolgw/spool/internal/txn"
)

// Poison remembers the rows that failed transactions inserted, so that later
// transactions which update, delete or refer to them fail with a reason that
// names the cause instead of applying against rows that never existed. The
// applier consults it through the gate of each attempt at a batch; the
// settler withdraws from the overlay what depends on a failed transaction;
// a retry or a drop forgives the dead letter's rows.
type Poison struct {
	mu   sync.Mutex
	rows map[string]string // row key or id → failed transaction id
}

// NewPoison returns an empty poison set.
func NewPoison() *Poison { return &Poison{rows: make(map[string]string)} }

func rowKey(table, id string) string { return table + "\x00" + id }

// DependencyError says a transaction failed because an earlier one did.
type DependencyError struct {
	On    string // the failed transaction
	Table string
	ID    string
}

func (e *DependencyError) Error() string {
	return fmt.Sprintf("depends on failed transaction %s (row %s/%s was never written)", e.On, e.Table, e.ID)
}

// Depends reports which failed transaction op depends on, if any.
func (p *Poison) Depends(op txn.Operation) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dependsLocked(nil, op)
}

func (p *Poison) dependsLocked(local map[string]string, op txn.Operation) (string, bool) {
	lookup := func(k string) (string, bool) {
		if on, ok := local[k]; ok {
			return on, true
		}
		on, ok := p.rows[k]
		return on, ok
	}
	if op.Op == txn.Update || op.Op == txn.Delete {
		if on, ok := lookup(rowKey(op.Table, op.ID)); ok {
			return on, true
		}
	}
	for _, v := range op.Values {
		if s, ok := v.(string); ok && txn.ValidID(s) {
			if on, ok := lookup(s); ok {
				return on, true
			}
		}
	}
	return "", false
}

// Attempt returns the gate of one attempt at a batch of log, applied under
// fencing token (store.Gate); its failures join the set only when the
// batch commits (Commit).
func (p *Poison) Attempt(log string, token int64) *Gate {
	return &Gate{p: p, local: make(map[string]string), log: log, token: token}
}

// Commit adds the failures of g's attempt, which committed.
func (p *Poison) Commit(g *Gate) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, v := range g.local {
		p.rows[k] = v
	}
}

// Gate is the store.Gate of one attempt at a batch.
type Gate struct {
	p     *Poison
	local map[string]string
	log   string
	token int64
}

func (g *Gate) Fence() (string, int64) { return g.log, g.token }

func (g *Gate) Admit(tx *txn.Transaction) error {
	g.p.mu.Lock()
	defer g.p.mu.Unlock()
	for _, op := range tx.Operations {
		if on, ok := g.p.dependsLocked(g.local, op); ok && on != tx.ID {
			return &DependencyError{On: on, Table: op.Table, ID: op.ID}
		}
	}
	return nil
}

// Failed poisons the rows the failed transaction inserted under keys spool
// generated: those rows exist nowhere else. A key the writer named may
// belong to a row that exists anyway, so it is not poisoned.
func (g *Gate) Failed(tx *txn.Transaction, _ error) {
	for _, op := range tx.Operations {
		if op.Op == txn.Insert && op.Generated {
			g.local[rowKey(op.Table, op.ID)] = tx.ID
			g.local[op.ID] = tx.ID
		}
	}
}

// Forgive forgets the rows of failed transaction id: it is being retried or
// was dropped, so transactions that refer to its rows may run again.
func (p *Poison) Forgive(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, on := range p.rows {
		if on == id {
			delete(p.rows, k)
		}
	}
}
