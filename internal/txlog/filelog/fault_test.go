package filelog

import (
	"errors"
	"os"
	"path/filepath"
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

// TestNoSpaceIsRefusedNotFatal fills the disk in the middle of a group's
// write: part of it reaches the file, then ENOSPC. That group is refused
// with ErrNoSpace (not ErrFailed), what reached the file is cut off, Err
// says the disk is full, and once there is space again appends go on with
// the refused group's sequence numbers, as if it had never been tried.
func TestNoSpaceIsRefusedNotFatal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logger, logs := testLogger()
	l := openLog(t, dir, Config{}, logger)
	durable := appendN(t, l, 3)
	seg := filepath.Join(dir, l.w.seg.name)
	before := fileSize(t, seg)

	full := true
	l.w.write = func(f *os.File, b []byte) (int, error) { // ordered by the next Append's send
		if !full {
			return f.Write(b)
		}
		n, _ := f.Write(b[:len(b)/2])
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	for i := range 2 {
		_, err := l.Append(t.Context(), testTx(3+i))
		if !errors.Is(err, ErrNoSpace) || errors.Is(err, ErrFailed) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("append %d on a full disk: %v, want ErrNoSpace wrapping ENOSPC, not ErrFailed", i, err)
		}
	}
	if err := l.Err(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Err on a full disk: %v, want ErrNoSpace", err)
	}
	if got := fileSize(t, seg); got != before {
		t.Fatalf("segment is %d bytes after the refused writes, want %d: the partial write was not cut off", got, before)
	}
	if n := strings.Count(logs.String(), "disk full"); n != 1 {
		t.Fatalf("the full disk was logged %d times, want once:\n%s", n, logs)
	}

	full = false // space returns; the next Append's send orders this
	e, err := l.Append(t.Context(), testTx(5))
	if err != nil {
		t.Fatalf("append once space returned: %v", err)
	}
	if e.Pos != "4" {
		t.Fatalf("append once space returned at %s, want 4 (the refused ones took no number)", e.Pos)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("Err after a good append: %v", err)
	}
	closeLog(t, l)

	l = openLog(t, dir, Config{}, nil)
	got := claimN(t, l, 4)
	if want := append(positions(durable), "4"); !slices.Equal(positions(got), want) {
		t.Fatalf("after reopen claimed %v, want %v: nothing refused may come back", positions(got), want)
	}
}

// TestCheckpointFailureKeepsSegments makes the checkpoint write fail, as on
// a full disk: Ack still succeeds (the entries were applied), the depth
// drops, but no segment is deleted while the checkpoint on disk lags, so a
// restart delivers the entries again instead of finding records missing.
// The next Ack that can write the checkpoint catches up and reclaims.
func TestCheckpointFailureKeepsSegments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logger, logs := testLogger()
	// Segments of about two records: acknowledging frees whole segments.
	l := openLog(t, dir, Config{SegmentSize: 400}, logger)
	appendN(t, l, 6)
	segments := len(l.segs)
	if segments < 3 {
		t.Fatalf("%d segments for 6 records, want at least 3", segments)
	}
	write := l.checkpoint
	l.checkpoint = func(uint64) error { // Ack holds claimMu; no writer races this
		return &os.PathError{Op: "write", Path: checkpointName, Err: syscall.ENOSPC}
	}
	if err := l.Ack(t.Context(), claimN(t, l, 4)); err != nil {
		t.Fatalf("ack whose checkpoint failed: %v, want nil", err)
	}
	if d := depth(t, l); d != 2 {
		t.Fatalf("depth %d after acking 4 of 6, want 2", d)
	}
	if n := len(l.segs); n != segments {
		t.Fatalf("%d segments after an ack whose checkpoint failed, want all %d kept", n, segments)
	}
	if !strings.Contains(logs.String(), "cannot record acknowledgements") {
		t.Fatalf("the failed checkpoint was not logged:\n%s", logs)
	}
	l.checkpoint = write
	if err := l.Ack(t.Context(), claimN(t, l, 2)); err != nil {
		t.Fatalf("ack once the checkpoint can be written: %v", err)
	}
	if n := len(l.segs); n != 1 {
		t.Fatalf("%d segments after acking everything, want 1", n)
	}
	if !strings.Contains(logs.String(), "acknowledgements recorded again") {
		t.Fatalf("the recovery was not logged:\n%s", logs)
	}
	closeLog(t, l)
	l = openLog(t, dir, Config{SegmentSize: 400}, nil)
	if d := depth(t, l); d != 0 {
		t.Fatalf("depth %d after acking everything and reopening, want 0", d)
	}
}

// TestCheckpointFailureRedelivers crashes (closes) the log while its
// checkpoint lags: the entries acknowledged since come again at the reopen.
func TestCheckpointFailureRedelivers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, Config{}, nil)
	appendN(t, l, 3)
	l.checkpoint = func(uint64) error { return &os.PathError{Op: "write", Path: checkpointName, Err: syscall.ENOSPC} }
	if err := l.Ack(t.Context(), claimN(t, l, 3)); err != nil {
		t.Fatalf("ack whose checkpoint failed: %v", err)
	}
	closeLog(t, l)
	l = openLog(t, dir, Config{}, nil)
	if d := depth(t, l); d != 3 {
		t.Fatalf("depth %d after reopen, want 3: applied entries the checkpoint missed come again", d)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestCheckpointAtMostEverySecond: an Ack within checkpointEvery of the
// last checkpoint, that frees no segment, leaves the checkpoint file as it
// was, so a crash then delivers those entries again (the database skips
// them); Close writes it.
func TestCheckpointAtMostEverySecond(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, Config{}, nil)
	appendN(t, l, 10)
	claimed := claimN(t, l, 10)
	writes := 0
	write := l.checkpoint
	l.checkpoint = func(acked uint64) error { writes++; return write(acked) } // under claimMu
	for _, part := range [][]txlog.Entry{claimed[:2], claimed[2:4]} {
		if err := l.Ack(t.Context(), part); err != nil {
			t.Fatal(err)
		}
	}
	if writes != 1 {
		t.Fatalf("%d checkpoint writes for two acks in a row, want the first alone", writes)
	}
	// A crash now: the files as they are, opened elsewhere.
	crashed := t.TempDir()
	for _, name := range append(segmentFiles(t, dir), checkpointName) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if d := depth(t, openLog(t, crashed, Config{}, nil)); d != 8 {
		t.Fatalf("depth %d after a crash, want 8: the entries acked since the checkpoint come again", d)
	}
	closeLog(t, l)
	if writes != 2 {
		t.Fatalf("%d checkpoint writes after Close, want 2", writes)
	}
	if d := depth(t, openLog(t, dir, Config{}, nil)); d != 6 {
		t.Fatalf("depth %d after Close and reopen, want 6", d)
	}
}
