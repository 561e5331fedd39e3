package poll_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/poll"
)

func TestUntil(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	poll.Until(t, 5*time.Second, "three increments", func() bool { return n.Load() == 3 })
}

// TestWaitReturnsLastError: past the deadline, Wait returns what check
// said last, having asked at least once and not long after the deadline.
func TestWaitReturnsLastError(t *testing.T) {
	t.Parallel()
	calls := 0
	start := time.Now()
	err := poll.Wait(30*time.Millisecond, func() error {
		calls++
		return fmt.Errorf("call %d", calls)
	})
	if err == nil || err.Error() != fmt.Sprintf("call %d", calls) || calls < 2 {
		t.Errorf("Wait: %v after %d calls, want the last call's error", err, calls)
	}
	if took := time.Since(start); took > 30*time.Millisecond+poll.MaxInterval+time.Second {
		t.Errorf("Wait took %v for a 30ms deadline", took)
	}
	if err := poll.Wait(0, func() error { return nil }); err != nil {
		t.Errorf("Wait with a check that holds at once: %v", err)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
}

// TestFailureSaysWhat: a timeout names what was awaited, and why not yet.
func TestFailureSaysWhat(t *testing.T) {
	t.Parallel()
	r := &fatalRecorder{TB: t}
	poll.UntilNil(r, 5*time.Millisecond, "the log drained", func() error { return errors.New("3 entries left") })
	if !strings.Contains(r.msg, "the log drained") || !strings.Contains(r.msg, "3 entries left") {
		t.Errorf("failure %q names neither what nor why", r.msg)
	}
	r.msg = ""
	poll.Until(r, 5*time.Millisecond, "the lease taken", func() bool { return false })
	if !strings.Contains(r.msg, "the lease taken") {
		t.Errorf("failure %q does not name what", r.msg)
	}
}
