package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/api"
	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/embedtest"
	"github.com/spoolgw/spool/internal/events"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/idempotency"
	"github.com/spoolgw/spool/internal/pipeline"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/sqlite"
	"github.com/spoolgw/spool/internal/txlog/filelog"
)

// env is one spool on the embedded default: a real log and a real SQLite
// file in a temporary directory, served over real HTTP.
type env struct {
	t      testing.TB
	dir    string
	st     *sqlite.Store
	lg     *filelog.Log
	gw     *gateway.Gateway
	ap     *applier.Applier
	hub    *events.Hub // nil without options.events
	srv    *httptest.Server
	closed bool
}

// setup opens spool in dir (a new temporary directory when dir is "").
// The applier is not started: tests start it when they want the drain.
func setup(t testing.TB, dir string) *env {
	t.Helper()
	return setupWith(t, dir, options{})
}

// options vary an env from the embedded default.
type options struct {
	segmentSize  int64
	backpressure gateway.Backpressure
	api          api.Config
	// events, when set, serves live events.
	events *events.Config
	// serverTimeout is the HTTP server's read and write timeouts (0: none).
	serverTimeout time.Duration
}

func setupWith(t testing.TB, dir string, o options) *env {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ctx := t.Context()
	parts := embedtest.Open(t, dir, filelog.Config{SegmentSize: o.segmentSize})
	st, lg := parts.Store, parts.Log
	keys, err := idempotency.Open(ctx, filepath.Join(dir, "idempotency.db"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := build(t, pipeline.Config{Store: st, Catalog: parts.Catalog, Log: lg, Backpressure: o.backpressure, LocalKeys: keys,
		Applier: &applier.Config{BatchTimeout: -1}, Events: o.events})
	e := &env{t: t, dir: dir, st: st, lg: lg, gw: p.Gateway, ap: p.Applier, hub: p.Events}
	if p.Events != nil {
		if err := p.Events.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		o.api.Events = p.Events
	}
	e.srv = httptest.NewUnstartedServer(api.New(p.Gateway, p.Queue, p.Applier, o.api, nil))
	// Short timeouts, as a production server may set: live events must
	// outlive them. The idle timeout is set apart, as cmd/spool sets it:
	// left at zero it would be the read timeout, and a server closing a
	// kept-alive connection while the client sends a POST on it fails the
	// POST with EOF (net/http retries only idempotent requests).
	e.srv.Config.ReadTimeout, e.srv.Config.WriteTimeout = o.serverTimeout, o.serverTimeout
	e.srv.Config.IdleTimeout = time.Minute
	e.srv.Start()
	t.Cleanup(func() { keys.Close() }) // after e.close: the applier persists keys
	t.Cleanup(e.close)
	return e
}

// catalogOf returns the catalog of st, live.
func catalogOf(t testing.TB, st store.Store) *schema.Live {
	t.Helper()
	cat, err := schema.NewLive(t.Context(), gateway.ReadCatalog(st, nil))
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// build builds the pipeline of cfg.
func build(t testing.TB, cfg pipeline.Config) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.Build(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) close() {
	if e.closed {
		return
	}
	e.closed = true
	if e.hub != nil {
		e.hub.CloseAll("test over")
	}
	e.srv.Close()
	if e.hub != nil {
		e.hub.Stop()
	}
	e.ap.Stop()
	e.lg.Close()
	e.st.Close()
}

func (e *env) startApplier() {
	e.t.Helper()
	if err := e.ap.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (e *env) do(method, path, body string, header ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	_ = dec.Decode(&r.body)
	return r
}

func (e *env) must(want int, method, path, body string) response {
	e.t.Helper()
	r := e.do(method, path, body)
	if r.status != want {
		e.t.Fatalf("%s %s = %d %s; want %d", method, path, r.status, r.raw, want)
	}
	return r
}

func (e *env) depth() int64 {
	e.t.Helper()
	s, err := e.lg.Stats(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return s.Depth
}

// waitState waits, through the API, until transaction id reaches state.
func (e *env) waitState(id, state string) response {
	e.t.Helper()
	r := e.must(200, "GET", "/v1/transactions/"+id+"?wait="+state+"&timeout=10s", "")
	return r
}

// The README's walkthrough: insert, read back at once, update, read merged,
// status until applied, then the row comes from the database.
func TestObservatoryWalkthrough(t *testing.T) {
	t.Parallel()
	e := setup(t, "")
	r := e.must(201, "POST", "/v1/tables/observations", `{"target":"M31","exposure_s":30}`)
	id := r.body["id"].(string)
	if r.header.Get("Location") != "/v1/tables/observations/"+id || r.body["state"] != "queued" {
		t.Fatalf("insert answered %v %v", r.header, r.body)
	}
	g := e.must(200, "GET", "/v1/tables/observations/"+id, "")
	if g.header.Get(api.SourceHeader) != "overlay" || g.body["target"] != "M31" || g.body["status"] != "planned" || g.body["finished_at"] != nil {
		t.Fatalf("read back %v %v", g.header.Get(api.SourceHeader), g.body)
	}
	e.must(404, "GET", "/v1/tables/observations/"+id+"?consistency=database", "")

	u := e.must(202, "PATCH", "/v1/tables/observations/"+id, `{"status":"done","finished_at":"2026-11-23T20:00:00+01:00"}`)
	g = e.must(200, "GET", "/v1/tables/observations/"+id, "")
	if g.body["status"] != "done" || g.body["finished_at"] != "2026-11-23T19:00:00.000000000Z" || g.body["target"] != "M31" {
		t.Fatalf("merged read %v", g.body)
	}
	st := e.must(200, "GET", "/v1/transactions/"+u.body["transaction_id"].(string), "")
	if st.body["state"] != "queued" {
		t.Fatalf("status before the drain: %v", st.body)
	}

	e.startApplier()
	st = e.waitState(u.body["transaction_id"].(string), "applied")
	if st.body["state"] != "replicated" || st.body["applied_at"] == nil {
		t.Fatalf("status after the drain: %v", st.body)
	}
	g = e.must(200, "GET", "/v1/tables/observations/"+id, "")
	if g.header.Get(api.SourceHeader) != "database" || g.body["status"] != "done" || g.body["exposure_s"] != json.Number("30") {
		t.Fatalf("read after drain %v %v", g.header.Get(api.SourceHeader), g.body)
	}
	if s, _ := e.gw.Overlay().Stats(t.Context()); s.Rows != 0 {
		t.Fatalf("overlay still holds %+v after the drain", s)
	}
}

func TestTransactionWithRefsAndList(t *testing.T) {
	t.Parallel()
	e := setup(t, "")
	r := e.must(202, "POST", "/v1/transactions", `{"operations":[
		{"op":"insert","table":"observations","values":{"target":"M42"},"as":"obs"},
		{"op":"insert","table":"frames","values":{"observation_id":{"$ref":"obs"},"seq":1,"quality":0.5}},
		{"op":"insert","table":"frames","values":{"observation_id":{"$ref":"obs"},"seq":2,"quality":0.9}},
		{"op":"insert","table":"instruments","values":{"code":"ccd1","name":"Main CCD"}}]}`)
	ids := r.body["ids"].([]any)
	obs := r.body["refs"].(map[string]any)["obs"]
	if len(ids) != 4 || ids[0] != obs || ids[3] != "ccd1" {
		t.Fatalf("receipt %v", r.body)
	}
	list := func(want int, src string) {
		t.Helper()
		l := e.must(200, "GET", fmt.Sprintf("/v1/tables/frames?observation_id=eq.%s&order=seq.desc", obs), "")
		rows := l.body["rows"].([]any)
		if len(rows) != want || l.header.Get(api.SourceHeader) != src {
			t.Fatalf("list = %d rows from %s: %v", len(rows), l.header.Get(api.SourceHeader), l.raw)
		}
		if want == 2 && rows[0].(map[string]any)["seq"] != json.Number("2") {
			t.Fatalf("order=seq.desc: %v", rows)
		}
	}
	list(2, "overlay")
	e.startApplier()
	e.waitState(r.body["transaction_id"].(string), "applied")
	list(2, "database")
	// A buffered update and a buffered insert merge with database rows.
	e.ap.Stop()
	fid := ids[1].(string)
	e.must(202, "PATCH", "/v1/tables/frames/"+fid, `{"seq":7}`)
	e.must(202, "POST", "/v1/transactions", fmt.Sprintf(`{"operations":[{"op":"insert","table":"frames","values":{"observation_id":%q,"seq":3}}]}`, obs))
	l := e.must(200, "GET", fmt.Sprintf("/v1/tables/frames?observation_id=eq.%s&order=seq.desc&limit=2", obs), "")
	rows := l.body["rows"].([]any)
	if l.header.Get(api.SourceHeader) != "overlay" || len(rows) != 2 || rows[0].(map[string]any)["seq"] != json.Number("7") || rows[1].(map[string]any)["seq"] != json.Number("3") {
		t.Fatalf("merged list %s: %v", l.header.Get(api.SourceHeader), l.raw)
	}
	l = e.must(200, "GET", fmt.Sprintf("/v1/tables/frames?observation_id=eq.%s&seq=lt.5", obs), "")
	if rows := l.body["rows"].([]any); len(rows) != 2 || l.header.Get(api.SourceHeader) != "merged" || rows[0].(map[string]any)["seq"] != json.Number("2") || rows[1].(map[string]any)["seq"] != json.Number("3") {
		t.Fatalf("seq=lt.5 must drop the row updated to 7 and keep 2 (database) and 3 (buffered): %s %v", l.header.Get(api.SourceHeader), l.raw)
	}
	// A buffered delete removes the row from reads at once.
	e.must(202, "DELETE", "/v1/tables/frames/"+fid, "")
	e.must(404, "GET", "/v1/tables/frames/"+fid, "")
	e.must(200, "GET", "/v1/tables/frames/"+fid+"?consistency=database", "")
}

// Bad input gets a 4xx naming the problem and changes nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := setup(t, "")
	e.must(201, "POST", "/v1/tables/instruments", `{"code":"ccd1","name":"CCD"}`)
	before := e.depth()
	missing := "0190b5a0-0000-7000-8000-000000000000"
	cases := []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/v1/transactions", `{"operations":[`, 400, "malformed JSON"},
		{"POST", "/v1/transactions", `{"operations":[]}`, 400, "at least one operation"},
		{"POST", "/v1/transactions", `{"ops":[]}`, 400, `unknown field "ops"`},
		{"POST", "/v1/transactions", `{"operations":[{"op":"insert","table":"nope","values":{}}]}`, 400, `unknown table "nope"`},
		{"POST", "/v1/tables/nope", `{}`, 400, `unknown table "nope"`},
		{"POST", "/v1/tables/observations", `{"target":"x","color":"red"}`, 400, `column "color" of table "observations": no such column`},
		{"POST", "/v1/tables/observations", `{"target":42}`, 400, `column "target" of table "observations": must be a string`},
		{"POST", "/v1/tables/observations", `{"target":"x","started_at":"noon"}`, 400, `must be an RFC 3339 timestamp`},
		{"POST", "/v1/tables/targets", `{"name":"Andromeda"}`, 400, `integer primary key "number" that spool cannot generate; name it`},
		{"POST", "/v1/transactions", `{"operations":[{"op":"insert","table":"frames","values":{"observation_id":{"$ref":"obs"},"seq":1}}]}`, 400, `unknown $ref "obs"`},
		{"GET", "/v1/tables/frames?seq=like.3", "", 400, `unknown operator "like"`},
		{"GET", "/v1/tables/frames?colour=eq.3", "", 400, `unknown column "colour"`},
		{"GET", "/v1/tables/nope", "", 404, `unknown table "nope"`},
		{"PATCH", "/v1/tables/observations/" + missing, `{"status":"x"}`, 404, "no such row"},
		{"DELETE", "/v1/tables/instruments/nope", "", 404, "no such row"},
		{"POST", "/v1/tables/instruments", `{"code":"a","name":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`, 413, "larger than"},
		{"GET", "/v1/transactions/not-a-uuid", "", 400, "must be a UUID"},
		{"GET", "/v1/transactions/" + missing, "", 404, "or it was applied longer ago than its record is kept (--applied-retention)"},
		{"GET", "/v1/transactions/" + missing + "?wait=done", "", 400, "unknown state"},
	}
	for _, c := range cases {
		r := e.do(c.method, c.path, c.body)
		msg, _ := r.body["error"].(string)
		if r.status != c.status || !strings.Contains(msg, c.want) {
			t.Errorf("%s %s %.60s\n  = %d %q; want %d containing %q", c.method, c.path, c.body, r.status, msg, c.status, c.want)
		}
	}
	r := e.do("POST", "/v1/tables/instruments", `{"code":"b","name":"x"}`, "Content-Type", "text/plain")
	if r.status != 415 {
		t.Errorf("text/plain body = %d %s; want 415", r.status, r.raw)
	}
	if d := e.depth(); d != before {
		t.Fatalf("bad requests changed the log: depth %d, was %d", d, before)
	}
}

// A transaction that fails for good is dead-lettered alone; one that
// depends on it fails with it and says why; the rest of the batch applies.
func TestPoisonIsolated(t *testing.T) {
	t.Parallel()
	e := setup(t, "")
	good1 := e.must(201, "POST", "/v1/tables/instruments", `{"code":"a","name":"A"}`)
	// A duplicate key: accepted (the row is only buffered), refused by the
	// database.
	bad := e.must(202, "POST", "/v1/transactions", `{"operations":[
		{"op":"insert","table":"observations","values":{"target":"ok"},"as":"o"},
		{"op":"insert","table":"instruments","values":{"code":"a","name":"again"}}]}`)
	obs := bad.body["refs"].(map[string]any)["o"].(string)
	dependent := e.must(201, "POST", "/v1/tables/frames", fmt.Sprintf(`{"observation_id":%q,"seq":1}`, obs))
	good2 := e.must(201, "POST", "/v1/tables/instruments", `{"code":"b","name":"B"}`)
	if e.must(200, "GET", "/v1/tables/observations/"+obs, "").header.Get(api.SourceHeader) != "overlay" {
		t.Fatal("the buffered observation must be readable before the drain")
	}

	e.startApplier()
	for _, r := range []response{good1, good2} {
		if st := e.waitState(r.body["transaction_id"].(string), "applied"); st.body["state"] != "replicated" {
			t.Fatalf("good transaction: %v", st.body)
		}
	}
	st := e.waitState(bad.body["transaction_id"].(string), "applied")
	if st.body["state"] != "failed" || !strings.Contains(st.body["error"].(string), "UNIQUE") {
		t.Fatalf("poison transaction: %v", st.body)
	}
	st = e.waitState(dependent.body["transaction_id"].(string), "applied")
	if st.body["state"] != "failed" || !strings.Contains(st.body["error"].(string), "depends on failed transaction "+bad.body["transaction_id"].(string)) {
		t.Fatalf("dependent transaction: %v", st.body)
	}
	// The failed transaction's overlay effects are gone, atomically: its
	// observation insert was rolled back with it.
	e.must(404, "GET", "/v1/tables/observations/"+obs, "")
	e.must(404, "GET", "/v1/tables/frames/"+dependent.body["id"].(string), "")
	if g := e.must(200, "GET", "/v1/tables/instruments/a", ""); g.body["name"] != "A" {
		t.Fatalf("instrument a = %v", g.body)
	}
	e.must(200, "GET", "/v1/tables/instruments/b", "")
	// After the tracker forgets, the answer comes from the database.
	stats := e.must(200, "GET", "/stats", "")
	if stats.body["writes_failed"] != json.Number("2") || stats.body["writes_processed"] != json.Number("2") {
		t.Fatalf("stats %v", stats.body)
	}
}

func TestSeedEndpoints(t *testing.T) {
	t.Parallel()
	e := setup(t, "")
	w := e.must(202, "POST", "/write", `{"key":"dome","value":"open"}`)
	if w.body["success"] != true || w.body["queued"] != true || w.body["key"] != "dome" || w.body["queue_depth"] != json.Number("1") {
		t.Fatalf("/write = %v", w.body)
	}
	r := e.must(200, "GET", "/read/dome", "")
	if r.body["success"] != true || r.body["value"] != "open" {
		t.Fatalf("/read before drain = %v", r.body)
	}
	e.must(404, "GET", "/read/nothing", "")
	e.must(400, "POST", "/write", `{"value":"x"}`)
	h := e.must(200, "GET", "/health", "")
	if h.body["status"] != "unhealthy" || h.body["worker_active"] != false {
		t.Fatalf("/health with the applier stopped = %v", h.body)
	}
	e.startApplier()
	e.waitState(w.body["transaction_id"].(string), "applied")
	e.must(202, "POST", "/write", `{"key":"dome","value":{"angle":90}}`)
	r = e.must(200, "GET", "/read/dome", "")
	if r.body["value"] != `{"angle":90}` {
		t.Fatalf("/read after overwrite = %v", r.body)
	}
	h = e.must(200, "GET", "/health", "")
	if h.body["status"] != "healthy" || h.body["worker_active"] != true {
		t.Fatalf("/health = %v", h.body)
	}
	s := e.must(200, "GET", "/stats", "")
	for _, k := range []string{"queue_depth", "writes_queued", "writes_processed", "writes_failed", "processing_rate"} {
		if _, ok := s.body[k]; !ok {
			t.Errorf("/stats lacks %q: %v", k, s.body)
		}
	}
	e.must(200, "GET", "/readyz", "")
	// spool's own table is not a client table.
	e.must(404, "GET", "/v1/tables/spool_kv/dome", "")
}

// The overlay is rebuilt from the log at start: buffered writes survive a
// restart and are applied once.
func TestRestartRebuildsOverlay(t *testing.T) {
	t.Parallel()
	e := setup(t, "")
	r := e.must(201, "POST", "/v1/tables/observations", `{"target":"M51"}`)
	id := r.body["id"].(string)
	e.must(202, "PATCH", "/v1/tables/observations/"+id, `{"status":"running"}`)
	e.close()

	e2 := setup(t, e.dir)
	g := e2.must(200, "GET", "/v1/tables/observations/"+id, "")
	if g.header.Get(api.SourceHeader) != "overlay" || g.body["status"] != "running" {
		t.Fatalf("after restart: %s %v", g.header.Get(api.SourceHeader), g.body)
	}
	if st := e2.must(200, "GET", "/v1/transactions/"+r.body["transaction_id"].(string), ""); st.body["state"] != "queued" {
		t.Fatalf("status after restart: %v", st.body)
	}
	e2.startApplier()
	e2.waitState(r.body["transaction_id"].(string), "applied")
	l := e2.must(200, "GET", "/v1/tables/observations?target=eq.M51", "")
	if rows := l.body["rows"].([]any); len(rows) != 1 || rows[0].(map[string]any)["status"] != "running" {
		t.Fatalf("after drain: %v", l.raw)
	}
}

func TestWaitTimesOut(t *testing.T) {
	t.Parallel()
	e := setup(t, "")
	r := e.must(201, "POST", "/v1/tables/instruments", `{"code":"x","name":"X"}`)
	start := time.Now()
	st := e.must(200, "GET", "/v1/transactions/"+r.body["transaction_id"].(string)+"?wait=applied&timeout=50ms", "")
	if st.body["state"] != "queued" || time.Since(start) > 5*time.Second {
		t.Fatalf("wait without an applier = %v after %v", st.body, time.Since(start))
	}
}

// Over the log's high mark writes get 503 with Retry-After and nothing is
// taken; once the applier drains below the low mark, intake resumes.
func TestBackpressure(t *testing.T) {
	t.Parallel()
	e := setupWith(t, "", options{segmentSize: 4096, backpressure: gateway.Backpressure{High: 16 << 10, Low: 8 << 10}})
	accepted := 0
	var refused response
	for i := range 1000 {
		r := e.do("POST", "/v1/tables/instruments", fmt.Sprintf(`{"code":"c%d","name":"a name long enough to fill the log quickly"}`, i))
		if r.status == 503 {
			refused = r
			break
		}
		if r.status != 201 {
			t.Fatalf("write %d: %d %s", i, r.status, r.raw)
		}
		accepted++
		time.Sleep(BackpressureTick) // let the intake see the log grow
	}
	if refused.status != 503 || refused.header.Get("Retry-After") == "" || !strings.Contains(refused.body["error"].(string), "high mark") {
		t.Fatalf("after %d writes: %d %v %s; want 503 with Retry-After naming the high mark", accepted, refused.status, refused.header, refused.raw)
	}
	depth := e.depth()
	if r := e.do("POST", "/v1/tables/instruments", `{"code":"late","name":"x"}`); r.status != 503 || e.depth() != depth {
		t.Fatalf("a refused write must change nothing: %d, depth %d → %d", r.status, depth, e.depth())
	}
	e.startApplier()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.do("POST", "/v1/tables/instruments", `{"code":"after","name":"x"}`)
		if r.status == 201 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("intake did not resume after the drain: %d %s", r.status, r.raw)
		}
		time.Sleep(BackpressureTick)
	}
	l := e.must(200, "GET", "/v1/tables/instruments?limit=10000", "")
	if n := len(l.body["rows"].([]any)); n != accepted+1 {
		t.Fatalf("%d rows readable, want the %d accepted", n, accepted+1)
	}
}

// BackpressureTick is a little more than the intake's refresh of the log
// size.
const BackpressureTick = gateway.BackpressureRefresh + 5*time.Millisecond

// A client over its rate gets 429 with Retry-After; others are not held.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := setupWith(t, "", options{api: api.Config{RateLimit: api.RateLimit{Rate: 1, Burst: 3}}})
	for i := range 3 {
		e.must(201, "POST", "/v1/tables/instruments", fmt.Sprintf(`{"code":"r%d","name":"x"}`, i))
	}
	r := e.do("POST", "/v1/tables/instruments", `{"code":"r9","name":"x"}`)
	if r.status != 429 || r.header.Get("Retry-After") != "1" || !strings.Contains(r.body["error"].(string), "rate limit") {
		t.Fatalf("fourth write: %d %v %s; want 429 with Retry-After", r.status, r.header, r.raw)
	}
	e.must(200, "GET", "/v1/tables/instruments/r0", "") // reads are not limited
}

