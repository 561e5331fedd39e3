package filelog

import (
	"cmp"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/syncbuf"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txlog/txlogtest"
)

// TestMain fails the package if goroutines outlive the tests: every Log
// must stop its writer on Close.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 && !fuzzing() {
		if err := checkGoroutines(before); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// fuzzing reports whether the test binary runs the fuzzing engine, whose
// own goroutines (signal handling, workers) outlive the tests.
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	w := flag.Lookup("test.fuzzworker")
	return (f != nil && f.Value.String() != "") || (w != nil && w.Value.String() == "true")
}

// checkGoroutines polls until no more goroutines run than before, for up to
// a few seconds (goroutines that returned take a moment to be reaped).
func checkGoroutines(before int) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return nil
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			return fmt.Errorf("goroutine leak: %d goroutines running, %d before the tests\n%s", n, before, buf)
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling, not waiting for an outcome
	}
}

func comparePos(a, b string) int {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	if errA != nil || errB != nil {
		return cmp.Compare(a, b)
	}
	return cmp.Compare(x, y)
}

func TestConformance(t *testing.T) {
	t.Parallel()
	txlogtest.Run(t, txlogtest.Harness{
		New: func(t testing.TB) func() (txlog.Log, error) {
			dir := t.TempDir()
			return func() (txlog.Log, error) { return Open(dir, Config{}, nil) }
		},
		ComparePos: comparePos,
	})
}

// TestConformanceSmallSegments runs the suite with segments so small that
// nearly every group commit starts a new one.
func TestConformanceSmallSegments(t *testing.T) {
	t.Parallel()
	txlogtest.Run(t, txlogtest.Harness{
		New: func(t testing.TB) func() (txlog.Log, error) {
			dir := t.TempDir()
			return func() (txlog.Log, error) { return Open(dir, Config{SegmentSize: 600}, nil) }
		},
		ComparePos: comparePos,
	})
}

// testLogger returns a logger writing JSON lines into the returned buffer.
func testLogger() (*slog.Logger, *syncbuf.Buffer) {
	b := &syncbuf.Buffer{}
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}
