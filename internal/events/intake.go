package events

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/txn"
)

// DefaultIntake is 20,000 changes waiting for the hub of a local log: a
// few seconds of the most writes a second the local log takes, while the
// hub reads their rows; each pins its transaction (a few hundred bytes to
// a few KiB), so some tens of MiB at most. Past it the hub resets its
// subscribers rather than skip changes silently.
const DefaultIntake = 20_000

// Intake is the hub's subscriber to the feed of a local log: Changed
// only queues (it runs on a write's path, and on the applier's), and the
// hub drains the queue. A queue that overflows is marked, never waited
// for: the hub then resets every subscriber.
type Intake struct {
	max  int
	wake chan struct{}

	mu         sync.Mutex
	queue      []changes.Change
	overflowed bool
}

var _ changes.Subscriber = (*Intake)(nil)

// NewIntake returns an intake holding up to capacity changes
// (DefaultIntake if 0).
func NewIntake(capacity int) *Intake {
	if capacity <= 0 {
		capacity = DefaultIntake
	}
	return &Intake{max: capacity, wake: make(chan struct{}, 1)}
}

// Changed implements changes.Subscriber. It never blocks.
func (in *Intake) Changed(cs []changes.Change) {
	in.mu.Lock()
	if len(in.queue)+len(cs) > in.max {
		in.overflowed = true
	} else {
		in.queue = append(in.queue, cs...)
	}
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// take returns what is queued, and whether changes were lost since the
// last take.
func (in *Intake) take() ([]changes.Change, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	cs, lost := in.queue, in.overflowed
	in.queue, in.overflowed = nil, false
	return cs, lost
}

// Publisher adds settled changes to a shared log's events stream
// (redislog.Log).
type Publisher interface {
	PublishEvents(ctx context.Context, cs []changes.Change) error
}

// DefaultRelayQueue is 100,000 settled changes waiting to be written to
// the events stream: a batch of 500 settles as two or three entries of
// one XADD each, so this is minutes of a Redis that answers slowly, and a
// few MiB (a change pins its transaction: the settler holds it anyway).
const DefaultRelayQueue = 100_000

// RelayFlushTimeout bounds the last write of what is queued when a relay
// stops: a Redis that does not answer must not hold the shutdown.
const RelayFlushTimeout = 2 * time.Second

// Relay writes the applied, replicated and failed changes this process
// settles to a shared log's events stream, from a bounded queue, in
// order, one pipeline per drain. It is a feed subscriber; Changed never
// blocks: a change that finds the queue full is dropped and counted
// (a subscriber then misses that state, never a row of an acknowledged
// write: the append script wrote those).
type Relay struct {
	pub    Publisher
	max    int
	logger *slog.Logger
	wake   chan struct{}

	mu      sync.Mutex
	queue   []changes.Change
	cancel  context.CancelFunc
	done    chan struct{}
	dropped atomic.Int64
	warned  time.Time
}

var _ changes.Subscriber = (*Relay)(nil)

// NewRelay returns a relay to pub holding up to capacity changes
// (DefaultRelayQueue if 0).
func NewRelay(pub Publisher, capacity int, logger *slog.Logger) *Relay {
	if capacity <= 0 {
		capacity = DefaultRelayQueue
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{pub: pub, max: capacity, logger: logger, wake: make(chan struct{}, 1)}
}

// Changed implements changes.Subscriber: it queues the settled changes of
// cs (queued ones are the append script's to write).
func (r *Relay) Changed(cs []changes.Change) {
	r.mu.Lock()
	for _, c := range cs {
		if c.State == txn.Queued {
			continue
		}
		if len(r.queue) >= r.max {
			r.dropped.Add(1)
			if time.Since(r.warned) > 10*time.Second {
				r.warned = time.Now()
				r.logger.Warn("live events: the events stream does not keep up; dropping transaction states", "dropped", r.dropped.Load())
			}
			continue
		}
		r.queue = append(r.queue, c)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Dropped is how many changes found the queue full.
func (r *Relay) Dropped() int64 { return r.dropped.Load() }

// Start starts writing in the background until Stop.
func (r *Relay) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done != nil {
		return errors.New("events: relay already started")
	}
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		r.run(ctx)
	}()
	return nil
}

// Stop writes what is queued (for at most RelayFlushTimeout) and stops.
// Safe twice and before Start.
func (r *Relay) Stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (r *Relay) take() []changes.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := r.queue
	r.queue = nil
	return cs
}

func (r *Relay) run(ctx context.Context) {
	wait := 10 * time.Millisecond
	var pending []changes.Change
	for {
		pending = append(pending, r.take()...)
		if len(pending) > 0 {
			err := r.pub.PublishEvents(ctx, pending)
			if err == nil {
				pending, wait = nil, 10*time.Millisecond
				continue
			}
			if ctx.Err() == nil {
				r.logger.Warn("live events: write states to the events stream; trying again", "err", err, "wait", wait)
			}
		}
		var retry <-chan time.Time // nil: nothing to try again
		var timer *time.Timer
		if len(pending) > 0 {
			timer = time.NewTimer(wait)
			retry = timer.C
			wait = min(2*wait, time.Second)
		}
		select {
		case <-ctx.Done():
			r.flush(append(pending, r.take()...))
			return
		case <-r.wake:
		case <-retry:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// flush writes what is left when the relay stops.
func (r *Relay) flush(cs []changes.Change) {
	if len(cs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), RelayFlushTimeout)
	defer cancel()
	if err := r.pub.PublishEvents(ctx, cs); err != nil {
		r.logger.Warn("live events: states not written to the events stream at stop", "changes", len(cs), "err", err)
	}
}