// The dead-letter queue: a poison transaction is listed (by filter),
// shown with the database's error, retried as is (fails again, attempts
// count), retried after a fix (applies), edited and retried, and dropped
// with an audit record.
func TestDeadLetterQueue(t *testing.T) {
	t.Parallel()
	e := setupDeadLetters(t)
	a, b, c := e.poison("a"), e.poison("b"), e.poison("c")

	l := e.must(200, "GET", "/v1/dlq?table=instruments&code=SQLITE_CONSTRAINT", "")
	if dls := l.body["dead_letters"].([]any); len(dls) != 3 {
		t.Fatalf("list: %s", l.raw)
	}
	if l := e.must(200, "GET", "/v1/dlq?table=observations", ""); len(l.body["dead_letters"].([]any)) != 0 {
		t.Fatalf("filter by another table: %s", l.raw)
	}
	p := e.must(200, "GET", "/v1/dlq?limit=2", "")
	if len(p.body["dead_letters"].([]any)) != 2 || p.body["next"] == nil {
		t.Fatalf("first page of 2: %s", p.raw)
	}
	if p2 := e.must(200, "GET", p.body["next"].(string), ""); len(p2.body["dead_letters"].([]any)) != 1 {
		t.Fatalf("second page: %s", p2.raw)
	}
	show := e.must(200, "GET", "/v1/dlq/"+a, "")
	if show.body["attempts"] != json.Number("1") || !strings.Contains(show.body["error"].(string), "UNIQUE") || show.body["code"] != "SQLITE_CONSTRAINT_PRIMARYKEY" && show.body["code"] != "SQLITE_CONSTRAINT_UNIQUE" {
		t.Fatalf("show: %s", show.raw)
	}

	// Retried as is, it fails again; the attempts add up.
	r := e.must(202, "POST", "/v1/dlq/"+a+"/retry", "")
	again := r.body["transaction_id"].(string)
	if st := e.waitState(again, "applied"); st.body["state"] != "failed" {
		t.Fatalf("retry without a fix: %v", st.body)
	}
	if s := e.must(200, "GET", "/v1/dlq/"+again, ""); s.body["attempts"] != json.Number("2") {
		t.Fatalf("attempts after a second failure: %s", s.raw)
	}
	e.must(409, "POST", "/v1/dlq/"+a+"/retry", "")

	// Edited and retried: a corrected key applies.
	r = e.must(202, "POST", "/v1/dlq/"+b+"/retry", `{"operations":[{"op":"insert","table":"instruments","values":{"code":"fixed","name":"b"}}]}`)
	e.waitState(r.body["transaction_id"].(string), "applied")
	e.must(200, "GET", "/v1/tables/instruments/fixed?consistency=database", "")
	if s := e.must(200, "GET", "/v1/dlq/"+b, ""); s.body["retried_as"] != r.body["transaction_id"] {
		t.Fatalf("the original must link its retry: %s", s.raw)
	}

	// Retried after a fix in the database: applies.
	e.must(202, "DELETE", "/v1/tables/instruments/dup", "")
	r = e.must(202, "POST", "/v1/dlq/"+again+"/retry", "")
	if st := e.waitState(r.body["transaction_id"].(string), "applied"); st.body["state"] != "replicated" {
		t.Fatalf("retry after the fix: %v", st.body)
	}

	// Dropped: gone from the list, kept for the audit.
	if d := e.must(200, "DELETE", "/v1/dlq/"+c, ""); d.body["by"] != "anonymous" {
		t.Fatalf("drop: %s", d.raw)
	}
	if l := e.must(200, "GET", "/v1/dlq", ""); len(l.body["dead_letters"].([]any)) != 0 {
		t.Fatalf("after retries and drop the queue must be empty: %s", l.raw)
	}
	if s := e.must(200, "GET", "/v1/dlq/"+c, ""); s.body["dropped_by"] != "anonymous" || s.body["dropped_at"] == nil {
		t.Fatalf("audit of the drop: %s", s.raw)
	}
	e.must(409, "DELETE", "/v1/dlq/"+c, "")
	e.must(404, "GET", "/v1/dlq/"+txnID(), "")
	e.must(400, "GET", "/v1/dlq?limit=0", "")
}

