package postgres

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spoolgw/spool/internal/store"
)

// classify decides, once and by type, whether an error from running an
// operation is permanent (retrying cannot fix it: the transaction is
// dead-lettered) or transient (the whole batch is rolled back and retried),
// and returns the SQLSTATE if the database sent one.
//
// Permanent is an allow-list of SQLSTATE classes that speak of the
// operation and its values: integrity constraint violations (23), data
// exceptions (22), cardinality violations (21), syntax errors and undefined
// tables or columns (42, such as a column dropped after the write was
// queued), feature not supported (0A), triggered action and data change
// violations (09, 27), check option violations (44), program limits such as
// a value too large to index (54), errors raised by routines and triggers
// (20, 2F, 38, 39, P0) and a row that does not exist (store.ErrMissingRow).
//
// Everything else is transient: connection exceptions (08), transaction
// rollbacks such as serialization failures and deadlocks (40), lock not
// available and object in use (55), insufficient resources such as too
// many connections or a full disk (53), operator intervention such as an
// administrator's shutdown or a server that cannot take connections yet
// (57), system and internal errors (58, XX), a read-only transaction on a
// server that was demoted (25), authentication (28) and a database that
// does not exist (3D) — problems of the database or its configuration that
// an operator fixes while spool waits, never reasons to drop a write — and
// every error that is not PostgreSQL's: network errors, timeouts, a closed
// connection or pool, a cancelled context. One code of class 42 follows the
// same reasoning: insufficient privilege (42501) is fixed by a GRANT, and
// must not dead-letter every write to the table meanwhile.
func classify(err error) (code string, permanent bool) {
	if errors.Is(err, store.ErrMissingRow) {
		return "", true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		pgconn.Timeout(err) || pgconn.SafeToRetry(err) || isNetwork(err) {
		return sqlState(err), false
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return "", false
	}
	return pe.Code, permanentCode(pe.Code)
}

// permanentCode reports whether a SQLSTATE says the operation itself is at
// fault; see classify.
func permanentCode(code string) bool {
	switch code {
	case pgerrcode.InsufficientPrivilege:
		return false
	}
	switch {
	case pgerrcode.IsIntegrityConstraintViolation(code), // 23
		pgerrcode.IsDataException(code),                      // 22
		pgerrcode.IsCardinalityViolation(code),               // 21
		pgerrcode.IsSyntaxErrororAccessRuleViolation(code),   // 42
		pgerrcode.IsFeatureNotSupported(code),                // 0A
		pgerrcode.IsTriggeredActionException(code),           // 09
		pgerrcode.IsTriggeredDataChangeViolation(code),       // 27
		pgerrcode.IsWithCheckOptionViolation(code),           // 44
		pgerrcode.IsProgramLimitExceeded(code),               // 54
		pgerrcode.IsCaseNotFound(code),                       // 20
		pgerrcode.IsSQLRoutineException(code),                // 2F
		pgerrcode.IsExternalRoutineException(code),           // 38
		pgerrcode.IsExternalRoutineInvocationException(code), // 39
		pgerrcode.IsPLpgSQLError(code):                       // P0
		return true
	}
	return false
}

// isNetwork reports whether err comes from the connection rather than the
// database: a network error, or the stream ending mid-message.
func isNetwork(err error) bool {
	var (
		ne net.Error
		ce *pgconn.ConnectError
	)
	return errors.As(err, &ne) || errors.As(err, &ce) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// undefinedObject reports whether err says a table or column the catalog
// named does not exist (any more): the catalog is out of date.
func undefinedObject(err error) bool {
	switch sqlState(err) {
	case pgerrcode.UndefinedTable, pgerrcode.UndefinedColumn:
		return true
	}
	return false
}

// IsTransient reports whether err, from InsertRows or any statement, is
// one that retrying later can fix (the database unreachable, shutting
// down, out of connections, a serialization failure, a cancelled
// context), decided by type and SQLSTATE as classify does.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	_, permanent := classify(err)
	return !permanent
}
