package api

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spoolgw/spool/internal/auth"
)

// Every route of the table declares its access; only the health checks
// are open; and with authentication on, every other route answers a
// request without credentials 401 before its handler runs.
func TestEveryRouteDeclaresItsScope(t *testing.T) {
	t.Parallel()
	_, hash := auth.NewSecret()
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{"tokens":[{"name":"x","sha256":"`+hash+`","scopes":["admin"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{TokensFile: tokens})
	if err != nil {
		t.Fatal(err)
	}
	s := New(nil, nil, nil, Config{Auth: a}, nil)
	var opened []string
	for _, rt := range s.routeTable() {
		if rt.access == noAccess {
			t.Errorf("route %q declares no scope", rt.pattern)
		}
		if rt.access == open {
			opened = append(opened, rt.pattern)
			continue
		}
		if rt.handler == nil {
			s.Handle(rt.pattern, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				t.Errorf("mounted route %q ran without credentials", rt.pattern)
			}))
		}
		method, path, ok := strings.Cut(rt.pattern, " ")
		if !ok {
			method, path = "GET", "/no/such/route"
		}
		path = strings.NewReplacer("{table}", "observations", "{id}", "0190b5a0-0000-7000-8000-00000000abcd", "{key}", "k").Replace(path)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader("{}")))
		if w.Code != http.StatusUnauthorized || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s %s without credentials: %d %q; want 401 with a Bearer challenge", method, path, w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
	slices.Sort(opened)
	if want := []string{"GET /api/buffer/health", "GET /health", "GET /readyz"}; !slices.Equal(opened, want) {
		t.Errorf("open routes %q; want only %q", opened, want)
	}
	defer func() {
		if recover() == nil {
			t.Error("Handle of a route the table does not declare must panic")
		}
	}()
	s.Handle("GET /v1/undeclared", http.NotFoundHandler())
}
