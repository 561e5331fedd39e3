package auth

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseTokensErrors(t *testing.T) {
	t.Parallel()
	sum := HashSecret("s3cret")
	for _, tc := range []struct {
		name, file, want string
	}{
		{"not JSON", `{"tokens":`, "decode"},
		{"trailing data", `{"tokens":[]} {}`, "data after the JSON object"},
		{"no tokens array", `{}`, `no "tokens" array`},
		{"unknown field", `{"tokens":[{"name":"a","sha256":"` + sum + `","scope":["admin"]}]}`, `unknown field "scope"`},
		{"no name", `{"tokens":[{"sha256":"` + sum + `","scopes":["admin"]}]}`, "token 0: no name"},
		{"space in name", `{"tokens":[{"name":"ops scripts","sha256":"` + sum + `","scopes":["admin"]}]}`, `token 0 ("ops scripts"): name holds ' '`},
		{"long name", `{"tokens":[{"name":"` + long(129) + `","sha256":"` + sum + `","scopes":["admin"]}]}`, "name longer than 128 bytes"},
		{"short hex", `{"tokens":[{"name":"a","sha256":"abcd","scopes":["admin"]}]}`, `token 0 ("a"): sha256: want 64 hex digits, got 4`},
		{"bad hex", `{"tokens":[{"name":"a","sha256":"` + strings.Repeat("zz", 32) + `","scopes":["admin"]}]}`, `token 0 ("a"): sha256: encoding/hex: invalid byte`},
		{"secret instead of hash", `{"tokens":[{"name":"a","sha256":"s3cret","scopes":["admin"]}]}`, "never the secret"},
		{"no scopes", `{"tokens":[{"name":"a","sha256":"` + sum + `"}]}`, `token 0 ("a"): no scopes`},
		{"unknown scope", `{"tokens":[{"name":"a","sha256":"` + sum + `","scopes":["read:*","delete:orders"]}]}`, `token 0 ("a"): bad scope "delete:orders"`},
		{"scope with table on admin", `{"tokens":[{"name":"a","sha256":"` + sum + `","scopes":["admin:orders"]}]}`, `token 0 ("a"): bad scope "admin:orders"`},
		{"duplicate name", string(tokensJSON(t, entry("a", "x", "admin"), entry("b", "y", "admin"), entry("a", "z", "admin"))), `token 2 ("a"): name already used by token 0`},
		{"duplicate secret", string(tokensJSON(t, entry("a", "x", "admin"), entry("b", "x", "admin"))), `token 1 ("b"): same sha256 as token "a"`},
	} {
		_, err := parseTokens([]byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: parseTokens = %v; want an error saying %q", tc.name, err, tc.want)
		}
	}
}

func TestParseTokens(t *testing.T) {
	t.Parallel()
	upper := strings.ToUpper(HashSecret("B"))
	file := `{"tokens":[
		{"name":"ops-scripts","sha256":"` + HashSecret("A") + `","scopes":["read:*","write:observations","read:*"]},
		{"name":"ci","sha256":"` + upper + `","scopes":["admin"]}
	]}`
	ts, err := parseTokens([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if got := ts.names(); !slices.Equal(got, []string{"ops-scripts", "ci"}) {
		t.Errorf("names = %v", got)
	}
	tok, ok := ts.lookup("A")
	if !ok || tok.name != "ops-scripts" || joinScopes(tok.scopes) != "read:* write:observations" {
		t.Errorf("lookup(A) = %+v, %v", tok, ok)
	}
	if tok, ok := ts.lookup("B"); !ok || tok.name != "ci" {
		t.Errorf("lookup(B), upper-case hex = %+v, %v", tok, ok)
	}
	for _, wrong := range []string{"", "a", "AA", "A ", HashSecret("A")} {
		if tok, ok := ts.lookup(wrong); ok {
			t.Errorf("lookup(%q) = %+v", wrong, tok)
		}
	}
	empty, err := parseTokens([]byte(`{"tokens":[]}`))
	if err != nil || len(empty.tokens) != 0 {
		t.Errorf("an empty list: %v, %v", empty, err)
	}
}

func TestNewSecret(t *testing.T) {
	t.Parallel()
	s1, h1 := NewSecret()
	s2, _ := NewSecret()
	if s1 == s2 || len(s1) != 43 || !isB64Token(s1) {
		t.Errorf("NewSecret = %q, %q", s1, s2)
	}
	if h1 != HashSecret(s1) || len(h1) != 64 {
		t.Errorf("hash %q of %q", h1, s1)
	}
	// The test vector of SHA-256("abc").
	if got := HashSecret("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("HashSecret(abc) = %s", got)
	}
}

func TestTokenAuthentication(t *testing.T) {
	t.Parallel()
	secret, _ := NewSecret()
	f := setup(t, tokensJSON(t, entry("ops-scripts", secret, "read:*", "write:observations")), nil)
	if !f.Enabled() {
		t.Fatal("not enabled with a tokens file")
	}
	p, err := f.Authenticate(bearerRequest(secret))
	if err != nil {
		t.Fatal(err)
	}
	if p.String() != "token:ops-scripts" || !p.Allows(Scope{Action: ActionWrite, Table: "observations"}) || p.Allows(ScopeAdmin) {
		t.Errorf("principal %v with %v", p, p.Scopes)
	}
	// The principal's scopes are its own copy.
	p.Scopes[0] = ScopeAdmin
	if p2, _ := f.Authenticate(bearerRequest(secret)); p2.Allows(ScopeAdmin) {
		t.Error("a principal's scopes share the token's")
	}

	wrong, _ := NewSecret()
	for _, cred := range []string{wrong, secret + "x", secret[:len(secret)-1], HashSecret(secret), "a.b.c"} {
		_, err := f.Authenticate(bearerRequest(cred))
		if !errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrNoCredentials) {
			t.Errorf("secret %q: %v", cred, err)
			continue
		}
		if strings.Contains(err.Error(), cred) {
			t.Errorf("the error %q holds the credential", err)
		}
	}
}

func FuzzParseTokens(f *testing.F) {
	f.Add([]byte(`{"tokens":[{"name":"a","sha256":"` + HashSecret("x") + `","scopes":["read:*","admin"]}]}`))
	f.Add([]byte(`{"tokens":[]}`))
	f.Add([]byte(`{"tokens":null}`))
	f.Add([]byte(`{"tokens":[{"name":"a"},{"name":"a"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := parseTokens(data)
		if err != nil {
			return
		}
		names := ts.names()
		slices.Sort(names)
		if len(slices.Compact(names)) != len(ts.tokens) {
			t.Fatalf("duplicate names: %v", ts.names())
		}
		for _, tok := range ts.tokens {
			if len(tok.scopes) == 0 {
				t.Fatalf("token %q without scopes", tok.name)
			}
		}
	})
}
