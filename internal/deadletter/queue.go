package deadletter

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// Limits of the queue's pages.
const (
	// DefaultPage is a page when the client names no limit.
	DefaultPage = 100
	// MaxPage bounds a page.
	MaxPage = 1000
)

// Store is what the queue reads and drops dead letters in.
type Store interface {
	DeadLetter(ctx context.Context, id string) (*store.DeadLetter, error)
	ListDeadLetters(ctx context.Context, f store.DeadLetterFilter) ([]*store.DeadLetter, error)
	DropDeadLetter(ctx context.Context, id, who string) error
}

// Intake takes a retry in as any write: checked, durable in the log and
// visible in the overlay.
type Intake interface {
	Enqueue(ctx context.Context, tx *txn.Transaction) error
}

// Config is what a Queue is built from.
type Config struct {
	Store   Store
	Intake  Intake
	Catalog *schema.Live
	Poison  *Poison
	// Retries is the record of queued retries, which hears their outcome
	// from the feed of state changes.
	Retries *Retries
	Logger  *slog.Logger
}

// Queue is the dead-letter queue as people use it: list, inspect, retry
// (as it was or corrected) and drop.
type Queue struct {
	cfg Config
}

// NewQueue returns the queue of cfg.
func NewQueue(cfg Config) (*Queue, error) {
	if cfg.Store == nil || cfg.Intake == nil || cfg.Catalog == nil || cfg.Poison == nil || cfg.Retries == nil {
		return nil, errors.New("deadletter: a queue needs a store, an intake, a catalog, a poison set and a record of retries")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Queue{cfg: cfg}, nil
}

// List lists dead letters, a page at a time. Nothing is evicted from the
// queue but by a person: a page is a view, not a cap.
func (q *Queue) List(ctx context.Context, f store.DeadLetterFilter) ([]*store.DeadLetter, error) {
	if f.Limit <= 0 {
		f.Limit = DefaultPage
	}
	f.Limit = min(f.Limit, MaxPage)
	return q.cfg.Store.ListDeadLetters(ctx, f)
}

// Get returns one dead letter.
func (q *Queue) Get(ctx context.Context, id string) (*store.DeadLetter, error) {
	dl, err := q.cfg.Store.DeadLetter(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, txn.Refuse(txn.ErrNotFound, "no dead letter %s", id)
	}
	return dl, err
}

// Drop drops a dead letter; the record of who dropped it and when stays.
func (q *Queue) Drop(ctx context.Context, id, who string) error {
	if _, err := q.live(ctx, id); err != nil {
		return err
	}
	if err := q.cfg.Retries.take(id); err != nil {
		return err
	}
	defer q.cfg.Retries.release(id)
	if err := q.cfg.Store.DropDeadLetter(ctx, id, who); errors.Is(err, store.ErrNotFound) {
		// Retried (by another process) or dropped since it was read: say
		// which.
		if _, err := q.live(ctx, id); err != nil {
			return err
		}
		return txn.Refuse(txn.ErrNotFound, "no dead letter %s", id)
	} else if err != nil {
		return err
	}
	q.cfg.Poison.Forgive(id)
	q.cfg.Logger.Info("dead letter dropped", "txn", id, "by", who)
	return nil
}

// live returns a dead letter that is neither retried nor dropped.
func (q *Queue) live(ctx context.Context, id string) (*store.DeadLetter, error) {
	dl, err := q.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case dl.RetriedAs != "":
		q.cfg.Retries.release(id) // settled, whether or not this process saw it
		return nil, txn.Refuse(txn.ErrConflict, "dead letter %s was retried already as %s", id, dl.RetriedAs)
	case !dl.DroppedAt.IsZero():
		return nil, txn.Refuse(txn.ErrConflict, "dead letter %s was dropped by %s at %s", id, dl.DroppedBy, dl.DroppedAt.Format(time.RFC3339))
	}
	return dl, nil
}

// Retry puts dead letter id back at the end of the log as a new
// transaction linked to it (RetryOf), submitted by who (its Principal),
// and returns that transaction.
// corrected, if not nil, is the resolved transaction of corrected
// operations that replace the original ones (edit and retry); it is
// checked like any write.
//
// Until the retry is applied, the dead letter is not marked retried in the
// database; this process refuses to retry or drop it again meanwhile
// (Retries), and of two retries queued by different processes only the
// first to reach the database runs (store.SupersededError).
func (q *Queue) Retry(ctx context.Context, id string, corrected *txn.Transaction, who string) (*txn.Transaction, error) {
	dl, err := q.live(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := q.cfg.Retries.take(id); err != nil {
		return nil, err
	}
	tx := corrected
	if tx == nil {
		tx, err = q.replay(id, dl)
	}
	if err == nil {
		q.cfg.Poison.Forgive(id)
		tx.RetryOf, tx.Principal = id, who
		err = q.cfg.Intake.Enqueue(ctx, tx)
	}
	if err != nil {
		q.cfg.Retries.release(id)
		return nil, err
	}
	q.cfg.Retries.queued(id, tx.ID)
	q.cfg.Logger.Info("dead letter retried", "txn", id, "as", tx.ID, "by", who)
	return tx, nil
}

// replay returns a new transaction of dead letter dl's operations, their
// values restored against the catalog.
func (q *Queue) replay(id string, dl *store.DeadLetter) (*txn.Transaction, error) {
	cat := q.cfg.Catalog.Load()
	for _, op := range dl.Tx.Operations {
		if _, err := cat.Table(op.Table); err != nil {
			return nil, txn.Refuse(txn.ErrConflict, "dead letter %s no longer fits the catalog (%v); retry it with corrected operations", id, err)
		}
		q.cfg.Catalog.Normalize(op.Table, op.Values)
	}
	return &txn.Transaction{ID: txn.NewID(), Operations: dl.Tx.Operations, CreatedAt: time.Now().UTC()}, nil
}
