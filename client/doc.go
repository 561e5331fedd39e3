// Package client is the Go client of spool's HTTP API: writes (rows and
// atomic transactions with $ref aliases), reads merged with the buffered
// writes, transaction states and waits, dead letters, and figures.
//
//	c, err := client.New("http://127.0.0.1:8080", client.WithToken(os.Getenv("SPOOL_TOKEN")))
//	rc, err := c.Insert(ctx, "observations", client.Values{"target": "M31"})
//	st, err := c.Wait(ctx, rc.TransactionID, client.Applied)
//	rows, err := c.List(ctx, "observations", client.Eq("status", "done"), client.Order("started_at", client.Desc), client.Limit(50))
//
// # Errors
//
// A refused request is a *Error carrying the HTTP status, spool's message
// and, for a transaction, the index of the operation at fault. errors.Is
// tells the common cases apart: ErrNotFound, ErrConflict, ErrUnauthorized,
// ErrForbidden, ErrBadRequest, ErrUnavailable.
//
// # Retries and the Idempotency-Key
//
// A request answered 429 or 503 is sent again after the Retry-After the
// server gave (with up to half as much again of random jitter, so that
// writers refused together do not return together), or after a jittered
// exponential backoff without one, until it passes, MaxRetries is spent
// or its context ends. A request that never got an answer (the connection
// dropped, a timeout) is not retried: the caller decides.
//
// Every write carries an Idempotency-Key header: a random UUID per call,
// the same on each of its retries (WithIdempotencyKey sets your own, to
// retry a write across a restart of your program). A server that honours
// the key answers a repeat with the first answer and appends nothing.
// Until the spool you talk to honours it, a write retried after an
// answer was lost (a timeout after spool had logged it) can apply twice:
// 429 and 503 are safe to retry, since spool changed nothing.
//
// The package imports nothing of spool's own: it is all a program using
// spool needs.
package client
