package telemetry

import (
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Defaults of a ring.
const (
	// DefaultCapacity is the samples a ring holds: at 200 bytes a sample
	// about 2 MB, a few seconds of a fast poller, which rides out a slow
	// batch without holding an outage's worth of samples in the heap (the
	// spill files hold those).
	DefaultCapacity = 10_000
	// DefaultWarnThreshold is the utilisation, in percent, at which the ring
	// warns: at 80 % a ring of 10,000 still has 2,000 slots, one batch
	// interval of headroom at 4,000 samples/s, before it starts dropping.
	DefaultWarnThreshold = 80.0
	// DefaultWarnInterval is the least time between two warnings of one
	// kind from a ring: an overflowing ring drops on every Put, and one
	// line every ten seconds with the count is enough to act on.
	DefaultWarnInterval = 10 * time.Second
)

// RingConfig configures a Ring.
type RingConfig struct {
	// Name identifies the ring in its log lines (the lane's table).
	Name string
	// Capacity is the fixed number of items; default DefaultCapacity.
	Capacity int
	// WarnThreshold is the utilisation in percent (0 < t ≤ 100) at which
	// a warning is logged, once per crossing; default DefaultWarnThreshold.
	WarnThreshold float64
	// WarnInterval rate-limits warnings of each kind (threshold crossed,
	// overflow); default DefaultWarnInterval.
	WarnInterval time.Duration
	// Logger receives the warnings; default: discarded.
	Logger *slog.Logger
}

func (c *RingConfig) withDefaults() (RingConfig, error) {
	out := *c
	if out.Capacity == 0 {
		out.Capacity = DefaultCapacity
	}
	if out.WarnThreshold == 0 {
		out.WarnThreshold = DefaultWarnThreshold
	}
	if out.WarnInterval == 0 {
		out.WarnInterval = DefaultWarnInterval
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case out.Capacity < 1:
		return out, fmt.Errorf("ring %q: Capacity %d: must be at least 1", out.Name, out.Capacity)
	case !(out.WarnThreshold > 0 && out.WarnThreshold <= 100):
		return out, fmt.Errorf("ring %q: WarnThreshold %v: must be a percentage above 0 and at most 100", out.Name, out.WarnThreshold)
	case out.WarnInterval < 0:
		return out, fmt.Errorf("ring %q: WarnInterval %v: must not be negative", out.Name, out.WarnInterval)
	}
	return out, nil
}

// Ring is a bounded FIFO of a fixed capacity that never blocks a producer:
// when it is full, Put drops the oldest item to make room. It is safe for
// concurrent use.
//
// The items live in one array allocated by NewRing; it never grows.
type Ring[T any] struct {
	mu   sync.Mutex
	buf  []T // len(buf) is the capacity
	head int // index of the oldest item
	size int
	// added and overflow count every Put and every dropped item.
	added, overflow uint64
	// warnAt is the size at which the threshold warning fires; high is
	// set from that crossing until the size falls below warnAt again.
	warnAt int
	high   bool

	alerts *alerter
}

// NewRing returns an empty ring.
func NewRing[T any](cfg RingConfig) (*Ring[T], error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	warnAt := int(math.Ceil(float64(c.Capacity) * c.WarnThreshold / 100))
	return &Ring[T]{
		buf:    make([]T, c.Capacity),
		warnAt: max(warnAt, 1),
		alerts: newAlerter(c),
	}, nil
}

// Put adds v as the newest item. If the ring was full, the oldest item is
// dropped to make room and returned with dropped true.
func (r *Ring[T]) Put(v T) (evicted T, dropped bool) {
	r.mu.Lock()
	n := len(r.buf)
	if r.size == n {
		evicted, dropped = r.buf[r.head], true
		r.buf[r.head] = v
		if r.head++; r.head == n {
			r.head = 0
		}
		r.overflow++
	} else {
		i := r.head + r.size
		if i >= n {
			i -= n
		}
		r.buf[i] = v
		r.size++
	}
	r.added++
	crossed := r.size >= r.warnAt && !r.high
	if crossed {
		r.high = true
	}
	size := r.size
	r.mu.Unlock()
	if crossed || dropped {
		r.alerts.put(size, crossed, b2i(dropped))
	}
	return evicted, dropped
}

// PutAll adds the items in order, as many Puts would, under one lock, and
// returns how many older items were dropped to make room.
func (r *Ring[T]) PutAll(vs []T) (dropped int) {
	if len(vs) == 0 {
		return 0
	}
	r.mu.Lock()
	n := len(r.buf)
	for _, v := range vs {
		if r.size == n {
			r.buf[r.head] = v
			if r.head++; r.head == n {
				r.head = 0
			}
			dropped++
			continue
		}
		i := r.head + r.size
		if i >= n {
			i -= n
		}
		r.buf[i] = v
		r.size++
	}
	r.added += uint64(len(vs))
	r.overflow += uint64(dropped)
	crossed := r.size >= r.warnAt && !r.high
	if crossed {
		r.high = true
	}
	size := r.size
	r.mu.Unlock()
	if crossed || dropped > 0 {
		r.alerts.put(size, crossed, dropped)
	}
	return dropped
}

// Get removes and returns up to n of the oldest items, oldest first.
func (r *Ring[T]) Get(n int) []T { return r.AppendGet(nil, n) }

// Peek returns up to n of the oldest items, oldest first, leaving them in
// the ring.
func (r *Ring[T]) Peek(n int) []T { return r.AppendPeek(nil, n) }

// AppendGet is Get appending to dst, so a consumer can reuse one slice.
func (r *Ring[T]) AppendGet(dst []T, n int) []T {
	r.mu.Lock()
	dst, k := r.copyOut(dst, n)
	if k > 0 {
		// Clear the taken slots so the ring does not keep the items alive.
		end := r.head + k
		if end <= len(r.buf) {
			clear(r.buf[r.head:end])
		} else {
			clear(r.buf[r.head:])
			clear(r.buf[:end-len(r.buf)])
		}
		r.head = end
		if r.head >= len(r.buf) {
			r.head -= len(r.buf)
		}
		r.size -= k
	}
	cleared := r.high && r.size < r.warnAt
	if cleared {
		r.high = false
	}
	size := r.size
	r.mu.Unlock()
	if cleared {
		r.alerts.cleared(size)
	}
	return dst
}

// AppendPeek is Peek appending to dst.
func (r *Ring[T]) AppendPeek(dst []T, n int) []T {
	r.mu.Lock()
	dst, _ = r.copyOut(dst, n)
	r.mu.Unlock()
	return dst
}

// copyOut appends the k = min(n, size) oldest items to dst; r.mu is held.
func (r *Ring[T]) copyOut(dst []T, n int) ([]T, int) {
	k := min(n, r.size)
	if k <= 0 {
		return dst, 0
	}
	end := r.head + k
	if end <= len(r.buf) {
		return append(dst, r.buf[r.head:end]...), k
	}
	dst = append(dst, r.buf[r.head:]...)
	return append(dst, r.buf[:end-len(r.buf)]...), k
}

// Len returns the number of items in the ring.
func (r *Ring[T]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.size
}

// Cap returns the ring's fixed capacity.
func (r *Ring[T]) Cap() int { return len(r.buf) }

// RingStats are a ring's figures, in the seed's JSON shape.
type RingStats struct {
	// CurrentSize is the number of items held.
	CurrentSize int `json:"current_size"`
	// MaxSize is the capacity.
	MaxSize int `json:"max_size"`
	// UtilizationPct is CurrentSize / MaxSize in percent, to 0.01.
	UtilizationPct float64 `json:"utilization_pct"`
	// OverflowCount is the number of items dropped to make room.
	OverflowCount uint64 `json:"overflow_count"`
	// OverflowRatePct is OverflowCount / TotalAdded in percent, to 0.01.
	OverflowRatePct float64 `json:"overflow_rate_pct"`
	// TotalAdded is the number of items ever put.
	TotalAdded uint64 `json:"total_added"`
}

// Stats returns the ring's figures.
func (r *Ring[T]) Stats() RingStats {
	r.mu.Lock()
	s := RingStats{CurrentSize: r.size, MaxSize: len(r.buf), OverflowCount: r.overflow, TotalAdded: r.added}
	r.mu.Unlock()
	s.UtilizationPct = pct(uint64(s.CurrentSize), uint64(s.MaxSize))
	s.OverflowRatePct = pct(s.OverflowCount, s.TotalAdded)
	return s
}

// pct is 100·a/b rounded to 0.01, and 0 when b is 0.
func pct(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(float64(a)/float64(b)*10000) / 100
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// alerter logs a ring's warnings, at most one of each kind per interval:
// the threshold crossed (once per crossing; crossings within the interval
// are counted and told with the next warning), drops on overflow (summed
// between warnings), and the all-clear when utilisation falls back.
type alerter struct {
	name     string
	capacity int
	pct      float64
	interval time.Duration
	logger   *slog.Logger

	mu           sync.Mutex
	lastCross    time.Time
	suppressed   int // crossings not warned about since lastCross
	lastOverflow time.Time
	drops        int // drops not yet told
	warned       bool
}

func newAlerter(c RingConfig) *alerter {
	return &alerter{name: c.Name, capacity: c.Capacity, pct: c.WarnThreshold, interval: c.WarnInterval, logger: c.Logger}
}

func (a *alerter) put(size int, crossed bool, dropped int) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if crossed {
		if !a.lastCross.IsZero() && now.Sub(a.lastCross) < a.interval {
			a.suppressed++
		} else {
			a.lastCross = now
			a.warned = true
			a.logger.Warn("telemetry ring above its warning threshold", "ring", a.name,
				"size", size, "capacity", a.capacity, "threshold_pct", a.pct, "crossings_not_logged", a.suppressed)
			a.suppressed = 0
		}
	}
	if dropped > 0 {
		a.drops += dropped
		if a.lastOverflow.IsZero() || now.Sub(a.lastOverflow) >= a.interval {
			a.lastOverflow = now
			a.logger.Warn("telemetry ring full: dropping the oldest samples", "ring", a.name,
				"dropped", a.drops, "capacity", a.capacity)
			a.drops = 0
		}
	}
}

func (a *alerter) cleared(size int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.warned {
		return // the crossing was not logged; neither is its end
	}
	a.warned = false
	a.logger.Info("telemetry ring back below its warning threshold", "ring", a.name,
		"size", size, "capacity", a.capacity, "threshold_pct", a.pct)
}
