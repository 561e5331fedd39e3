// Package client is the Go client of spool's HTTP API: writes (rows and
// atomic transactions with $ref aliases), reads merged with the buffered
// writes, live events (Subscribe), transaction states and waits, dead
// letters, and figures.
//
//	c, err := client.New("http://127.0.0.1:8080", client.WithToken(os.Getenv("SPOOL_TOKEN")))
//	rc, err := c.Insert(ctx, "observations", client.Values{"target": "M31"})
//	st, err := c.Wait(ctx, rc.TransactionID, client.Applied)
//	rows, err := c.List(ctx, "observations", client.Eq("status", "done"), client.Order("started_at", client.Desc), client.Limit(50))
//	sub, err := c.Subscribe(ctx, "observations", nil, client.Eq("status", "done"))
//	ev, err := sub.Next() // a snapshot, then every change
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
// the same on each of its retries. spool answers a repeat of a keyed
// write (within its --idempotency-retention, 24 h by default) with the
// first answer and appends nothing, so a write whose answer was lost (a
// timeout after spool had logged it) is safe to send again with its key:
// keep it with WithIdempotencyKey, even across a restart of your program.
// The same key with another request is refused (422).
//
// The package imports nothing of spool's own: it is all a program using
// spool needs.
package client
