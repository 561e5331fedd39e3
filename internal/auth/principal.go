package auth

import (
	"context"
	"slices"
)

// Source says how a principal was authenticated.
type Source string

// The sources of a principal.
const (
	// SourceToken is a token of the tokens file; the principal's name is
	// the token's name.
	SourceToken Source = "token"
	// SourceJWT is a verified JWT; the principal's name is its sub claim.
	SourceJWT Source = "jwt"
	// SourceNone is the Anonymous principal of an Authenticator with no
	// credentials configured.
	SourceNone Source = "none"
)

// Principal is who made a request and what it may do.
type Principal struct {
	// Name is the token's name or the JWT's sub.
	Name string
	// Source is how the principal was authenticated.
	Source Source
	// Scopes are the scopes the credential carries, deduplicated.
	Scopes []Scope
}

// Anonymous returns the principal of every request when authentication is
// off (Authenticator.Enabled is false): it holds every scope, since spool
// without credentials serves whoever reaches it.
func Anonymous() Principal {
	return Principal{
		Name:   "anonymous",
		Source: SourceNone,
		Scopes: []Scope{ScopeReadAll, ScopeWriteAll, ScopeAdmin},
	}
}

// String is the principal as the log, a transaction and a dead letter
// record it: "token:NAME", "jwt:SUB" or "anonymous". The prefix keeps a
// JWT whose sub is a token's name from passing for that token.
func (p Principal) String() string {
	if p.Source == SourceNone || p.Source == "" {
		return p.Name
	}
	return string(p.Source) + ":" + p.Name
}

// Allows reports whether one of the principal's scopes covers want.
func (p Principal) Allows(want Scope) bool {
	return slices.ContainsFunc(p.Scopes, func(s Scope) bool { return s.Covers(want) })
}

// Check returns nil when the principal holds every scope of need, and a
// *ForbiddenError naming the scopes it lacks otherwise. The zero Need
// permits no one.
func (p Principal) Check(need Need) error {
	if len(need.scopes) == 0 {
		return &ForbiddenError{Principal: p}
	}
	var missing []Scope
	for _, s := range need.scopes {
		if !p.Allows(s) {
			missing = append(missing, s)
		}
	}
	if missing != nil {
		return &ForbiddenError{Principal: p, Missing: missing}
	}
	return nil
}

type principalKey struct{}

// WithPrincipal returns a copy of ctx that carries p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal ctx carries, and false when it carries
// none.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
