package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// setupHTTP serves a Service over real HTTP, with lanes for readings and
// events, writing into a memInserter.
func setupHTTP(t *testing.T, cfg Config) (*Service, *memInserter, *httptest.Server) {
	t.Helper()
	st := openSQLite(t, `CREATE TABLE IF NOT EXISTS events (n integer PRIMARY KEY, kind text NOT NULL, v real);`)
	ins := &memInserter{}
	if cfg.Lanes == nil {
		cfg.Lanes = []LaneConfig{{Table: "readings", Capacity: 100}, {Table: "events"}}
	}
	cfg.Tables = tablesOf(t, st)
	cfg.Inserter = ins
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = time.Hour // tests look at the ring before the writer does
	}
	s := newService(t, cfg)
	mux := http.NewServeMux()
	s.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return s, ins, srv
}

type response struct {
	status int
	body   map[string]any
	header http.Header
}

func post(t *testing.T, url, contentType, body string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return do(t, req)
}

func get(t *testing.T, url string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := response{status: res.StatusCode, header: res.Header}
	if err := json.Unmarshal(b, &r.body); err != nil {
		t.Fatalf("%s %s: %d, body not a JSON object: %q", req.Method, req.URL.Path, res.StatusCode, b)
	}
	return r
}

func TestIngestFormats(t *testing.T) {
	t.Parallel()
	s, _, srv := setupHTTP(t, Config{})
	url := srv.URL + "/v1/ingest/readings"
	cases := []struct {
		name, ct, body string
		n              int
	}{
		{"array", "application/json", `[{"sensor":"a","seq":1,"value":1.5},{"sensor":"a","seq":2,"meta":{"k":[1,2]}}]`, 2},
		{"ndjson", "application/x-ndjson", "{\"sensor\":\"b\",\"seq\":1}\n{\"sensor\":\"b\",\"seq\":2,\"value\":null}\n\n{\"sensor\":\"b\",\"seq\":3}\n", 3},
		{"ndjson without a final newline", "application/x-ndjson", `{"sensor":"c","seq":1}`, 1},
		{"array, spaced", "application/json", ` [ {"sensor":"d","seq":1} ] `, 1},
		{"json-lines type", "application/jsonl; charset=utf-8", `{"sensor":"e","seq":1}`, 1},
	}
	total := 0
	for _, c := range cases {
		r := post(t, url, c.ct, c.body)
		if r.status != http.StatusAccepted || r.body["accepted"] != float64(c.n) || r.body["dropped"] != float64(0) {
			t.Fatalf("%s: %d %v", c.name, r.status, r.body)
		}
		total += c.n
	}
	if got := s.byName["readings"].ring.Len(); got != total {
		t.Fatalf("ring holds %d, want %d", got, total)
	}
	// Values are canonical, defaults and keys filled in at intake.
	first := s.byName["readings"].ring.Peek(1)[0]
	tab := s.byName["readings"].table
	row := map[string]any{}
	for i, c := range tab.Columns {
		row[c.Name] = first[i]
	}
	if id, _ := row["id"].(string); len(id) != 36 || row["seq"] != int64(1) || row["value"] != 1.5 {
		t.Fatalf("first sample %#v", row)
	}
	if ts, _ := row["taken_at"].(string); !strings.HasSuffix(ts, "Z") || len(ts) != 30 {
		t.Fatalf("taken_at default not filled in at intake: %#v", row["taken_at"])
	}
}

