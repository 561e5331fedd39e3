package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Realm is the realm of spool's WWW-Authenticate challenges.
const Realm = "spool"

// Authorize checks the principal ctx carries against need. A ctx with no
// principal is refused with ErrNoCredentials, so a route reached without
// the middleware fails closed.
func Authorize(ctx context.Context, need Need) error {
	p, ok := FromContext(ctx)
	if !ok {
		return ErrNoCredentials
	}
	return p.Check(need)
}

// Status returns the HTTP status of an error of Authenticate, Check or
// Authorize: 401 for missing or bad credentials, 403 for a missing scope,
// and 0 for any other error.
func Status(err error) int {
	var fe *ForbiddenError
	switch {
	case errors.As(err, &fe):
		return http.StatusForbidden
	case errors.Is(err, ErrNoCredentials), errors.Is(err, ErrBadCredentials):
		return http.StatusUnauthorized
	}
	return 0
}

// Challenge returns the WWW-Authenticate value (RFC 6750 §3) for an error
// of Authenticate, Check or Authorize: no error code when no credential was
// sent, error="invalid_token" for a refused one, and
// error="insufficient_scope" with the missing scopes for a 403. It returns
// "" for any other error.
func Challenge(err error) string {
	var fe *ForbiddenError
	switch {
	case errors.As(err, &fe):
		c := `Bearer realm="` + Realm + `", error="insufficient_scope"`
		if len(fe.Missing) > 0 {
			c += `, scope="` + quoteEscape(joinScopes(fe.Missing)) + `"`
		}
		return c
	case errors.Is(err, ErrBadCredentials):
		return `Bearer realm="` + Realm + `", error="invalid_token"`
	case errors.Is(err, ErrNoCredentials):
		return `Bearer realm="` + Realm + `"`
	}
	return ""
}

// quoteEscape escapes s for an HTTP quoted-string.
func quoteEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// WriteError answers an error of Authenticate, Check or Authorize with its
// status, its challenge and the JSON body {"error": "…"} the API uses. It
// reports false, writing nothing, for any other error.
func WriteError(w http.ResponseWriter, err error) bool {
	status := Status(err)
	if status == 0 {
		return false
	}
	w.Header().Set("WWW-Authenticate", Challenge(err))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
	return true
}

// Middleware authenticates every request before next. Next runs with the
// principal in the request's context (FromContext); a request whose
// credentials are missing or refused is answered 401 by WriteError and
// never reaches next. Routes that stay open (/health, /readyz) are
// registered around it, not through it.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			WriteError(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}
