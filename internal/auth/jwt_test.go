package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/spoolgw/spool/internal/syncbuf"
)

// TestJWTAccepted signs a valid token with each kind of key.
func TestJWTAccepted(t *testing.T) {
	t.Parallel()
	k := keys()
	f := setup(t, nil, jwks(t, k.rsa, k.ec, k.ed))
	for _, key := range []signingKey{k.rsa, k.ec, k.ed} {
		p, err := f.Authenticate(bearerRequest(sign(t, key, claims(nil))))
		if err != nil {
			t.Errorf("%s: %v", key.alg, err)
			continue
		}
		if p.String() != "jwt:alice" || joinScopes(p.Scopes) != "read:orders write:orders" {
			t.Errorf("%s: principal %v with %v", key.alg, p, p.Scopes)
		}
	}
}

func TestJWTClaims(t *testing.T) {
	t.Parallel()
	k := keys()
	f := setup(t, nil, jwks(t, k.ec))
	for _, tc := range []struct {
		name    string
		changes map[string]any
		scopes  string // the principal's, when accepted
		refused string // the reason, when refused
	}{
		{name: "aud as a string", changes: map[string]any{"aud": testAudience}, scopes: "read:orders write:orders"},
		{name: "scope as an array", changes: map[string]any{"scope": []string{"admin", "profile", "read:*"}}, scopes: "admin read:*"},
		{name: "no scope", changes: map[string]any{"scope": nil}, scopes: ""},
		{name: "foreign and repeated scopes", changes: map[string]any{"scope": " openid  email read:a read:a  delete:b "}, scopes: "read:a"},
		{name: "scope a number", changes: map[string]any{"scope": 7}, refused: "scope claim"},
		{name: "no iat", changes: map[string]any{"iat": nil}, scopes: "read:orders write:orders"},
		{name: "no nbf", changes: map[string]any{"nbf": nil}, scopes: "read:orders write:orders"},
		{name: "expired", changes: map[string]any{"exp": t0.Add(-time.Minute).Unix()}, refused: "token is expired"},
		{name: "not yet valid", changes: map[string]any{"nbf": t0.Add(time.Minute).Unix()}, refused: "token not valid yet"},
		{name: "issued in the future", changes: map[string]any{"iat": t0.Add(time.Minute).Unix()}, refused: "issued in the future"},
		{name: "no exp", changes: map[string]any{"exp": nil}, refused: "no exp"},
		{name: "exp not a number", changes: map[string]any{"exp": "tomorrow"}, refused: "verify JWT"},
		{name: "wrong issuer", changes: map[string]any{"iss": "https://evil.example.test/"}, refused: "invalid issuer"},
		{name: "no issuer", changes: map[string]any{"iss": nil}, refused: "invalid issuer"},
		{name: "wrong audience", changes: map[string]any{"aud": []string{"another-service"}}, refused: "invalid audience"},
		{name: "no audience", changes: map[string]any{"aud": nil}, refused: "invalid audience"},
		{name: "no sub", changes: map[string]any{"sub": nil}, refused: "sub: no name"},
		{name: "sub with a newline", changes: map[string]any{"sub": "alice\nbob"}, refused: `sub: name holds '\n'`},
		{name: "sub too long", changes: map[string]any{"sub": long(257)}, refused: "sub: name longer than 256"},
	} {
		p, err := f.Authenticate(bearerRequest(sign(t, k.ec, claims(tc.changes))))
		switch {
		case tc.refused == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.refused == "" && joinScopes(p.Scopes) != tc.scopes:
			t.Errorf("%s: scopes %q; want %q", tc.name, joinScopes(p.Scopes), tc.scopes)
		case tc.refused != "" && (!errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), tc.refused)):
			t.Errorf("%s: %v, %v; want ErrBadCredentials saying %q", tc.name, p, err, tc.refused)
		}
	}
}

// TestJWTLeeway moves the injected clock around exp and nbf.
func TestJWTLeeway(t *testing.T) {
	t.Parallel()
	k := keys()
	f := setup(t, nil, jwks(t, k.ed))
	tok := sign(t, k.ed, claims(map[string]any{"nbf": t0.Unix(), "exp": t0.Add(time.Hour).Unix(), "iat": nil}))
	for _, tc := range []struct {
		at time.Time
		ok bool
	}{
		{t0.Add(-DefaultLeeway - time.Second), false},
		{t0.Add(-DefaultLeeway), true},
		{t0, true},
		{t0.Add(time.Hour + DefaultLeeway), true},
		{t0.Add(time.Hour + DefaultLeeway + time.Second), false},
	} {
		f.clock.set(tc.at)
		_, err := f.Authenticate(bearerRequest(tok))
		if (err == nil) != tc.ok {
			t.Errorf("at %v: %v", tc.at.Sub(t0), err)
		}
	}
}

