package history

import (
	"fmt"
	"strconv"
)

// Op is what a write does to a row.
type Op string

// The operations of the workload. The names are those PostgreSQL's
// TG_OP gives in lower case, so an audit table's op column maps onto them.
const (
	Insert Op = "insert"
	Update Op = "update"
	Delete Op = "delete"
)

func (o Op) valid() bool { return o == Insert || o == Update || o == Delete }

// Write is one row write of a request: it inserts Row with Counter, sets the
// counter of Row to Counter, or deletes Row (Counter is then ignored).
type Write struct {
	Row     string
	Op      Op
	Counter int64
}

// String describes the write as "insert a=1", "update a=2" or "delete a".
func (w Write) String() string {
	if w.Op == Delete {
		return fmt.Sprintf("delete %s", w.Row)
	}
	return fmt.Sprintf("%s %s=%d", w.Op, w.Row, w.Counter)
}

// State is what a transaction status read observed.
type State string

// The answers of a status read: the transaction states in the order a
// transaction passes them, the failed end, and the answer for an id the
// gateway does not know (404).
const (
	StateQueued     State = "queued"
	StateApplied    State = "applied"
	StateReplicated State = "replicated"
	StateFailed     State = "failed"
	StateNotFound   State = "not found"
)

// rank orders the states a transaction passes; zero for the others.
func (s State) rank() int {
	switch s {
	case StateQueued:
		return 1
	case StateApplied:
		return 2
	case StateReplicated:
		return 3
	}
	return 0
}

// Applied is one change physically applied to a row, as an AFTER trigger
// records it: the new counter for an insert or update, the deleted row's
// last counter for a delete.
type Applied struct {
	Op      Op
	Counter int64
}

// String describes the change as "insert 1", "update 2" or "delete (was 2)".
func (a Applied) String() string {
	if a.Op == Delete {
		return "delete (was " + strconv.FormatInt(a.Counter, 10) + ")"
	}
	return fmt.Sprintf("%s %d", a.Op, a.Counter)
}

// DeadLetter is a transaction spool gave up on, with the error it kept.
type DeadLetter struct {
	Txn   string
	Error string
}

// Final is the state the checker compares the history against, read once
// the faults have stopped and spool's log has drained.
type Final struct {
	// Applied holds, for each row key, the changes applied to that row in
	// commit order (the audit table the trigger fills).
	Applied map[string][]Applied
	// Rows is the final table: the counter of each row present.
	Rows map[string]int64
	// AppliedTxns is the set of transaction ids in spool_applied.
	AppliedTxns map[string]bool
	// DeadLetters lists the dead-lettered transactions.
	DeadLetters []DeadLetter
}
