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
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// Defaults of Config.
const (
	// DefaultBatchSize bounds a batch: big enough that one commit (one
	// fsync) carries hundreds of transactions, small enough that one
	// batch's database transaction stays short.
	DefaultBatchSize = 500
	// DefaultBatchTimeout is how long a batch that is not full waits for
	// more after its first transaction. Under load the batch fills while
	// the previous one commits, so this only adds latency when idle; a
	// few milliseconds buys larger batches at moderate load.
	DefaultBatchTimeout = 5 * time.Millisecond
	// DefaultMinBackoff is the first wait after a transient failure.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff caps the wait between two attempts at a batch, so
	// that a database failing for a long time is not hammered. The end of
	// an outage is noticed sooner, by probing (DefaultProbeInterval).
	DefaultMaxBackoff = 30 * time.Second
	// DefaultProbeInterval is how often the applier, while it backs off,
	// asks the database whether it answers (a ping, not a batch), when the
	// store can be asked: a database that comes back is noticed within
	// about a second, whatever the backoff has grown to.
	DefaultProbeInterval = time.Second
	// DefaultFinalFlush bounds the drain at shutdown.
	DefaultFinalFlush = 10 * time.Second
	// DefaultAttemptTimeout bounds one attempt at a batch. A batch of
	// hundreds of transactions commits in milliseconds; an attempt still
	// running after a minute is stuck on a connection that will never
	// answer (its host vanished without a reset, a firewall dropped its
	// state), which TCP alone would take up to a quarter of an hour to
	// notice.
	DefaultAttemptTimeout = time.Minute
)

// Config configures an Applier. Zero fields take their defaults.
type Config struct {
	// BatchSize is the most transactions per database transaction
	// (default DefaultBatchSize).
	BatchSize int
	// BatchTimeout is how long a partial batch waits for more (default
	// DefaultBatchTimeout; negative means do not wait).
	BatchTimeout time.Duration
	// MinBackoff and MaxBackoff bound the retry waits after transient
	// failures (defaults DefaultMinBackoff, DefaultMaxBackoff).
	MinBackoff, MaxBackoff time.Duration
	// ProbeInterval is how often a backoff asks a store that can be pinged
	// whether the database answers again; if it did not answer a probe and
	// then answers one, the batch is retried at once (default
	// DefaultProbeInterval).
	ProbeInterval time.Duration
	// FinalFlush bounds the drain at Stop (default DefaultFinalFlush).
	FinalFlush time.Duration
	// AttemptTimeout bounds one attempt at a batch; an attempt cut off is
	// a transient failure, retried with backoff (default
	// DefaultAttemptTimeout).
	AttemptTimeout time.Duration
	// LogName names the log in fencing records (default "default").
	LogName string
	// HeadName names the log in spool_log_heads, where the pruning of
	// spool_applied finds how far behind every log draining into the
	// database is (default LogName). It must be unique among them: a
	// shared log's name is, but local logs of several hosts may all be
	// "default".
	HeadName string
	// Lease, when set, is acquired before applying and its fencing token
	// checked at every commit; nil for a log only this process applies.
	Lease Lease
	// Observer, when set, is told the size and the stages' times of every
	// committed batch (default: nobody).
	Observer Observer
	// AppliedRetention is how long spool_applied keeps the record of an
	// applied transaction at least (default DefaultAppliedRetention;
	// negative: for ever). The applier deletes older records while it
	// applies, every PruneEvery (default DefaultPruneEvery), but never
	// those the log may still deliver (see pruneOnce).
	AppliedRetention time.Duration
	PruneEvery       time.Duration
}

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

