package deadletter

import (
	"sync"

	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/txn"
)

// Retries are the dead letters whose retry this process queued and has
// not seen settle. The database marks a dead letter retried only when its
// retry is applied, and a second retry that reaches it after that does
// not run (store.SupersededError); a drop after it is refused. The
// entries answer a second Retry or Drop sent to this process meanwhile at
// once, with a conflict naming the queued retry, rather than queueing a
// retry bound to fail. An entry ends when the feed reports its retry
// applied or failed (Changed); a process that does not apply (--role
// api) never hears that, and the database's mark ends the entry at the
// next Retry or Drop of the dead letter.
type Retries struct {
	mu sync.Mutex
	by map[string]string // dead letter → its retry's transaction ("" while being queued)
}

// NewRetries returns an empty record of retries.
func NewRetries() *Retries { return &Retries{by: map[string]string{}} }

// Changed implements changes.Subscriber: a retry applied or failed ends
// its entry.
func (q *Retries) Changed(cs []changes.Change) {
	for _, c := range cs {
		if c.Tx != nil && c.Tx.RetryOf != "" && c.State != txn.Queued {
			q.release(c.Tx.RetryOf)
		}
	}
}

// take reserves dead letter id for a retry or a drop; it fails, naming
// the retry, if one is queued or being queued.
func (q *Retries) take(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if as, ok := q.by[id]; ok {
		if as == "" {
			return txn.Refuse(txn.ErrConflict, "dead letter %s is being retried or dropped right now", id)
		}
		return txn.Refuse(txn.ErrConflict, "a retry of dead letter %s is queued as %s; it counts as retried once that applies", id, as)
	}
	q.by[id] = ""
	return nil
}

// queued records the transaction that retries dead letter id.
func (q *Retries) queued(id, txID string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.by[id] = txID
}

// release forgets dead letter id.
func (q *Retries) release(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.by, id)
}
