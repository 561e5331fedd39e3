package filelog

import (
	"sync/atomic"
	"time"
)

// SyncBounds are the upper bounds of the buckets Syncs counts fdatasyncs
// in: finer around the fraction of a millisecond a sync takes on a quiet
// disk, up to the stalls of a busy one.
var SyncBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	750 * time.Microsecond, time.Millisecond, 1500 * time.Microsecond, 2 * time.Millisecond,
	3 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, time.Second,
}

// SyncHistogram is how long the log's fdatasyncs took since it opened:
// every acknowledged append waited for one.
type SyncHistogram struct {
	Count uint64
	Sum   time.Duration
	// Cumulative[i] counts the syncs that took at most SyncBounds[i].
	Cumulative []uint64
}

// syncTimes counts sync durations in SyncBounds' buckets, lock-free: the
// writer adds, a scrape reads.
type syncTimes struct {
	buckets [len(SyncBounds) + 1]atomic.Uint64 // one per bound, and one past the last
	sum     atomic.Int64
}

func (s *syncTimes) add(d time.Duration) {
	i := 0
	for i < len(SyncBounds) && d > SyncBounds[i] {
		i++
	}
	s.buckets[i].Add(1)
	s.sum.Add(int64(d))
}

// Syncs returns how long the log's fdatasyncs took since it opened.
func (l *Log) Syncs() SyncHistogram {
	h := SyncHistogram{Sum: time.Duration(l.syncTimes.sum.Load()), Cumulative: make([]uint64, len(SyncBounds))}
	for i := range l.syncTimes.buckets {
		h.Count += l.syncTimes.buckets[i].Load()
		if i < len(SyncBounds) {
			h.Cumulative[i] = h.Count
		}
	}
	return h
}
