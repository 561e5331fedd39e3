// Package applier drains the log into the database: it claims batches in log
// order, applies each in one database transaction, reports each committed
// batch and acknowledges it in the log, isolates transactions that fail for
// good into the dead letters, and retries transient failures with capped,
// jittered backoff for as long as it takes.
package applier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spoolgw/spool/internal/deadletter"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// The stages of a batch, as an Observer is told of them.
const (
	// StageClaimWait is how long the applier waited for the batch once
	// it was ready for it: the log was empty, or claiming took longer
	// than applying the batch before.
	StageClaimWait = "claim_wait"
	// StageApply is the database transaction that committed the batch
	// (its last attempt, if transient failures came before).
	StageApply = "apply"
	// StageFinishWait is how long the committed batch waited for the
	// finisher: reporting and acknowledging the batch before took longer
	// than applying this one.
	StageFinishWait = "finish_wait"
	// StageReport is telling the sink (states, the overlay's eviction).
	StageReport = "report"
	// StageAck is acknowledging the batch in the log.
	StageAck = "ack"
)

// Observer is told of every committed batch: how many transactions it
// held, and how long each of its stages took. The applier calls it from
// two goroutines at once (reporting and acknowledging run beside the next
// batch); it must be safe for that, and must not block.
type Observer interface {
	ObserveBatch(transactions int)
	ObserveStage(stage string, d time.Duration)
}

// noObserver is the Observer of an applier given none.
type noObserver struct{}

func (noObserver) ObserveBatch(int)                   {}
func (noObserver) ObserveStage(string, time.Duration) {}

// observe tells the observer that stage took since start.
func (a *Applier) observe(stage string, start time.Time) {
	a.cfg.Observer.ObserveStage(stage, time.Since(start))
}

// Result is what became of one transaction, reported to the Sink.
type Result struct {
	Tx        *txn.Transaction
	Err       error // permanent failure, nil if applied
	Duplicate bool
	// LSN is the commit position (PostgreSQL), zero if unknown.
	LSN txn.LSN
	// At is when the batch is reported: a transaction's state changes
	// then, never before its applied_at or failed_at.
	At time.Time
}

// Sink is told what became of every transaction of each committed batch:
// it advances states and evicts the overlay. The channel it returns is
// closed once the batch's transactions have left the overlay (at once, or
// when the read replicas have them): only then does the applier
// acknowledge the batch in the log, so that a process that dies before
// leaves the entries to be delivered again (and skipped as applied, and
// evicted in their turn) instead of orphaned in a shared overlay.
type Sink interface {
	Committed(ctx context.Context, results []Result) (settled <-chan struct{})
}

// Applier drains one log into one store.
type Applier struct {
	cfg    Config
	log    txlog.Log
	store  store.Store
	sink   Sink
	logger *slog.Logger
	poison *deadletter.Poison
	terms  atomic.Int64 // terms begun, numbering each (TermOf)

	mu      sync.Mutex
	cancel  context.CancelCauseFunc
	done    chan struct{}
	backoff BackoffState
	pruned  atomic.Int64 // records of spool_applied deleted
	// holding is true while a term runs: this applier holds the log's
	// lease (or needs none) and applies.
	holding atomic.Bool
}

// BackoffState says whether the applier is waiting after a transient failure.
type BackoffState struct {
	Attempt   int       `json:"attempt"`
	LastError string    `json:"last_error,omitempty"`
	NextRetry time.Time `json:"next_retry,omitzero"`
}

// New returns an applier; Start runs it.
func New(cfg Config, log txlog.Log, st store.Store, sink Sink, logger *slog.Logger) (*Applier, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Applier{cfg: cfg, log: log, store: st, sink: sink, logger: logger, poison: cfg.Poison}, nil
}

// errStopped is the cause of a Stop.
var errStopped = errors.New("applier stopped")

// Start runs the applier in the background until Stop or ctx ends.
func (a *Applier) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done != nil {
		return errors.New("applier: already started")
	}
	ctx, a.cancel = context.WithCancelCause(ctx)
	a.done = make(chan struct{})
	go func() {
		defer close(a.done)
		a.run(ctx)
	}()
	return nil
}

