package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// outageLength is how long TestDatabaseOutage keeps the primary stopped:
// 60 s, or SPOOL_OUTAGE (a Go duration) for a longer run.
func outageLength(t *testing.T) time.Duration {
	d := 60 * time.Second
	if s := os.Getenv("SPOOL_OUTAGE"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatalf("SPOOL_OUTAGE=%q: %v", s, err)
		}
	}
	return d
}

// healthWatch polls a process's /readyz and /health while the database is
// down, and keeps what they said.
type healthWatch struct {
	mu       sync.Mutex
	polls    int
	down     int    // /readyz answers 503 naming the database and the next retry
	healthy  int    // /readyz answers 200 (the applier had not failed yet)
	sample   string // one /readyz error
	health   string // one /health error
	badRetry string // a next retry time that could not be read or was far off
}

func (h *healthWatch) poll(c *http.Client, url string) {
	now := time.Now()
	status, body, err := getJSON(c, url+"/readyz")
	h.mu.Lock()
	defer h.mu.Unlock()
	h.polls++
	if err != nil {
		return
	}
	msg, _ := body["error"].(string)
	switch {
	case status == http.StatusOK:
		h.healthy++
		return
	case status == http.StatusServiceUnavailable && strings.Contains(msg, "database unavailable") && strings.Contains(msg, "next retry at "):
		h.down++
		h.sample = msg
		// "next retry at 2026-…Z: …": the retry is due within the
		// applier's longest backoff.
		at, _, _ := strings.Cut(strings.SplitN(msg, "next retry at ", 2)[1], ": ")
		next, err := time.Parse(time.RFC3339Nano, at)
		if err != nil || next.Before(now.Add(-31*time.Second)) || next.After(now.Add(31*time.Second)) {
			h.badRetry = fmt.Sprintf("next retry %q read at %s", at, now.Format(time.RFC3339Nano))
		}
	}
	if _, body, err := getJSON(c, url+"/health"); err == nil && body["status"] == "unhealthy" {
		h.health, _ = body["error"].(string)
	}
}

