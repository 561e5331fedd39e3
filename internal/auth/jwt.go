package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// MinRSABits is the smallest RSA key a JWKS may hold: smaller keys are
// breakable and no identity provider issues them any more.
const MinRSABits = 2048

// MaxSubject bounds a JWT's sub in bytes: it is stored with every
// transaction the principal writes. Identity providers' subjects (a UUID,
// "auth0|…", an e-mail address) are far shorter.
const MaxSubject = 256

// verifyKey is one public key of the JWKS and the one algorithm it
// verifies.
type verifyKey struct {
	kid string
	alg jose.SignatureAlgorithm
	key any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// keySet is the keys of one reading of the JWKS file.
type keySet struct {
	keys []verifyKey
	// algs are the algorithms of the keys: the only ones a token may name.
	algs []jose.SignatureAlgorithm
}

// parseJWKS reads a JWKS ({"keys":[…]}) of public signing keys. Every
// error names the key at fault by its index and kid.
func parseJWKS(data []byte) (*keySet, error) {
	var f struct {
		Keys []json.RawMessage `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode: data after the JSON object")
	}
	if len(f.Keys) == 0 {
		return nil, errors.New(`no keys (want {"keys":[…]})`)
	}
	ks := &keySet{}
	for i, raw := range f.Keys {
		k, err := parseJWK(raw)
		if err != nil {
			return nil, fmt.Errorf("key %d%s: %w", i, kidSuffix(raw), err)
		}
		if k.kid == "" && len(f.Keys) > 1 {
			return nil, fmt.Errorf("key %d: no kid (a JWKS of more than one key names each)", i)
		}
		if slices.ContainsFunc(ks.keys, func(o verifyKey) bool { return o.kid == k.kid }) {
			return nil, fmt.Errorf("key %d (kid %q): kid already used", i, k.kid)
		}
		ks.keys = append(ks.keys, k)
		if !slices.Contains(ks.algs, k.alg) {
			ks.algs = append(ks.algs, k.alg)
		}
	}
	return ks, nil
}

// kidSuffix names a raw key's kid for an error, if it has one.
func kidSuffix(raw json.RawMessage) string {
	var k struct {
		Kid string `json:"kid"`
	}
	if json.Unmarshal(raw, &k) != nil || k.Kid == "" {
		return ""
	}
	return fmt.Sprintf(" (kid %q)", k.Kid)
}

func parseJWK(raw json.RawMessage) (verifyKey, error) {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return verifyKey{}, err
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return verifyKey{}, fmt.Errorf("use %q: want sig", jwk.Use)
	}
	k := verifyKey{kid: jwk.KeyID, key: jwk.Key}
	switch key := jwk.Key.(type) {
	case *rsa.PublicKey:
		if key.N.BitLen() < MinRSABits {
			return verifyKey{}, fmt.Errorf("RSA key of %d bits: want at least %d", key.N.BitLen(), MinRSABits)
		}
		k.alg = jose.RS256
	case *ecdsa.PublicKey:
		if key.Curve != elliptic.P256() {
			return verifyKey{}, fmt.Errorf("EC key on %s: only P-256 (ES256)", key.Curve.Params().Name)
		}
		k.alg = jose.ES256
	case ed25519.PublicKey:
		k.alg = jose.EdDSA
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return verifyKey{}, errors.New("a private key: give spool the public keys only")
	case []byte:
		return verifyKey{}, errors.New("a symmetric key (oct): only RS256, ES256 and EdDSA keys are accepted")
	default:
		return verifyKey{}, fmt.Errorf("key type %T: only RS256, ES256 and EdDSA keys are accepted", jwk.Key)
	}
	if jwk.Algorithm != "" && jwk.Algorithm != string(k.alg) {
		return verifyKey{}, fmt.Errorf("alg %q: this key verifies %s only", jwk.Algorithm, k.alg)
	}
	return k, nil
}

func (ks *keySet) find(kid string) (verifyKey, error) {
	if kid == "" {
		if len(ks.keys) == 1 {
			return ks.keys[0], nil
		}
		return verifyKey{}, fmt.Errorf("no kid in the header and %d keys to choose from", len(ks.keys))
	}
	for _, k := range ks.keys {
		if k.kid == kid {
			return k, nil
		}
	}
	return verifyKey{}, fmt.Errorf("unknown kid %q", kid)
}

// jwtCheck is what a JWT is checked against besides its signature.
type jwtCheck struct {
	issuer   string
	audience string
	leeway   time.Duration
	now      time.Time
}

// verify checks a compact JWS and returns its principal. Errors say why
// the token is refused; the caller wraps them in ErrBadCredentials.
func (ks *keySet) verify(raw string, c jwtCheck) (Principal, error) {
	tok, err := jwt.ParseSigned(raw, ks.algs)
	if err != nil {
		return Principal{}, fmt.Errorf("parse JWT: %w", err)
	}
	if len(tok.Headers) != 1 {
		return Principal{}, fmt.Errorf("JWT with %d signatures", len(tok.Headers))
	}
	h := tok.Headers[0]
	key, err := ks.find(h.KeyID)
	if err != nil {
		return Principal{}, err
	}
	if jose.SignatureAlgorithm(h.Algorithm) != key.alg {
		return Principal{}, fmt.Errorf("alg %s for key %q, which verifies %s only", h.Algorithm, key.kid, key.alg)
	}
	var claims jwt.Claims
	var extra struct {
		Scope json.RawMessage `json:"scope"`
	}
	if err := tok.Claims(key.key, &claims, &extra); err != nil {
		return Principal{}, fmt.Errorf("verify JWT: %w", err)
	}
	if claims.Expiry == nil {
		return Principal{}, errors.New("JWT has no exp")
	}
	want := jwt.Expected{Issuer: c.issuer, Time: c.now}
	if c.audience != "" {
		want.AnyAudience = jwt.Audience{c.audience}
	}
	if err := claims.ValidateWithLeeway(want, c.leeway); err != nil {
		return Principal{}, err
	}
	if err := checkName(claims.Subject, MaxSubject); err != nil {
		return Principal{}, fmt.Errorf("sub: %w", err)
	}
	scopes, err := jwtScopes(extra.Scope)
	if err != nil {
		return Principal{}, err
	}
	return Principal{Name: claims.Subject, Source: SourceJWT, Scopes: scopes}, nil
}

// jwtScopes reads the scope claim: a space-separated string as OAuth 2
// issues it, or an array of strings as some providers do. Scopes that are
// not spool's ("openid", "profile", another service's) are ignored: an
// identity provider issues one token for many services.
func jwtScopes(raw json.RawMessage) ([]Scope, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var words []string
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		words = strings.Fields(s)
	} else if err := json.Unmarshal(raw, &words); err != nil {
		return nil, errors.New("scope claim: want a space-separated string")
	}
	var scopes []Scope
	for _, w := range words {
		if sc, err := ParseScope(w); err == nil {
			scopes = appendScope(scopes, sc)
		}
	}
	return scopes, nil
}
