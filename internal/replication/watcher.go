// Package replication follows read replicas: it polls each replica's replay
// position and tells, for each committed batch it tracks, when every
// replica has replayed it, so that its overlay entries can go.
package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spoolgw/spool/internal/txn"
)

// Defaults of Config.
const (
	// DefaultInterval is the poll interval while transactions wait: the
	// replica's own replay lag is 1–20 ms here, so a 20 ms poll adds at
	// most about one lag to the time a write spends in the overlay.
	DefaultInterval = 20 * time.Millisecond
	// DefaultIdleInterval is the poll interval with nothing waiting: the
	// lag figures stay fresh without querying fifty times a second.
	DefaultIdleInterval = time.Second
	// DefaultDegradedLag is the replay lag past which readiness reports
	// the replica as degraded.
	DefaultDegradedLag = 10 * time.Second
)

// Config configures a Watcher. Zero fields take their defaults.
type Config struct {
	// Interval is the poll interval while transactions wait (default
	// DefaultInterval).
	Interval time.Duration
	// IdleInterval is the poll interval with nothing waiting (default
	// DefaultIdleInterval).
	IdleInterval time.Duration
	// DegradedLag is the oldest wait past which Degraded reports the
	// replicas as lagging (default DefaultDegradedLag).
	DegradedLag time.Duration
}

// Replica is a read replica: how far it has replayed the primary's WAL.
type Replica interface {
	ReplayLSN(ctx context.Context) (txn.LSN, error)
}

// Primary tells the primary's current WAL position, for lag in bytes.
type Primary interface {
	CurrentLSN(ctx context.Context) (txn.LSN, error)
}

// Named is a replica with the name its figures are reported under.
type Named struct {
	Name    string
	Replica Replica
}