// Stop ends the applier after the batch in flight. Safe to call twice and
// before Start.
func (a *Applier) Stop() {
	a.mu.Lock()
	cancel, done := a.cancel, a.done
	a.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel(errStopped)
	<-done
}

// Backoff reports the current retry state (zero when healthy).
func (a *Applier) Backoff() BackoffState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.backoff
}

// Lease is the right to apply a log that several appliers share (Redis):
// one holds it, the others stand by. A log only one process applies needs
// none.
type Lease interface {
	// Acquire blocks until this applier holds the lease or ctx ends, and
	// returns the fencing token and a channel closed when the lease is lost.
	Acquire(ctx context.Context) (token int64, lost <-chan struct{}, err error)
	// Release gives the lease up.
	Release(ctx context.Context) error
}

// takeover is implemented by logs whose entries another applier may have
// claimed and not acknowledged: called when the lease is acquired, so that
// they are delivered again first, in log order.
type takeover interface {
	Takeover(ctx context.Context) error
}

// errLeaseLost ends a term when the lease is lost.
var errLeaseLost = errors.New("lease lost")

func (a *Applier) run(ctx context.Context) {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		var token int64
		var lost <-chan struct{}
		if a.cfg.Lease != nil {
			var err error
			if token, lost, err = a.cfg.Lease.Acquire(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				a.pause(ctx, attempt, fmt.Errorf("acquire lease: %w", err))
				continue
			}
			a.logger.Info("applier: lease acquired; applying", "log", a.cfg.LogName, "token", token)
			if t, ok := a.log.(takeover); ok {
				if err := t.Takeover(ctx); err != nil {
					a.logger.Warn("applier: take over entries of a former applier", "err", err)
				}
			}
		}
		termCtx, cancel := context.WithCancelCause(ctx)
		go func() {
			select {
			case <-lost:
				cancel(errLeaseLost)
			case <-termCtx.Done():
			}
		}()
		a.holding.Store(true)
		err := a.term(termCtx, token)
		a.holding.Store(false)
		cancel(nil)
		if a.cfg.Lease != nil {
			relCtx, cancelRel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			if rerr := a.cfg.Lease.Release(relCtx); rerr != nil {
				a.logger.Warn("applier: release lease", "err", rerr)
			}
			cancelRel()
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.logger.Warn("applier: stepped down; standing by", "log", a.cfg.LogName, "reason", err)
			attempt = 0
			continue
		}
		a.pause(ctx, attempt, errors.New("log claim stopped"))
	}
}

// term applies batches until ctx ends (a stop, or the lease lost) or the
// store fences this applier out. The next batch is claimed while one
// applies (claimAhead): reading and decoding it overlaps the database's
// work; and a committed batch is reported and acknowledged in the log
// while the next one applies (finisher). A batch claimed when a stop
// arrives is still finished, with the one claimed behind it, on a detached
// context with a deadline; batches claimed when the lease is lost are left
// to the next holder. term returns once every committed batch is
// reported and acknowledged.
func (a *Applier) term(ctx context.Context, token int64) error {
	ctx = WithTerm(ctx, a.terms.Add(1))
	fin := a.startFinisher()
	defer fin.close()
	stopPruner := a.startPruner(ctx)
	defer stopPruner()
	next := a.claimAhead(ctx)
	defer func() { next.abandon() }()
	for attempt := 1; ; attempt++ {
		waitStart := time.Now()
		entries, err := next.wait()
		if err == nil && len(entries) > 0 {
			a.observe(StageClaimWait, waitStart)
		}
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if errors.Is(err, txlog.ErrClosed) || errors.Is(err, txlog.ErrNotHolder) {
				// A closed log, or a lease lost (the log refuses this
				// process's claims before its renewer has noticed).
				return err
			}
			a.pause(ctx, attempt, fmt.Errorf("claim: %w", err))
			next = a.claimAhead(ctx)
			continue
		}
		attempt = 0
		entries = a.topUp(ctx, entries, next.at)
		next = a.claimAhead(ctx)
		err = a.apply(ctx, entries, token, fin)
		switch {
		case err == nil:
			continue
		case errors.Is(err, store.ErrFenced), errors.Is(context.Cause(ctx), errLeaseLost):
			return err
		}
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.FinalFlush)
		err = a.apply(flushCtx, entries, token, fin)
		if behind, _ := next.wait(); err == nil && len(behind) > 0 {
			err = a.apply(flushCtx, behind, token, fin)
			entries = append(entries, behind...)
		}
		cancel()
		if err != nil {
			a.logger.Warn("applier: batch left in the log for the next start", "transactions", len(entries), "err", err)
		}
		return context.Cause(ctx)
	}
}

