package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/spoolgw/spool/internal/syncbuf"
)

// signingKey is a private key of the tests, its kid and the algorithm it
// signs with.
type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func (k signingKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

type testKeys struct {
	rsa, ec, ed signingKey
	// other is an RSA key that no JWKS of the tests holds.
	other signingKey
}

// keys generates the tests' keys once: RSA generation takes a while under
// the race detector.
var keys = sync.OnceValue(func() testKeys {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return testKeys{
		rsa:   signingKey{kid: "rsa-1", alg: jose.RS256, priv: rsaKey},
		ec:    signingKey{kid: "ec-1", alg: jose.ES256, priv: ecKey},
		ed:    signingKey{kid: "ed-1", alg: jose.EdDSA, priv: edKey},
		other: signingKey{kid: "rsa-1", alg: jose.RS256, priv: otherKey},
	}
})

// jwks returns the JSON of a JWKS of the public halves of ks.
func jwks(t testing.TB, ks ...signingKey) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range ks {
		set.Keys = append(set.Keys, k.jwk())
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// sign returns a compact JWT of claims signed by k, with k's kid.
func sign(t testing.TB, k signingKey, claims map[string]any) string {
	t.Helper()
	return signWith(t, jose.SigningKey{Algorithm: k.alg, Key: k.priv}, k.kid, claims)
}

func signWith(t testing.TB, key jose.SigningKey, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// b64 is base64url without padding, as JWS segments are encoded.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// t0 is the tests' time: the injected clock starts here.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is a settable clock for Config.Now.
type clock struct{ now atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.set(t0)
	return c
}

func (c *clock) set(t time.Time) { c.now.Store(t.UnixNano()) }
func (c *clock) Now() time.Time  { return time.Unix(0, c.now.Load()).UTC() }

// claims returns valid claims for the test authenticator, at t0, with
// changes applied (a nil value deletes a claim).
func claims(changes map[string]any) map[string]any {
	c := map[string]any{
		"sub":   "alice",
		"iss":   testIssuer,
		"aud":   []string{testAudience, "another-service"},
		"iat":   t0.Unix(),
		"nbf":   t0.Add(-time.Minute).Unix(),
		"exp":   t0.Add(10 * time.Minute).Unix(),
		"scope": "openid read:orders write:orders",
	}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

const (
	testIssuer   = "https://id.example.test/"
	testAudience = "spool"
)

// fixture is an Authenticator over files in a temporary directory that a
// test rewrites before Reload.
type fixture struct {
	*Authenticator
	tokensFile, keysFile string
	clock                *clock
	log                  *syncbuf.Buffer
}

// setup writes tokens and keys (nil for none) and builds an Authenticator
// with the test issuer and audience when keys are given.
func setup(t *testing.T, tokens, keys []byte) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{clock: newClock(), log: &syncbuf.Buffer{}}
	cfg := Config{
		Now:    f.clock.Now,
		Logger: slog.New(slog.NewJSONHandler(f.log, nil)),
	}
	if tokens != nil {
		f.tokensFile = filepath.Join(dir, "tokens.json")
		writeFile(t, f.tokensFile, tokens)
		cfg.TokensFile = f.tokensFile
	}
	if keys != nil {
		f.keysFile = filepath.Join(dir, "jwks.json")
		writeFile(t, f.keysFile, keys)
		cfg.JWTKeysFile, cfg.JWTIssuer, cfg.JWTAudience = f.keysFile, testIssuer, testAudience
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.Authenticator = a
	return f
}

func writeFile(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tokenEntryJSON is one entry of a tokens file for the tests.
type tokenEntryJSON struct {
	Name   string   `json:"name"`
	SHA256 string   `json:"sha256"`
	Scopes []string `json:"scopes"`
}

// tokensJSON returns a tokens file of entries.
func tokensJSON(t testing.TB, entries ...tokenEntryJSON) []byte {
	t.Helper()
	data, err := json.Marshal(map[string]any{"tokens": entries})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// entry returns the tokens-file entry of a secret.
func entry(name, secret string, scopes ...string) tokenEntryJSON {
	return tokenEntryJSON{Name: name, SHA256: HashSecret(secret), Scopes: scopes}
}

// request returns a GET whose Authorization headers are auth.
func request(auth ...string) *http.Request {
	r, err := http.NewRequest(http.MethodGet, "http://localhost/v1/tables/orders", nil)
	if err != nil {
		panic(err)
	}
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	return r
}

func bearerRequest(cred string) *http.Request { return request("Bearer " + cred) }
