// Package api is spool's HTTP interface: the transaction and table routes,
// transaction status, and the seed's key-value endpoints.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoolgw/spool/internal/auth"
	"github.com/spoolgw/spool/internal/deadletter"
	"github.com/spoolgw/spool/internal/events"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// Limits on requests.
const (
	// MaxBodyBytes bounds a request body: a transaction of MaxOperations
	// small rows fits; bulk loads belong on the telemetry lane.
	MaxBodyBytes = 1 << 20
	// MaxWait bounds ?wait=…&timeout=… so a request cannot hold a
	// connection for long.
	MaxWait = 60 * time.Second
)

// Health is what the api asks about the parts behind it.
type Health interface {
	// Healthy returns nil, or what is wrong.
	Healthy(ctx context.Context) error
	// WorkerActive reports whether the applier is running.
	WorkerActive() bool
}

// Config configures the API.
type Config struct {
	// Auth tells who a request comes from; nil serves every request as
	// auth.Anonymous, which holds every scope.
	Auth *auth.Authenticator
	// RateLimit bounds each principal's requests that change something
	// (zero: no limit).
	RateLimit RateLimit
	// AllowedHosts are the names the Host header may carry (port
	// ignored); empty or "*" allows any. A spool on loopback lists its
	// own, so that a DNS-rebound page cannot reach it.
	AllowedHosts []string
	// CORSOrigins are the origins (scheme://host[:port]) whose pages may
	// call the API from a browser; requests that change something from
	// any other origin are refused.
	CORSOrigins []string
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// (for the rate limit without authentication); none by default.
	TrustedProxies []netip.Prefix
	// BodyTimeout bounds the reading of a request's body, WriteTimeout the
	// writing of its response (a ?wait= adds its wait); 0 means
	// DefaultBodyTimeout and DefaultWriteTimeout.
	BodyTimeout, WriteTimeout time.Duration
	// MaxWaits bounds the requests waiting at once for a state (?wait=);
	// more get 503. 0 means DefaultMaxWaits.
	MaxWaits int
	// Stats adds sections to GET /v1/stats (replication, telemetry).
	Stats map[string]func() any
	// Metrics, when set, gets the request durations by route and status
	// (spool_http_request_duration_seconds); serve it with GET /metrics.
	// New panics if they are registered there already.
	Metrics prometheus.Registerer
	// Events, when set, serves live events (GET /v1/events); without it
	// the route answers 404.
	Events *events.Hub
}

// Server serves spool's HTTP API.
type Server struct {
	gw      *gateway.Gateway
	dlq     *deadletter.Queue
	health  Health
	logger  *slog.Logger
	mux     *http.ServeMux
	limiter *limiter
	extra   map[string]func() any
	start   time.Time
	refused refusals
	metrics *httpMetrics // nil without Config.Metrics
	auth    *auth.Authenticator
	front   *front
	waits   chan struct{} // a slot per request waiting for a state
	// declared is the route table by pattern (routes.go).
	declared map[string]route
	events   *events.Hub // nil without Config.Events
}

// New returns the API over a gateway and a dead-letter queue. It panics
// on a Config that Validate refuses.
func New(gw *gateway.Gateway, dlq *deadletter.Queue, health Health, cfg Config, logger *slog.Logger) *Server {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxWaits == 0 {
		cfg.MaxWaits = DefaultMaxWaits
	}
	s := &Server{gw: gw, dlq: dlq, health: health, logger: logger, mux: http.NewServeMux(), start: time.Now(), limiter: newLimiter(cfg.RateLimit), extra: cfg.Stats, events: cfg.Events,
		auth: cfg.Auth, front: newFront(cfg), waits: make(chan struct{}, cfg.MaxWaits)}
	s.refused.logger = logger
	if cfg.Metrics != nil {
		s.metrics = newHTTPMetrics(cfg.Metrics)
	}
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.front.serve(w, r, s.mux) }

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// httpError is an error with the status and message a client gets.
type httpError struct {
	status int
	msg    string
	extra  map[string]any
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, a ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, a...)}
}

