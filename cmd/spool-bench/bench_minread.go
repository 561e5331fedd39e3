package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spoolgw/spool/internal/txlog/redislog"
)

// startMinimalReader serves, on the servers shape, the least a GET by id
// that shows a writer its own writes does: one round trip to the log's
// Redis for the row's pending changes (an LRANGE of the list spool keeps
// for the row in the log named logName), answered with the newest of
// them as it is stored if there are any; otherwise one more to the
// replica for the row, by its key, as JSON (to_json: PostgreSQL encodes
// it), answered as it came. No routing, key check, schema, merge or
// metrics: spool's GET against it is what spool's own work costs, it
// against the no-op reader what the round trips cost on this machine.
// GET /<id> reads the row of observations with that id.
func (e *benchEnv) startMinimalReader(ctx context.Context, logName, replica string) (*minimalReader, error) {
	rdb, err := e.redisClient("minimal reader")
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, replica)
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("bench: minimal reader: %w", err)
	}
	m := &minimalReader{}
	url, stop, err := serveLocal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer m.took(time.Now())
		id := strings.TrimPrefix(r.URL.Path, "/")
		pending, err := rdb.LRange(r.Context(), redislog.RowKey(logName, "observations", id), 0, -1).Result()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if len(pending) > 0 {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, pending[len(pending)-1])
			return
		}
		var row string
		err = pool.QueryRow(r.Context(), "SELECT to_json(o)::text FROM observations o WHERE id = $1", id).Scan(&row)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			http.Error(w, "no such row", http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, row)
	}))
	if err != nil {
		pool.Close()
		rdb.Close()
		return nil, err
	}
	m.url, m.stop = url, func() { stop(); pool.Close(); rdb.Close() }
	return m, nil
}

// minimalReader is the minimal reader serving at url. It times its own
// handling of each request, as spool's request histogram does.
type minimalReader struct {
	url  string
	stop func()
	mu   sync.Mutex
	lat  []time.Duration
}

func (m *minimalReader) took(start time.Time) {
	d := time.Since(start)
	m.mu.Lock()
	m.lat = append(m.lat, d)
	m.mu.Unlock()
}

// reset forgets the times so far.
func (m *minimalReader) reset() {
	m.mu.Lock()
	m.lat = nil
	m.mu.Unlock()
}

// served returns the times since the last reset.
func (m *minimalReader) served() *result {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &result{n: len(m.lat), lat: slices.Clone(m.lat)}
}
