package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Conditions errors.Is tells apart on a *Error.
var (
	ErrBadRequest   = errors.New("spool: bad request")  // 400: the request names its problem
	ErrUnauthorized = errors.New("spool: unauthorized") // 401: no credentials, or refused
	ErrForbidden    = errors.New("spool: forbidden")    // 403: a scope is missing
	ErrNotFound     = errors.New("spool: not found")    // 404: no such row, table, transaction or dead letter
	ErrConflict     = errors.New("spool: conflict")     // 409: a dead letter retried or dropped already
	ErrUnavailable  = errors.New("spool: unavailable")  // 429 or 503, still so after the retries
	// ErrFailed is the error of a Wait whose transaction failed: it is a
	// dead letter (errors.As a *FailedError for its status).
	ErrFailed = errors.New("spool: transaction failed")
)

// Error is a request spool refused: nothing changed.
type Error struct {
	// Method and Path are the request's.
	Method, Path string
	// StatusCode is the HTTP status; Message spool's explanation.
	StatusCode int
	Message    string
	// Operation is the index of the operation at fault in a transaction,
	// or -1.
	Operation int
	// RetryAfter is the wait the server asked for (429, 503), or 0.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := fmt.Sprintf("spool: %s %s: %d %s", e.Method, e.Path, e.StatusCode, e.Message)
	if e.Operation >= 0 {
		s += fmt.Sprintf(" (operation %d)", e.Operation)
	}
	return s
}

// Is matches the sentinel of e's status.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrBadRequest:
		return e.StatusCode == http.StatusBadRequest
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case ErrUnavailable:
		return retryable(e.StatusCode)
	}
	return false
}

func newError(method, path string, res *http.Response, body []byte) *Error {
	e := &Error{Method: method, Path: path, StatusCode: res.StatusCode, Operation: -1,
		RetryAfter: parseRetryAfter(res.Header.Get("Retry-After"), time.Now())}
	var b struct {
		Error     string `json:"error"`
		Operation *int   `json:"operation"`
	}
	if json.Unmarshal(body, &b) == nil && b.Error != "" {
		e.Message = b.Error
		if b.Operation != nil {
			e.Operation = *b.Operation
		}
	} else {
		e.Message = http.StatusText(res.StatusCode)
	}
	return e
}

// FailedError is the error of a Wait whose transaction failed.
type FailedError struct{ Status Status }

func (e *FailedError) Error() string {
	return fmt.Sprintf("spool: transaction %s failed: %s (%s)", e.Status.TransactionID, e.Status.Error, e.Status.Code)
}

// Is matches ErrFailed.
func (e *FailedError) Is(target error) bool { return target == ErrFailed }
