package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// Limits of the dead-letter queue's pages.
const (
	// DefaultDeadLetterPage is a page when the client names no limit.
	DefaultDeadLetterPage = 100
	// MaxDeadLetterPage bounds a page.
	MaxDeadLetterPage = 1000
)

// DeadLetters lists dead letters, a page at a time. Nothing is evicted from
// the queue but by a person: a page is a view, not a cap.
func (g *Gateway) DeadLetters(ctx context.Context, f store.DeadLetterFilter) ([]*store.DeadLetter, error) {
	if f.Limit <= 0 {
		f.Limit = DefaultDeadLetterPage
	}
	f.Limit = min(f.Limit, MaxDeadLetterPage)
	return g.store.ListDeadLetters(ctx, f)
}

// DeadLetter returns one dead letter.
func (g *Gateway) DeadLetter(ctx context.Context, id string) (*store.DeadLetter, error) {
	dl, err := g.store.DeadLetter(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &InputError{Kind: ErrNotFound, Op: -1, Msg: fmt.Sprintf("no dead letter %s", id)}
	}
	return dl, err
}

// queuedRetries are the dead letters whose retry this process queued and
// has not seen settle. The database marks a dead letter retried only when
// its retry is applied, and a second retry that reaches it after that
// does not run (store.SupersededError); a drop after it is refused. The
// entries answer a second Retry or Drop sent to this process meanwhile at
// once, with a 409 naming the queued retry, rather than queueing a retry
// bound to fail. A process that does not apply (--role api) never sees
// its retries settle: the database's mark then ends the entry, at the next
// Retry or Drop of the dead letter.
type queuedRetries struct {
	mu sync.Mutex
	by map[string]string // dead letter → its retry's transaction ("" while being queued)
}

// take reserves dead letter id for a retry or a drop; it fails, naming
// the retry, if one is queued or being queued.
func (q *queuedRetries) take(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if as, ok := q.by[id]; ok {
		if as == "" {
			return &InputError{Kind: ErrConflict, Op: -1, Msg: fmt.Sprintf("dead letter %s is being retried or dropped right now", id)}
		}
		return &InputError{Kind: ErrConflict, Op: -1, Msg: fmt.Sprintf("a retry of dead letter %s is queued as %s; it counts as retried once that applies", id, as)}
	}
	if q.by == nil {
		q.by = map[string]string{}
	}
	q.by[id] = ""
	return nil
}

// queued records the transaction that retries dead letter id.
func (q *queuedRetries) queued(id, txID string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.by[id] = txID
}

// release forgets dead letter id.
func (q *queuedRetries) release(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.by, id)
}

// Drop drops a dead letter; the record of who dropped it and when stays.
func (g *Gateway) Drop(ctx context.Context, id, who string) error {
	if _, err := g.liveDeadLetter(ctx, id); err != nil {
		return err
	}
	if err := g.retries.take(id); err != nil {
		return err
	}
	defer g.retries.release(id)
	if err := g.store.DropDeadLetter(ctx, id, who); errors.Is(err, store.ErrNotFound) {
		// Retried (by another process) or dropped since it was read: say
		// which.
		if _, err := g.liveDeadLetter(ctx, id); err != nil {
			return err
		}
		return &InputError{Kind: ErrNotFound, Op: -1, Msg: fmt.Sprintf("no dead letter %s", id)}
	} else if err != nil {
		return err
	}
	g.forgive(id)
	g.logger.Info("dead letter dropped", "txn", id, "by", who)
	return nil
}

// liveDeadLetter returns a dead letter that is neither retried nor dropped.
func (g *Gateway) liveDeadLetter(ctx context.Context, id string) (*store.DeadLetter, error) {
	dl, err := g.DeadLetter(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case dl.RetriedAs != "":
		g.retries.release(id) // settled, whether or not this process saw it
		return nil, &InputError{Kind: ErrConflict, Op: -1, Msg: fmt.Sprintf("dead letter %s was retried already as %s", id, dl.RetriedAs)}
	case !dl.DroppedAt.IsZero():
		return nil, &InputError{Kind: ErrConflict, Op: -1, Msg: fmt.Sprintf("dead letter %s was dropped by %s at %s", id, dl.DroppedBy, dl.DroppedAt.Format(time.RFC3339))}
	}
	return dl, nil
}

// Retry puts a dead letter back at the end of the log as a new transaction
// linked to it (RetryOf). With req, the corrected operations replace the
// original ones (edit and retry); they are checked like any write.
//
// Until the retry is applied, the dead letter is not marked retried in the
// database; this process refuses to retry or drop it again meanwhile
// (queuedRetries), and of two retries queued by different processes only
// the first to reach the database runs (store.SupersededError).
func (g *Gateway) Retry(ctx context.Context, id string, req *Request) (*Receipt, error) {
	dl, err := g.liveDeadLetter(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := g.retries.take(id); err != nil {
		return nil, err
	}
	rc, err := g.retry(ctx, id, dl, req)
	if err != nil {
		g.retries.release(id)
		return nil, err
	}
	g.retries.queued(id, rc.TransactionID)
	return rc, nil
}

// retry queues the retry of dead letter id, dl.
func (g *Gateway) retry(ctx context.Context, id string, dl *store.DeadLetter, req *Request) (*Receipt, error) {
	g.forgive(id)
	if req != nil {
		return g.submitTx(ctx, req, id)
	}
	if err := g.normalize(dl.Tx); err != nil {
		return nil, &InputError{Kind: ErrConflict, Op: -1, Msg: fmt.Sprintf("dead letter %s no longer fits the catalog (%v); retry it with corrected operations", id, err)}
	}
	tx := &txn.Transaction{ID: txn.NewID(), Operations: dl.Tx.Operations, CreatedAt: time.Now().UTC(), RetryOf: id}
	rc := &Receipt{TransactionID: tx.ID, State: txn.Queued, Refs: map[string]string{}}
	for _, op := range tx.Operations {
		rc.IDs = append(rc.IDs, op.ID)
		if op.As != "" {
			rc.Refs[op.As] = op.ID
		}
	}
	if err := g.enqueue(ctx, tx); err != nil {
		return nil, err
	}
	return rc, nil
}

// forgive lets transactions that depend on a dead letter run again: it is
// being retried or was dropped.
func (g *Gateway) forgive(id string) {
	if g.forgiveFn != nil {
		g.forgiveFn(id)
	}
}
