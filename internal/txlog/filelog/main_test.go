package filelog

import (
	"cmp"
	"log/slog"
	"strconv"
	"testing"

	"github.com/spoolgw/spool/internal/leakcheck"
	"github.com/spoolgw/spool/internal/syncbuf"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txlog/txlogtest"
)

// TestMain fails the package if goroutines outlive the tests: every Log
// must stop its writer on Close.
func TestMain(m *testing.M) { leakcheck.Main(m, nil) }

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
