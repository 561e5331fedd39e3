package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// Unreachable tells whether err, from an attempt at a batch, says the
// database could not be reached: a network error or a broken connection, a
// connection exception (class 08), a server shutting down or not yet
// taking connections (57P01–57P03), or an attempt cut off by its timeout
// (a database that hangs). The applier then retries as soon as the
// database answers a ping, rather than after its whole backoff; a database
// that was reached and refused the batch for a while (a lock, a
// serialization failure) keeps the backoff.
func (s *Store) Unreachable(err error) bool {
	if err == nil {
		return false
	}
	if isNetwork(err) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch code := sqlState(err); code {
	case pgerrcode.AdminShutdown, pgerrcode.CrashShutdown, pgerrcode.CannotConnectNow:
		return true
	default:
		return pgerrcode.IsConnectionException(code)
	}
}
