// Package embedtest opens the parts of spool's embedded default for tests
// that build a pipeline over them: a SQLite store holding the example
// observatory schema, and a local log.
package embedtest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store/sqlite"
	"github.com/spoolgw/spool/internal/txlog/filelog"
)

// Parts are the embedded default's store, log and live catalog.
type Parts struct {
	Store   *sqlite.Store
	Log     *filelog.Log
	Catalog *schema.Live
}

// Open opens, in dir, the store (spool.db: migrated, and holding
// examples/observatory.sql, whose statements create only what is missing) and the local log (log/, with
// cfg), and reads the store's catalog. Both are closed when t ends; a test
// may close them sooner (to reopen dir, say): Close is safe twice.
func Open(t testing.TB, dir string, cfg filelog.Config) Parts {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "spool.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ddl, err := os.ReadFile(SchemaPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Exec(ctx, string(ddl)); err != nil {
		t.Fatal(err)
	}
	lg, err := filelog.Open(filepath.Join(dir, "log"), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	cat, err := schema.NewLive(ctx, gateway.ReadCatalog(st, nil))
	if err != nil {
		t.Fatal(err)
	}
	return Parts{Store: st, Log: lg, Catalog: cat}
}

// SchemaPath is the path of examples/observatory.sql.
func SchemaPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples", "observatory.sql")
}
