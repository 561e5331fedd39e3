// Package poll waits in tests for an asynchronous outcome: it asks for
// the outcome again and again until it holds or a deadline passes, and
// then fails the test naming what it waited for. It is the one way spool's
// tests wait for something to happen; a fixed sleep either wastes time or,
// on a loaded machine, is too short.
//
// Only _test.go files import it. Call it from the test's own goroutine:
// it ends the test with t.Fatalf.
package poll

import (
	"testing"
	"time"
)

// MaxInterval bounds the wait between two polls. Polls start at
// MinInterval and double up to it, so a quick outcome is seen at once and
// a slow one costs a shared machine little: at most one check per 20 ms.
const (
	MinInterval = time.Millisecond
	MaxInterval = 20 * time.Millisecond
)

// Until calls cond until it returns true. If within passes first, it
// fails t, saying it waited within for what ("the log drained").
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	UntilNil(t, within, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// UntilNil calls check until it returns nil. If within passes first, it
// fails t, saying it waited within for what and the last error check
// returned: why the outcome had not come.
func UntilNil(t testing.TB, within time.Duration, what string, check func() error) {
	t.Helper()
	if err := Wait(within, check); err != nil {
		if err == errNotYet {
			t.Fatalf("waited %v for %s: not yet", within, what)
		}
		t.Fatalf("waited %v for %s: %v", within, what, err)
	}
}

// Wait calls check until it returns nil, or within passes; it then
// returns check's last error. It is UntilNil for a caller that has no t
// (a TestMain) or that decides itself what a timeout means.
func Wait(within time.Duration, check func() error) error {
	deadline := time.Now().Add(within)
	interval := MinInterval
	for {
		err := check()
		if err == nil || !time.Now().Before(deadline) {
			return err
		}
		time.Sleep(min(interval, time.Until(deadline)))
		interval = min(2*interval, MaxInterval)
	}
}

type notYet struct{}

func (notYet) Error() string { return "not yet" }

var errNotYet error = notYet{}
