package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/spoolgw/spool/internal/leakcheck"
	"github.com/spoolgw/spool/internal/testservers"
)

// benchBinary is spool-bench, built once for the tests with spool beside
// it, as make build places them.
var benchBinary string

// serversErr says why redis-server and PostgreSQL are missing, if they
// are: the --servers runs start their own.
var serversErr error

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spool-bench-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	benchBinary = filepath.Join(dir, "spool-bench")
	for _, b := range []struct{ out, pkg string }{{benchBinary, "."}, {filepath.Join(dir, "spool"), "../spool"}} {
		if out, err := exec.Command("go", "build", "-o", b.out, b.pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.pkg, err, out)
			os.Exit(1)
		}
	}
	serversErr = testservers.Installed()
	leakcheck.Main(m, func() { os.RemoveAll(dir) })
}