// ReplicaStatus is one replica's figures.
type ReplicaStatus struct {
	Name      string    `json:"name"`
	Up        bool      `json:"up"`
	Error     string    `json:"error,omitempty"`
	ReplayLSN txn.LSN   `json:"replay_lsn"`
	LagBytes  int64     `json:"lag_bytes"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
}

// Status is the watcher's figures.
type Status struct {
	Replicas []ReplicaStatus `json:"replicas"`
	// Waiting is the number of applied transactions not yet replicated.
	Waiting int `json:"waiting"`
	// LagSeconds is how long the oldest waiting transaction has waited
	// since it was applied: the replication lag writers see.
	LagSeconds float64 `json:"lag_seconds"`
}

// waiting is a committed batch not yet on every replica.
type waiting struct {
	lsn     txn.LSN
	ids     []string
	applied time.Time
	done    chan time.Time // told when every replica has them
}

// Watcher polls the replicas and reports replicated transactions.
type Watcher struct {
	cfg      Config
	replicas []Named
	primary  Primary
	logger   *slog.Logger

	mu      sync.Mutex
	queue   []waiting // in commit order, so in LSN order
	status  []ReplicaStatus
	kick    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	lastErr map[string]time.Time // rate-limits logs per replica
}

// New returns a watcher of replicas; primary may be nil (no lag in bytes).
func New(cfg Config, replicas []Named, primary Primary, logger *slog.Logger) (*Watcher, error) {
	if len(replicas) == 0 {
		return nil, errors.New("replication: no replica to watch")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.IdleInterval <= 0 {
		cfg.IdleInterval = DefaultIdleInterval
	}
	if cfg.DegradedLag <= 0 {
		cfg.DegradedLag = DefaultDegradedLag
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{cfg: cfg, replicas: replicas, primary: primary, logger: logger,
		kick: make(chan struct{}, 1), status: make([]ReplicaStatus, len(replicas)), lastErr: map[string]time.Time{}}
	for i, r := range replicas {
		w.status[i].Name = r.Name
	}
	return w, nil
}

// Track records a committed batch: its commit LSN and transaction ids.
// The channel it returns is told, once, the time every replica was found
// to have them.
func (w *Watcher) Track(lsn txn.LSN, ids []string, applied time.Time) <-chan time.Time {
	done := make(chan time.Time, 1)
	w.mu.Lock()
	w.queue = append(w.queue, waiting{lsn: lsn, ids: ids, applied: applied, done: done})
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return done
}

// Start polls in the background until Stop or ctx ends.
func (w *Watcher) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done != nil {
		return errors.New("replication: already started")
	}
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		w.run(ctx)
	}()
	return nil
}

// Stop ends the polling. Safe twice and before Start.
func (w *Watcher) Stop() {
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// firstRepoll is the first wait after a new batch is tracked: the replica
// usually replays a commit within a millisecond or two, so look again
// soon, then back off (doubling) to Interval.
const firstRepoll = time.Millisecond

func (w *Watcher) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	backoff := firstRepoll
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.kick:
			backoff = firstRepoll
		}
		w.poll(ctx)
		w.mu.Lock()
		next := w.cfg.IdleInterval
		if len(w.queue) > 0 {
			next = min(backoff, w.cfg.Interval)
			backoff *= 2
		}
		w.mu.Unlock()
		timer.Reset(next)
	}
}

// poll reads every replica's replay position once and reports the batches
// all of them have passed. A replica that does not answer holds everything
// back: an overlay entry is never dropped by a timer.
func (w *Watcher) poll(ctx context.Context) {
	var current txn.LSN
	if w.primary != nil {
		if lsn, err := w.primary.CurrentLSN(ctx); err == nil {
			current = lsn
		}
	}
	now := time.Now()
	var min txn.LSN
	allUp := true
	for i, r := range w.replicas {
		lsn, err := r.Replica.ReplayLSN(ctx)
		w.mu.Lock()
		st := &w.status[i]
		st.CheckedAt = now
		if err != nil {
			allUp = false
			st.Up, st.Error = false, err.Error()
			w.mu.Unlock()
			if ctx.Err() == nil {
				w.logLimited(r.Name, "replication: replica does not answer; its overlay entries are kept", "replica", r.Name, "err", err)
			}
			continue
		}
		if !st.Up && !st.CheckedAt.IsZero() && st.Error != "" {
			w.logger.Info("replication: replica answers again", "replica", r.Name)
		}
		st.Up, st.Error, st.ReplayLSN = true, "", lsn
		if current > lsn {
			st.LagBytes = int64(current - lsn)
		} else {
			st.LagBytes = 0
		}
		w.mu.Unlock()
		if i == 0 || lsn < min {
			min = lsn
		}
	}
	if !allUp {
		return
	}
	w.mu.Lock()
	n := 0
	for n < len(w.queue) && w.queue[n].lsn <= min {
		n++
	}
	w.mu.Unlock()
	if n == 0 {
		return
	}
	// Only Track appends to the queue meanwhile: the first n are still
	// the ones found replicated.
	w.mu.Lock()
	done := w.queue[:n:n]
	w.queue = append([]waiting(nil), w.queue[n:]...)
	w.mu.Unlock()
	for _, d := range done {
		d.done <- now
	}
}

func (w *Watcher) logLimited(key, msg string, args ...any) {
	w.mu.Lock()
	last := w.lastErr[key]
	due := time.Since(last) > 10*time.Second
	if due {
		w.lastErr[key] = time.Now()
	}
	w.mu.Unlock()
	if due {
		w.logger.Warn(msg, args...)
	}
}

// Status reports the replicas' figures.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Status{Replicas: append([]ReplicaStatus(nil), w.status...)}
	for _, q := range w.queue {
		s.Waiting += len(q.ids)
	}
	if len(w.queue) > 0 {
		s.LagSeconds = time.Since(w.queue[0].applied).Seconds()
	}
	return s
}

// Degraded returns nil while every replica answers and keeps up, else why
// not.
func (w *Watcher) Degraded() error {
	s := w.Status()
	for _, r := range s.Replicas {
		if !r.Up && !r.CheckedAt.IsZero() {
			return fmt.Errorf("replica %s does not answer: %s", r.Name, r.Error)
		}
	}
	if lag := time.Duration(s.LagSeconds * float64(time.Second)); lag > w.cfg.DegradedLag {
		return fmt.Errorf("replicas lag: the oldest applied transaction has waited %v", lag.Round(time.Millisecond))
	}
	return nil
}
