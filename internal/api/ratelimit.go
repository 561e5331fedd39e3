package api

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/spoolgw/spool/internal/auth"
)

// RateLimit bounds the requests of each principal to the routes that
// change something (writes, ingest, dead-letter retries and drops): Rate
// per second on average, bursts of up to Burst. Without authentication
// every request is the anonymous principal's, so the limit is kept per
// client address instead (Config.TrustedProxies says when
// X-Forwarded-For names it). Zero Rate means no limit.
type RateLimit struct {
	Rate  float64
	Burst int
}

// maxClients bounds the limiter's table; past it, clients whose buckets
// are full again (idle ones) are forgotten.
const maxClients = 10_000

// limiter is a token bucket per client.
type limiter struct {
	cfg     RateLimit
	mu      sync.Mutex
	clients map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(cfg RateLimit) *limiter {
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, int(math.Ceil(cfg.Rate)))
	}
	return &limiter{cfg: cfg, clients: make(map[string]*bucket)}
}

// allow takes a token for client, or says how long until one is there.
func (l *limiter) allow(client string, now time.Time) (bool, time.Duration) {
	if l == nil || l.cfg.Rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= maxClients {
			l.forgetIdle(now)
		}
		b = &bucket{tokens: float64(l.cfg.Burst), last: now}
		l.clients[client] = b
	}
	b.tokens = min(float64(l.cfg.Burst), b.tokens+now.Sub(b.last).Seconds()*l.cfg.Rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.cfg.Rate * float64(time.Second))
}

func (l *limiter) forgetIdle(now time.Time) {
	for k, b := range l.clients {
		if b.tokens+now.Sub(b.last).Seconds()*l.cfg.Rate >= float64(l.cfg.Burst) {
			delete(l.clients, k)
		}
	}
}

// limitKey is whom the rate limit counts r against: its principal, or
// its client's address when authentication is off.
func (s *Server) limitKey(r *http.Request, p auth.Principal) string {
	if p.Source != auth.SourceNone {
		return p.String()
	}
	return "addr:" + s.clientAddr(r)
}

// tooMany answers 429 with Retry-After to a principal over its rate.
func (s *Server) tooMany(w http.ResponseWriter, wait time.Duration) {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": "rate limit: more than " +
		strconv.FormatFloat(s.limiter.cfg.Rate, 'g', -1, 64) + " requests per second that change something; retry after " + strconv.Itoa(secs) + "s"})
}
