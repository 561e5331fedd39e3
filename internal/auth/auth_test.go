package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestDisabled(t *testing.T) {
	t.Parallel()
	a, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Enabled() {
		t.Fatal("enabled without credentials")
	}
	for _, r := range []*http.Request{request(), request("Bearer junk"), request("Basic x", "Bearer y")} {
		p, err := a.Authenticate(r)
		if err != nil || p.String() != "anonymous" || p.Check(Admin()) != nil {
			t.Errorf("Authenticate = %v, %v", p, err)
		}
	}
	if err := a.Reload(context.Background()); err != nil {
		t.Errorf("Reload with nothing configured: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{JWTIssuer: "x"}, "JWTIssuer and JWTAudience need JWTKeysFile"},
		{Config{JWTAudience: "x", TokensFile: "t"}, "JWTIssuer and JWTAudience need JWTKeysFile"},
		{Config{Leeway: -1}, "Leeway -1ns is negative"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v; want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestNewNamesTheFile fails New for a missing or bad file, naming it.
func TestNewNamesTheFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	writeFile(t, bad, []byte(`{"tokens":[{"name":"a","sha256":"00","scopes":["admin"]}]}`))
	huge := filepath.Join(dir, "huge.json")
	writeFile(t, huge, make([]byte, MaxFileSize+1))
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{TokensFile: filepath.Join(dir, "missing.json")}, "auth: tokens file: open " + dir + "/missing.json: no such file"},
		{Config{TokensFile: bad}, "auth: tokens file " + bad + `: token 0 ("a"): sha256`},
		{Config{JWTKeysFile: bad}, "auth: JWT keys file " + bad + ": no keys"},
		{Config{JWTKeysFile: huge}, "larger than 4194304 bytes"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v; want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestBearer(t *testing.T) {
	t.Parallel()
	secret, _ := NewSecret()
	f := setup(t, tokensJSON(t, entry("ops", secret, "admin"), entry("padded", "YWJj+/==", "admin")), nil)
	for _, tc := range []struct {
		name    string
		headers []string
		want    error // nil when accepted
	}{
		{"no header", nil, ErrNoCredentials},
		{"Basic", []string{"Basic b3BzOnNlY3JldA=="}, ErrNoCredentials},
		{"Bearer prefix of another scheme", []string{"Bearerish " + secret}, ErrNoCredentials},
		{"empty header", []string{""}, ErrNoCredentials},
		{"Bearer alone", []string{"Bearer"}, ErrBadCredentials},
		{"Bearer and a space", []string{"Bearer "}, ErrBadCredentials},
		{"two words", []string{"Bearer " + secret + " x"}, ErrBadCredentials},
		{"two headers", []string{"Bearer " + secret, "Bearer " + secret}, ErrBadCredentials},
		{"a quote", []string{`Bearer "` + secret + `"`}, ErrBadCredentials},
		{"only padding", []string{"Bearer =="}, ErrBadCredentials},
		{"padding inside", []string{"Bearer ab=c"}, ErrBadCredentials},
		{"too long", []string{"Bearer " + strings.Repeat("a", MaxCredential+1)}, ErrBadCredentials},
		{"wrong secret", []string{"Bearer x" + secret}, ErrBadCredentials},
		{"Bearer", []string{"Bearer " + secret}, nil},
		{"lower-case scheme", []string{"bearer " + secret}, nil},
		{"upper-case scheme", []string{"BEARER " + secret}, nil},
		{"spaces around", []string{"  Bearer   " + secret + "  "}, nil},
		{"b64token with padding", []string{"Bearer YWJj+/=="}, nil},
	} {
		p, err := f.Authenticate(request(tc.headers...))
		if tc.want == nil {
			if err != nil || p.Source != SourceToken {
				t.Errorf("%s: %v, %v", tc.name, p, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.name, p, err, tc.want)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error %q holds the secret", tc.name, err)
		}
	}
}

// TestBothConfigured tries a credential as a token first, then as a JWT.
func TestBothConfigured(t *testing.T) {
	t.Parallel()
	k := keys()
	jwt := sign(t, k.ed, claims(map[string]any{"sub": "ops"}))
	// A token whose secret has the shape of a JWT is still a token.
	f := setup(t, tokensJSON(t, entry("ops", "s3cret", "admin"), entry("dotted", "a.b.c", "read:*")), jwks(t, k.ed))
	for cred, want := range map[string]string{"s3cret": "token:ops", "a.b.c": "token:dotted", jwt: "jwt:ops"} {
		if p, err := f.Authenticate(bearerRequest(cred)); err != nil || p.String() != want {
			t.Errorf("%q: %v, %v; want %s", cred, p, err, want)
		}
	}
	if _, err := f.Authenticate(bearerRequest("nothing")); !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), "unknown token") {
		t.Errorf("an unknown token: %v", err)
	}
}

// TestReloadTokens adds and removes tokens, and keeps the loaded ones when
// the new file is broken or gone.
func TestReloadTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t, tokensJSON(t, entry("a", "secret-a", "read:*")), nil)
	accepts := func(secret string) bool {
		t.Helper()
		_, err := f.Authenticate(bearerRequest(secret))
		if err != nil && !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("%s: %v", secret, err)
		}
		return err == nil
	}
	if !accepts("secret-a") || accepts("secret-b") {
		t.Fatal("before any reload")
	}

	writeFile(t, f.tokensFile, tokensJSON(t, entry("a", "secret-a", "read:*"), entry("b", "secret-b", "write:*")))
	if err := f.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if !accepts("secret-a") || !accepts("secret-b") {
		t.Error("after adding b")
	}
	if !strings.Contains(f.log.String(), `"added":["b"]`) {
		t.Errorf("the reload's log: %s", f.log)
	}

	writeFile(t, f.tokensFile, tokensJSON(t, entry("b", "secret-b", "write:*")))
	if err := f.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if accepts("secret-a") || !accepts("secret-b") {
		t.Error("after removing a")
	}
	if !strings.Contains(f.log.String(), `"removed":["a"]`) {
		t.Errorf("the reload's log: %s", f.log)
	}

	for name, broken := range map[string][]byte{
		"not JSON":       []byte(`{"tokens":[`),
		"duplicate name": tokensJSON(t, entry("c", "secret-c", "admin"), entry("c", "secret-d", "admin")),
		"bad scope":      tokensJSON(t, entry("c", "secret-c", "admin", "root")),
		"empty":          nil,
	} {
		writeFile(t, f.tokensFile, broken)
		err := f.Reload(ctx)
		if err == nil || !strings.Contains(err.Error(), "keeping the credentials loaded before") {
			t.Errorf("%s: Reload = %v", name, err)
		}
		if accepts("secret-a") || !accepts("secret-b") || accepts("secret-c") {
			t.Errorf("%s: the set changed", name)
		}
	}
	if err := os.Remove(f.tokensFile); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(ctx); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a removed file: Reload = %v", err)
	}
	if !accepts("secret-b") {
		t.Error("a removed file dropped the tokens")
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := f.Reload(canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("a canceled context: Reload = %v", err)
	}
}

