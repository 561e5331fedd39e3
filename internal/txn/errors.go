package txn

import (
	"errors"
	"fmt"
)

// The kinds of request spool refuses. An InputError wraps one, so that a
// caller decides by kind (errors.Is); only the API turns them into HTTP
// statuses.
var (
	// ErrInvalid: the request is malformed or breaks the catalog.
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: a row or dead letter the request names does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request clashes with the state of what it names (a
	// dead letter retried or dropped already, or being so).
	ErrConflict = errors.New("conflict")
	// ErrUnsupported: the database cannot do what the request asks.
	ErrUnsupported = errors.New("not supported by this database")
)

// InputError is a request spool refuses: its kind, and a message that
// names the problem for the client.
type InputError struct {
	Kind error // ErrInvalid, ErrNotFound, ErrConflict or ErrUnsupported
	Msg  string
	// Op is the index of the operation at fault, -1 if none.
	Op int
}

func (e *InputError) Error() string { return e.Msg }

// Unwrap returns the error's kind.
func (e *InputError) Unwrap() error { return e.Kind }

// Refuse returns an InputError of kind that names no operation.
func Refuse(kind error, format string, a ...any) *InputError {
	return &InputError{Kind: kind, Op: -1, Msg: fmt.Sprintf(format, a...)}
}

// BadOp returns an ErrInvalid InputError naming operation i.
func BadOp(i int, format string, a ...any) *InputError {
	return &InputError{Kind: ErrInvalid, Op: i, Msg: fmt.Sprintf("operation %d: ", i) + fmt.Sprintf(format, a...)}
}
