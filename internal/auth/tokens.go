package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
)

// MaxTokenName bounds a token's name in bytes: it is stored with every
// transaction the token writes.
const MaxTokenName = 128

// MaxFileSize bounds a tokens file and a JWKS file. A JWKS of a few dozen
// keys with their certificate chains stays well under it.
const MaxFileSize = 4 << 20

// token is one entry of the tokens file.
type token struct {
	name   string
	sum    [sha256.Size]byte
	scopes []Scope
}

// tokenSet is the tokens of one reading of the tokens file.
type tokenSet struct {
	tokens []token
}

type tokensFile struct {
	Tokens []tokenEntry `json:"tokens"`
}

type tokenEntry struct {
	Name   string   `json:"name"`
	SHA256 string   `json:"sha256"`
	Scopes []string `json:"scopes"`
}

// parseTokens reads a tokens file. Every error names the entry at fault.
func parseTokens(data []byte) (*tokenSet, error) {
	var f tokensFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode: data after the JSON object")
	}
	if f.Tokens == nil {
		return nil, errors.New(`no "tokens" array`)
	}
	set := &tokenSet{tokens: make([]token, 0, len(f.Tokens))}
	byName := make(map[string]int, len(f.Tokens))
	bySum := make(map[[sha256.Size]byte]string, len(f.Tokens))
	for i, e := range f.Tokens {
		t, err := parseTokenEntry(e)
		if err != nil {
			if e.Name != "" {
				return nil, fmt.Errorf("token %d (%q): %w", i, e.Name, err)
			}
			return nil, fmt.Errorf("token %d: %w", i, err)
		}
		if j, dup := byName[t.name]; dup {
			return nil, fmt.Errorf("token %d (%q): name already used by token %d", i, t.name, j)
		}
		if other, dup := bySum[t.sum]; dup {
			return nil, fmt.Errorf("token %d (%q): same sha256 as token %q (one secret, one name)", i, t.name, other)
		}
		byName[t.name], bySum[t.sum] = i, t.name
		set.tokens = append(set.tokens, t)
	}
	return set, nil
}

func parseTokenEntry(e tokenEntry) (token, error) {
	if err := checkName(e.Name, MaxTokenName); err != nil {
		return token{}, err
	}
	t := token{name: e.Name}
	if len(e.SHA256) != hex.EncodedLen(sha256.Size) {
		return token{}, fmt.Errorf("sha256: want %d hex digits, got %d (the hash of the secret, never the secret)", hex.EncodedLen(sha256.Size), len(e.SHA256))
	}
	if _, err := hex.Decode(t.sum[:], []byte(e.SHA256)); err != nil {
		return token{}, fmt.Errorf("sha256: %w", err)
	}
	if len(e.Scopes) == 0 {
		return token{}, errors.New("no scopes (a token must be allowed something)")
	}
	for _, s := range e.Scopes {
		sc, err := ParseScope(s)
		if err != nil {
			return token{}, err
		}
		t.scopes = appendScope(t.scopes, sc)
	}
	return t, nil
}

// checkName accepts a principal's name: 1 to max bytes of UTF-8 with no
// space or control character, since it is logged and stored as it is.
func checkName(name string, max int) error {
	switch {
	case name == "":
		return errors.New("no name")
	case len(name) > max:
		return fmt.Errorf("name longer than %d bytes", max)
	case !utf8.ValidString(name):
		return errors.New("name is not UTF-8")
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("name holds %q", r)
		}
	}
	return nil
}

// appendScope appends s unless scopes has it already.
func appendScope(scopes []Scope, s Scope) []Scope {
	for _, have := range scopes {
		if have == s {
			return scopes
		}
	}
	return append(scopes, s)
}

// lookup returns the token whose hash is the secret's. It compares with
// every token in constant time, so the time taken does not tell how much
// of a hash matched nor which token did.
func (ts *tokenSet) lookup(secret string) (token, bool) {
	sum := sha256.Sum256([]byte(secret))
	found := -1
	for i := range ts.tokens {
		if subtle.ConstantTimeCompare(sum[:], ts.tokens[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return token{}, false
	}
	return ts.tokens[found], true
}

func (ts *tokenSet) names() []string {
	if ts == nil {
		return nil
	}
	names := make([]string, len(ts.tokens))
	for i, t := range ts.tokens {
		names[i] = t.name
	}
	return names
}

// HashSecret returns the hex SHA-256 of a token's secret: the value of
// "sha256" in the tokens file.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// NewSecret returns a new token secret, 32 random bytes in unpadded
// base64url (valid in an Authorization header as it is), and its hash for
// the tokens file.
func NewSecret() (secret, sha256Hex string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error; it crashes the program instead
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, HashSecret(secret)
}
