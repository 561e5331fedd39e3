// Package txn holds the leaf types every other package shares: transactions,
// their operations, ids and states. Of spool's own packages it imports
// jsonval alone.
package txn

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Kind is what an operation does to a row.
type Kind string

// The operation kinds a transaction may hold.
const (
	Insert Kind = "insert"
	Update Kind = "update"
	Upsert Kind = "upsert"
	Delete Kind = "delete"
)

// Valid reports whether k is one of the known operation kinds.
func (k Kind) Valid() bool {
	switch k {
	case Insert, Update, Upsert, Delete:
		return true
	}
	return false
}

// Operation is one change to one row. By the time an operation is in the log
// it is resolved: ID holds the row's primary key as text (generated for
// inserts that did not name it), every $ref is replaced by the id it named,
// and Values are normalised against the column types.
type Operation struct {
	Op     Kind           `json:"op"`
	Table  string         `json:"table"`
	ID     string         `json:"id"`
	Values map[string]any `json:"values,omitempty"`
	// As is the alias later operations may name in {"$ref": alias}.
	As string `json:"as,omitempty"`
	// Generated is true for an insert whose key spool generated: no other
	// row can have it, so if the insert fails, the row never exists.
	Generated bool `json:"generated,omitempty"`
}

// Transaction is an ordered list of operations, applied atomically and once.
type Transaction struct {
	ID         string      `json:"id"`
	Operations []Operation `json:"operations"`
	CreatedAt  time.Time   `json:"created_at"`
	// RetryOf links a re-queued dead letter to the transaction it replaces.
	RetryOf string `json:"retry_of,omitempty"`
	// Principal is who submitted the transaction (or retried the dead
	// letter it replaces), as auth.Principal.String records it:
	// "token:NAME", "jwt:SUB" or "anonymous". Both logs store it with
	// the rest of the transaction's JSON; dead letters keep it.
	Principal string `json:"principal,omitempty"`
	// Idempotency is the Idempotency-Key the write came with, if any.
	Idempotency *Idempotency `json:"idempotency,omitempty"`
}

// Idempotency is a write's idempotency key, scoped to its principal, and
// the record a repeat of the write is answered from. The logs keep the
// record, as opaque bytes, as durably as the write: a key is taken exactly
// when its write is in the log.
type Idempotency struct {
	// Key is the scoped key (a hash of the principal and the client's
	// key), safe as a part of a file or Redis key name.
	Key    string          `json:"key"`
	Record json.RawMessage `json:"record"`
}

// NewID returns a new time-ordered id (UUIDv7) as text.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// IDTime returns the time a transaction was created, to the millisecond,
// as its id (a UUIDv7) records it; the zero time for any other id.
func IDTime(id string) time.Time {
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		return time.Time{}
	}
	sec, nsec := u.Time().UnixTime()
	return time.Unix(sec, nsec).UTC()
}

// FirstIDAt returns the least id NewID can make at t, to the millisecond:
// every id made before that millisecond sorts below it, as text and as a
// UUID (its first 48 bits are the milliseconds since 1970).
func FirstIDAt(t time.Time) string {
	var u uuid.UUID
	ms := uint64(max(t.UnixMilli(), 0))
	for i := range 6 {
		u[i] = byte(ms >> (40 - 8*i))
	}
	u[6], u[8] = 0x70, 0x80 // version 7, RFC 9562 variant
	return u.String()
}

// ValidID reports whether s is a UUID in its canonical text form.
func ValidID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

// State is where a transaction is on its way to the read replica.
type State string

// The states of a transaction, in order; Failed ends the way instead.
const (
	Queued     State = "queued"
	Applied    State = "applied"
	Replicated State = "replicated"
	Failed     State = "failed"
)

// ParseState parses a state name.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case Queued, Applied, Replicated, Failed:
		return st, nil
	}
	return "", fmt.Errorf("unknown state %q (want queued, applied, replicated or failed)", s)
}

// Reached reports whether a transaction in state s has reached want or gone
// past it. Failed reaches every state: waiting for it ends.
func (s State) Reached(want State) bool {
	if s == Failed || s == want {
		return true
	}
	return s.rank() >= want.rank() && want != Failed
}

func (s State) rank() int {
	switch s {
	case Queued:
		return 1
	case Applied:
		return 2
	case Replicated:
		return 3
	}
	return 0
}

// Done reports whether the transaction has left the log for good.
func (s State) Done() bool { return s == Replicated || s == Failed }
