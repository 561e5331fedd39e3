package auth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseScope(t *testing.T) {
	t.Parallel()
	good := map[string]Scope{
		"read:orders":       {Action: ActionRead, Table: "orders"},
		"read:*":            ScopeReadAll,
		"write:orders":      {Action: ActionWrite, Table: "orders"},
		"write:*":           ScopeWriteAll,
		"admin":             ScopeAdmin,
		"read:Orders_2":     {Action: ActionRead, Table: "Orders_2"},
		"write:données":     {Action: ActionWrite, Table: "données"},
		"read:a.b-c":        {Action: ActionRead, Table: "a.b-c"},
		"read:" + long(128): {Action: ActionRead, Table: long(128)},
	}
	for in, want := range good {
		got, err := ParseScope(in)
		if err != nil || got != want {
			t.Errorf("ParseScope(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("ParseScope(%q).String() = %q", in, got.String())
		}
	}
	bad := map[string]string{
		"":                  "want read:TABLE",
		"read":              "want read:TABLE or read:*",
		"write":             "want write:TABLE or write:*",
		"read:":             "no table",
		"admin:orders":      "admin takes no table",
		"admin:":            "admin takes no table",
		"delete:orders":     "want read:TABLE",
		"READ:orders":       "want read:TABLE",
		"Admin":             "want read:TABLE",
		"read:ord*":         "wildcard is the whole name",
		"read:**":           "wildcard is the whole name",
		"read:a:b":          `holds ':'`,
		"read:a b":          `holds ' '`,
		"read:a\tb":         `holds '\t'`,
		"read:a\x00":        `holds '\x00'`,
		"read:\xff":         "not UTF-8",
		"read:" + long(129): "longer than 128",
		" read:orders":      "want read:TABLE",
	}
	for in, want := range bad {
		_, err := ParseScope(in)
		if err == nil || !errors.Is(err, ErrBadScope) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseScope(%q) = %v; want an ErrBadScope saying %q", in, err, want)
		}
	}
}

func long(n int) string { return strings.Repeat("t", n) }

func mustScopes(t testing.TB, ss ...string) []Scope {
	t.Helper()
	var out []Scope
	for _, s := range ss {
		sc, err := ParseScope(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sc)
	}
	return out
}

// TestAllowsMatrix checks every held scope against every wanted one.
func TestAllowsMatrix(t *testing.T) {
	t.Parallel()
	wants := []string{"read:orders", "read:items", "read:*", "write:orders", "write:items", "write:*", "admin"}
	allows := map[string][]string{
		"read:orders":  {"read:orders"},
		"read:*":       {"read:orders", "read:items", "read:*"},
		"write:orders": {"write:orders"},
		"write:*":      {"write:orders", "write:items", "write:*"},
		"admin":        {"admin"},
	}
	for held, allowed := range allows {
		p := Principal{Name: "p", Source: SourceToken, Scopes: mustScopes(t, held)}
		for _, want := range wants {
			got := p.Allows(mustScopes(t, want)[0])
			if got != slices.Contains(allowed, want) {
				t.Errorf("%s allows %s = %v", held, want, got)
			}
		}
	}
	if (Principal{}).Allows(ScopeAdmin) || (Principal{}).Allows(Scope{}) {
		t.Error("a principal without scopes is allowed something")
	}
	if (Scope{}).Covers(Scope{}) {
		t.Error("the zero scope covers the zero scope")
	}
	if (Scope{Action: ActionRead, Table: "orders"}).Covers(Scope{Action: ActionRead, Table: "Orders"}) {
		t.Error("table names compare without case")
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	p := Principal{Name: "ops", Source: SourceToken, Scopes: mustScopes(t, "read:*", "write:orders", "write:items")}
	for _, tc := range []struct {
		need    Need
		missing string // "" when allowed
	}{
		{Read("orders"), ""},
		{Read("anything"), ""},
		{Write("orders"), ""},
		{Write("orders", "items", "orders"), ""},
		{Write("orders", "secrets"), "write:secrets"},
		{Write("zeta", "orders", "alpha"), "write:alpha write:zeta"},
		{Admin(), "admin"},
	} {
		err := p.Check(tc.need)
		if tc.missing == "" {
			if err != nil {
				t.Errorf("Check(%s) = %v", tc.need, err)
			}
			continue
		}
		var fe *ForbiddenError
		if !errors.As(err, &fe) || joinScopes(fe.Missing) != tc.missing || fe.Principal.Name != "ops" {
			t.Errorf("Check(%s) = %v; want a ForbiddenError missing %s", tc.need, err, tc.missing)
			continue
		}
		if want := "token:ops lacks scope " + tc.missing; err.Error() != want {
			t.Errorf("Check(%s) says %q; want %q", tc.need, err, want)
		}
	}
	// The zero Need, a route that declared nothing, refuses even Anonymous.
	var fe *ForbiddenError
	if err := Anonymous().Check(Need{}); !errors.As(err, &fe) || len(fe.Missing) != 0 || !strings.Contains(err.Error(), "declares no scope") {
		t.Errorf("Check(Need{}) = %v", err)
	}
	if err := Anonymous().Check(Write("a", "b")); err != nil {
		t.Errorf("Anonymous: %v", err)
	}
	if err := Anonymous().Check(Admin()); err != nil {
		t.Errorf("Anonymous: %v", err)
	}
}

func TestNeed(t *testing.T) {
	t.Parallel()
	n := Write("b", "a", "b")
	if n.String() != "write:a write:b" {
		t.Errorf("Write(b, a, b) = %s", n)
	}
	s := n.Scopes()
	s[0] = ScopeAdmin
	if n.String() != "write:a write:b" {
		t.Error("Scopes shares the need's slice")
	}
	if Read("orders").String() != "read:orders" || Admin().String() != "admin" {
		t.Errorf("Read, Admin: %s, %s", Read("orders"), Admin())
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, ok := FromContext(ctx); ok {
		t.Fatal("a bare context carries a principal")
	}
	if err := Authorize(ctx, Read("orders")); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("Authorize without a principal = %v", err)
	}
	p := Principal{Name: "alice", Source: SourceJWT, Scopes: mustScopes(t, "read:orders")}
	ctx = WithPrincipal(ctx, p)
	got, ok := FromContext(ctx)
	if !ok || got.String() != "jwt:alice" {
		t.Fatalf("FromContext = %v, %v", got, ok)
	}
	if err := Authorize(ctx, Read("orders")); err != nil {
		t.Error(err)
	}
	var fe *ForbiddenError
	if err := Authorize(ctx, Write("orders")); !errors.As(err, &fe) {
		t.Errorf("Authorize(write) = %v", err)
	}
}

func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"read:orders", "write:*", "admin", "read:", "admin:x", "read:a b", "write:\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseScope(s)
		if err != nil {
			return
		}
		if sc.String() != s {
			t.Fatalf("ParseScope(%q).String() = %q", s, sc.String())
		}
		if !sc.Covers(sc) {
			t.Fatalf("%q does not cover itself", s)
		}
	})
}