// TestJWTWithoutIssuerOrAudience accepts any iss and aud when neither is
// configured, and warns at New about the audience.
func TestJWTWithoutIssuerOrAudience(t *testing.T) {
	t.Parallel()
	k := keys()
	f := setup(t, nil, jwks(t, k.rsa))
	log := &syncbuf.Buffer{}
	a, err := New(Config{JWTKeysFile: f.keysFile, Now: f.clock.Now, Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(bearerRequest(sign(t, k.rsa, claims(map[string]any{"iss": "anyone", "aud": nil})))); err != nil {
		t.Error(err)
	}
	if !strings.Contains(log.String(), "no JWT audience configured") {
		t.Errorf("no warning about the audience: %s", log)
	}
}

// TestJWTForged covers the tokens an attacker makes without a signing key.
func TestJWTForged(t *testing.T) {
	t.Parallel()
	k := keys()
	f := setup(t, nil, jwks(t, k.rsa, k.ec))
	good := sign(t, k.rsa, claims(nil))
	header, payload, sig := split3(t, good)
	evil := b64(string(mustJSON(t, claims(map[string]any{"sub": "mallory", "scope": "admin write:*"}))))

	pubDER, err := x509.MarshalPKIXPublicKey(k.rsa.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	rsaJWK, err := json.Marshal(k.rsa.jwk())
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, token, reason string
	}{
		{"alg none", b64(`{"alg":"none","typ":"JWT"}`) + "." + evil + ".", "unexpected signature algorithm"},
		{"alg none with a kid", b64(`{"alg":"none","kid":"rsa-1"}`) + "." + evil + ".", "unexpected signature algorithm"},
		{"alg none, the signature kept", b64(`{"alg":"none","kid":"rsa-1"}`) + "." + payload + "." + sig, "unexpected signature algorithm"},
		{"HS256 with the PEM public key as secret", signWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: pubPEM}, "rsa-1", claims(nil)), "unexpected signature algorithm"},
		{"HS256 with the DER public key as secret", signWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: pubDER}, "rsa-1", claims(nil)), "unexpected signature algorithm"},
		{"HS256 with the JWK as secret", signWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: rsaJWK}, "", claims(nil)), "unexpected signature algorithm"},
		{"HS512", signWith(t, jose.SigningKey{Algorithm: jose.HS512, Key: pubDER}, "rsa-1", claims(nil)), "unexpected signature algorithm"},
		{"tampered payload", header + "." + evil + "." + sig, "verify JWT"},
		{"tampered header", b64(`{"alg":"RS256","kid":"rsa-1","typ":"JWT","x":1}`) + "." + payload + "." + sig, "verify JWT"},
		{"signature cut", header + "." + payload + ".", "verify JWT"},
		{"signature of another token", header + "." + payload + "." + splitSig(t, sign(t, k.rsa, claims(map[string]any{"sub": "bob"}))), "verify JWT"},
		{"signed by a key not in the JWKS, kid of one that is", sign(t, k.other, claims(nil)), "verify JWT"},
		{"unknown kid", sign(t, signingKey{kid: "rsa-9", alg: jose.RS256, priv: k.rsa.priv}, claims(nil)), `unknown kid "rsa-9"`},
		{"no kid, two keys", sign(t, signingKey{alg: jose.RS256, priv: k.rsa.priv}, claims(nil)), "no kid in the header and 2 keys"},
		{"ES256 under the RSA key's kid", sign(t, signingKey{kid: "rsa-1", alg: jose.ES256, priv: k.ec.priv}, claims(nil)), `alg ES256 for key "rsa-1"`},
		{"PS256 with the right key", sign(t, signingKey{kid: "rsa-1", alg: jose.PS256, priv: k.rsa.priv}, claims(nil)), "unexpected signature algorithm"},
		{"EdDSA, no Ed25519 key given", sign(t, k.ed, claims(nil)), "unexpected signature algorithm"},
		{"header not JSON", b64(`{"alg":`) + "." + payload + "." + sig, "parse JWT"},
		{"header not a b64token", "!!!." + payload + "." + sig, "not a b64token"},
		{"header not base64url", "ab+/." + payload + "." + sig, "parse JWT"},
		{"payload not JSON, signed", signRaw(t, k.rsa, "not json"), "verify JWT: invalid character"},
		{"empty segments", "..", "parse JWT"},
		{"JWE-shaped", header + ".a.b.c.d", "not a JWT"},
	} {
		p, err := f.Authenticate(bearerRequest(tc.token))
		if !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: %v, %v; want ErrBadCredentials saying %q", tc.name, p, err, tc.reason)
		}
	}
	if _, err := f.Authenticate(bearerRequest(good)); err != nil {
		t.Errorf("the untouched token: %v", err)
	}
}