// wrap turns a handler's error into a response: the client gets a status
// and a message naming the problem; internal errors go only to the log.
func (s *Server) wrap(fn handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := fn(w, r)
		if err == nil {
			if r.Method != http.MethodGet {
				s.refused.accepted()
			}
			return
		}
		body := map[string]any{}
		status := http.StatusInternalServerError
		var he *httpError
		var ie *txn.InputError
		var qe *query.Error
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &he):
			status, body["error"] = he.status, he.msg
			for k, v := range he.extra {
				body[k] = v
			}
		case errors.As(err, &ie):
			status, body["error"] = inputStatus(ie.Kind), ie.Msg
			if ie.Op >= 0 {
				body["operation"] = ie.Op
			}
		case errors.As(err, &qe):
			status, body["error"] = http.StatusBadRequest, qe.Msg
		case errors.As(err, &mbe):
			status, body["error"] = http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)
		case auth.Status(err) != 0:
			auth.WriteError(w, err)
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			status, body["error"] = http.StatusRequestTimeout, "request body not received in time"
			w.Header().Set("Connection", "close")
		case errors.Is(err, schema.ErrUnknownTable):
			status, body["error"] = http.StatusNotFound, err.Error()
		case errors.Is(err, gateway.ErrBackpressure):
			status, body["error"] = http.StatusServiceUnavailable, "spool is full: "+err.Error()+"; retry later"
			w.Header().Set("Retry-After", "1")
		case errors.Is(err, gateway.ErrUnavailable):
			status, body["error"] = http.StatusServiceUnavailable, "spool cannot store writes right now; retry later"
			w.Header().Set("Retry-After", "1")
			s.refused.refused(r.URL.Path, err)
		case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
			return // the client went away
		case errors.Is(err, query.ErrDatabase):
			status, body["error"] = http.StatusServiceUnavailable, "the database cannot be read right now (a row whose insert or delete is still buffered can be); retry later"
			w.Header().Set("Retry-After", "1")
			s.logger.Debug("read failed: the database did not answer", "method", r.Method, "path", r.URL.Path, "err", err)
		case errors.Is(err, query.ErrOverlay):
			status, body["error"] = http.StatusServiceUnavailable, "buffered writes cannot be read right now (the log is unreachable); retry later"
			w.Header().Set("Retry-After", "1")
			s.logger.Debug("read failed: the overlay did not answer", "method", r.Method, "path", r.URL.Path, "err", err)
		default:
			body["error"] = "internal error"
			s.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeJSON(w, status, body)
	})
}

// inputStatus is the HTTP status of a refused request of kind k.
func inputStatus(k error) int {
	switch {
	case errors.Is(k, txn.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(k, txn.ErrConflict):
		return http.StatusConflict
	case errors.Is(k, txn.ErrUnsupported):
		return http.StatusNotImplemented
	case errors.Is(k, gateway.ErrKeyReused):
		return http.StatusUnprocessableEntity
	}
	return http.StatusBadRequest
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client may have gone; nothing to do about it
}

// decode reads a JSON body into v: JSON media type (required: a form a
// browser may post across origins without asking is not JSON), size
// limit, numbers kept exact, unknown fields refused where strict. A body
// not received in time is os.ErrDeadlineExceeded.
func decode(w http.ResponseWriter, r *http.Request, v any, strict bool) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return errorf(http.StatusUnsupportedMediaType, "Content-Type must be application/json, not %q", ct)
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		return errorf(http.StatusBadRequest, "malformed JSON body: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "malformed JSON body: more than one JSON value")
	}
	return nil
}

// WithChecks adds readiness checks to a Health: it is healthy when h is and
// every check passes (the replicas keep up, say).
func WithChecks(h Health, checks ...func(context.Context) error) Health {
	return checked{h, checks}
}

type checked struct {
	Health
	checks []func(context.Context) error
}

func (c checked) Healthy(ctx context.Context) error {
	if err := c.Health.Healthy(ctx); err != nil {
		return err
	}
	for _, check := range c.checks {
		if err := check(ctx); err != nil {
			return err
		}
	}
	return nil
}