// apply applies one claimed batch, retrying transient failures until it
// commits or ctx ends, then hands it to fin, which reports the results
// and acknowledges it.
func (a *Applier) apply(ctx context.Context, entries []txlog.Entry, token int64, fin *finisher) error {
	batch := make([]*txn.Transaction, len(entries))
	for i, e := range entries {
		batch[i] = e.Tx
	}
	var outcomes []store.Outcome
	var gate *deadletter.Gate
	for attempt := 1; ; attempt++ {
		gate = a.poison.Attempt(a.cfg.LogName, token)
		attemptCtx, cancel := context.WithTimeoutCause(ctx, a.cfg.AttemptTimeout,
			fmt.Errorf("attempt at a batch cut off after %v (the database does not answer)", a.cfg.AttemptTimeout))
		var err error
		start := time.Now()
		outcomes, err = a.store.ApplyBatch(attemptCtx, batch, gate)
		if err == nil {
			a.observe(StageApply, start)
		}
		if err != nil && attemptCtx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", context.Cause(attemptCtx), err)
		}
		cancel()
		if errors.Is(err, store.ErrFenced) {
			return fmt.Errorf("apply batch: %w", err)
		}
		if err == nil {
			if attempt > 1 {
				a.logger.Info("applier: database recovered", "attempts", attempt)
			}
			a.setBackoff(BackoffState{})
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("apply batch: %w", context.Cause(ctx))
		}
		wait := a.wait(attempt)
		a.setBackoff(BackoffState{Attempt: attempt, LastError: err.Error(), NextRetry: time.Now().Add(wait)})
		a.logger.Warn("applier: transient failure; retrying", "attempt", attempt, "wait", wait, "transactions", len(batch), "err", err)
		if berr := a.backOff(ctx, wait, err); berr != nil {
			return fmt.Errorf("apply batch: %w", berr)
		}
	}
	a.poison.Commit(gate)
	a.cfg.Observer.ObserveBatch(len(batch))
	start := time.Now()
	fin.add(committed{ctx: ctx, entries: entries, outcomes: outcomes})
	a.observe(StageFinishWait, start)
	return nil
}

func (a *Applier) setBackoff(s BackoffState) {
	a.mu.Lock()
	a.backoff = s
	a.mu.Unlock()
}

// Running reports whether the applier is started and not stopped.
func (a *Applier) Running() bool {
	a.mu.Lock()
	done := a.done
	a.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Healthy returns nil, or why the applier cannot apply: it is stopped, or
// the database is failing and the applier is backing off.
func (a *Applier) Healthy(context.Context) error {
	if !a.Running() {
		return errors.New("applier is not running")
	}
	if b := a.Backoff(); b.Attempt > 0 {
		return fmt.Errorf("database unavailable: attempt %d failed, next retry at %s: %s", b.Attempt, b.NextRetry.Format(time.RFC3339Nano), b.LastError)
	}
	return nil
}

// HoldsLease reports whether this applier is the log's active one: it
// holds the lease of a shared log (or the log needs none) and applies.
// A standby, or an applier backing off before it acquires, does not.
func (a *Applier) HoldsLease() bool { return a.holding.Load() }

// WorkerActive reports whether the applier runs (the seed's /health field).
func (a *Applier) WorkerActive() bool { return a.Running() }

// termKey marks the contexts of one term (term) with the term's number.
type termKey struct{}

// WithTerm returns ctx marked as the context of term n (the applier marks
// each term's; a Sink's tests mark their own).
func WithTerm(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, termKey{}, n)
}

// TermOf returns the number of the term ctx belongs to, unique within
// the process: the context the applier reports a batch under
// (Sink.Committed), or one derived from it, such as the final flush's at
// Stop. 0 is a context that is no term's.
func TermOf(ctx context.Context) int64 {
	n, _ := ctx.Value(termKey{}).(int64)
	return n
}