// TestDatabaseOutage stops the PostgreSQL primary for 60 s (SPOOL_OUTAGE)
// under a steady write load on two spools at once, one with the local log
// and one with the Redis log, each draining into its own database. While
// the database is down every write is still answered 2xx, /readyz and
// /health say the database is unavailable with the applier's next retry
// time; after it returns, everything is applied, once, in order (each row
// ends with its last acknowledged update), and nothing is dead-lettered.
//
// It stops the primary the package shares: it must not run in parallel
// with any test that uses it (see faults_test.go).
func TestDatabaseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("a 60 s database outage")
	}
	outage := outageLength(t)
	type shape struct {
		name string
		p    *proc
		db   string
		load *rowLoad
		hw   *healthWatch
	}
	dbLocal, dbRedis := newDatabase(t), newDatabase(t)
	shapes := []*shape{
		// A small overlay in memory: the backlog of the outage spills to disk.
		{name: "local log", db: dbLocal, p: startArgs(t, "--data-dir", t.TempDir(), "--database", dbLocal, "--overlay-memory", "200")},
		{name: "redis log", db: dbRedis, p: startArgs(t, sharedArgs(t, dbRedis, fmt.Sprintf("outage-%d", rand.Uint32()), "all")...)},
	}
	primaryDown := false
	t.Cleanup(func() {
		if primaryDown {
			if err := pgSrv.StartPrimary(); err != nil {
				t.Errorf("start the primary again: %v", err)
			}
		}
	})

	stop := make(chan struct{})
	for i, s := range shapes {
		// 4 writers, each pausing 10 ms after every request: a steady
		// few hundred writes a second per spool.
		s.load = newRowLoad(fmt.Sprintf("outage%d", i), 3, 10*time.Millisecond)
		s.load.start(s.p.url, 4, stop)
		s.hw = &healthWatch{}
	}
	time.Sleep(1500 * time.Millisecond)
	// Rows acknowledged this early are in the database before it stops.
	early := make([]map[string]bool, len(shapes))
	for i, s := range shapes {
		early[i] = s.load.rows()
	}
	time.Sleep(1500 * time.Millisecond)

	t.Logf("stopping the primary for %v", outage)
	downAt := time.Now()
	if err := pgSrv.StopPrimary(); err != nil {
		t.Fatal(err)
	}
	primaryDown = true
	hc := &http.Client{Timeout: 5 * time.Second}
	// Rows inserted during the outage read from the overlay alone: their
	// insert is buffered. (Older rows need the database: 503.)
	older := make([]map[string]bool, len(shapes))
	for i, s := range shapes {
		older[i] = s.load.rows()
	}
	var reads, stale, spilled int
	var staleSample string
	for time.Since(downAt) < outage {
		for i, s := range shapes {
			s.hw.poll(hc, s.p.url)
			r, n, sample := s.load.checkReads(hc, s.p.url, 5, older[i])
			reads, stale = reads+r, stale+n
			if sample != "" {
				staleSample = s.name + ": " + sample
			}
		}
		if _, st, err := getJSON(hc, shapes[0].p.url+"/v1/stats"); err == nil {
			ov, _ := st["overlay"].(map[string]any)
			n, _ := ov["spilled_operations"].(float64)
			spilled = max(spilled, int(n))
		}
		time.Sleep(250 * time.Millisecond)
	}
	// A row only the database holds cannot be read meanwhile: 503, not 500.
	for i, s := range shapes {
		for id := range early[i] {
			res, err := hc.Get(s.p.url + "/v1/tables/observations/" + id)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
				t.Errorf("%s: read of a row in the stopped database: %d %s (Retry-After %q), want 503 with Retry-After", s.name, res.StatusCode, body, res.Header.Get("Retry-After"))
			}
			break
		}
	}
	t.Logf("during the outage: %d reads of acknowledged rows, %d stale; at most %d changes spilled to disk by the local log's overlay", reads, stale, spilled)
	if stale > 0 {
		t.Errorf("%d of %d reads did not show the writer's own last write, e.g. %s", stale, reads, staleSample)
	}
	if spilled == 0 {
		t.Error("the local log's overlay never spilled to disk; the outage did not test it")
	}
	if err := pgSrv.StartPrimary(); err != nil {
		t.Fatal(err)
	}
	primaryDown = false
	upAt := time.Now()
	t.Logf("primary started again after %v", upAt.Sub(downAt).Round(time.Millisecond))

	// The appliers' backoff has grown to its cap (30 s) during the
	// outage; their probe, a ping every second, notices the database
	// within about a second of its return. The load goes on until both
	// apply again.
	for _, s := range shapes {
		waitFor(t, 60*time.Second, s.name+": /readyz 200 after the outage", func() bool {
			status, _, err := getJSON(hc, s.p.url+"/readyz")
			return err == nil && status == http.StatusOK
		})
		took := time.Since(upAt)
		t.Logf("%s: applying again %v after the primary started", s.name, took.Round(time.Millisecond))
		if took > 3*time.Second {
			t.Errorf("%s: applying again only %v after the primary started; want within about 2 s, whatever the backoff", s.name, took.Round(time.Millisecond))
		}
	}
	time.Sleep(2 * time.Second)
	close(stop)
	for _, s := range shapes {
		s.load.wait()
	}

	for _, s := range shapes {
		t.Run(strings.ReplaceAll(s.name, " ", "_"), func(t *testing.T) {
			waitDrained(t, s.p)
			before := s.load.tally(time.Time{}, downAt)
			during := s.load.tally(downAt, upAt)
			after := s.load.tally(upAt, time.Time{})
			t.Logf("before the outage: %v", before)
			t.Logf("during the outage (%v): %v", upAt.Sub(downAt).Round(time.Millisecond), during)
			t.Logf("after it: %v", after)
			if n := before.failed() + during.failed() + after.failed(); n > 0 {
				t.Errorf("%d writes were not answered 2xx; want none (during the outage: %v; errors: %q)\n%s", n, during, during.errs, logLines(s.p, "write refused", 3))
			}
			if during.ok == 0 {
				t.Error("no write was acknowledged during the outage")
			}
			s.hw.mu.Lock()
			t.Logf("/readyz polled %d times during the outage: %d said the database is down with the next retry, %d said ready; e.g. %q; /health: %q",
				s.hw.polls, s.hw.down, s.hw.healthy, s.hw.sample, s.hw.health)
			if s.hw.down == 0 || s.hw.health == "" {
				t.Error("/readyz and /health never reported the database down with the next retry time")
			}
			if s.hw.badRetry != "" {
				t.Errorf("/readyz: %s", s.hw.badRetry)
			}
			s.hw.mu.Unlock()
			s.load.checkRows(t, s.db)
		})
	}
}