func (c *Config) setDefaults() error {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchSize < 0 {
		return fmt.Errorf("applier: BatchSize must be positive, not %d", c.BatchSize)
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("applier: MaxBackoff %v is below MinBackoff %v", c.MaxBackoff, c.MinBackoff)
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.FinalFlush <= 0 {
		c.FinalFlush = DefaultFinalFlush
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.LogName == "" {
		c.LogName = "default"
	}
	if c.HeadName == "" {
		c.HeadName = c.LogName
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
	if c.AppliedRetention == 0 {
		c.AppliedRetention = DefaultAppliedRetention
	}
	if c.PruneEvery <= 0 {
		c.PruneEvery = DefaultPruneEvery
	}
	return nil
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
	poison *poison

	mu      sync.Mutex
	cancel  context.CancelCauseFunc
	done    chan struct{}
	backoff BackoffState
	pruned  atomic.Int64 // records of spool_applied deleted
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
	return &Applier{cfg: cfg, log: log, store: st, sink: sink, logger: logger, poison: newPoison()}, nil
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
		err := a.term(termCtx, token)
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

// pause waits after a failure outside a batch (the log or the lease
// unreachable), with the same backoff as a failing batch.
func (a *Applier) pause(ctx context.Context, attempt int, err error) {
	wait := a.wait(attempt)
	a.setBackoff(BackoffState{Attempt: attempt, LastError: err.Error(), NextRetry: time.Now().Add(wait)})
	a.logger.Warn("applier: retrying", "attempt", attempt, "wait", wait, "err", err)
	select {
	case <-time.After(wait):
	case <-ctx.Done():
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

// claiming is a claim running in the background.
type claiming struct {
	done    chan struct{}
	cancel  context.CancelFunc
	entries []txlog.Entry
	err     error
	at      time.Time // when the claim ended
}

// claimAhead starts claiming the next batch. The claim ends with ctx, or
// earlier by abandon.
func (a *Applier) claimAhead(ctx context.Context) *claiming {
	ctx, cancel := context.WithCancel(ctx)
	c := &claiming{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(c.done)
		c.entries, c.err = a.claim(ctx)
		c.at = time.Now()
	}()
	return c
}

// topUpWait bounds how long topUp waits for the log to answer when it
// has nothing more: the batch is ready to apply.
const topUpWait = time.Millisecond

// topUp adds to a batch claimed ahead what the log took since, up to
// BatchSize, if the batch waited for the applier longer than BatchTimeout:
// it stopped growing at BatchTimeout while the batch before it applied,
// and writes went on arriving. Without it, a batch claimed while a slow
// one applies (a distant database) stays small, and small batches cannot
// keep up with the rate that made them.
func (a *Applier) topUp(ctx context.Context, entries []txlog.Entry, claimedAt time.Time) []txlog.Entry {
	if len(entries) == 0 || len(entries) >= a.cfg.BatchSize || time.Since(claimedAt) < max(a.cfg.BatchTimeout, topUpWait) {
		return entries
	}
	ctx, cancel := context.WithTimeout(ctx, topUpWait)
	defer cancel()
	more, err := a.log.Claim(ctx, a.cfg.BatchSize-len(entries))
	if err != nil {
		return entries // nothing more yet, or the next claim meets the error
	}
	return append(entries, more...)
}

// wait returns the claimed batch, once the claim has ended.
func (c *claiming) wait() ([]txlog.Entry, error) {
	<-c.done
	c.cancel()
	return c.entries, c.err
}

// abandon stops the claim and waits for it, so that no claim of this term
// runs on into the next. What it claimed stays claimed and unacknowledged:
// the log delivers it again (after a restart, or to the next lease holder).
func (c *claiming) abandon() {
	c.cancel()
	<-c.done
}

// claim waits for a first entry, then up to BatchTimeout for the batch to fill.
func (a *Applier) claim(ctx context.Context) ([]txlog.Entry, error) {
	entries, err := a.log.Claim(ctx, a.cfg.BatchSize)
	if err != nil {
		return nil, err
	}
	if a.cfg.BatchTimeout <= 0 || len(entries) >= a.cfg.BatchSize {
		return entries, nil
	}
	fillCtx, cancel := context.WithTimeout(ctx, a.cfg.BatchTimeout)
	defer cancel()
	for len(entries) < a.cfg.BatchSize {
		more, err := a.log.Claim(fillCtx, a.cfg.BatchSize-len(entries))
		if err != nil {
			break // the timeout, a stop, or a closed log: apply what we have
		}
		entries = append(entries, more...)
	}
	return entries, nil
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
	var gate *attemptGate
	for attempt := 1; ; attempt++ {
		gate = a.poison.attempt()
		gate.log, gate.token = a.cfg.LogName, token
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
		if err := a.backOff(ctx, wait); err != nil {
			return fmt.Errorf("apply batch: %w", err)
		}
	}
	a.poison.commit(gate)
	a.cfg.Observer.ObserveBatch(len(batch))
	start := time.Now()
	fin.add(committed{ctx: ctx, entries: entries, outcomes: outcomes})
	a.observe(StageFinishWait, start)
	return nil
}

// pinger is a store that can tell whether its database answers, cheaply.
type pinger interface {
	Ping(ctx context.Context) error
}

// backOff waits wait before the next attempt at a batch, or less: if the
// store can be pinged, it is asked every ProbeInterval whether the
// database answers, and a database that did not answer a probe and then
// answers one ends the wait at once. A database that answers the first
// probe failed the batch for another reason (a lock, a serialization
// failure): then the whole wait is kept. It returns the cause of ctx's
// end if ctx ends first.
func (a *Applier) backOff(ctx context.Context, wait time.Duration) error {
	p, probes := a.store.(pinger)
	deadline := time.Now().Add(wait)
	down := false
	for {
		step := time.Until(deadline)
		if step <= 0 {
			return nil
		}
		if probes {
			step = min(step, a.cfg.ProbeInterval)
		}
		t := time.NewTimer(step)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		}
		if !probes || !time.Now().Before(deadline) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, a.cfg.ProbeInterval)
		err := p.Ping(pctx)
		cancel()
		switch {
		case err != nil:
			down = true
		case down:
			a.logger.Info("applier: the database answers again; retrying at once", "left_of_backoff", time.Until(deadline).Round(time.Millisecond))
			return nil
		default:
			probes = false // it answers: the batch failed for another reason
		}
	}
}

// committed is a batch the database has, to report and acknowledge: its
// entries and the outcome of each.
type committed struct {
	ctx      context.Context
	entries  []txlog.Entry
	outcomes []store.Outcome
}

// finisher reports committed batches to the sink and acknowledges them in
// the log, in commit order, in goroutines of their own: the log's round
// trip (an fsynced XACK on Redis) overlaps the next batch's database work
// instead of adding to it. It holds one batch beside the one it reports,
// so the drain runs at most two batches ahead of the reports; a reported
// batch waits to be acknowledged until the sink says it has settled (its
// transactions left the overlay), up to MaxUnsettled batches.
type finisher struct {
	a       *Applier
	next    chan committed
	settled chan reported
	done    chan struct{}
}

// MaxUnsettled is how many reported batches may wait for their
// transactions to reach the read replicas before the applier stops
// applying more: a replica far behind holds the drain back there,
// instead of the memory of their positions growing without bound.
const MaxUnsettled = 4096

// reported is a reported batch waiting to settle: its entries' positions.
type reported struct {
	ctx     context.Context
	entries []txlog.Entry
	settled <-chan struct{}
}

func (a *Applier) startFinisher() *finisher {
	f := &finisher{a: a, next: make(chan committed, 1), settled: make(chan reported, MaxUnsettled), done: make(chan struct{})}
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		for r := range f.settled {
			f.acknowledge(r)
		}
	}()
	go func() {
		defer close(f.done)
		defer func() { <-acked }()
		defer close(f.settled)
		for c := range f.next {
			f.finish(c)
		}
	}()
	return f
}

// add queues a committed batch, waiting while one is already queued.
func (f *finisher) add(c committed) { f.next <- c }

// close waits until every queued batch is reported and acknowledged.
func (f *finisher) close() {
	close(f.next)
	<-f.done
}

// finish reports a committed batch, then acknowledges it. The report comes
// first: it is what writers wait for (their transactions' states, and on
// PostgreSQL the replica's progress is followed from there), and the
// order is safe either way, since a batch reported but not acknowledged
// when spool stops is delivered again and skipped as applied.
func (f *finisher) finish(c committed) {
	a := f.a
	now := time.Now()
	results := make([]Result, len(c.entries))
	for i, e := range c.entries {
		o := c.outcomes[i]
		results[i] = Result{Tx: e.Tx, Err: o.Err, Duplicate: o.Duplicate, LSN: o.LSN, At: now}
	}
	settled := a.sink.Committed(c.ctx, results)
	a.observe(StageReport, now)
	pos := make([]txlog.Entry, len(c.entries))
	for i, e := range c.entries {
		pos[i] = txlog.Entry{Pos: e.Pos} // the transactions are not needed any more
	}
	f.settled <- reported{ctx: c.ctx, entries: pos, settled: settled}
}

// acknowledge acknowledges a reported batch once it has settled. If the
// batch's context (its term's) ends first, the entries stay pending: the
// next term delivers them again.
func (f *finisher) acknowledge(r reported) {
	a := f.a
	select {
	case <-r.settled:
	case <-r.ctx.Done():
		select {
		case <-r.settled:
		default:
			a.logger.Info("applier: batch not yet on the read replicas when the term ended; left in the log, to be delivered again and skipped", "transactions", len(r.entries))
			return
		}
	}
	start := time.Now()
	a.ack(r.ctx, r.entries)
	a.observe(StageAck, start)
}

// ack acknowledges a committed batch in the log, retrying with backoff
// while the term lasts (c.ctx): an entry left unacknowledged would stay
// pending under this applier behind its claim's position and never be
// delivered again in this term. When the term ends first (a stop, the
// lease lost), the entries stay pending: the next term, here or in
// another applier, takes over every pending entry and delivers them
// again, and spool_applied skips them, so nothing is lost or doubled.
func (a *Applier) ack(ctx context.Context, entries []txlog.Entry) {
	for attempt := 1; ; attempt++ {
		err := a.log.Ack(context.WithoutCancel(ctx), entries)
		if err == nil {
			if attempt > 1 {
				a.logger.Info("applier: ack succeeded", "attempts", attempt)
			}
			return
		}
		if ctx.Err() != nil || errors.Is(err, txlog.ErrClosed) {
			a.logger.Warn("applier: ack failed after commit; the batch stays pending, to be delivered again and skipped", "transactions", len(entries), "err", err)
			return
		}
		wait := a.wait(attempt)
		a.logger.Warn("applier: ack failed after commit; retrying", "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

func (a *Applier) setBackoff(s BackoffState) {
	a.mu.Lock()
	a.backoff = s
	a.mu.Unlock()
}

// wait is the backoff before retry attempt+1: exponential, capped, with
// full jitter over its upper half so that many appliers do not retry in
// step.
func (a *Applier) wait(attempt int) time.Duration {
	d := a.cfg.MinBackoff << min(attempt-1, 30)
	if d <= 0 || d > a.cfg.MaxBackoff {
		d = a.cfg.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
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

// WorkerActive reports whether the applier runs (the seed's /health field).
func (a *Applier) WorkerActive() bool { return a.Running() }
