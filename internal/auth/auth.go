package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultLeeway is how far a JWT's exp and nbf may be off the clock: 30 s
// absorbs the drift between an identity provider's clock and spool's
// without keeping an expired token alive for long.
const DefaultLeeway = 30 * time.Second

// MaxCredential bounds the credential of an Authorization header in
// bytes. JWTs of identity providers stay under 4 KiB; nothing is hashed or
// parsed past this.
const MaxCredential = 16 << 10

// ErrNoCredentials means the request carries no bearer credential: no
// Authorization header, or one of another scheme. A caller answers it
// with 401 and WWW-Authenticate: Bearer, no error code (RFC 6750 §3.1).
var ErrNoCredentials = errors.New("no credentials")

// ErrBadCredentials means the bearer credential is refused: malformed,
// unknown, expired, not yet valid, for another issuer or audience, or
// badly signed. Errors wrap it with the reason. A caller answers it with
// 401 and WWW-Authenticate: Bearer error="invalid_token".
var ErrBadCredentials = errors.New("bad credentials")

// Config says where the credentials are and how JWTs are checked. Leaving
// both files empty turns authentication off.
type Config struct {
	// TokensFile is the tokens file (--tokens); empty for none.
	TokensFile string
	// JWTKeysFile is a JWKS of the keys that sign JWTs (--jwt-keys);
	// empty for none.
	JWTKeysFile string
	// JWTIssuer, when set, is the iss every JWT must carry.
	JWTIssuer string
	// JWTAudience, when set, must be among every JWT's aud.
	JWTAudience string
	// Leeway is how far exp and nbf may be off; 0 means DefaultLeeway.
	Leeway time.Duration
	// Now is the clock JWTs are checked against; nil means time.Now.
	Now func() time.Time
	// Logger gets the reloads and configuration warnings; nil discards.
	Logger *slog.Logger
}

// Validate reports a configuration that cannot work, naming the field.
func (c Config) Validate() error {
	if c.JWTKeysFile == "" && (c.JWTIssuer != "" || c.JWTAudience != "") {
		return errors.New("auth: JWTIssuer and JWTAudience need JWTKeysFile")
	}
	if c.Leeway < 0 {
		return fmt.Errorf("auth: Leeway %v is negative", c.Leeway)
	}
	return nil
}

// credentials are the contents of both files, read together and replaced
// together.
type credentials struct {
	tokens *tokenSet // nil without a tokens file
	keys   *keySet   // nil without a JWKS
}

// Authenticator tells who a request comes from. It is safe for concurrent
// use; Reload replaces the credentials while requests are authenticated.
type Authenticator struct {
	cfg    Config
	now    func() time.Time
	log    *slog.Logger
	leeway time.Duration

	reloading sync.Mutex // one Reload at a time
	creds     atomic.Pointer[credentials]
}

// New reads the configured files and returns an Authenticator, or an error
// naming the file and the entry at fault.
func New(cfg Config) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Authenticator{cfg: cfg, now: cfg.Now, log: cfg.Logger, leeway: cfg.Leeway}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.leeway == 0 {
		a.leeway = DefaultLeeway
	}
	creds, err := a.read()
	if err != nil {
		return nil, err
	}
	a.creds.Store(creds)
	if cfg.JWTKeysFile != "" && cfg.JWTAudience == "" {
		a.log.Warn("auth: no JWT audience configured: a JWT the identity provider signed for any other service is accepted too",
			"jwt_keys", cfg.JWTKeysFile)
	}
	return a, nil
}

// Enabled reports whether any credentials are configured. When it is
// false, Authenticate returns Anonymous for every request, and the server
// decides where it may listen and how it warns.
func (a *Authenticator) Enabled() bool {
	return a.cfg.TokensFile != "" || a.cfg.JWTKeysFile != ""
}

