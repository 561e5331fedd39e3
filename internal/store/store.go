// Package store declares the database seam: what spool needs from SQLite or
// PostgreSQL. Backends live in subpackages; storetest is the conformance
// suite both run.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// Store is a database spool drains into and reads from.
type Store interface {
	// Migrate creates or upgrades spool's own tables.
	Migrate(ctx context.Context) error
	// Exec runs SQL text from the operator (the --schema file), never from
	// a client.
	Exec(ctx context.Context, sql string) error
	// Catalog reads the user tables, without spool's own.
	Catalog(ctx context.Context) (*schema.Catalog, error)

	// ApplyBatch applies the batch in log order in one database
	// transaction and records every transaction id in spool_applied in
	// that same transaction; a transaction already recorded is skipped
	// (Outcome.Duplicate). A transaction that fails permanently, or that
	// gate refuses, is rolled back alone (the others still commit), is
	// recorded as a dead letter in the same database transaction, and is
	// reported to gate. A transient failure rolls back the whole batch and
	// is returned as the error; nothing of the batch is then committed.
	ApplyBatch(ctx context.Context, batch []*txn.Transaction, gate Gate) ([]Outcome, error)

	// Get reads one row by key text; found is false if there is none.
	Get(ctx context.Context, t *schema.Table, key string) (row schema.Row, found bool, err error)
	// Query reads the rows matching q, ordered, at most limit of them.
	Query(ctx context.Context, q *query.Query, limit int) ([]schema.Row, error)

	// Applied tells whether transaction id was applied, and when.
	Applied(ctx context.Context, id string) (at time.Time, ok bool, err error)
	// RecordLogHead records that the oldest transaction log holds was
	// made at oldest (now, if it holds none), and returns the earliest
	// such time recorded for any log that drains into this database:
	// spool_applied holds the records of them all, so none may go that
	// a log still behind may deliver again.
	RecordLogHead(ctx context.Context, log string, oldest time.Time) (earliest time.Time, err error)
	// PruneApplied deletes from spool_applied the records of at most
	// limit transactions applied before appliedBefore whose ids sort
	// below idBefore (ids are UUIDv7: they sort by the millisecond they
	// were made; see txn.FirstIDAt), and returns how many it deleted. A
	// transaction whose record is gone would be applied again if a log
	// delivered it again: the caller picks bounds every log is past
	// (RecordLogHead).
	PruneApplied(ctx context.Context, appliedBefore time.Time, idBefore string, limit int) (int64, error)
	// DeadLetter returns the dead letter of transaction id, if any
	// (ErrNotFound if none).
	DeadLetter(ctx context.Context, id string) (*DeadLetter, error)
	// ListDeadLetters lists the dead letters f selects in the order they
	// last failed (ties by id), at most f.Limit of them (no bound if 0),
	// starting after f.After. An f.After that is no dead letter's id
	// selects none.
	ListDeadLetters(ctx context.Context, f DeadLetterFilter) ([]*DeadLetter, error)
	// DropDeadLetter marks dead letter id dropped by who, now; the record
	// stays (DeadLetter.DroppedAt, DroppedBy). A dead letter already
	// dropped or retried, or none, is ErrNotFound.
	DropDeadLetter(ctx context.Context, id, who string) error

	Close() error
}

// Gate decides, for the applier, which transactions may run. The store calls
// Admit before each transaction of a batch and Failed after each that failed.
type Gate interface {
	// Admit returns nil to run tx, or the reason it must fail unrun (it
	// depends on a transaction that failed). A store may ask about a
	// transaction again in one ApplyBatch (an attempt given up and run
	// another way); the answer must follow from what Failed told.
	Admit(tx *txn.Transaction) error
	// Failed is told of each transaction that failed permanently.
	Failed(tx *txn.Transaction, err error)
	// Fence returns the lease the batch is applied under: the log's name
	// and the applier's fencing token. The store commits a batch only if
	// no batch of that log was committed under a higher token, and records
	// the token in the same database transaction; otherwise it rolls back
	// and returns ErrFenced. Token 0 means no lease (a log only one
	// process applies) and skips the check.
	Fence() (log string, token int64)
}

// ErrFenced is returned by ApplyBatch when an applier with a newer lease
// has committed: this applier lost its lease and must stop.
var ErrFenced = errors.New("fenced out: another applier holds a newer lease")

// Outcome is what became of one transaction of a batch.
type Outcome struct {
	// Err is the permanent failure that dead-lettered the transaction, nil
	// if it was applied.
	Err error
	// Duplicate is true if an earlier run had applied it already.
	Duplicate bool
	// LSN is the batch's commit position in the primary's WAL (PostgreSQL;
	// zero for SQLite): once every replica has replayed past it, readers
	// of the replicas see the transaction.
	LSN txn.LSN
}

// DeadLetter is a transaction that failed for a reason retrying cannot fix.
type DeadLetter struct {
	Tx       *txn.Transaction `json:"transaction"`
	Error    string           `json:"error"`
	Code     string           `json:"code,omitempty"`
	FailedAt time.Time        `json:"last_failed_at"`
	// Attempts counts the failures of this transaction and of the ones it
	// retries (Tx.RetryOf), FirstFailedAt the first of them.
	Attempts      int       `json:"attempts"`
	FirstFailedAt time.Time `json:"first_failed_at"`
	// RetriedAs is the transaction that retried this one, if any.
	RetriedAs string `json:"retried_as,omitempty"`
	// RetriedBy is the principal of that retry: who retried it.
	RetriedBy string `json:"retried_by,omitempty"`
	// DroppedAt and DroppedBy say who dropped it, and when (the audit
	// record of a drop).
	DroppedAt time.Time `json:"dropped_at,omitzero"`
	DroppedBy string    `json:"dropped_by,omitempty"`
}

// DeadLetterFilter selects dead letters to list. Zero fields select all.
type DeadLetterFilter struct {
	// Table selects the ones with an operation on this table.
	Table string
	// Code selects the ones whose error code starts with Code (a SQLSTATE
	// class such as "23", or an SQLite code name such as
	// "SQLITE_CONSTRAINT").
	Code string
	// Since selects the ones that last failed at or after Since.
	Since time.Time
	// After is the id of the last dead letter of the previous page.
	After string
	// Limit bounds the page.
	Limit int
	// All includes the retried and the dropped ones.
	All bool
}

// ErrNotFound is returned when a dead letter or row does not exist.
var ErrNotFound = errors.New("not found")

// ApplyError is a permanent failure of one operation: the database refused
// it for a reason retrying cannot fix (constraint, type, missing row).
type ApplyError struct {
	// Op is the index of the failing operation in its transaction.
	Op    int
	Table string
	// Code is the database's error code (SQLSTATE, or SQLite's code name).
	Code string
	Msg  string
	Err  error
}

func (e *ApplyError) Error() string {
	s := fmt.Sprintf("operation %d on %q: %s", e.Op, e.Table, e.Msg)
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	return s
}

func (e *ApplyError) Unwrap() error { return e.Err }

// ErrMissingRow is the cause of an ApplyError for an update or delete of a
// row the database does not hold.
var ErrMissingRow = errors.New("row does not exist")

// TableList is the text a dead letter is filtered by table with: every
// table the transaction names, each between commas (",obs,frames,").
func TableList(tx *txn.Transaction) string {
	var b strings.Builder
	b.WriteByte(',')
	seen := map[string]bool{}
	for _, op := range tx.Operations {
		if !seen[op.Table] {
			seen[op.Table] = true
			b.WriteString(op.Table)
			b.WriteByte(',')
		}
	}
	return b.String()
}
