package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Action is what a scope permits: reading a table, writing it, or the
// administrative routes.
type Action string

// The actions a scope names.
const (
	ActionRead  Action = "read"
	ActionWrite Action = "write"
	ActionAdmin Action = "admin"
)

// AllTables is the table of a scope that covers every table: read:* and
// write:*.
const AllTables = "*"

// MaxTableName bounds the table a scope names, in bytes. PostgreSQL's
// identifiers stop at 63 bytes and SQLite's have no limit; 128 leaves room
// without letting a tokens file or a JWT carry a name of any length.
const MaxTableName = 128

// Scope is one permission: read:TABLE, read:*, write:TABLE, write:* or
// admin. The zero Scope permits nothing.
type Scope struct {
	Action Action
	// Table is the table of a read or write scope, AllTables for every
	// table, and empty for admin.
	Table string
}

// Scopes for the common cases.
var (
	// ScopeAdmin permits the administrative routes: dead letters, stats,
	// metrics.
	ScopeAdmin = Scope{Action: ActionAdmin}
	// ScopeReadAll permits reading every table.
	ScopeReadAll = Scope{Action: ActionRead, Table: AllTables}
	// ScopeWriteAll permits writing every table.
	ScopeWriteAll = Scope{Action: ActionWrite, Table: AllTables}
)

// ErrBadScope is wrapped by every error of ParseScope.
var ErrBadScope = errors.New("bad scope")

// ParseScope reads a scope as a tokens file or a JWT's scope claim spells
// it: "read:TABLE", "read:*", "write:TABLE", "write:*" or "admin". The
// action is lower case; a table name is compared exactly as written.
func ParseScope(s string) (Scope, error) {
	action, table, hasTable := strings.Cut(s, ":")
	switch Action(action) {
	case ActionAdmin:
		if hasTable {
			return Scope{}, fmt.Errorf("%w %q: admin takes no table", ErrBadScope, s)
		}
		return ScopeAdmin, nil
	case ActionRead, ActionWrite:
		if !hasTable {
			return Scope{}, fmt.Errorf("%w %q: want %s:TABLE or %s:*", ErrBadScope, s, action, action)
		}
		if err := checkTable(table); err != nil {
			return Scope{}, fmt.Errorf("%w %q: %v", ErrBadScope, s, err)
		}
		return Scope{Action: Action(action), Table: table}, nil
	default:
		return Scope{}, fmt.Errorf("%w %q: want read:TABLE, read:*, write:TABLE, write:* or admin", ErrBadScope, s)
	}
}

// checkTable accepts "*" or a table name: 1 to MaxTableName bytes of
// UTF-8, with no space, control character, ':' or '*'.
func checkTable(t string) error {
	switch {
	case t == AllTables:
		return nil
	case t == "":
		return errors.New("no table")
	case len(t) > MaxTableName:
		return fmt.Errorf("table name longer than %d bytes", MaxTableName)
	case !utf8.ValidString(t):
		return errors.New("table name is not UTF-8")
	}
	for _, r := range t {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == ':' || r == '*' {
			return fmt.Errorf("table name holds %q (a wildcard is the whole name: *)", r)
		}
	}
	return nil
}

// String spells the scope as ParseScope reads it.
func (s Scope) String() string {
	if s.Action == ActionAdmin || s.Action == "" {
		return string(s.Action)
	}
	return string(s.Action) + ":" + s.Table
}

// Covers reports whether holding s permits want: the same action, and the
// same table or s's AllTables. Scopes are independent of each other: write
// does not imply read, and admin implies neither.
func (s Scope) Covers(want Scope) bool {
	if s.Action == "" || s.Action != want.Action {
		return false
	}
	if s.Action == ActionAdmin {
		return true
	}
	return s.Table == AllTables || s.Table == want.Table
}

// Need is what a route requires: every one of its scopes. Build one with
// Read, Write or Admin. The zero Need permits no one, so a route that
// forgot to declare its need fails closed.
type Need struct {
	scopes []Scope
}

// Read is the need of a route that reads table.
func Read(table string) Need {
	return Need{scopes: []Scope{{Action: ActionRead, Table: table}}}
}

// Write is the need of a transaction that touches tables: write on every
// one of them. Duplicates count once.
func Write(tables ...string) Need {
	scopes := make([]Scope, 0, len(tables))
	for _, t := range tables {
		scopes = append(scopes, Scope{Action: ActionWrite, Table: t})
	}
	slices.SortFunc(scopes, func(a, b Scope) int { return strings.Compare(a.Table, b.Table) })
	return Need{scopes: slices.Compact(scopes)}
}

// Admin is the need of the administrative routes.
func Admin() Need {
	return Need{scopes: []Scope{ScopeAdmin}}
}

// Scopes returns the scopes the need requires, in a stable order.
func (n Need) Scopes() []Scope {
	return slices.Clone(n.scopes)
}

// String names the scopes the need requires, space-separated.
func (n Need) String() string {
	return joinScopes(n.scopes)
}

// ForbiddenError says that an authenticated principal lacks scopes a route
// needs. A caller answers it with 403.
type ForbiddenError struct {
	// Principal is who was refused.
	Principal Principal
	// Missing are the scopes the principal lacks, in the need's order.
	// It is empty when the route declared no scope at all.
	Missing []Scope
}

func (e *ForbiddenError) Error() string {
	if len(e.Missing) == 0 {
		return fmt.Sprintf("%s is not allowed: the route declares no scope", e.Principal)
	}
	return fmt.Sprintf("%s lacks scope %s", e.Principal, joinScopes(e.Missing))
}

func joinScopes(scopes []Scope) string {
	parts := make([]string, len(scopes))
	for i, s := range scopes {
		parts[i] = s.String()
	}
	return strings.Join(parts, " ")
}
