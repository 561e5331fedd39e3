package auth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/spoolgw/spool/internal/auth"
)

// The server builds one Authenticator at start, reloads it on SIGHUP, and
// puts its Middleware in front of every route but /health and /readyz;
// each route then checks its Need.
func Example() {
	dir, err := os.MkdirTemp("", "auth-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	tokens := filepath.Join(dir, "tokens.json")
	file := `{"tokens":[{"name":"ops-scripts","sha256":"` + auth.HashSecret("s3cret") + `","scopes":["read:*","write:observations"]}]}`
	if err := os.WriteFile(tokens, []byte(file), 0o600); err != nil {
		panic(err)
	}

	a, err := auth.New(auth.Config{TokensFile: tokens})
	if err != nil {
		panic(err)
	}
	if err := a.Reload(context.Background()); err != nil { // on SIGHUP
		panic(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/transactions", func(w http.ResponseWriter, r *http.Request) {
		// The tables come from the decoded transaction.
		if err := auth.Authorize(r.Context(), auth.Write("observations", "instruments")); err != nil {
			auth.WriteError(w, err)
			return
		}
		p, _ := auth.FromContext(r.Context())
		fmt.Fprintf(w, "accepted from %s", p)
	})
	h := a.Middleware(mux)

	for _, cred := range []string{"", "Bearer junk", "Bearer s3cret"} {
		r := httptest.NewRequest(http.MethodPost, "/v1/transactions", nil)
		if cred != "" {
			r.Header.Set("Authorization", cred)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, w.Header().Get("WWW-Authenticate"))
	}
	// Output:
	// 401 Bearer realm="spool"
	// 401 Bearer realm="spool", error="invalid_token"
	// 403 Bearer realm="spool", error="insufficient_scope", scope="write:instruments"
}
