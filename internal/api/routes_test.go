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
// the API's description and the dashboard's static files are open; and with authentication on,
// every other route answers a request without credentials 401 before its handler runs.
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
	if want := []string{"GET /api/buffer/health", "GET /health", "GET /openapi.json", "GET /readyz", "GET /ui/"}; !slices.Equal(opened, want) {
		t.Errorf("open routes %q; want only %q", opened, want)
	}
	defer func() {
		if recover() == nil {
			t.Error("Handle of a route the table does not declare must panic")
		}
	}()
	s.Handle("GET /v1/undeclared", http.NotFoundHandler())
}

// X-Forwarded-For names the client only when the peer is a trusted proxy,
// and then the last hop that is not one.
func TestClientAddrTrustedProxies(t *testing.T) {
	t.Parallel()
	trusted, err := ParsePrefixes("10.0.0.0/8, 192.168.1.1")
	if err != nil {
		t.Fatal(err)
	}
	s := New(nil, nil, nil, Config{TrustedProxies: trusted}, nil)
	for _, tc := range []struct{ peer, xff, want string }{
		{"203.0.113.9:5000", "198.51.100.1", "203.0.113.9"},                     // untrusted peer: the header is ignored
		{"10.1.2.3:5000", "198.51.100.1", "198.51.100.1"},                       // a trusted proxy names the client
		{"10.1.2.3:5000", "6.6.6.6, 198.51.100.1, 192.168.1.1", "198.51.100.1"}, // the last untrusted hop, not a forged first one
		{"10.1.2.3:5000", "", "10.1.2.3"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.peer
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := s.clientAddr(r); got != tc.want {
			t.Errorf("peer %s, X-Forwarded-For %q: client %s; want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
	if _, err := ParsePrefixes("10.0.0.0/33"); err == nil {
		t.Error("a bad CIDR must be refused")
	}
}
