package telemetry

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spoolgw/spool/internal/schema"
)

// maxRejections is how many of the latest rejected rows' errors a lane's
// status shows.
const maxRejections = 10

// lane is one table's ring, writer and spill.
type lane struct {
	table  *schema.Table
	ring   *Ring[sample]
	cfg    *Config
	logger *slog.Logger
	// notify wakes the writer when the ring holds a full batch.
	notify chan struct{}

	// The writer's own state: only its goroutine (and Stop's flush after
	// it ended) touches these.
	spill   *spill
	buf     []sample
	chunk   *spillChunk // a replay chunk not yet in the database
	attempt int         // consecutive failed attempts
	retryAt time.Time

	mu sync.Mutex
	st writerCounters
}

// writerCounters are the writer's figures, guarded by lane.mu.
type writerCounters struct {
	rowsWritten  uint64
	rowsReplayed uint64
	batches      uint64
	lastWrite    time.Time
	rejected     uint64
	rejections   []Rejection // the latest, oldest first
	errors       uint64
	lastError    string
	lastErrorAt  time.Time
	spillFailed  uint64 // rows the spill could not take
	spillError   string
	spillErrorAt time.Time
	spillLogged  time.Time // last time a spill failure was logged
	down         bool      // the last write attempt failed
	downSince    time.Time
}

