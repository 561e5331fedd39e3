// Package settle takes each batch the applier committed to its end: its
// transactions leave the overlay (failed ones at once, with every pending
// transaction that depends on them; applied ones when the readers'
// database has them) and their states are published, in that order, so
// that a client who sees its transaction failed or replicated and reads
// again never finds its rows still buffered. The applier acknowledges a
// batch in the log only once it is settled.
package settle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/deadletter"
	"github.com/spoolgw/spool/internal/overlay"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// Overlay is what the settler takes transactions out of.
type Overlay interface {
	// Evict removes the changes of the given transactions.
	Evict(ctx context.Context, ids ...string) error
	// Withdraw evicts every pending transaction with a change depends
	// reports true for, and returns their ids.
	Withdraw(ctx context.Context, depends func(table, key string, op overlay.Op) bool) ([]string, error)
}

// Replication follows committed batches until every read replica has
// them: the channel Track returns is told when.
type Replication interface {
	Track(lsn txn.LSN, ids []string, applied time.Time) <-chan time.Time
}

// Publisher hears the settled states (changes.Feed).
type Publisher interface {
	Publish(cs ...changes.Change)
}

// EventLog is a shared log's events stream (redislog.Log), which every
// process's live events hub reads.
type EventLog interface {
	PublishEvents(ctx context.Context, cs []changes.Change) error
}

// Config is what a Settler is built from.
type Config struct {
	Overlay Overlay
	Poison  *deadletter.Poison
	// Replication is nil without read replicas: a transaction is then
	// replicated when it commits.
	Replication Replication
	Feed        Publisher
	Logger      *slog.Logger
	// EvictRetry is the longest wait between two tries of an eviction
	// that failed (default DefaultEvictRetry).
	EvictRetry time.Duration
	// Keys, if not nil, keeps the idempotency keys of the batch's
	// transactions once they leave the log (idempotency.Local); a batch
	// whose keys it could not keep does not settle.
	Keys Keys
	// Events, if not nil, is a shared log's events stream: a batch's
	// states are written to it before the batch settles, so that a
	// process that dies in between loses none (the batch is delivered,
	// and its states written, again); a batch whose states could not be
	// written does not settle.
	Events EventLog
}

// Keys keeps the idempotency keys of settled transactions.
type Keys interface {
	Persist(ctx context.Context, txs []*txn.Transaction) error
}

// DefaultEvictRetry is the longest wait between two tries of an eviction
// that failed (the overlay's Redis down): an entry left in the overlay
// would be merged over newer rows of the database for ever, so an
// eviction is tried until it succeeds or the batch's term ends.
const DefaultEvictRetry = time.Second

// Settler implements applier.Sink.
type Settler struct {
	cfg Config

	mu   sync.Mutex
	last *turn // the turn of the last batch that waits for the replicas
}

var _ applier.Sink = (*Settler)(nil)

// turn is a batch's place in the order in which batches waiting for the
// replicas leave the overlay: the order they were committed in. A batch
// leaves only once the batch before it has left or given up, so what has
// left the overlay is always a prefix of the log: an entry still pending
// never sits in a row's list behind the entry of a newer change that has
// gone, where a read would merge it over the newer row in the database.
// Without it, each batch left on its own as soon as the replicas had it:
// a later batch could go while an earlier one's eviction was still being
// retried, or had given up at the end of its term (Redis restarting), and
// reads merged the earlier batch's changes over the later batch's rows
// until the next term delivered the earlier batch again.
type turn struct {
	prev *turn         // the batch before; nil for the first, and once over
	done chan struct{} // closed when this batch has left or given up
	// term is the applier's term the batch was reported in
	// (applier.TermOf); left, set before done closes, whether it left.
	term int64
	left bool
}

// next returns the turn of a batch committed after every batch before.
func (s *Settler) next(term int64) *turn {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &turn{prev: s.last, done: make(chan struct{}), term: term}
	s.last = t
	return t
}