// TestReloadKeys rotates the JWKS, and checks that a broken JWKS keeps the
// tokens file's old contents too: both files change together or not at all.
func TestReloadKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := keys()
	f := setup(t, tokensJSON(t, entry("a", "secret-a", "admin")), jwks(t, k.rsa))
	rsaTok, ecTok := sign(t, k.rsa, claims(nil)), sign(t, k.ec, claims(nil))
	check := func(step string, want map[string]bool) {
		t.Helper()
		for cred, ok := range want {
			if _, err := f.Authenticate(bearerRequest(cred)); (err == nil) != ok {
				t.Errorf("%s: %.20s…: %v", step, cred, err)
			}
		}
	}
	check("at start", map[string]bool{rsaTok: true, ecTok: false, "secret-a": true})

	writeFile(t, f.keysFile, jwks(t, k.rsa, k.ec))
	if err := f.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	check("the EC key added", map[string]bool{rsaTok: true, ecTok: true})

	writeFile(t, f.keysFile, jwks(t, k.ec))
	if err := f.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	check("the RSA key removed", map[string]bool{rsaTok: false, ecTok: true})

	writeFile(t, f.tokensFile, tokensJSON(t, entry("b", "secret-b", "admin")))
	writeFile(t, f.keysFile, []byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}`))
	if err := f.Reload(ctx); err == nil || !strings.Contains(err.Error(), "symmetric key") {
		t.Errorf("a symmetric key: Reload = %v", err)
	}
	check("a broken JWKS", map[string]bool{rsaTok: false, ecTok: true, "secret-a": true, "secret-b": false})
}

// TestReloadConcurrent authenticates while the credentials are swapped; a
// token present in both sets is never refused. Run with -race.
func TestReloadConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	one := tokensJSON(t, entry("a", "secret-a", "admin"), entry("x", "secret-x", "admin"))
	two := tokensJSON(t, entry("a", "secret-a", "admin"), entry("y", "secret-y", "admin"))
	f := setup(t, one, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if p, err := f.Authenticate(bearerRequest("secret-a")); err != nil || p.Name != "a" {
					errs <- fmt.Errorf("%v, %v", p, err)
					return
				}
			}
		})
	}
	for i := range 50 {
		writeFile(t, f.tokensFile, [][]byte{one, two}[i%2])
		if err := f.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestChallenge(t *testing.T) {
	t.Parallel()
	forbidden := &ForbiddenError{Principal: Principal{Name: "p", Source: SourceToken}, Missing: mustScopes(t, "write:a", `write:b"c`)}
	for _, tc := range []struct {
		err       error
		status    int
		challenge string
	}{
		{ErrNoCredentials, 401, `Bearer realm="spool"`},
		{fmt.Errorf("%w: unknown token", ErrBadCredentials), 401, `Bearer realm="spool", error="invalid_token"`},
		{fmt.Errorf("route: %w", forbidden), 403, `Bearer realm="spool", error="insufficient_scope", scope="write:a write:b\"c"`},
		{&ForbiddenError{}, 403, `Bearer realm="spool", error="insufficient_scope"`},
		{errors.New("other"), 0, ""},
	} {
		if got := Status(tc.err); got != tc.status {
			t.Errorf("Status(%v) = %d; want %d", tc.err, got, tc.status)
		}
		if got := Challenge(tc.err); got != tc.challenge {
			t.Errorf("Challenge(%v) = %s; want %s", tc.err, got, tc.challenge)
		}
	}
	if WriteError(httptest.NewRecorder(), errors.New("other")) {
		t.Error("WriteError wrote an error not of this package")
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	f := setup(t, tokensJSON(t, entry("reader", "secret-r", "read:orders")), nil)
	h := f.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := Authorize(r.Context(), Write("orders")); err != nil {
			WriteError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, tc := range []struct {
		auth               []string
		status             int
		challenge, message string
	}{
		{nil, 401, `Bearer realm="spool"`, "no credentials"},
		{[]string{"Bearer junk"}, 401, `Bearer realm="spool", error="invalid_token"`, "bad credentials: unknown token"},
		{[]string{"Bearer secret-r"}, 403, `Bearer realm="spool", error="insufficient_scope", scope="write:orders"`, "token:reader lacks scope write:orders"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, request(tc.auth...))
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%v: body %q: %v", tc.auth, rec.Body, err)
		}
		if rec.Code != tc.status || rec.Header().Get("WWW-Authenticate") != tc.challenge || body["error"] != tc.message ||
			rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%v: %d %q %q", tc.auth, rec.Code, rec.Header().Get("WWW-Authenticate"), body)
		}
	}
}

