package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/embedtest"
	spoolevents "github.com/spoolgw/spool/internal/events"

	"github.com/spoolgw/spool/internal/api"
	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/auth"
	"github.com/spoolgw/spool/internal/pipeline"
	"github.com/spoolgw/spool/internal/txlog/filelog"
)

// env is a real spool on the embedded default (a local log, SQLite, the
// applier) served over HTTP by the api, dashboard included: what
// `spool serve` runs, without the process.
type env struct {
	t   *testing.T
	ap  *applier.Applier
	srv *httptest.Server
	// secrets are the tokens' secrets by name, with a tokens file.
	secrets map[string]string
}

// setup starts spool; with tokens (name → scopes JSON) it authenticates
// with a tokens file holding them. The applier is not started.
func setup(t *testing.T, tokens map[string]string) *env {
	t.Helper()
	return setupWith(t, tokens, nil)
}

// setupWith is setup with events, when not nil, serving GET /v1/events
// in front of the api.
func setupWith(t *testing.T, tokens map[string]string, events http.Handler) *env {
	t.Helper()
	dir := t.TempDir()
	ctx := t.Context()
	parts := embedtest.Open(t, dir, filelog.Config{})
	st, lg, cat := parts.Store, parts.Log, parts.Catalog
	pc := pipeline.Config{Store: st, Catalog: cat, Log: lg, Applier: &applier.Config{BatchTimeout: -1}}
	if events == nil {
		pc.Events = &spoolevents.Config{} // the real live events
	}
	p, err := pipeline.Build(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Applier.Stop)
	if p.Events != nil {
		if err := p.Events.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Events.Stop)
	}
	e := &env{t: t, ap: p.Applier, secrets: map[string]string{}}
	cfg := api.Config{Events: p.Events, Stats: map[string]func() any{
		// What spool serve reports of its applier.
		"applier": func() any { return map[string]any{"running": p.Applier.Running(), "backoff": p.Applier.Backoff()} },
	}}
	if tokens != nil {
		var entries []string
		for name, scopes := range tokens {
			secret, hash := auth.NewSecret()
			e.secrets[name] = secret
			entries = append(entries, fmt.Sprintf(`{"name":%q,"sha256":%q,"scopes":%s}`, name, hash, scopes))
		}
		file := filepath.Join(dir, "tokens.json")
		if err := os.WriteFile(file, []byte(`{"tokens":[`+strings.Join(entries, ",")+`]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if cfg.Auth, err = auth.New(auth.Config{TokensFile: file}); err != nil {
			t.Fatal(err)
		}
	}
	var h http.Handler = api.New(p.Gateway, p.Queue, p.Applier, cfg, nil)
	if events != nil {
		mux := http.NewServeMux()
		mux.Handle("/", h)
		mux.Handle("GET /v1/events", events)
		h = mux
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close) // before the applier, the log and the store
	return e
}

func (e *env) startApplier() {
	e.t.Helper()
	if err := e.ap.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// call sends a request to the API as token name cred ("" for none) and
// decodes the answer, failing the test unless its status is want.
func (e *env) call(want int, cred, method, path, body string) map[string]any {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+e.secrets[cred])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		e.t.Fatalf("%s %s = %d %s; want %d", method, path, res.StatusCode, raw, want)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// waitState waits through the API for transaction id to reach state (or
// fail) and returns the state it is in.
func (e *env) waitState(cred, id, state string) string {
	e.t.Helper()
	r := e.call(200, cred, "GET", "/v1/transactions/"+id+"?wait="+state+"&timeout=20s", "")
	return r["state"].(string)
}

// poison makes a dead letter: instrument "dup" inserted a second time.
// The applier must run.
func (e *env) poison(cred string) string {
	e.t.Helper()
	first := e.call(201, cred, "POST", "/v1/tables/instruments", `{"code":"dup","name":"first"}`)
	if s := e.waitState(cred, first["transaction_id"].(string), "applied"); s == "failed" {
		e.t.Fatalf("the first insert of dup failed")
	}
	r := e.call(202, cred, "POST", "/v1/transactions", `{"operations":[{"op":"insert","table":"instruments","values":{"code":"dup","name":"second"}}]}`)
	id := r["transaction_id"].(string)
	if s := e.waitState(cred, id, "applied"); s != "failed" {
		e.t.Fatalf("the second insert of dup: %s; want failed", s)
	}
	return id
}

// within is how long a page may take to show an outcome: the machine is
// shared, and a browser is slow to start.
const within = 30 * time.Second
