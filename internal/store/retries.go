package store

import (
	"fmt"

	"github.com/spoolgw/spool/internal/txn"
)

// A dead letter's retry is a new transaction naming it (Tx.RetryOf). The
// database decides, in the batch that applies a retry, whether it may run:
// two retries of one dead letter (sent to two processes, or sent again
// before the first was applied) would otherwise both run its operations,
// and a retry must not run a dead letter someone dropped meanwhile.

// CodeSuperseded is the dead-letter code of a retry that did not run
// because its dead letter was retried by another transaction, or dropped,
// first (SupersededError).
const CodeSuperseded = "spool_superseded"

// DroppedBySpool is who dropped a superseded retry's dead letter: it
// holds the operations of a dead letter that was retried or dropped
// already, so retrying it in turn would run them again.
const DroppedBySpool = "spool (superseded retry)"

// SupersededError is the Outcome.Err of a retry whose dead letter had been
// retried by another transaction, or dropped, by the time the retry reached
// the database. None of its operations ran. Its own dead letter is
// recorded dropped (DroppedBySpool), and it poisons nothing: the rows it
// would have written are the other retry's.
type SupersededError struct {
	DeadLetter string // the dead letter it retries
	RetriedAs  string // the transaction that retried it first; "" if it was dropped
}

func (e *SupersededError) Error() string {
	if e.RetriedAs != "" {
		return fmt.Sprintf("dead letter %s was retried already as %s; this retry did not run", e.DeadLetter, e.RetriedAs)
	}
	return fmt.Sprintf("dead letter %s was dropped before this retry reached the database; this retry did not run", e.DeadLetter)
}

// RetryTarget is what the database holds of a dead letter a retry names.
type RetryTarget struct {
	RetriedAs string // the transaction that retried it, if any
	Dropped   bool
}

// RetryTargets are the dead letters that the retries of one attempt at a
// batch name: read at the attempt's start (locking them against a
// concurrent drop), then updated as the attempt admits retries.
type RetryTargets map[string]RetryTarget

// Admit returns a *SupersededError if t is a retry that must not run;
// otherwise it records t as its dead letter's retry, as the batch will
// (whether t then applies or fails), and returns nil.
func (r RetryTargets) Admit(t *txn.Transaction) error {
	if t.RetryOf == "" {
		return nil
	}
	dl := r[t.RetryOf]
	switch {
	case dl.RetriedAs != "" && dl.RetriedAs != t.ID:
		return &SupersededError{DeadLetter: t.RetryOf, RetriedAs: dl.RetriedAs}
	case dl.Dropped:
		return &SupersededError{DeadLetter: t.RetryOf}
	}
	r[t.RetryOf] = RetryTarget{RetriedAs: t.ID}
	return nil
}

// Rows are a query's rows, as both database/sql and pgx give them.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// Read adds to r the dead letters of rows: each the dead letter's id, the
// transaction that retried it ("" if none) and whether it was dropped.
func (r RetryTargets) Read(rows Rows) error {
	for rows.Next() {
		var (
			id string
			dl RetryTarget
		)
		if err := rows.Scan(&id, &dl.RetriedAs, &dl.Dropped); err != nil {
			return fmt.Errorf("retried dead letters: %w", err)
		}
		r[id] = dl
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("retried dead letters: %w", err)
	}
	return nil
}

// RetriedIDs returns the dead letters the retries of batch name, each
// once; nil if the batch holds no retry (most batches).
func RetriedIDs(batch []*txn.Transaction) []string {
	var ids []string
	seen := map[string]bool{}
	for _, t := range batch {
		if t.RetryOf != "" && !seen[t.RetryOf] {
			seen[t.RetryOf] = true
			ids = append(ids, t.RetryOf)
		}
	}
	return ids
}
