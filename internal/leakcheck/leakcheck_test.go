package leakcheck

import (
	"strings"
	"testing"
	"time"
)

func parked(stop <-chan struct{}) { <-stop }

// TestCheck: a goroutine started after the snapshot is a leak while it
// runs, with its stack in the error, and none once it ends.
func TestCheck(t *testing.T) {
	before := running()
	stop := make(chan struct{})
	go parked(stop)
	err := Check(before, 20*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "leakcheck.parked") {
		t.Fatalf("Check with a goroutine parked: %v, want its stack", err)
	}
	close(stop)
	if err := Check(before, Grace); err != nil {
		t.Fatalf("Check once it returned: %v", err)
	}
	if err := Check(running(), 0); err != nil {
		t.Fatalf("Check of the goroutines running before: %v", err)
	}
}
