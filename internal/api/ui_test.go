package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// GET /v1/whoami names the caller and its scopes, for any principal, and
// asks for credentials like every route that is not open.
func TestWhoami(t *testing.T) {
	t.Parallel()
	anon := setup(t, "").must(200, "GET", "/v1/whoami", "")
	if anon.body["name"] != "anonymous" || !slices.Equal(scopes(anon.body), []string{"read:*", "write:*", "admin"}) {
		t.Fatalf("whoami without credentials configured: %s", anon.raw)
	}
	e, c := setupAuth(t, options{})
	if r := e.do("GET", "/v1/whoami", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("whoami without credentials: %d %s; want 401", r.status, r.raw)
	}
	for cred, want := range map[string][]string{"reader": {"read:*"}, "obs-writer": {"read:observations", "write:observations"}, "admin": {"admin"}} {
		r := e.as(c.secret[cred], "GET", "/v1/whoami", "")
		if r.status != 200 || r.body["name"] != "token:"+cred || !slices.Equal(scopes(r.body), want) {
			t.Errorf("whoami as %s: %d %s; want token:%s with %q", cred, r.status, r.raw, cred, want)
		}
	}
}

func scopes(body map[string]any) []string {
	var out []string
	list, _ := body["scopes"].([]any)
	for _, s := range list {
		out = append(out, s.(string))
	}
	return out
}

// A list marks, row by row, the rows whose changes are still buffered:
// buffered[i] for rows[i]; once applied, none is.
func TestListMarksBuffered(t *testing.T) {
	t.Parallel()
	e := setup(t, "")
	e.startApplier()
	first := e.must(201, "POST", "/v1/tables/instruments", `{"code":"a","name":"stored"}`)
	e.waitState(first.body["transaction_id"].(string), "replicated")
	e.ap.Stop() // what comes next stays buffered
	e.must(201, "POST", "/v1/tables/instruments", `{"code":"b","name":"buffered"}`)
	l := e.must(200, "GET", "/v1/tables/instruments?order=code.asc", "")
	if got := marks(t, l.raw); !slices.Equal(got, []bool{false, true}) {
		t.Fatalf("buffered marks %v; want [false true]: %s", got, l.raw)
	}
	if got := marks(t, e.must(200, "GET", "/v1/tables/instruments?consistency=database", "").raw); !slices.Equal(got, []bool{false}) {
		t.Fatalf("consistency=database marks %v; want [false]", got)
	}
	if got := marks(t, e.must(200, "GET", "/v1/tables/instruments?code=eq.none", "").raw); got == nil || len(got) != 0 {
		t.Fatalf("an empty list must carry an empty buffered list, got %v", got)
	}
}

func marks(t *testing.T, raw string) []bool {
	t.Helper()
	var body struct {
		Rows     []map[string]any `json:"rows"`
		Buffered []bool           `json:"buffered"`
	}
	if err := json.NewDecoder(strings.NewReader(raw)).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if len(body.Rows) != len(body.Buffered) {
		t.Fatalf("%d rows, %d marks: %s", len(body.Rows), len(body.Buffered), raw)
	}
	return body.Buffered
}

// GET /v1/stats reports the time from acknowledgement to applied.
func TestStatsLatency(t *testing.T) {
	t.Parallel()
	e := setup(t, "")
	e.startApplier()
	r := e.must(201, "POST", "/v1/tables/instruments", `{"code":"a","name":"x"}`)
	e.waitState(r.body["transaction_id"].(string), "replicated")
	s := e.must(200, "GET", "/v1/stats", "")
	lat, _ := s.body["ack_to_applied"].(map[string]any)
	if lat["samples"] != json.Number("1") || lat["p50_seconds"] == nil || lat["p99_seconds"] == nil {
		t.Fatalf("ack_to_applied: %s", s.raw)
	}
}

// The dashboard is served open at /ui/: the app shell at every page's
// path (deep links), its assets, 404 elsewhere; scripts only from itself.
func TestDashboardServed(t *testing.T) {
	t.Parallel()
	e, _ := setupAuth(t, options{})
	for _, p := range []string{"/ui/", "/ui/dead-letters", "/ui/transactions/0190b5a0-0000-7000-8000-00000000abcd", "/ui/tables/observations"} {
		r := e.do("GET", p, "")
		if r.status != 200 || !strings.Contains(r.raw, `src="/ui/assets/app.js"`) || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: %d %q; want the app shell", p, r.status, r.header.Get("Content-Type"))
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
		}
	}
	for p, ct := range map[string]string{"/ui/assets/app.js": "text/javascript", "/ui/assets/style.css": "text/css"} {
		if r := e.do("GET", p, ""); r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), ct) {
			t.Errorf("GET %s: %d %q; want %s", p, r.status, r.header.Get("Content-Type"), ct)
		}
	}
	for _, p := range []string{"/ui/nope", "/ui/assets/nope.js", "/ui/tables/a/b", "/ui/assets/"} {
		if r := e.do("GET", p, ""); r.status != 404 {
			t.Errorf("GET %s: %d; want 404", p, r.status)
		}
	}
	if r := e.do("GET", "/ui", ""); r.status != 200 || !strings.Contains(r.raw, "app.js") {
		t.Errorf("GET /ui (redirected to /ui/): %d", r.status)
	}
}
