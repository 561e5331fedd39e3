package api_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/spoolgw/spool/internal/api"
	"github.com/spoolgw/spool/internal/auth"
)

// creds are the credentials of the security tests: token secrets by
// name, and a JWT signing key with its kid in the JWKS.
type creds struct {
	secret map[string]string
	key    ed25519.PrivateKey
	// stranger signs with a kid the JWKS does not hold.
	stranger ed25519.PrivateKey
}

const (
	testIssuer   = "https://idp.example"
	testAudience = "spool"
)

// setupAuth is an env whose API authenticates with a tokens file and a
// JWKS: readers, writers of observations, an admin, and JWTs.
func setupAuth(t *testing.T, o options) (*env, *creds) {
	t.Helper()
	dir := t.TempDir()
	c := &creds{secret: map[string]string{}}
	var entries []string
	for name, scopes := range map[string]string{
		"reader":      `["read:*"]`,
		"instruments": `["read:instruments"]`,
		"obs-writer":  `["read:observations","write:observations"]`,
		"admin":       `["admin"]`,
		"writer":      `["read:*","write:*"]`,
	} {
		secret, hash := auth.NewSecret()
		c.secret[name] = secret
		entries = append(entries, fmt.Sprintf(`{"name":%q,"sha256":%q,"scopes":%s}`, name, hash, scopes))
	}
	tokens := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{"tokens":[`+strings.Join(entries, ",")+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, c.stranger, _ = ed25519.GenerateKey(rand.Reader)
	c.key = priv
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: string(jose.EdDSA), Use: "sig"}}})
	keys := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(keys, set, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{TokensFile: tokens, JWTKeysFile: keys, JWTIssuer: testIssuer, JWTAudience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	o.api.Auth = a
	return setupWith(t, "", o), c
}

// jwt signs claims with key under kid.
func (c *creds) jwt(t *testing.T, key ed25519.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claims are a valid JWT's claims for sub with scope, changed by edit.
func claims(sub, scope string, edit func(map[string]any)) map[string]any {
	m := map[string]any{"sub": sub, "iss": testIssuer, "aud": testAudience, "scope": scope,
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	if edit != nil {
		edit(m)
	}
	return m
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// as sends a request with credential cred ("" for none).
func (e *env) as(cred, method, path, body string) response {
	e.t.Helper()
	if cred == "" {
		return e.do(method, path, body)
	}
	return e.do(method, path, body, "Authorization", "Bearer "+cred)
}

// rows counts the rows of table in the database and the overlay, read
// with every scope.
func (e *env) rows(cred, table string) int {
	e.t.Helper()
	r := e.as(cred, "GET", "/v1/tables/"+table, "")
	if r.status != 200 {
		e.t.Fatalf("list %s: %d %s", table, r.status, r.raw)
	}
	return len(r.body["rows"].([]any))
}

// TestSecuritySweep: the OWASP API Security Top 10 items that apply to
// spool's routes (broken authentication, broken object- and
// function-level authorisation), each refused with 401 or 403 and nothing
// changed: the log's depth stays, no row appears.
func TestSecuritySweep(t *testing.T) {
	t.Parallel()
	e, c := setupAuth(t, options{})
	good := c.jwt(t, c.key, "k1", claims("alice", "write:observations read:observations", nil))
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + b64url(fmt.Sprintf(`{"sub":"alice","iss":%q,"aud":%q,"scope":"write:* admin","exp":%d}`,
		testIssuer, testAudience, time.Now().Add(time.Hour).Unix())) + "." + parts[2]
	algNone := b64url(`{"alg":"none","typ":"JWT","kid":"k1"}`) + "." + parts[1] + "."
	hs256 := b64url(`{"alg":"HS256","typ":"JWT","kid":"k1"}`) + "." + parts[1] + "." + b64url("forged")
	insert := `{"target":"M31"}`
	tx := `{"operations":[{"op":"insert","table":"observations","values":{"target":"M42"}},{"op":"insert","table":"frames","values":{"observation_id":"` + txnID() + `","seq":1}}]}`
	dl := "/v1/dlq/" + txnID()

	cases := []struct {
		name, cred, method, path, body string
		status                         int
		scope                          string // the 403's missing scope
	}{
		{"no credential", "", "POST", "/v1/tables/observations", insert, 401, ""},
		{"no credential on a read", "", "GET", "/v1/tables/observations", "", 401, ""},
		{"no credential on metrics-like stats", "", "GET", "/v1/stats", "", 401, ""},
		{"junk", "junk", "POST", "/v1/tables/observations", insert, 401, ""},
		{"junk that looks like a JWT", "a.b.c", "POST", "/v1/tables/observations", insert, 401, ""},
		{"expired", c.jwt(t, c.key, "k1", claims("alice", "write:*", func(m map[string]any) { m["exp"] = time.Now().Add(-time.Hour).Unix() })), "POST", "/v1/tables/observations", insert, 401, ""},
		{"not yet valid", c.jwt(t, c.key, "k1", claims("alice", "write:*", func(m map[string]any) { m["nbf"] = time.Now().Add(time.Hour).Unix() })), "POST", "/v1/tables/observations", insert, 401, ""},
		{"wrong issuer", c.jwt(t, c.key, "k1", claims("alice", "write:*", func(m map[string]any) { m["iss"] = "https://evil.example" })), "POST", "/v1/tables/observations", insert, 401, ""},
		{"wrong audience", c.jwt(t, c.key, "k1", claims("alice", "write:*", func(m map[string]any) { m["aud"] = "another-service" })), "POST", "/v1/tables/observations", insert, 401, ""},
		{"unknown kid", c.jwt(t, c.stranger, "k2", claims("alice", "write:*", nil)), "POST", "/v1/tables/observations", insert, 401, ""},
		{"known kid, another key", c.jwt(t, c.stranger, "k1", claims("alice", "write:*", nil)), "POST", "/v1/tables/observations", insert, 401, ""},
		{"changed payload", tampered, "POST", "/v1/tables/observations", insert, 401, ""},
		{"alg none", algNone, "POST", "/v1/tables/observations", insert, 401, ""},
		{"HS256 with the public key's kid", hs256, "POST", "/v1/tables/observations", insert, 401, ""},
		{"a scope for another table", c.secret["instruments"], "GET", "/v1/tables/observations", "", 403, "read:observations"},
		{"a JWT's scope for another table", good, "POST", "/v1/tables/instruments", `{"code":"x","name":"y"}`, 403, "write:instruments"},
		{"a transaction with one table out of scope", c.secret["obs-writer"], "POST", "/v1/transactions", tx, 403, "write:frames"},
		{"a read-only token inserting", c.secret["reader"], "POST", "/v1/tables/observations", insert, 403, "write:observations"},
		{"a read-only token in a transaction", c.secret["reader"], "POST", "/v1/transactions", tx, 403, "write:frames write:observations"},
		{"a read-only token deleting", c.secret["reader"], "DELETE", "/v1/tables/observations/" + txnID(), "", 403, "write:observations"},
		{"a read-only token on the seed's write", c.secret["reader"], "POST", "/write", `{"key":"k","value":"v"}`, 403, "write:spool_kv"},
		{"a non-admin listing dead letters", c.secret["writer"], "GET", "/v1/dlq", "", 403, "admin"},
		{"a non-admin showing a dead letter", c.secret["writer"], "GET", dl, "", 403, "admin"},
		{"a non-admin retrying a dead letter", c.secret["writer"], "POST", dl + "/retry", "", 403, "admin"},
		{"a non-admin retrying by filter", c.secret["writer"], "POST", "/v1/dlq/retry?table=instruments", "", 403, "admin"},
		{"a non-admin dropping a dead letter", c.secret["writer"], "DELETE", dl, "", 403, "admin"},
		{"a non-admin on stats", c.secret["writer"], "GET", "/v1/stats", "", 403, "admin"},
		{"a non-admin on the seed's stats", c.secret["writer"], "GET", "/stats", "", 403, "admin"},
		{"a reader following a transaction", c.secret["reader"], "GET", "/v1/transactions/" + txnID(), "", 403, "admin"},
		{"an admin writing", c.secret["admin"], "POST", "/v1/tables/observations", insert, 403, "write:observations"},
		{"an admin reading rows", c.secret["admin"], "GET", "/v1/tables/observations", "", 403, "read:observations"},
	}
	depth := e.depth()
	for _, tc := range cases {
		r := e.as(tc.cred, tc.method, tc.path, tc.body)
		if r.status != tc.status {
			t.Errorf("%s: %s %s = %d %s; want %d", tc.name, tc.method, tc.path, r.status, r.raw, tc.status)
			continue
		}
		ch := r.header.Get("WWW-Authenticate")
		if !strings.HasPrefix(ch, "Bearer ") {
			t.Errorf("%s: WWW-Authenticate %q; want a Bearer challenge", tc.name, ch)
		}
		if tc.status == 403 && (!strings.Contains(r.body["error"].(string), tc.scope) || !strings.Contains(ch, `scope="`+tc.scope+`"`)) {
			t.Errorf("%s: 403 %s, challenge %q; want it to name %s", tc.name, r.raw, ch, tc.scope)
		}
		for _, s := range c.secret {
			if strings.Contains(r.raw, s) {
				t.Errorf("%s: the answer holds a secret: %s", tc.name, r.raw)
			}
		}
	}
	if d := e.depth(); d != depth {
		t.Fatalf("refused requests changed the log: depth %d, was %d", d, depth)
	}
	if n := e.rows(c.secret["reader"], "observations") + e.rows(c.secret["reader"], "instruments") + e.rows(c.secret["reader"], "frames"); n != 0 {
		t.Fatalf("refused requests left %d rows", n)
	}

	// The same credentials where they are allowed: accepted, and recorded.
	r := e.as(good, "POST", "/v1/tables/observations", insert)
	if r.status != 201 {
		t.Fatalf("a valid JWT writing its table: %d %s", r.status, r.raw)
	}
	if r := e.as(c.secret["writer"], "POST", "/v1/transactions", tx); r.status != 202 {
		t.Fatalf("a writer of every table: %d %s", r.status, r.raw)
	}
	if r := e.as(c.secret["instruments"], "GET", "/v1/tables", ""); r.status != 200 || len(r.body["tables"].([]any)) != 1 {
		t.Fatalf("GET /v1/tables must list the one table the token may read: %d %s", r.status, r.raw)
	}
	if r := e.as(c.secret["reader"], "GET", "/health", ""); r.status != 200 {
		t.Fatalf("/health must stay open: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", "/readyz", ""); r.status != 200 && r.status != 503 {
		t.Fatalf("/readyz must stay open: %d %s", r.status, r.raw)
	}
}

// The principal is stored with the transaction, shown by its status, kept
// on its dead letter, and recorded as who retried and who dropped one.
func TestPrincipalRecorded(t *testing.T) {
	t.Parallel()
	e, c := setupAuth(t, options{})
	e.startApplier()
	writer, admin := c.secret["writer"], c.secret["admin"]
	alice := c.jwt(t, c.key, "k1", claims("alice", "write:instruments read:instruments", nil))
	wait := func(cred, id string) response {
		t.Helper()
		r := e.as(cred, "GET", "/v1/transactions/"+id+"?wait=applied&timeout=10s", "")
		if r.status != 200 {
			t.Fatalf("status of %s: %d %s", id, r.status, r.raw)
		}
		return r
	}
	first := e.as(writer, "POST", "/v1/tables/instruments", `{"code":"dup","name":"first"}`)
	if st := wait(writer, first.body["transaction_id"].(string)); st.body["principal"] != "token:writer" {
		t.Fatalf("status of an applied transaction: %s; want principal token:writer", st.raw)
	}
	poison := e.as(alice, "POST", "/v1/tables/instruments", `{"code":"dup","name":"again"}`)
	id := poison.body["transaction_id"].(string)
	if st := wait(alice, id); st.body["state"] != "failed" || st.body["principal"] != "jwt:alice" {
		t.Fatalf("status of a dead letter: %s; want failed, principal jwt:alice", st.raw)
	}
	show := e.as(admin, "GET", "/v1/dlq/"+id, "")
	if tx, _ := show.body["transaction"].(map[string]any); show.status != 200 || tx["principal"] != "jwt:alice" {
		t.Fatalf("the dead letter must keep who submitted it: %d %s", show.status, show.raw)
	}
	// A non-admin cannot drop it; nothing changes.
	if r := e.as(writer, "DELETE", "/v1/dlq/"+id, ""); r.status != 403 {
		t.Fatalf("non-admin drop: %d %s", r.status, r.raw)
	}
	if s := e.as(admin, "GET", "/v1/dlq/"+id, ""); s.body["dropped_at"] != nil || s.body["retried_as"] != nil {
		t.Fatalf("a refused drop changed the dead letter: %s", s.raw)
	}
	// Retried by the admin: the retry is the admin's transaction.
	r := e.as(admin, "POST", "/v1/dlq/"+id+"/retry", "")
	if r.status != 202 || r.body["by"] != "token:admin" {
		t.Fatalf("retry: %d %s", r.status, r.raw)
	}
	if st := wait(admin, r.body["transaction_id"].(string)); st.body["state"] != "failed" || st.body["principal"] != "token:admin" {
		t.Fatalf("the retry must record who retried: %s", st.raw)
	}
	again := r.body["transaction_id"].(string)
	if s := e.as(admin, "GET", "/v1/dlq/"+id, ""); s.body["retried_as"] != again || s.body["retried_by"] != "token:admin" {
		t.Fatalf("the retried dead letter must name its retry and who retried it: %s", s.raw)
	}
	if s := e.as(admin, "GET", "/v1/dlq/"+again, ""); s.body["transaction"].(map[string]any)["principal"] != "token:admin" || s.body["transaction"].(map[string]any)["retry_of"] != id {
		t.Fatalf("the retry's dead letter: %s", s.raw)
	}
	// Dropped: the admin's principal is the audit record, and no header
	// may say otherwise.
	d := e.do("DELETE", "/v1/dlq/"+again, "", "Authorization", "Bearer "+admin, "X-Spool-User", "root")
	if d.status != 200 || d.body["by"] != "token:admin" {
		t.Fatalf("drop: %d %s", d.status, d.raw)
	}
	if s := e.as(admin, "GET", "/v1/dlq/"+again, ""); s.body["dropped_by"] != "token:admin" {
		t.Fatalf("audit of the drop: %s", s.raw)
	}
}

// Without credentials (loopback) the browser's ways in are still shut:
// a JSON route without its media type is 415, a write from another origin
// or cross-site is 403, a foreign Host is refused, and CORS answers only
// configured origins; nothing is appended.
func TestBrowserGuards(t *testing.T) {
	t.Parallel()
	e := setupWith(t, "", options{api: api.Config{AllowedHosts: []string{"127.0.0.1", "localhost"}, CORSOrigins: []string{"https://ui.example"}}})
	body := `{"target":"M31"}`
	cases := []struct {
		name   string
		header []string
		status int
	}{
		{"no Content-Type", []string{"Content-Type", ""}, 415},
		{"a form", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415},
		{"text/plain", []string{"Content-Type", "text/plain"}, 415},
		{"another origin", []string{"Origin", "https://evil.example"}, 403},
		{"cross-site fetch", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"a rebound Host", []string{"Host", "evil.example"}, 421},
	}
	for _, tc := range cases {
		r := e.do("POST", "/v1/tables/observations", body, tc.header...)
		if r.status != tc.status {
			t.Errorf("%s: %d %s; want %d", tc.name, r.status, r.raw, tc.status)
		}
	}
	if d := e.depth(); d != 0 {
		t.Fatalf("refused writes appended %d transactions", d)
	}
	if r := e.do("POST", "/v1/dlq/retry?table=instruments", "", "Origin", "https://evil.example"); r.status != 403 {
		t.Errorf("a cross-origin bulk retry (an HTML form's POST): %d %s; want 403", r.status, r.raw)
	}
	if r := e.do("GET", "/v1/tables", "", "Origin", "https://evil.example"); r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a cross-origin read must get no CORS grant: %d %v", r.status, r.header)
	}
	pre := e.do("OPTIONS", "/v1/tables/observations", "", "Origin", "https://ui.example", "Access-Control-Request-Method", "POST")
	if pre.status != 204 || pre.header.Get("Access-Control-Allow-Origin") != "https://ui.example" || !strings.Contains(pre.header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight of a configured origin: %d %v", pre.status, pre.header)
	}
	if r := e.do("POST", "/v1/tables/observations", body, "Origin", "https://ui.example"); r.status != 201 || r.header.Get("Access-Control-Allow-Origin") != "https://ui.example" {
		t.Errorf("a write from a configured origin: %d %v %s", r.status, r.header, r.raw)
	}
}
