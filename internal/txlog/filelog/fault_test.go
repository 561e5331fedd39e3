package filelog

import (
	"errors"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/spoolgw/spool/internal/txlog"
)

// TestSyncFailureIsFatal makes fdatasync fail with EIO, as a failing disk
// does: that append and every later one fail with ErrFailed, the log never
// syncs again, and what was durable before can still be claimed.
func TestSyncFailureIsFatal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logger, logs := testLogger()
	l := openLog(t, dir, Config{}, logger)
	durable := appendN(t, l, 3)

	syncs := 0
	l.w.sync = func(f *os.File) error { // ordered by the next Append's send
		syncs++
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syscall.EIO}
	}
	_, err := l.Append(t.Context(), testTx(3))
	if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("append whose sync failed: %v, want ErrFailed wrapping EIO", err)
	}
	for i := range 3 {
		if _, err := l.Append(t.Context(), testTx(4+i)); !errors.Is(err, ErrFailed) {
			t.Fatalf("append %d after the failure: %v, want ErrFailed", i, err)
		}
	}
	if !strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Fatalf("the failure was not logged at Error level:\n%s", logs)
	}
	// Depth counts only what was durable; Claim serves it.
	if d := depth(t, l); d != 3 {
		t.Fatalf("depth %d after a failed append, want 3", d)
	}
	if got := claimN(t, l, 3); !slices.Equal(positions(got), positions(durable)) {
		t.Fatalf("claimed %v, want %v", positions(got), positions(durable))
	}
	closeLog(t, l) // waits for the writer, ordering its writes to syncs
	if syncs != 1 {
		t.Fatalf("%d syncs after the failure, want 1: the log must not retry", syncs)
	}

	// Reopened, the log works again from what is on disk.
	l = openLog(t, dir, Config{}, nil)
	if _, err := l.Append(t.Context(), testTx(9)); err != nil {
		t.Fatalf("append after reopen: %v", err)
	}
}

// TestWriteFailureIsFatal closes the segment's file descriptor under the
// writer, so its next write fails for real.
func TestWriteFailureIsFatal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, Config{}, nil)
	appendN(t, l, 2)
	// The writer is idle, waiting for the next append; the channel send
	// of that append orders this close before its write.
	if err := l.w.f.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := l.Append(t.Context(), testTx(2))
	if !errors.Is(err, ErrFailed) || !errors.Is(err, os.ErrClosed) {
		t.Fatalf("append whose write failed: %v, want ErrFailed wrapping the write error", err)
	}
	if _, err := l.Append(t.Context(), testTx(3)); !errors.Is(err, ErrFailed) {
		t.Fatalf("append after the failure: %v, want ErrFailed", err)
	}
	closeLog(t, l)
	if _, err := l.Append(t.Context(), testTx(4)); !errors.Is(err, txlog.ErrClosed) {
		t.Fatalf("append after close: %v, want txlog.ErrClosed", err)
	}
	l = openLog(t, dir, Config{}, nil)
	if d := depth(t, l); d != 2 {
		t.Fatalf("depth after reopen %d, want 2", d)
	}
	if e := appendN(t, l, 1); e[0].Pos != "3" {
		t.Fatalf("append after reopen at %s, want 3", e[0].Pos)
	}
}
