package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/spoolgw/spool/internal/gateway"
)

func contextWithTimeout(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), d)
}

// The seed's endpoints, kept compatible: /write, /read/{key}, /stats,
// /health.

func (s *Server) write(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	if body.Key == "" {
		return errorf(http.StatusBadRequest, "key: must be a non-empty string")
	}
	if len(body.Value) == 0 {
		return errorf(http.StatusBadRequest, "value: missing")
	}
	// A string value is stored as its text; any other JSON value as JSON.
	value := string(body.Value)
	var str string
	if json.Unmarshal(body.Value, &str) == nil {
		value = str
	}
	from := gateway.Request{Principal: principal(r)}
	from.Key, from.Fingerprint = idempotency(r, body)
	rc, err := s.gw.Put(r.Context(), body.Key, value, from)
	if err != nil {
		return err
	}
	ls, err := s.gw.LogStats(r.Context())
	if err != nil {
		return fmt.Errorf("log stats: %w", err)
	}
	writeJSON(w, http.StatusAccepted, map[string]any{
		"success": true, "key": body.Key, "queued": true, "queue_depth": ls.Depth,
		"message": "write queued for processing", "transaction_id": rc.TransactionID,
	})
	return nil
}

func (s *Server) read(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	v, found, err := s.gw.Fetch(r.Context(), key)
	if err != nil {
		return err
	}
	if !found {
		writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "key": key, "error": fmt.Sprintf("no value for key %q", key)})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "key": key, "value": v})
	return nil
}

func (s *Server) seedStats(w http.ResponseWriter, r *http.Request) error {
	ls, err := s.gw.LogStats(r.Context())
	if err != nil {
		return fmt.Errorf("log stats: %w", err)
	}
	c := s.gw.Tracker().Counters()
	writeJSON(w, http.StatusOK, map[string]any{
		"queue_depth":      ls.Depth,
		"writes_queued":    c.Queued,
		"writes_processed": c.Processed,
		"writes_failed":    c.Failed,
		"processing_rate":  s.gw.Tracker().Rate(time.Now()),
	})
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	ls, err := s.gw.LogStats(r.Context())
	body := map[string]any{"status": "healthy", "queue_depth": ls.Depth, "worker_active": s.health.WorkerActive()}
	if err == nil {
		err = s.health.Healthy(r.Context())
	}
	if err != nil {
		body["status"], body["error"] = "unhealthy", err.Error()
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if err := s.health.Healthy(r.Context()); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "error": err.Error()})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
	return nil
}
