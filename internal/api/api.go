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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	// RateLimit bounds each client's writes (zero: no limit).
	RateLimit RateLimit
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
	events  *events.Hub  // nil without Config.Events
}

// New returns the API over a gateway and a dead-letter queue.
func New(gw *gateway.Gateway, dlq *deadletter.Queue, health Health, cfg Config, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{gw: gw, dlq: dlq, health: health, logger: logger, mux: http.NewServeMux(), start: time.Now(), limiter: newLimiter(cfg.RateLimit), extra: cfg.Stats, events: cfg.Events}
	s.refused.logger = logger
	if cfg.Metrics != nil {
		s.metrics = newHTTPMetrics(cfg.Metrics)
	}
	s.routes()
	return s
}

// Handle mounts another handler (the telemetry lane, /metrics) on the
// API's mux, timed like the API's own routes.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.metrics.observe(pattern, h))
}

func (s *Server) routes() {
	h := func(pattern string, fn handlerFunc) { s.Handle(pattern, s.wrap(fn)) }
	h("POST /v1/transactions", s.limitWrites(s.postTransaction))
	h("GET /v1/transactions/{id}", s.getTransaction)
	h("GET /v1/tables", s.listTables)
	h("POST /v1/tables/{table}", s.limitWrites(s.insertRow))
	h("GET /v1/tables/{table}", s.listRows)
	h("GET /v1/tables/{table}/{id}", s.getRow)
	h("PATCH /v1/tables/{table}/{id}", s.limitWrites(s.updateRow))
	h("DELETE /v1/tables/{table}/{id}", s.limitWrites(s.deleteRow))
	h("GET /v1/stats", s.stats)
	h("GET /v1/events", s.subscribeEvents)
	h("GET /v1/dlq", s.listDeadLetters)
	h("GET /v1/dlq/{id}", s.getDeadLetter)
	h("POST /v1/dlq/{id}/retry", s.retryDeadLetter)
	h("POST /v1/dlq/retry", s.retryDeadLetters)
	h("DELETE /v1/dlq/{id}", s.dropDeadLetter)
	h("POST /write", s.limitWrites(s.write))
	h("GET /read/{key}", s.read)
	h("GET /stats", s.seedStats)
	h("GET /health", s.healthz)
	h("GET /readyz", s.readyz)
	s.Handle("/", s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return &httpError{status: http.StatusNotFound, msg: fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)}
	}))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

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
	}
	return http.StatusBadRequest
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client may have gone; nothing to do about it
}

// decode reads a JSON body into v: JSON media type, size limit, numbers kept
// exact, unknown fields refused where strict.
func decode(w http.ResponseWriter, r *http.Request, v any, strict bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return errorf(http.StatusUnsupportedMediaType, "Content-Type must be application/json, not %q", ct)
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
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