// Reload reads both files again (on SIGHUP). If either is unreadable or
// invalid, it keeps the credentials it had and returns the error for the
// caller to log; otherwise the new ones take effect for the next request.
func (a *Authenticator) Reload(ctx context.Context) error {
	a.reloading.Lock()
	defer a.reloading.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("auth: reload: %w", err)
	}
	creds, err := a.read()
	if err != nil {
		return fmt.Errorf("auth: reload, keeping the credentials loaded before: %w", err)
	}
	old := a.creds.Swap(creds)
	attrs := []any{}
	if creds.tokens != nil {
		oldNames, newNames := old.tokens.names(), creds.tokens.names()
		attrs = append(attrs, "tokens", len(newNames),
			"added", difference(newNames, oldNames), "removed", difference(oldNames, newNames))
	}
	if creds.keys != nil {
		attrs = append(attrs, "jwt_keys", len(creds.keys.keys))
	}
	a.log.Info("auth: credentials reloaded", attrs...)
	return nil
}

// difference returns the names of a that b lacks.
func difference(a, b []string) []string {
	var d []string
	for _, n := range a {
		if !slices.Contains(b, n) {
			d = append(d, n)
		}
	}
	return d
}

// read reads and checks both configured files.
func (a *Authenticator) read() (*credentials, error) {
	var c credentials
	if a.cfg.TokensFile != "" {
		data, err := readFile(a.cfg.TokensFile)
		if err != nil {
			return nil, fmt.Errorf("auth: tokens file: %w", err)
		}
		if c.tokens, err = parseTokens(data); err != nil {
			return nil, fmt.Errorf("auth: tokens file %s: %w", a.cfg.TokensFile, err)
		}
	}
	if a.cfg.JWTKeysFile != "" {
		data, err := readFile(a.cfg.JWTKeysFile)
		if err != nil {
			return nil, fmt.Errorf("auth: JWT keys file: %w", err)
		}
		if c.keys, err = parseJWKS(data); err != nil {
			return nil, fmt.Errorf("auth: JWT keys file %s: %w", a.cfg.JWTKeysFile, err)
		}
	}
	return &c, nil
}

// readFile reads at most MaxFileSize bytes of name, and fails past that.
func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, MaxFileSize)
	}
	return data, nil
}

// Authenticate returns the principal of r's bearer credential: a token of
// the tokens file, else a JWT verified against the JWKS. Errors wrap
// ErrNoCredentials or ErrBadCredentials. With authentication off it
// returns Anonymous.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	if !a.Enabled() {
		return Anonymous(), nil
	}
	cred, err := bearer(r.Header)
	if err != nil {
		return Principal{}, err
	}
	creds := a.creds.Load()
	if creds.tokens != nil {
		if t, ok := creds.tokens.lookup(cred); ok {
			return Principal{Name: t.name, Source: SourceToken, Scopes: slices.Clone(t.scopes)}, nil
		}
	}
	if creds.keys != nil && strings.Count(cred, ".") == 2 {
		p, err := creds.keys.verify(cred, jwtCheck{
			issuer:   a.cfg.JWTIssuer,
			audience: a.cfg.JWTAudience,
			leeway:   a.leeway,
			now:      a.now(),
		})
		if err != nil {
			return Principal{}, fmt.Errorf("%w: %w", ErrBadCredentials, err)
		}
		return p, nil
	}
	if creds.tokens == nil {
		return Principal{}, fmt.Errorf("%w: not a JWT", ErrBadCredentials)
	}
	return Principal{}, fmt.Errorf("%w: unknown token", ErrBadCredentials)
}

// bearer returns the credential of the request's one Authorization header
// of scheme Bearer (case-insensitive, RFC 7235). The credential must be a
// b64token (RFC 6750 §2.1).
func bearer(h http.Header) (string, error) {
	values := h.Values("Authorization")
	switch len(values) {
	case 0:
		return "", ErrNoCredentials
	case 1:
	default:
		return "", fmt.Errorf("%w: %d Authorization headers", ErrBadCredentials, len(values))
	}
	scheme, cred, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoCredentials
	}
	cred = strings.TrimLeft(cred, " ")
	switch {
	case cred == "":
		return "", fmt.Errorf("%w: Bearer with no credential", ErrBadCredentials)
	case len(cred) > MaxCredential:
		return "", fmt.Errorf("%w: credential longer than %d bytes", ErrBadCredentials, MaxCredential)
	case !isB64Token(cred):
		return "", fmt.Errorf("%w: credential is not a b64token (RFC 6750)", ErrBadCredentials)
	}
	return cred, nil
}

// isB64Token reports whether s is 1*( ALPHA / DIGIT / "-" / "." / "_" /
// "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}
