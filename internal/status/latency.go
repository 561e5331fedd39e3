package status

import (
	"slices"
	"time"
)

// The window of Tracker.Latency.
const (
	// LatencyWindow is the span the percentiles cover: long enough to
	// hold a few thousand transactions at a modest rate, short enough
	// that a dashboard sees a slowdown within a minute.
	LatencyWindow = time.Minute
	// LatencySamples bounds the transactions kept for them (the latest):
	// 4096 durations are 64 KiB, and a percentile of them is within a
	// fraction of a percent of the true one.
	LatencySamples = 4096
)

// Latency is the time from acknowledgement to applied of recent
// transactions. The queued time is the one in the transaction's id
// (UUIDv7: to the millisecond).
type Latency struct {
	P50     float64 `json:"p50_seconds"`
	P99     float64 `json:"p99_seconds"`
	Samples int     `json:"samples"`
}

// latencyWindow is a ring of the last LatencySamples durations with the
// time each was taken.
type latencyWindow struct {
	d    []time.Duration
	at   []time.Time
	next int
}

func (w *latencyWindow) add(at time.Time, d time.Duration) {
	if len(w.d) < LatencySamples {
		w.d, w.at = append(w.d, d), append(w.at, at)
		return
	}
	w.d[w.next], w.at[w.next] = d, at
	w.next = (w.next + 1) % LatencySamples
}

func (w *latencyWindow) percentiles(now time.Time) Latency {
	recent := make([]time.Duration, 0, len(w.d))
	for i, d := range w.d {
		if now.Sub(w.at[i]) <= LatencyWindow {
			recent = append(recent, max(d, 0))
		}
	}
	if len(recent) == 0 {
		return Latency{}
	}
	slices.Sort(recent)
	rank := func(q float64) float64 {
		i := int(q*float64(len(recent)) + 0.5)
		return recent[min(max(i-1, 0), len(recent)-1)].Seconds()
	}
	return Latency{P50: rank(0.50), P99: rank(0.99), Samples: len(recent)}
}
