package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoolgw/spool/internal/api"
	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/auth"
	"github.com/spoolgw/spool/internal/embedtest"
	"github.com/spoolgw/spool/internal/events"
	"github.com/spoolgw/spool/internal/idempotency"
	"github.com/spoolgw/spool/internal/pipeline"
	"github.com/spoolgw/spool/internal/txlog/filelog"
)

// spool is a real spool on the embedded default (a local log and SQLite
// in a temporary directory, the observatory schema), its applier running,
// served over real HTTP with tokens: admin (every scope an operator
// needs), writer (read:* and write:*) and reader (read:instruments).
type spool struct {
	srv    *httptest.Server
	secret map[string]string
	lg     *filelog.Log
}

func startSpool(t *testing.T) *spool {
	t.Helper()
	dir := t.TempDir()
	ctx := t.Context()
	s := &spool{secret: map[string]string{}}
	var entries []string
	for name, scopes := range map[string]string{
		"admin":  `["admin","read:*","write:*"]`,
		"writer": `["read:*","write:*"]`,
		"reader": `["read:instruments"]`,
	} {
		secret, hash := auth.NewSecret()
		s.secret[name] = secret
		entries = append(entries, fmt.Sprintf(`{"name":%q,"sha256":%q,"scopes":%s}`, name, hash, scopes))
	}
	tokens := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{"tokens":[`+strings.Join(entries, ",")+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	authn, err := auth.New(auth.Config{TokensFile: tokens})
	if err != nil {
		t.Fatal(err)
	}
	parts := embedtest.Open(t, dir, filelog.Config{})
	st, cat := parts.Store, parts.Catalog
	s.lg = parts.Log
	keys, err := idempotency.Open(ctx, filepath.Join(dir, "idempotency.db"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() }) // after the applier stops
	p, err := pipeline.Build(ctx, pipeline.Config{Store: st, Catalog: cat, Log: s.lg, LocalKeys: keys, Applier: &applier.Config{BatchTimeout: -1},
		Events: &events.Config{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Events.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Events.Stop)
	if err := p.Applier.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Applier.Stop)
	s.srv = httptest.NewServer(api.New(p.Gateway, p.Queue, p.Applier, api.Config{Auth: authn, Events: p.Events, Stats: map[string]func() any{
		// As spool serve adds it.
		"applier": func() any {
			return map[string]any{"running": p.Applier.Running(), "holds_lease": p.Applier.HoldsLease(), "backoff": p.Applier.Backoff()}
		},
	}}, nil))
	t.Cleanup(s.srv.Close)
	return s
}
