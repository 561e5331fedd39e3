package status

import (
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/txn"
)

// Latency is the time from an id's queued time to applied, over the
// transactions applied in the last LatencyWindow; failed ones do not count.
func TestLatencyPercentiles(t *testing.T) {
	tr := New(1000)
	if l := tr.Latency(time.Now()); l != (Latency{}) {
		t.Fatalf("Latency with nothing applied = %+v, want zero", l)
	}
	for i := range 100 {
		id := txn.NewID()
		tr.Advance(id, txn.Replicated, txn.IDTime(id).Add(time.Duration(i+1)*time.Millisecond), 0, nil, "")
	}
	tr.Advance(txn.NewID(), txn.Failed, time.Now().Add(time.Hour), 0, nil, "")
	l := tr.Latency(time.Now())
	if l.Samples != 100 {
		t.Fatalf("Samples = %d, want 100", l.Samples)
	}
	if l.P50 != 0.050 || l.P99 != 0.099 {
		t.Fatalf("p50, p99 = %v, %v; want 0.05, 0.099", l.P50, l.P99)
	}
	if l := tr.Latency(time.Now().Add(2 * LatencyWindow)); l.Samples != 0 {
		t.Fatalf("Latency a window later = %+v, want no samples", l)
	}
}

// The window keeps the latest LatencySamples.
func TestLatencyBounded(t *testing.T) {
	var w latencyWindow
	now := time.Now()
	for i := range LatencySamples + 10 {
		w.add(now, time.Duration(i))
	}
	if len(w.d) != LatencySamples {
		t.Fatalf("window holds %d, want %d", len(w.d), LatencySamples)
	}
	if l := w.percentiles(now); l.Samples != LatencySamples {
		t.Fatalf("Samples = %d, want %d", l.Samples, LatencySamples)
	}
}
