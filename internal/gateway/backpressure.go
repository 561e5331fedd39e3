package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// BackpressureRefresh is how often intake rereads the log's size: often
// enough that a burst cannot overshoot the high mark by much, rarely enough
// that a Redis log is not asked on every write.
const BackpressureRefresh = 50 * time.Millisecond

// Backpressure is when intake stops: above High bytes in the log writes are
// refused, and they are taken again once the log is below Low (hysteresis,
// so intake does not flap at the mark). Zero High means no limit.
type Backpressure struct {
	High, Low int64
}

// ErrBackpressure is returned while the log is over its high mark.
var ErrBackpressure = errors.New("log over its high mark")

// pressure is the intake's view of the log size.
type pressure struct {
	cfg     Backpressure
	mu      sync.Mutex
	checked time.Time
	full    bool
	bytes   int64
}

// check returns ErrBackpressure (wrapped with the figures) while the log is
// over its mark.
func (g *Gateway) checkPressure(ctx context.Context) error {
	p := &g.pressure
	if p.cfg.High <= 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.checked) >= BackpressureRefresh {
		st, err := g.log.Stats(ctx)
		if err != nil {
			return fmt.Errorf("%w: log size: %w", ErrUnavailable, err)
		}
		p.checked, p.bytes = time.Now(), st.Bytes
		switch {
		case !p.full && st.Bytes >= p.cfg.High:
			p.full = true
			g.logger.Warn("intake paused: the log is over its high mark; writes get 503 until it drains below the low mark", "bytes", st.Bytes, "high", p.cfg.High, "low", p.cfg.Low)
		case p.full && st.Bytes < p.cfg.Low:
			p.full = false
			g.logger.Info("intake resumed: the log drained below its low mark", "bytes", st.Bytes, "low", p.cfg.Low)
		}
	}
	if p.full {
		return fmt.Errorf("%w: %d bytes buffered, intake resumes below %d", ErrBackpressure, p.bytes, p.cfg.Low)
	}
	return nil
}