// A dead letter whose retry is queued is neither retried again (the
// database would supersede the second retry) nor dropped until the retry
// settles: the process answers 409 at once, naming the queued retry.
func TestRetryQueuedOnce(t *testing.T) {
	t.Parallel()
	e := setupDeadLetters(t)
	id := e.poison("second")
	e.ap.Stop() // the retry stays queued
	fix := `{"operations":[{"op":"insert","table":"instruments","values":{"code":"other","name":"second"}}]}`
	retry := e.must(202, "POST", "/v1/dlq/"+id+"/retry", fix)
	queuedAs := retry.body["transaction_id"].(string)
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/v1/dlq/" + id + "/retry", fix},
		{"POST", "/v1/dlq/" + id + "/retry", ""},
		{"DELETE", "/v1/dlq/" + id, ""},
	} {
		r := e.must(409, req.method, req.path, req.body)
		if msg, _ := r.body["error"].(string); !strings.Contains(msg, "queued as "+queuedAs) {
			t.Fatalf("%s %s while the retry is queued: %s; want it named", req.method, req.path, r.raw)
		}
	}
	if d := e.depth(); d != 1 {
		t.Fatalf("log depth %d, want the one retry", d)
	}
}

// setupDeadLetters returns an env whose applier runs and whose database
// holds instrument "dup", for poison.
func setupDeadLetters(t *testing.T) *env {
	t.Helper()
	e := setup(t, "")
	e.startApplier()
	first := e.must(201, "POST", "/v1/tables/instruments", `{"code":"dup","name":"first"}`)
	e.waitState(first.body["transaction_id"].(string), "applied")
	return e
}

// poison inserts instrument "dup" again, named name, and returns the
// transaction once it has failed (a dead letter). Instrument "dup" must
// exist.
func (e *env) poison(name string) string {
	e.t.Helper()
	r := e.must(202, "POST", "/v1/transactions", fmt.Sprintf(`{"operations":[{"op":"insert","table":"instruments","values":{"code":"dup","name":%q}}]}`, name))
	id := r.body["transaction_id"].(string)
	if st := e.waitState(id, "applied"); st.body["state"] != "failed" {
		e.t.Fatalf("poison %s: %v", name, st.body)
	}
	return id
}

func txnID() string { return "0190b5a0-0000-7000-8000-00000000abcd" }
