// Package changes carries the state changes of transactions one way, from
// where they happen to everything that follows them. The gateway
// publishes a transaction queued before its append, then logged (or
// refused, when its append failed); the settler publishes it applied,
// replicated or failed, once the overlay no longer holds it. Subscribers
// (the status tracker, the record of retries, live events) are given to
// the feed when it is built, and hear every change in the order it was
// published.
package changes

import (
	"time"

	"github.com/spoolgw/spool/internal/txn"
)

// Change is one transaction's move to a new state.
type Change struct {
	ID    string
	State txn.State
	// Refused is set, with State Queued, for a transaction whose append
	// failed: it never was in the log.
	Refused bool
	// Logged is set, with State Queued, once the append succeeded: the
	// transaction is in the log and the overlay (the change published
	// queued came before the append). It may come after the transaction's
	// later states: the applier can claim an entry before its append
	// returns.
	Logged bool
	At     time.Time
	LSN    txn.LSN // of the commit, for applied and replicated
	Err    error   // why it failed
	Code   string  // the database's code of Err, if any
	// Tx is the transaction, where the publisher has it (queued, and the
	// settler's changes); nil otherwise.
	Tx *txn.Transaction
}

// Subscriber hears changes. Changed must not block: it runs on the
// publisher's path (a write's, the applier's).
type Subscriber interface {
	Changed(cs []Change)
}

// Feed hands every change to its subscribers, in order.
type Feed struct {
	subs []Subscriber
}

// New returns a feed to subs.
func New(subs ...Subscriber) *Feed { return &Feed{subs: subs} }

// Publish hands cs to every subscriber, in the order they were given.
func (f *Feed) Publish(cs ...Change) {
	if len(cs) == 0 {
		return
	}
	for _, s := range f.subs {
		s.Changed(cs)
	}
}

// Record is the changes at one position of a replayable stream of them:
// the events stream of a shared log, which every process reads.
type Record struct {
	// Pos is the record's position in the stream (a Redis stream id).
	Pos     string
	Changes []Change
}
