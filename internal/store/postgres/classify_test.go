package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spoolgw/spool/internal/store"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	pgErr := func(code string) error { return &pgconn.PgError{Severity: "ERROR", Code: code, Message: "m"} }
	netErr := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	cases := []struct {
		name      string
		err       error
		code      string
		permanent bool
	}{
		// Permanent: the operation and its values are at fault.
		{"unique violation", pgErr("23505"), "23505", true},
		{"not null violation", pgErr("23502"), "23502", true},
		{"foreign key violation", pgErr("23503"), "23503", true},
		{"check violation", pgErr("23514"), "23514", true},
		{"exclusion violation", pgErr("23P01"), "23P01", true},
		{"numeric out of range", pgErr("22003"), "22003", true},
		{"invalid text representation", pgErr("22P02"), "22P02", true},
		{"string too long", pgErr("22001"), "22001", true},
		{"invalid datetime", pgErr("22007"), "22007", true},
		{"NUL in text", pgErr("22021"), "22021", true},
		{"cardinality: row affected twice", pgErr("21000"), "21000", true},
		{"undefined column (dropped after queueing)", pgErr("42703"), "42703", true},
		{"undefined table", pgErr("42P01"), "42P01", true},
		{"syntax error", pgErr("42601"), "42601", true},
		{"datatype mismatch", pgErr("42804"), "42804", true},
		{"generated column written", pgErr("428C9"), "428C9", true},
		{"feature not supported", pgErr("0A000"), "0A000", true},
		{"trigger raised", pgErr("P0001"), "P0001", true},
		{"check option", pgErr("44000"), "44000", true},
		{"index row too large", pgErr("54000"), "54000", true},
		{"missing row", fmt.Errorf("update: %w", store.ErrMissingRow), "", true},
		{"wrapped permanent", fmt.Errorf("operation 2: %w", pgErr("23505")), "23505", true},

		// Transient: the database or the way to it.
		{"connection exception", pgErr("08006"), "08006", false},
		{"connection failure", pgErr("08001"), "08001", false},
		{"serialization failure", pgErr("40001"), "40001", false},
		{"deadlock", pgErr("40P01"), "40P01", false},
		{"lock not available", pgErr("55P03"), "55P03", false},
		{"object in use", pgErr("55006"), "55006", false},
		{"admin shutdown", pgErr("57P01"), "57P01", false},
		{"crash shutdown", pgErr("57P02"), "57P02", false},
		{"cannot connect now", pgErr("57P03"), "57P03", false},
		{"query canceled", pgErr("57014"), "57014", false},
		{"too many connections", pgErr("53300"), "53300", false},
		{"disk full", pgErr("53100"), "53100", false},
		{"out of memory", pgErr("53200"), "53200", false},
		{"read-only transaction (demoted primary)", pgErr("25006"), "25006", false},
		{"io error", pgErr("58030"), "58030", false},
		{"internal error", pgErr("XX000"), "XX000", false},
		{"insufficient privilege", pgErr("42501"), "42501", false},
		{"invalid password", pgErr("28P01"), "28P01", false},
		{"database does not exist", pgErr("3D000"), "3D000", false},
		{"network error", netErr, "", false},
		{"wrapped network error", fmt.Errorf("apply batch: %w", netErr), "", false},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "", false},
		{"unexpected EOF", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), "", false},
		{"EOF", io.EOF, "", false},
		{"closed", net.ErrClosed, "", false},
		{"connect error", &pgconn.ConnectError{}, "", false},
		{"context canceled", context.Canceled, "", false},
		{"deadline exceeded", fmt.Errorf("x: %w", context.DeadlineExceeded), "", false},
		{"unknown error", errors.New("something else"), "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, permanent := classify(c.err)
			if code != c.code || permanent != c.permanent {
				t.Errorf("classify(%v) = %q, %v; want %q, %v", c.err, code, permanent, c.code, c.permanent)
			}
		})
	}
}

func TestJSONBSafe(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		`{"a":"x"}`:              `{"a":"x"}`,
		`{"a":"\u0000"}`:         `{"a":"\ufffd"}`,
		`{"a":"x\u0000y\u0000"}`: `{"a":"x\ufffdy\ufffd"}`,
		`{"a":"\\u0000"}`:        `{"a":"\\u0000"}`, // a backslash, then the text u0000
		`{"a":"\\\u0000"}`:       `{"a":"\\\ufffd"}`,
		`{"a":"\u00001"}`:        `{"a":"\ufffd1"}`,
	}
	for in, want := range cases {
		if got := string(jsonbSafe([]byte(in))); got != want {
			t.Errorf("jsonbSafe(%s) = %s, want %s", in, got, want)
		}
	}
}
