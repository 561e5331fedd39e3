package applier

import (
	"fmt"
	"sync"

	"github.com/spoolgw/spool/internal/txn"
)

// poison remembers the rows that failed transactions inserted, so that later
// transactions which update, delete or refer to them fail with a reason that
// names the cause instead of applying against rows that never existed.
type poison struct {
	mu   sync.Mutex
	rows map[string]string // row key or id → failed transaction id
}

func newPoison() *poison { return &poison{rows: make(map[string]string)} }

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
func (p *poison) depends(op txn.Operation) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dependsLocked(nil, op)
}

func (p *poison) dependsLocked(local map[string]string, op txn.Operation) (string, bool) {
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

// attempt returns a gate for one attempt at a batch; its failures join the
// poison only when the batch commits.
func (p *poison) attempt() *attemptGate {
	return &attemptGate{p: p, local: make(map[string]string)}
}

func (p *poison) commit(g *attemptGate) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, v := range g.local {
		p.rows[k] = v
	}
}

// attemptGate is the store.Gate of one attempt.
type attemptGate struct {
	p     *poison
	local map[string]string
	log   string
	token int64
}

func (g *attemptGate) Fence() (string, int64) { return g.log, g.token }

func (g *attemptGate) Admit(tx *txn.Transaction) error {
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
func (g *attemptGate) Failed(tx *txn.Transaction, _ error) {
	for _, op := range tx.Operations {
		if op.Op == txn.Insert && op.Generated {
			g.local[rowKey(op.Table, op.ID)] = tx.ID
			g.local[op.ID] = tx.ID
		}
	}
}

// DependsOnFailed reports whether op depends on a transaction that failed,
// and which.
func (a *Applier) DependsOnFailed(op txn.Operation) (string, bool) { return a.poison.depends(op) }

// Forgive forgets the rows of failed transaction id: it is being retried or
// was dropped, so transactions that refer to its rows may run again.
func (a *Applier) Forgive(id string) {
	a.poison.mu.Lock()
	defer a.poison.mu.Unlock()
	for k, on := range a.poison.rows {
		if on == id {
			delete(a.poison.rows, k)
		}
	}
}