func FuzzAuthenticate(f *testing.F) {
	k := keys()
	dir := f.TempDir()
	tokens, jwksFile := filepath.Join(dir, "tokens.json"), filepath.Join(dir, "jwks.json")
	writeFile(f, tokens, tokensJSON(f, entry("ops", "s3cret", "admin")))
	writeFile(f, jwksFile, jwks(f, k.rsa, k.ec))
	c := newClock()
	a, err := New(Config{TokensFile: tokens, JWTKeysFile: jwksFile, JWTIssuer: testIssuer, JWTAudience: testAudience, Now: c.Now})
	if err != nil {
		f.Fatal(err)
	}
	good := sign(f, k.ec, claims(nil))
	for _, s := range []string{"Bearer s3cret", "Bearer " + good, "Bearer " + good[:len(good)-3], "Basic x", "Bearer a.b.c", "bearer  =="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		p, err := a.Authenticate(request(header))
		switch {
		case err == nil:
			if p.String() != "token:ops" && p.String() != "jwt:alice" {
				t.Fatalf("%q authenticated as %v", header, p)
			}
		case !errors.Is(err, ErrNoCredentials) && !errors.Is(err, ErrBadCredentials):
			t.Fatalf("%q: an error of no known kind: %v", header, err)
		}
	})
}