// end ends t: its batch left the overlay or gave up.
func (t *turn) end(left bool) {
	t.prev = nil
	t.left = left
	close(t.done)
}

// wait waits for the batch before t to end, and reports whether t's batch
// may leave the overlay: whether ctx, its term, is still alive. A batch
// gives up only when its term ends, so the batch before left, or it gave
// up and either t's batch is of the same term and gives up too (its
// entries stay behind the older ones, and both are delivered again, in
// order), or t's batch is of a later term, which delivered the entries
// given up again before any of its own.
func (t *turn) wait(ctx context.Context) bool {
	if p := t.prev; p != nil {
		select {
		case <-p.done:
		case <-ctx.Done():
			return false
		}
		if !p.left && p.term == t.term {
			// The batch before gave up in this very term (the final
			// flush of a stopping applier runs on a context of its own,
			// still alive): this one stays behind it in the log.
			return false
		}
	}
	return ctx.Err() == nil
}

// New returns the settler of cfg.
func New(cfg Config) (*Settler, error) {
	if cfg.Overlay == nil || cfg.Poison == nil || cfg.Feed == nil {
		return nil, errors.New("settle: a settler needs an overlay, a poison set and a feed")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.EvictRetry <= 0 {
		cfg.EvictRetry = DefaultEvictRetry
	}
	return &Settler{cfg: cfg}, nil
}

// Committed implements applier.Sink. Failed transactions leave the overlay
// at once, with every pending transaction that depends on them. Applied
// ones leave it when the readers' database has them: at once without
// replicas, else when every replica has them. The channel returned is
// closed then; never, if the eviction did not succeed before ctx (the
// batch's term) ended: the batch then stays in the log, to be delivered
// and settled again.
func (s *Settler) Committed(ctx context.Context, results []applier.Result) <-chan struct{} {
	failed := false
	var gone, applied []string
	var lsn txn.LSN
	for _, r := range results {
		if r.Err != nil {
			failed = true
			gone = append(gone, r.Tx.ID)
			continue
		}
		lsn = max(lsn, r.LSN)
		applied = append(applied, r.Tx.ID)
	}
	if s.cfg.Replication == nil {
		gone = append(gone, applied...)
	}
	evicted := s.persistKeys(ctx, results) && s.evict(ctx, gone)
	if failed {
		s.withdrawDependents(ctx)
	}
	cs := make([]changes.Change, len(results))
	for i, r := range results {
		cs[i] = changes.Change{ID: r.Tx.ID, At: r.At, LSN: r.LSN, Tx: r.Tx}
		switch {
		case r.Err != nil:
			cs[i].State, cs[i].Err, cs[i].Code, cs[i].LSN = txn.Failed, r.Err, failureCode(r.Err), 0
			s.cfg.Logger.Warn("transaction dead-lettered", "txn", r.Tx.ID, "err", r.Err)
		case s.cfg.Replication == nil:
			cs[i].State = txn.Replicated
		default:
			cs[i].State = txn.Applied
		}
	}
	s.cfg.Feed.Publish(cs...)
	evicted = evicted && s.writeEvents(ctx, cs)
	settled := make(chan struct{})
	var t *turn
	if s.cfg.Replication != nil && len(applied) > 0 {
		t = s.next(applier.TermOf(ctx))
	}
	switch {
	case !evicted:
		// Never closed: the applier leaves the batch in the log.
		if t != nil {
			t.end(false)
		}
	case t != nil:
		replicated := s.cfg.Replication.Track(lsn, applied, results[0].At)
		go s.replicated(ctx, replicated, results, settled, t)
	default:
		close(settled)
	}
	return settled
}

// replicated waits until every replica has the applied transactions of
// results and the batch before has left the overlay (t), evicts them and
// publishes them replicated, then closes settled; it gives up, leaving
// settled open, when ctx ends first or the batch before gave up in the
// same term.
func (s *Settler) replicated(ctx context.Context, replicated <-chan time.Time, results []applier.Result, settled chan struct{}, t *turn) {
	left := false
	defer func() { t.end(left) }()
	var at time.Time
	select {
	case <-ctx.Done():
		return
	case at = <-replicated:
	}
	if !t.wait(ctx) {
		return
	}
	var ids []string
	var cs []changes.Change
	for _, r := range results {
		if r.Err == nil {
			ids = append(ids, r.Tx.ID)
			cs = append(cs, changes.Change{ID: r.Tx.ID, State: txn.Replicated, At: at, Tx: r.Tx})
		}
	}
	if !s.evict(ctx, ids) {
		return
	}
	left = true
	s.cfg.Feed.Publish(cs...)
	if s.writeEvents(ctx, cs) {
		close(settled)
	}
}

// writeEvents writes cs to the events stream, trying again until it
// succeeds or ctx (the batch's term) ends; it reports whether they are
// written. A try that failed may have written some: a subscriber may get
// a state twice, which it ignores (the API sends each state once).
func (s *Settler) writeEvents(ctx context.Context, cs []changes.Change) bool {
	if s.cfg.Events == nil {
		return true
	}
	return s.retry(ctx, "write transaction states to the events stream", len(cs), func(ctx context.Context) error {
		return s.cfg.Events.PublishEvents(ctx, cs)
	})
}

// persistKeys keeps the idempotency keys of results' transactions before
// the log may let them go, trying again until it succeeds or ctx (the
// batch's term) ends; it reports whether they are kept.
func (s *Settler) persistKeys(ctx context.Context, results []applier.Result) bool {
	if s.cfg.Keys == nil {
		return true
	}
	txs := make([]*txn.Transaction, len(results))
	for i, r := range results {
		txs[i] = r.Tx
	}
	return s.retry(ctx, "keep the idempotency keys of settled transactions", len(txs), func(ctx context.Context) error {
		return s.cfg.Keys.Persist(ctx, txs)
	})
}

// withdrawDependents takes out of the overlay every pending transaction
// with a change that depends on a failed one: it is bound to fail too, and
// readers must not see it meanwhile.
func (s *Settler) withdrawDependents(ctx context.Context) {
	ids, err := s.cfg.Overlay.Withdraw(ctx, func(table, key string, op overlay.Op) bool {
		_, ok := s.cfg.Poison.Depends(txn.Operation{Op: op.Kind, Table: table, ID: key, Values: op.Values})
		return ok
	})
	if err != nil {
		s.cfg.Logger.Error("withdraw transactions that depend on a failed one", "err", err)
	}
	if len(ids) > 0 {
		s.cfg.Logger.Warn("withdrew pending transactions that depend on a failed one", "transactions", len(ids))
	}
}

// failureCode is the code a failed transaction's state carries.
func failureCode(err error) string {
	var (
		ae *store.ApplyError
		se *store.SupersededError
	)
	switch {
	case errors.As(err, &ae):
		return ae.Code
	case errors.As(err, &se):
		return store.CodeSuperseded
	}
	return ""
}

// evict takes transactions out of the overlay, trying again until it
// succeeds or ctx (the batch's term) ends. It reports whether they left.
// A stop does not cut a try short: what the database has must leave the
// overlay.
func (s *Settler) evict(ctx context.Context, ids []string) bool {
	if len(ids) == 0 {
		return true
	}
	return s.retry(ctx, "evict transactions from the overlay", len(ids), func(ctx context.Context) error {
		return s.cfg.Overlay.Evict(ctx, ids...)
	})
}

// retry runs fn until it succeeds or ctx ends, waiting longer after each
// failure (up to EvictRetry); a stop does not cut a try short. It reports
// whether fn succeeded.
func (s *Settler) retry(ctx context.Context, what string, n int, fn func(context.Context) error) bool {
	wait := 10 * time.Millisecond
	for {
		err := fn(context.WithoutCancel(ctx))
		if err == nil {
			return true
		}
		s.cfg.Logger.Error(what+"; trying again", "transactions", n, "err", fmt.Errorf("%s: %w", what, err), "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(2*wait, s.cfg.EvictRetry)
	}
}
