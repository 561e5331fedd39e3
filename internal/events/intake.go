package events

import (
	"sync"

	"github.com/spoolgw/spool/internal/changes"
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
// last take. spare (emptied) becomes the queue: the caller hands back the
// slice an earlier take returned once it is done with it, so that the two
// are reused rather than grown again for every take.
func (in *Intake) take(spare []changes.Change) ([]changes.Change, bool) {
	clear(spare[:cap(spare)]) // no transaction stays pinned
	in.mu.Lock()
	defer in.mu.Unlock()
	cs, lost := in.queue, in.overflowed
	in.queue, in.overflowed = spare[:0], false
	return cs, lost
}