// TestJWTSingleKeyWithoutKid accepts a token without kid when the JWKS has
// one key, itself without kid.
func TestJWTSingleKeyWithoutKid(t *testing.T) {
	t.Parallel()
	k := keys()
	bare := signingKey{alg: jose.ES256, priv: k.ec.priv}
	f := setup(t, nil, jwks(t, bare))
	if _, err := f.Authenticate(bearerRequest(sign(t, bare, claims(nil)))); err != nil {
		t.Error(err)
	}
	if _, err := f.Authenticate(bearerRequest(sign(t, k.ec, claims(nil)))); err == nil || !strings.Contains(err.Error(), `unknown kid "ec-1"`) {
		t.Errorf("a kid the key lacks: %v", err)
	}
}

func TestParseJWKSErrors(t *testing.T) {
	t.Parallel()
	k := keys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := func(j jose.JSONWebKey) string { return string(mustJSON(t, j)) }
	set := func(ks ...string) string { return `{"keys":[` + strings.Join(ks, ",") + `]}` }
	good := key(k.ec.jwk())
	for _, tc := range []struct {
		name, file, want string
	}{
		{"not JSON", `{"keys":[`, "decode"},
		{"trailing data", set(good) + "x", "data after the JSON object"},
		{"no keys", `{"keys":[]}`, "no keys"},
		{"a single JWK, not a set", good, "no keys"},
		{"private RSA key", set(good, key(jose.JSONWebKey{Key: k.rsa.priv, KeyID: "priv"})), `key 1 (kid "priv"): a private key`},
		{"private Ed25519 key", set(key(jose.JSONWebKey{Key: k.ed.priv, KeyID: "ed"})), `key 0 (kid "ed"): a private key`},
		{"symmetric key", set(`{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}`), `key 0 (kid "hmac"): a symmetric key`},
		{"RSA of 1024 bits", set(key(jose.JSONWebKey{Key: &small.PublicKey, KeyID: "small"})), `key 0 (kid "small"): RSA key of 1024 bits`},
		{"P-384", set(key(jose.JSONWebKey{Key: &p384.PublicKey, KeyID: "p384"})), "only P-256"},
		{"alg not the key's", set(key(jose.JSONWebKey{Key: k.ec.priv.Public(), KeyID: "ec", Algorithm: "RS256"})), `alg "RS256": this key verifies ES256 only`},
		{"alg HS256 on an RSA key", set(key(jose.JSONWebKey{Key: k.rsa.priv.Public(), KeyID: "r", Algorithm: "HS256"})), `alg "HS256"`},
		{"use enc", set(key(jose.JSONWebKey{Key: k.ec.priv.Public(), KeyID: "ec", Use: "enc"})), `use "enc"`},
		{"unknown kty", set(`{"kty":"XYZ","kid":"x"}`), `key 0 (kid "x")`},
		{"bad RSA modulus", set(`{"kty":"RSA","kid":"r","n":"!!","e":"AQAB"}`), `key 0 (kid "r")`},
		{"duplicate kid", set(good, good), `key 1 (kid "ec-1"): kid already used`},
		{"no kid among several", set(good, key(jose.JSONWebKey{Key: k.ed.priv.Public()})), "key 1: no kid"},
	} {
		_, err := parseJWKS([]byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: parseJWKS = %v; want an error saying %q", tc.name, err, tc.want)
		}
	}
	ks, err := parseJWKS(jwks(t, k.rsa, k.ec, k.ed))
	if err != nil || len(ks.keys) != 3 || len(ks.algs) != 3 {
		t.Errorf("three good keys: %+v, %v", ks, err)
	}
}

// signRaw signs payload as it is, JSON or not.
func signRaw(t testing.TB, k signingKey, payload string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, (&jose.SignerOptions{}).WithHeader("kid", k.kid))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func split3(t testing.TB, tok string) (header, payload, sig string) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a compact JWS", tok)
	}
	return parts[0], parts[1], parts[2]
}

func splitSig(t testing.TB, tok string) string {
	_, _, sig := split3(t, tok)
	return sig
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
