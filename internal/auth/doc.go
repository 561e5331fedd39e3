// Package auth tells who a request comes from and whether it may do what
// it asks.
//
// # Credentials
//
// Every credential arrives as "Authorization: Bearer …" and is one of
// two kinds:
//
//   - a token of the tokens file (--tokens), a JSON document
//     {"tokens":[{"name":"ops-scripts","sha256":"<hex>","scopes":["read:*"]}]}.
//     The file holds the SHA-256 of each secret, never the secret; a
//     request's secret is hashed and compared with every entry in constant
//     time. The principal is the token's name. NewSecret makes a secret and
//     its hash.
//   - a JWT signed by a key of a JWKS file (--jwt-keys), verified with
//     go-jose: RS256 with RSA keys of 2048 bits or more, ES256 with P-256
//     keys, EdDSA with Ed25519 keys. Each key verifies its one algorithm,
//     and a token may name only the algorithms of the keys given, so
//     "alg":"none", HS256 and the like are refused before any key is
//     tried. The header's kid selects the key (a JWKS of a single key may
//     go without). exp is required; exp and nbf are checked with a leeway
//     (DefaultLeeway); iss and aud are checked when configured. The
//     principal is sub; the scopes come from the scope claim,
//     space-separated as OAuth 2 issues them, and words that are not
//     spool's scopes are ignored.
//
// A secret is tried as a token first, then, if it has the shape of a JWT,
// as a JWT. Both files are read at New and again at Reload (SIGHUP); a
// file that fails to read or to check keeps the credentials loaded before,
// and every error names the file and the entry at fault. The credentials
// of both files are swapped in at once, so a request sees the old set or
// the new one, never half of each.
//
// With neither file configured, authentication is off: Enabled is false
// and Authenticate returns Anonymous, which holds every scope. The server
// decides where spool may then listen and how it warns.
//
// # Errors
//
// Authenticate fails with ErrNoCredentials (no Authorization header, or
// another scheme) or ErrBadCredentials wrapped with the reason. Check and
// Authorize fail with *ForbiddenError naming the missing scopes. Status,
// Challenge and WriteError turn any of them into 401 or 403 with the
// WWW-Authenticate header of RFC 6750. No error message holds a secret.
//
// # Scopes
//
// A Scope is read:TABLE, read:*, write:TABLE, write:* or admin. Scopes are
// independent: write does not imply read, and admin (dead letters, stats,
// metrics) implies neither. A route declares a Need: Read(table),
// Write(tables...) (a transaction needs write on every table it touches)
// or Admin(). The zero Need permits no one, so a route that declares
// nothing fails closed.
//
// The principal travels in the request's context (WithPrincipal,
// FromContext); Middleware puts it there. Principal.String is the form
// to record ("token:NAME", "jwt:SUB"), so a JWT whose sub is a token's
// name cannot pass for that token in the record.
package auth