func TestIngestRefusals(t *testing.T) {
	t.Parallel()
	s, _, srv := setupHTTP(t, Config{MaxBodyBytes: 4096, MaxRequestRows: 5})
	url := srv.URL + "/v1/ingest/readings"
	big := `[{"sensor":"` + strings.Repeat("x", 5000) + `","seq":1}]`
	cases := []struct {
		name, url, ct, body string
		status              int
		msg                 string
		row                 any
	}{
		{"bad value names the row", url, "application/json", `[{"sensor":"a","seq":1},{"sensor":"a","seq":2},{"sensor":"a","seq":"three"}]`,
			400, `row 2: column "seq" of table "readings": must be`, 2.0},
		{"unknown column", url, "application/x-ndjson", "{\"sensor\":\"a\",\"seq\":1}\n{\"sensor\":\"a\",\"seq\":2,\"colour\":\"red\"}",
			400, `row 1: column "colour" of table "readings": no such column`, 1.0},
		{"missing NOT NULL", url, "application/json", `[{"sensor":"a"}]`, 400, `row 0: column "seq"`, 0.0},
		{"not an object", url, "application/json", `[{"sensor":"a","seq":1}, 5]`, 400, "row 1: must be a JSON object, not a number", 1.0},
		{"null row", url, "application/x-ndjson", `null`, 400, "row 0: must be a JSON object, not null", 0.0},
		{"malformed", url, "application/json", `[{"sensor":"a","seq":1}, {"sensor":`, 400, "row 1: malformed JSON", 1.0},
		{"trailing data", url, "application/json", `[{"sensor":"a","seq":1}] {}`, 400, "malformed JSON body", nil},
		{"empty body", url, "application/json", ``, 400, "no rows", nil},
		{"empty array", url, "application/json", `[]`, 400, "no rows", nil},
		{"wrong type", url, "text/csv", `a,b`, 415, "Content-Type must be", nil},
		{"no type", url, "", `[{"sensor":"a","seq":1}]`, 415, "Content-Type must be", nil},
		{"body too large", url, "application/json", big, 413, "larger than 4096 bytes", nil},
		{"too many rows", url, "application/x-ndjson", strings.Repeat("{\"sensor\":\"a\",\"seq\":1}\n", 6), 413, "more than 5 rows", nil},
		{"no lane", srv.URL + "/v1/ingest/nosuch", "application/json", `[{}]`, 404, `no telemetry lane for table "nosuch"`, nil},
	}
	for _, c := range cases {
		r := post(t, c.url, c.ct, c.body)
		msg, _ := r.body["error"].(string)
		if r.status != c.status || !strings.Contains(msg, c.msg) || r.body["row"] != c.row {
			t.Errorf("%s: %d %v; want %d with %q, row %v", c.name, r.status, r.body, c.status, c.msg, c.row)
		}
	}
	// A refused request changes nothing.
	if st := s.Status()[0]; st.TotalAdded != 0 || st.CurrentSize != 0 {
		t.Fatalf("refused requests reached the ring: %+v", st.RingStats)
	}
}

func TestIngestDropsOldest(t *testing.T) {
	t.Parallel()
	s, _, srv := setupHTTP(t, Config{Lanes: []LaneConfig{{Table: "readings", Capacity: 10}}})
	var lines strings.Builder
	for i := range 8 {
		fmt.Fprintf(&lines, "{\"sensor\":\"a\",\"seq\":%d}\n", i)
	}
	url := srv.URL + "/v1/ingest/readings"
	if r := post(t, url, "application/x-ndjson", lines.String()); r.body["accepted"] != 8.0 || r.body["dropped"] != 0.0 {
		t.Fatalf("first: %v", r.body)
	}
	if r := post(t, url, "application/x-ndjson", lines.String()); r.body["accepted"] != 8.0 || r.body["dropped"] != 6.0 {
		t.Fatalf("second: %v", r.body)
	}
	// The seed's shape for the default lane.
	r := get(t, srv.URL+"/api/buffer/status")
	want := map[string]any{"current_size": 10.0, "max_size": 10.0, "utilization_pct": 100.0, "overflow_count": 6.0,
		"overflow_rate_pct": 37.5, "total_added": 16.0}
	for k, v := range want {
		if r.body[k] != v {
			t.Errorf("buffer status %s = %v, want %v", k, r.body[k], v)
		}
	}
	// A full ring is degraded, not yet unhealthy.
	h := get(t, srv.URL+"/api/buffer/health")
	if h.status != 503 || h.body["status"] != "degraded" || !strings.Contains(h.body["reason"].(string), "100% full") {
		t.Fatalf("health %d %v", h.status, h.body)
	}
	s.byName["readings"].ring.Get(10)
	if h := get(t, srv.URL+"/api/buffer/health"); h.status != 200 || h.body["status"] != "healthy" {
		t.Fatalf("health after draining %d %v", h.status, h.body)
	}
}

