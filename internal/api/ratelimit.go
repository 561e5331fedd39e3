package api

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RateLimit bounds the writes of each client (by remote address): Rate
// writes per second on average, bursts of up to Burst. Zero Rate means no
// limit.
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

// allow takes a token for the client of r, or says how long until one is
// there.
func (l *limiter) allow(r *http.Request, now time.Time) (bool, time.Duration) {
	if l == nil || l.cfg.Rate <= 0 {
		return true, 0
	}
	client, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		client = r.RemoteAddr
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

// limitWrites answers 429 with Retry-After to a client over its rate.
func (s *Server) limitWrites(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if ok, wait := s.limiter.allow(r, time.Now()); !ok {
			secs := max(1, int(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			return &httpError{status: http.StatusTooManyRequests, msg: "rate limit: this client writes more than " +
				strconv.FormatFloat(s.limiter.cfg.Rate, 'g', -1, 64) + " per second; retry after " + strconv.Itoa(secs) + "s"}
		}
		return fn(w, r)
	}
}