func newLane(cfg *Config, lc LaneConfig, t *schema.Table) (*lane, error) {
	ring, err := NewRing[sample](RingConfig{Name: t.Name, Capacity: lc.Capacity, WarnThreshold: cfg.WarnThreshold,
		WarnInterval: cfg.WarnInterval, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return &lane{table: t, ring: ring, cfg: cfg, logger: cfg.Logger.With("table", t.Name),
		notify: make(chan struct{}, 1), buf: make([]sample, 0, cfg.MaxBatchSize)}, nil
}

// spillDir is the lane's own directory under the spill directory: the
// table name with every byte but [A-Za-z0-9_-] escaped as %XX, so any
// catalog name is one safe path element.
func spillDir(root, table string) string {
	var b strings.Builder
	for i := 0; i < len(table); i++ {
		c := table[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return filepath.Join(root, b.String())
}

// put adds samples to the ring and wakes the writer when a batch is full.
func (l *lane) put(samples []sample) (dropped int) {
	dropped = l.ring.PutAll(samples)
	if l.ring.Len() >= l.cfg.BatchSize {
		select {
		case l.notify <- struct{}{}:
		default:
		}
	}
	return dropped
}

// Rejection is a row the database refused for good, or a spilled row that
// no longer fits its table.
type Rejection struct {
	Error string    `json:"error"`
	At    time.Time `json:"at"`
}

// WriterStats are the figures of a lane's writer.
type WriterStats struct {
	// State is "writing" (the database takes batches), "spilling" (it
	// does not: batches go to the spill files), "replaying" (the spill
	// files are going into the database) or "stopped".
	State string `json:"state"`
	// RowsWritten counts rows inserted, RowsReplayed those of them that
	// came from spill files, Batches the inserts that wrote them.
	RowsWritten  uint64     `json:"rows_written"`
	RowsReplayed uint64     `json:"rows_replayed"`
	Batches      uint64     `json:"batches"`
	LastWrite    *time.Time `json:"last_write"`
	// RowsRejected counts rows the database refused for good (or spilled
	// rows that no longer fit the table); the latest errors follow.
	RowsRejected     uint64      `json:"rows_rejected"`
	RecentRejections []Rejection `json:"recent_rejections"`
	// Errors counts failed write attempts (the batch was spilled).
	Errors      uint64     `json:"errors"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// SpillFiles, SpillRowsPending and SpillBytes describe the spill
	// files waiting to be replayed.
	SpillFiles       int   `json:"spill_files"`
	SpillRowsPending int64 `json:"spill_rows_pending"`
	SpillBytes       int64 `json:"spill_bytes"`
	// SpillRowsDropped counts rows lost at the spill: removed with the
	// oldest file by the count cap, in a file that could not be read, or
	// refused by a failing disk.
	SpillRowsDropped uint64 `json:"spill_rows_dropped"`
	SpillLastError   string `json:"spill_last_error,omitempty"`
}

// LaneStatus is a lane's ring and writer figures.
type LaneStatus struct {
	Table string `json:"table"`
	RingStats
	// RowsDropped is every sample lost: pushed out of the full ring
	// (OverflowCount) or dropped at the spill (Writer.SpillRowsDropped).
	// Rejected rows are counted apart.
	RowsDropped uint64      `json:"rows_dropped"`
	Writer      WriterStats `json:"writer"`
}

func (l *lane) status(running bool) LaneStatus {
	ls := LaneStatus{Table: l.table.Name, RingStats: l.ring.Stats()}
	var sp spillStats
	if l.spill != nil {
		sp = l.spill.stats()
	}
	l.mu.Lock()
	c := l.st
	c.rejections = append([]Rejection(nil), l.st.rejections...)
	l.mu.Unlock()
	w := WriterStats{
		RowsWritten: c.rowsWritten, RowsReplayed: c.rowsReplayed, Batches: c.batches,
		RowsRejected: c.rejected, RecentRejections: c.rejections,
		Errors: c.errors, LastError: c.lastError,
		SpillFiles: sp.files, SpillRowsPending: sp.pending, SpillBytes: sp.bytes,
		SpillRowsDropped: sp.dropped + c.spillFailed, SpillLastError: c.spillError,
	}
	if w.RecentRejections == nil {
		w.RecentRejections = []Rejection{}
	}
	if !c.lastWrite.IsZero() {
		w.LastWrite = &c.lastWrite
	}
	if !c.lastErrorAt.IsZero() {
		w.LastErrorAt = &c.lastErrorAt
	}
	switch {
	case !running:
		w.State = "stopped"
	case c.down:
		w.State = "spilling"
	case sp.pending > 0:
		w.State = "replaying"
	default:
		w.State = "writing"
	}
	ls.Writer = w
	ls.RowsDropped = ls.OverflowCount + w.SpillRowsDropped
	return ls
}

// health returns "" when the lane is healthy, else what is wrong and
// whether samples are being lost (unhealthy) or not yet (degraded).
func (l *lane) health(ls LaneStatus, now time.Time) (reason string, unhealthy bool) {
	l.mu.Lock()
	spillErrAt, spillErr, down, downSince := l.st.spillErrorAt, l.st.spillError, l.st.down, l.st.downSince
	l.mu.Unlock()
	switch {
	case !spillErrAt.IsZero() && now.Sub(spillErrAt) < time.Minute:
		return fmt.Sprintf("lane %q: the spill files cannot take samples (%s); samples are being lost", l.table.Name, spillErr), true
	case ls.UtilizationPct >= l.cfg.WarnThreshold:
		return fmt.Sprintf("lane %q: ring %.0f%% full (warning at %.0f%%); %d samples dropped so far", l.table.Name, ls.UtilizationPct, l.cfg.WarnThreshold, ls.OverflowCount), false
	case down:
		return fmt.Sprintf("lane %q: database unreachable since %s; %d rows spilled", l.table.Name, downSince.UTC().Format(time.RFC3339), ls.Writer.SpillRowsPending), false
	}
	return "", false
}

// The writer's bookkeeping.

func (l *lane) wrote(rows int, rejected map[int]error, replayed bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	good := uint64(rows - len(rejected))
	l.st.rowsWritten += good
	if replayed {
		l.st.rowsReplayed += good
	}
	l.st.batches++
	l.st.lastWrite = now
	for _, err := range rejected {
		l.rejectLocked(err, now)
	}
}

func (l *lane) reject(errs []error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range errs {
		l.rejectLocked(err, now)
	}
}

func (l *lane) rejectLocked(err error, now time.Time) {
	l.st.rejected++
	if len(l.st.rejections) == maxRejections {
		l.st.rejections = append(l.st.rejections[:0], l.st.rejections[1:]...)
	}
	l.st.rejections = append(l.st.rejections, Rejection{Error: err.Error(), At: now})
}

// failed notes a failed write attempt and when to try again.
func (l *lane) failed(err error) {
	now := time.Now()
	l.attempt++
	l.retryAt = now.Add(backoff(l.cfg.RetryMin, l.cfg.RetryMax, l.attempt))
	l.mu.Lock()
	l.st.errors++
	l.st.lastError, l.st.lastErrorAt = err.Error(), now
	first := !l.st.down
	if first {
		l.st.down, l.st.downSince = true, now
	}
	l.mu.Unlock()
	if first {
		l.logger.Warn("telemetry: database unreachable; spilling batches to disk", "err", err)
	} else {
		l.logger.Debug("telemetry: database still unreachable", "attempt", l.attempt, "retry_in", time.Until(l.retryAt), "err", err)
	}
}

// recovered notes a successful write after failures.
func (l *lane) recovered() {
	if l.attempt == 0 {
		return
	}
	l.attempt, l.retryAt = 0, time.Time{}
	l.mu.Lock()
	since := l.st.downSince
	l.st.down = false
	l.mu.Unlock()
	l.logger.Info("telemetry: database answers again; replaying the spill files", "down_for", time.Since(since).Round(time.Millisecond))
}

func (l *lane) spillFailed(rows int, err error) {
	now := time.Now()
	l.mu.Lock()
	first := l.st.spillLogged.IsZero() || now.Sub(l.st.spillLogged) >= l.cfg.WarnInterval
	if first {
		l.st.spillLogged = now
	}
	l.st.spillFailed += uint64(rows)
	l.st.spillError, l.st.spillErrorAt = err.Error(), now
	l.mu.Unlock()
	if first {
		l.logger.Error("telemetry: cannot spill a batch; its rows are lost", "rows", rows, "err", err)
	}
}
