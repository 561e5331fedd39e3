package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spoolgw/spool/internal/leakcheck"
	"github.com/spoolgw/spool/internal/testservers"
)

// The throwaway PostgreSQL of the package, started once in TestMain;
// pgErr says why there is none.
var (
	pg    *testservers.Postgres
	pgErr error
)

// TestMain starts PostgreSQL for the package, and fails the package if a
// test leaves pgx goroutines behind: every store a test opens must be
// closed.
func TestMain(m *testing.M) {
	dir, err := testservers.TempDir("spool-pg-")
	if err != nil {
		pgErr = err
	} else {
		pg, pgErr = testservers.StartPostgres(dir)
	}
	leakcheck.Main(m, func() {
		if pg != nil {
			if err := pg.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}
		if dir != "" {
			os.RemoveAll(dir)
		}
	})
}

// newDatabase creates a fresh database on the primary and returns its URL.
func newDatabase(tb testing.TB) string {
	tb.Helper()
	testservers.Need(tb, pgErr)
	var b [8]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pg.PrimaryURL)
	if err != nil {
		tb.Fatalf("connect to the primary: %v", err)
	}
	defer c.Close(ctx)
	if _, err := run(ctx, c, "create database "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	url, _ := pg.DatabaseURLs(name)
	return url
}

// openStore opens a store on url; it is closed when the test ends.
func openStore(tb testing.TB, url string) *Store {
	tb.Helper()
	s, err := Open(context.Background(), url, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// connect opens a plain connection to url beside the store's; it is closed
// when the test ends.
func connect(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { c.Close(context.Background()) })
	return c
}