func TestIngestBeforeStartAndAfterStop(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	s, err := New(Config{Lanes: []LaneConfig{{Table: "readings"}}, Tables: tablesOf(t, st), Inserter: &memInserter{}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s.Stop() // before Start: nothing to do
	mux := http.NewServeMux()
	s.Routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	body := `[{"sensor":"a","seq":1}]`
	if r := post(t, srv.URL+"/v1/ingest/readings", "application/json", body); r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("before Start: %d %v", r.status, r.body)
	}
	if h := get(t, srv.URL+"/api/buffer/health"); h.status != 503 || h.body["status"] != "unhealthy" {
		t.Fatalf("health before Start: %d %v", h.status, h.body)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("second Start accepted")
	}
	if r := post(t, srv.URL+"/v1/ingest/readings", "application/json", body); r.status != 202 {
		t.Fatalf("running: %d %v", r.status, r.body)
	}
	s.Stop()
	s.Stop()
	if r := post(t, srv.URL+"/v1/ingest/readings", "application/json", body); r.status != 503 {
		t.Fatalf("after Stop: %d %v", r.status, r.body)
	}
	r := get(t, srv.URL+"/v1/ingest/status")
	lanes, _ := r.body["lanes"].([]any)
	if len(lanes) != 1 {
		t.Fatalf("status %v", r.body)
	}
	lane := lanes[0].(map[string]any)
	w := lane["writer"].(map[string]any)
	if lane["table"] != "readings" || w["state"] != "stopped" || w["rows_written"] != 1.0 || w["batches"] != 1.0 || w["last_write"] == nil {
		t.Fatalf("status after Stop: %v", lane)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	tables := tablesOf(t, st)
	ok := Config{Lanes: []LaneConfig{{Table: "readings"}}, Tables: tables, Inserter: &memInserter{}, Dir: t.TempDir()}
	for name, mod := range map[string]func(c *Config){
		"no Tables":        func(c *Config) { c.Tables = nil },
		"no Inserter":      func(c *Config) { c.Inserter = nil },
		"no Dir":           func(c *Config) { c.Dir = "" },
		"unknown table":    func(c *Config) { c.Lanes = []LaneConfig{{Table: "nosuch"}} },
		"twice":            func(c *Config) { c.Lanes = append(c.Lanes, LaneConfig{Table: "readings"}) },
		"bad default":      func(c *Config) { c.Default = "events" },
		"one spill file":   func(c *Config) { c.SpillMaxFiles = 1 },
		"negative timeout": func(c *Config) { c.WriteTimeout = -1 },
		"bad capacity":     func(c *Config) { c.Lanes = []LaneConfig{{Table: "readings", Capacity: -3}} },
		"retry inverted":   func(c *Config) { c.RetryMin, c.RetryMax = time.Second, time.Millisecond },
		"batch inverted":   func(c *Config) { c.BatchSize, c.MaxBatchSize = 100, 50 },
	} {
		c := ok
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(ok); err != nil {
		t.Fatal(err)
	}
}

func TestParseLanes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][]LaneConfig{
		"readings":              {{Table: "readings"}},
		"readings:5000":         {{Table: "readings", Capacity: 5000}},
		"readings:5000, events": {{Table: "readings", Capacity: 5000}, {Table: "events"}},
	} {
		if got, err := ParseLanes(in); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseLanes(%q) = %+v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", ":10", "readings:", "readings:0", "readings:x", "a,,b", "a,"} {
		if _, err := ParseLanes(in); err == nil {
			t.Errorf("ParseLanes(%q) accepted", in)
		}
	}
}

// FuzzDecodeRows checks that no body panics the intake parser and that
// what it accepts is a list of objects.
func FuzzDecodeRows(f *testing.F) {
	for _, s := range []string{`[{"a":1}]`, "{\"a\":1}\n{\"b\":2}", `[]`, `[{"a":1},`, `null`, ` [ ] `, `{"a":[1,{"b":null}]}`, `[1]`, "\n\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		rows, err := decodeRows(strings.NewReader(body), 50)
		if err != nil {
			return
		}
		if len(rows) == 0 || len(rows) > 50 {
			t.Fatalf("%q: %d rows accepted", body, len(rows))
		}
		for _, r := range rows {
			if r == nil {
				t.Fatalf("%q: a nil row accepted", body)
			}
		}
	})
}
