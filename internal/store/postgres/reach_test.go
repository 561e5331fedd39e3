package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// Unreachable sorts an attempt's errors: a database that could not be
// reached against one that refused the batch for a while.
func TestUnreachable(t *testing.T) {
	var s Store
	_, refused := pgconn.Connect(context.Background(), "postgres://x@127.0.0.1:1/x?connect_timeout=1")
	if refused == nil {
		t.Fatal("a connection to port 1 succeeded")
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{refused, true},
		{fmt.Errorf("apply batch: %w", &pgconn.PgError{Code: "57P03"}), true}, // the database system is starting up
		{&pgconn.PgError{Code: "57P01"}, true},                                // terminating connection due to administrator command
		{&pgconn.PgError{Code: "08006"}, true},
		{fmt.Errorf("attempt cut off: %w", context.DeadlineExceeded), true},
		{&pgconn.PgError{Code: "40P01"}, false}, // deadlock
		{&pgconn.PgError{Code: "55P03"}, false}, // lock not available
		{errors.New("something else"), false},
		{nil, false},
	} {
		if got := s.Unreachable(c.err); got != c.want {
			t.Errorf("Unreachable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
