package telemetry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/spoolgw/spool/internal/jsonval"
	"github.com/spoolgw/spool/internal/schema"
)

// Routes mounts the telemetry routes on mux:
//
//	POST /v1/ingest/{table}   samples → 202 {"accepted", "dropped"}
//	GET  /v1/ingest/status    every lane's ring and writer figures
//	GET  /api/buffer/status   the default lane's ring, in the seed's shape
//	GET  /api/buffer/health   200 healthy, 503 degraded or unhealthy, with a reason
func (s *Service) Routes(mux Mux) {
	mux.Handle("POST /v1/ingest/{table}", s.IngestHandler())
	mux.Handle("GET /v1/ingest/status", s.StatusHandler())
	mux.Handle("GET /api/buffer/status", s.BufferStatusHandler())
	mux.Handle("GET /api/buffer/health", s.HealthHandler())
}

// Mux is where Routes mounts the handlers: an *http.ServeMux, or spool's
// API server.
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// IngestHandler serves POST /v1/ingest/{table}.
func (s *Service) IngestHandler() http.Handler { return s.wrap(s.ingest) }

// StatusHandler serves GET /v1/ingest/status.
func (s *Service) StatusHandler() http.Handler {
	return s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		writeJSON(w, http.StatusOK, map[string]any{"lanes": s.Status()})
		return nil
	})
}

// BufferStatusHandler serves GET /api/buffer/status.
func (s *Service) BufferStatusHandler() http.Handler {
	return s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		if s.def == nil {
			return &httpError{status: http.StatusNotFound, msg: "no telemetry lane is configured (--telemetry-table)"}
		}
		writeJSON(w, http.StatusOK, s.def.ring.Stats())
		return nil
	})
}

// HealthHandler serves GET /api/buffer/health.
func (s *Service) HealthHandler() http.Handler {
	return s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		h := s.Health()
		status := http.StatusOK
		if h.Status != "healthy" {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, h)
		return nil
	})
}

// ingest takes a JSON array of row objects, or NDJSON (one row object per
// line), for one table's lane.
func (s *Service) ingest(w http.ResponseWriter, r *http.Request) error {
	table := r.PathValue("table")
	if s.byName[table] == nil {
		return fmt.Errorf("%w %q", ErrUnknownLane, table)
	}
	// The media type is required: a body a browser may post across
	// origins without asking (a form, text/plain) is refused.
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || !ingestType(mt) {
		return &httpError{status: http.StatusUnsupportedMediaType,
			msg: fmt.Sprintf("Content-Type must be application/json (an array of rows) or application/x-ndjson (a row per line), not %q", ct)}
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	rows, err := decodeRows(body, s.cfg.MaxRequestRows)
	if err != nil {
		return err
	}
	rc, err := s.Ingest(table, rows)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, rc)
	return nil
}

func ingestType(mt string) bool {
	switch mt {
	case "application/json", "application/x-ndjson", "application/ndjson", "application/jsonl",
		"application/x-jsonlines", "application/jsonlines":
		return true
	}
	return strings.HasSuffix(mt, "+json")
}

// decodeRows reads a JSON array of objects, or a stream of objects
// separated by white space (NDJSON), keeping numbers exact. It reads the
// body token by token (jsontext, jsonval), and accepts what encoding/json
// does: a name an object repeats (the last wins), invalid UTF-8 (as
// U+FFFD).
func decodeRows(body io.Reader, maxRows int) ([]map[string]any, error) {
	dec := jsontext.NewDecoder(body, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	var rows []map[string]any
	// next reads the next row; at the end of the body (or of what it
	// holds next, for an error) PeekKind is 0.
	next := func() error {
		v, err := jsonval.Read(dec)
		if err != nil {
			return malformed(err, len(rows))
		}
		row, ok := v.(map[string]any)
		if !ok {
			return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("row %d: must be a JSON object, not %s", len(rows), jsonKind(v)),
				extra: map[string]any{"row": len(rows)}}
		}
		if len(rows) == maxRows {
			return &httpError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("more than %d rows in one request; send smaller batches", maxRows)}
		}
		rows = append(rows, row)
		return nil
	}
	// end reads the end of the body: nothing more may follow.
	end := func(row int) error {
		_, err := dec.ReadToken()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err == nil:
			err = errors.New("more than one JSON value")
		}
		return malformed(err, row)
	}
	if dec.PeekKind() == '[' {
		if _, err := dec.ReadToken(); err != nil {
			return nil, malformed(err, 0)
		}
		for dec.PeekKind() != ']' {
			if err := next(); err != nil {
				return nil, err
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, malformed(err, len(rows))
		}
		if err := end(-1); err != nil {
			return nil, err
		}
	} else {
		for dec.PeekKind() != 0 {
			if err := next(); err != nil {
				return nil, err
			}
		}
		if err := end(len(rows)); err != nil {
			return nil, err
		}
	}
	if len(rows) == 0 {
		return nil, &httpError{status: http.StatusBadRequest, msg: "no rows: send a JSON array of row objects, or one row object per line"}
	}
	return rows, nil
}

// malformed is the error of a body that is not JSON: a 413 if the size
// limit cut it, else a 400 naming the row it reached (-1: none).
func malformed(err error, row int) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	he := &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("malformed JSON body: %v", err)}
	if row >= 0 {
		he.msg = fmt.Sprintf("row %d: malformed JSON: %v", row, err)
		he.extra = map[string]any{"row": row}
	}
	return he
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	}
	return "an object"
}

// httpError is an error with the status and message a client gets.
type httpError struct {
	status int
	msg    string
	extra  map[string]any
}

func (e *httpError) Error() string { return e.msg }

// wrap turns a handler's error into a JSON response {"error": "..."} the
// way internal/api does: a 4xx names the problem, an internal error goes
// only to the log.
func (s *Service) wrap(fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := fn(w, r)
		if err == nil {
			return
		}
		body := map[string]any{}
		status := http.StatusInternalServerError
		var he *httpError
		var re *RowError
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &he):
			status, body["error"] = he.status, he.msg
			for k, v := range he.extra {
				body[k] = v
			}
		case errors.As(err, &re):
			status, body["error"], body["row"] = http.StatusBadRequest, re.Error(), re.Row
		case errors.As(err, &mbe):
			status, body["error"] = http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)
		case errors.Is(err, ErrUnknownLane), errors.Is(err, schema.ErrUnknownTable):
			status, body["error"] = http.StatusNotFound, err.Error()
		case errors.Is(err, ErrNotRunning):
			status, body["error"] = http.StatusServiceUnavailable, "telemetry intake is not running; retry later"
			w.Header().Set("Retry-After", "1")
		default:
			body["error"] = "internal error"
			s.cfg.Logger.Error("telemetry request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeJSON(w, status, body)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may have gone; nothing to do about it
}
