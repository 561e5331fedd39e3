package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/api"
	"github.com/spoolgw/spool/internal/pipeline"
	"github.com/spoolgw/spool/internal/poll"
	"github.com/spoolgw/spool/internal/txlog/redislog"
)

// A repeat of a keyed write answers what the first answered and appends
// nothing, whether the first is still in the log or applied long since;
// the key with another request is a 422; concurrent repeats append once.
func TestIdempotencyKey(t *testing.T) {
	e := setup(t, "")
	insert := func(key, body string) response {
		return e.do("POST", "/v1/tables/observations", body, "Idempotency-Key", key)
	}
	first := insert("k1", `{"target":"M31"}`)
	if first.status != 201 {
		t.Fatalf("first: %d %s", first.status, first.raw)
	}
	again := insert("k1", `{ "target" : "M31" }`) // the same JSON, written differently
	if again.status != 201 || again.body["id"] != first.body["id"] || again.body["transaction_id"] != first.body["transaction_id"] ||
		again.header.Get("Location") != first.header.Get("Location") {
		t.Fatalf("repeat answered %d %s %v, want the first's answer %s", again.status, again.raw, again.header, first.raw)
	}
	if d := e.depth(); d != 1 {
		t.Fatalf("log depth %d after a write and its repeat, want 1", d)
	}
	if r := insert("k1", `{"target":"M42"}`); r.status != 422 {
		t.Fatalf("the key with another body: %d %s, want 422", r.status, r.raw)
	}
	if r := e.do("POST", "/v1/transactions", `{"operations":[{"op":"insert","table":"observations","values":{"target":"M31"}}]}`, "Idempotency-Key", "k1"); r.status != 422 {
		t.Fatalf("the key on another route: %d %s, want 422", r.status, r.raw)
	}

	// Concurrent repeats of a new key: one write, one answer.
	var wg sync.WaitGroup
	answers := make([]response, 16)
	for i := range answers {
		wg.Go(func() {
			answers[i] = e.do("POST", "/v1/transactions", `{"operations":[{"op":"insert","table":"observations","values":{"target":"M1"},"as":"o"}]}`, "Idempotency-Key", "k2")
		})
	}
	wg.Wait()
	for _, a := range answers {
		if a.status != 202 || a.body["transaction_id"] != answers[0].body["transaction_id"] || fmt.Sprint(a.body["refs"]) != fmt.Sprint(answers[0].body["refs"]) {
			t.Fatalf("concurrent repeats answered differently: %s and %s", a.raw, answers[0].raw)
		}
	}
	if d := e.depth(); d != 2 {
		t.Fatalf("log depth %d after 16 concurrent repeats of one new key, want 2", d)
	}

	// Applied and gone from the log: the key is kept, and answers the same.
	e.startApplier()
	poll.Until(t, 10*time.Second, "the log drained", func() bool { return e.depth() == 0 })
	if r := insert("k1", `{"target":"M31"}`); r.status != 201 || r.body["transaction_id"] != first.body["transaction_id"] {
		t.Fatalf("repeat after apply: %d %s, want %s", r.status, r.raw, first.raw)
	}
	if r := e.do("GET", "/v1/tables/observations?target=eq.M31", ""); len(r.body["rows"].([]any)) != 1 {
		t.Fatalf("rows of M31: %s, want one", r.raw)
	}
	if r := e.do("POST", "/v1/tables/observations", `{"target":"M31"}`, "Idempotency-Key", strings.Repeat("k", 300)); r.status != 400 {
		t.Fatalf("a 300-byte key: %d %s, want 400", r.status, r.raw)
	}
}

// A keyed write survives a restart of the local log: a repeat after it
// answers the first write's answer, whether the write was still in the
// log or applied.
func TestIdempotencyKeyAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e := setup(t, dir)
	first := e.do("POST", "/v1/tables/observations", `{"target":"M31"}`, "Idempotency-Key", "r1")
	if first.status != 201 {
		t.Fatalf("first: %d %s", first.status, first.raw)
	}
	e.close()
	e = setup(t, dir) // the write is still in the log
	if r := e.do("POST", "/v1/tables/observations", `{"target":"M31"}`, "Idempotency-Key", "r1"); r.body["transaction_id"] != first.body["transaction_id"] {
		t.Fatalf("repeat after a restart: %s, want %s", r.raw, first.raw)
	}
	e.startApplier()
	poll.Until(t, 10*time.Second, "the log drained", func() bool { return e.depth() == 0 })
	e.close()
	e = setup(t, dir) // applied: the key is in the file of keys
	if r := e.do("POST", "/v1/tables/observations", `{"target":"M31"}`, "Idempotency-Key", "r1"); r.body["transaction_id"] != first.body["transaction_id"] || e.depth() != 0 {
		t.Fatalf("repeat after apply and restart: %s (depth %d), want %s", r.raw, e.depth(), first.raw)
	}
}

// On the Redis log a key is taken in the same script as its write's
// append: the same keyed write through two api processes (two pipelines
// over one log) appends once, and both answer the same.
func TestIdempotencyKeyAcrossProcesses(t *testing.T) {
	st, _, _ := newPostgres(t)
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	cat := catalogOf(t, st)
	name := fmt.Sprintf("idem-%d", rand.Uint32())
	var srvs []*httptest.Server
	var logs []*redislog.Log
	for range 2 {
		lg, err := redislog.Open(ctx, redislog.Config{URL: redisSrv.URL, Name: name, Normalize: cat.Normalize}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lg.Close() })
		p := build(t, pipeline.Config{Store: st, Catalog: cat, Log: lg, Shared: lg.Overlay(), SharedKeys: lg})
		srv := httptest.NewServer(api.New(p.Gateway, p.Queue, apiOnly{}, api.Config{}, nil))
		t.Cleanup(srv.Close)
		srvs, logs = append(srvs, srv), append(logs, lg)
	}
	var wg sync.WaitGroup
	ids := make([]string, 20)
	for i := range ids {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", srvs[i%2].URL+"/v1/tables/observations", strings.NewReader(`{"target":"M51"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "x1")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			var body map[string]any
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
				t.Error(err)
				return
			}
			if res.StatusCode != 201 {
				t.Errorf("answer %d %v", res.StatusCode, body)
			}
			ids[i], _ = body["transaction_id"].(string)
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("answers name transactions %v, want one", ids)
		}
	}
	if s, err := logs[0].Stats(ctx); err != nil || s.Depth != 1 {
		t.Fatalf("log depth %+v, %v; want 1", s, err)
	}
}

// apiOnly is the health of a process that only takes writes in.
type apiOnly struct{}

func (apiOnly) Healthy(context.Context) error { return nil }
func (apiOnly) WorkerActive() bool            { return false }
