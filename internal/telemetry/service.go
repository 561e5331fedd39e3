package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors callers branch on.
var (
	// ErrUnknownLane is wrapped by Ingest's error for a table without a
	// lane.
	ErrUnknownLane = errors.New("no telemetry lane for table")
	// ErrNotRunning is returned by Ingest before Start and after Stop.
	ErrNotRunning = errors.New("telemetry lanes are not running")
	// errStopped is the cause the writers are cancelled with at Stop.
	errStopped = errors.New("telemetry stopped")
)

// RowError is a row of an Ingest call that does not fit its table; the
// whole call is refused.
type RowError struct {
	// Row is the row's index in the request, from 0.
	Row int
	Err error
}

func (e *RowError) Error() string { return fmt.Sprintf("row %d: %v", e.Row, e.Err) }

func (e *RowError) Unwrap() error { return e.Err }

// Receipt is what Ingest did with a request's rows.
type Receipt struct {
	// Accepted is the number of rows put into the lane's ring.
	Accepted int `json:"accepted"`
	// Dropped is the number of older samples pushed out of the full ring
	// to make room for them.
	Dropped int `json:"dropped"`
}

// Service is the set of telemetry lanes: a ring, a writer and spill files
// for each configured table, and their HTTP routes (see Routes).
type Service struct {
	cfg    Config
	lanes  []*lane
	byName map[string]*lane
	def    *lane

	// mu guards the states below; Ingest holds it shared while it puts,
	// so Stop's flush sees every accepted sample.
	mu       sync.RWMutex
	running  bool
	started  bool
	base     context.Context
	cancel   context.CancelCauseFunc
	wg       sync.WaitGroup
	stopDone chan struct{}
}

// New checks cfg, looks every lane's table up in the catalog and builds
// the rings. Nothing runs until Start.
func New(cfg Config) (*Service, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: c, byName: make(map[string]*lane, len(c.Lanes))}
	for _, lc := range c.Lanes {
		t, err := c.Tables(lc.Table)
		if err != nil {
			return nil, fmt.Errorf("telemetry lane %q: %w", lc.Table, err)
		}
		l, err := newLane(&s.cfg, lc, t)
		if err != nil {
			return nil, fmt.Errorf("telemetry lane %q: %w", lc.Table, err)
		}
		s.lanes = append(s.lanes, l)
		s.byName[lc.Table] = l
	}
	s.def = s.byName[c.Default]
	return s, nil
}

// Start opens every lane's spill files (an earlier run's are replayed
// first) and starts the writers; they run until Stop. ctx ending stops the
// writers too, but only Stop flushes the rings.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("telemetry: already started")
	}
	for i, l := range s.lanes {
		sp, err := openSpill(spillDir(s.cfg.Dir, l.table.Name), l.table, s.cfg.SpillMaxFileBytes, s.cfg.SpillMaxFiles, l.logger)
		if err != nil {
			for _, o := range s.lanes[:i] {
				o.spill.close()
				o.spill = nil
			}
			return fmt.Errorf("telemetry lane %q: %w", l.table.Name, err)
		}
		l.spill = sp
	}
	s.started, s.running = true, true
	s.base = ctx
	ctx, s.cancel = context.WithCancelCause(ctx)
	s.stopDone = make(chan struct{})
	for _, l := range s.lanes {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			l.run(ctx)
		}()
	}
	return nil
}

// Stop refuses new samples, stops the writers after their batch in flight,
// and flushes every ring into the database, or into the spill files when
// the database does not take it within StopTimeout. It is synchronous,
// and safe to call twice and before Start.
func (s *Service) Stop() {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return
	}
	first := s.running
	s.running = false
	done := s.stopDone
	s.mu.Unlock()
	if !first {
		<-done
		return
	}
	defer close(done)
	s.cancel(errStopped)
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.base), s.cfg.StopTimeout)
	defer cancel()
	for _, l := range s.lanes {
		l.flush(ctx)
	}
}

// Ingest checks rows against the lane's table and puts them into its
// ring. A row that does not fit is a *RowError and nothing of the call is
// accepted. Ingest never waits for the database.
func (s *Service) Ingest(table string, rows []map[string]any) (Receipt, error) {
	l := s.byName[table]
	if l == nil {
		return Receipt{}, fmt.Errorf("%w %q", ErrUnknownLane, table)
	}
	now := time.Now()
	samples := make([]sample, len(rows))
	for i, row := range rows {
		sm, err := sampleOf(l.table, row, now)
		if err != nil {
			return Receipt{}, &RowError{Row: i, Err: err}
		}
		samples[i] = sm
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.running {
		return Receipt{}, ErrNotRunning
	}
	return Receipt{Accepted: len(samples), Dropped: l.put(samples)}, nil
}

// Status returns every lane's figures, in configuration order.
func (s *Service) Status() []LaneStatus {
	s.mu.RLock() // Start sets the lanes' spills under the lock
	defer s.mu.RUnlock()
	out := make([]LaneStatus, len(s.lanes))
	for i, l := range s.lanes {
		out[i] = l.status(s.running)
	}
	return out
}

// Health is the lanes' health: Status is "healthy", "degraded" (samples
// are safe but at risk: a ring above its threshold, the database
// unreachable and batches spilled) or "unhealthy" (samples are being lost
// or the writers do not run); Reason says why.
type Health struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// Health checks every lane.
func (s *Service) Health() Health {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.running {
		return Health{Status: "unhealthy", Reason: ErrNotRunning.Error()}
	}
	now := time.Now()
	h := Health{Status: "healthy"}
	for _, l := range s.lanes {
		reason, unhealthy := l.health(l.status(true), now)
		switch {
		case reason == "":
		case unhealthy:
			if h.Status != "unhealthy" {
				h = Health{Status: "unhealthy", Reason: reason}
			}
		case h.Status == "healthy":
			h = Health{Status: "degraded", Reason: reason}
		}
	}
	return h
}
