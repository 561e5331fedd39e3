// Package txlog declares the log: the durable FIFO of transactions not yet
// applied to the database. Backends live in subpackages (filelog on local
// disk, redislog in a Redis stream); txlogtest is the conformance suite
// every backend runs.
package txlog

import (
	"context"
	"errors"

	"github.com/spoolgw/spool/internal/txn"
)

// Entry is one transaction in the log with its backend-specific position.
type Entry struct {
	// Pos identifies the entry within its log; opaque to callers.
	Pos string
	Tx  *txn.Transaction
}

// Log is the durable FIFO. Appends are durable when Append returns; an
// entry stays in the log until it is acknowledged, and an entry claimed but
// not acknowledged is delivered again after a restart.
type Log interface {
	// Append makes tx durable and returns its entry. Concurrent appends
	// share the cost of durability (group commit).
	Append(ctx context.Context, tx *txn.Transaction) (Entry, error)
	// Claim returns up to max entries not yet claimed, in log order,
	// waiting until at least one is there or ctx is done. It never waits
	// for more once one is there.
	Claim(ctx context.Context, max int) ([]Entry, error)
	// Ack acknowledges claimed entries, which were applied; their space is
	// reclaimed. Entries are acknowledged in the order they were claimed.
	// An Ack may run while a Claim of later entries waits, and must not
	// wait for it: the applier claims the next batch while one applies.
	Ack(ctx context.Context, entries []Entry) error
	// Pending calls fn for every entry not yet acknowledged, in log order.
	Pending(ctx context.Context, fn func(Entry) error) error
	// Stats reports the log's depth and size.
	Stats(ctx context.Context) (Stats, error)
	// Close releases the log. Appends waiting on durability fail.
	Close() error
}

// Stats describes what the log holds.
type Stats struct {
	// Depth is the number of entries not yet acknowledged.
	Depth int64 `json:"depth"`
	// Bytes is the space the log takes, where the backend knows it.
	Bytes int64 `json:"bytes"`
}

// ErrClosed is returned by calls on a closed log.
var ErrClosed = errors.New("log closed")

// ErrNotHolder is returned by Claim on a log that several appliers share
// when this process does not hold the log's lease: another applier is the
// active one, and claiming would take entries out of its order.
var ErrNotHolder = errors.New("not the holder of the log's lease")

// KeyTakenError is returned by Append when the transaction's idempotency
// key was taken by an earlier write: Record is that write's record
// (txn.Idempotency.Record), and nothing of this transaction was appended.
type KeyTakenError struct {
	Record []byte
}

func (e *KeyTakenError) Error() string { return "idempotency key taken by an earlier write" }
