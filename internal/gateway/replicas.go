package gateway

import (
	"context"
	"sync/atomic"

	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
)

// roundRobin spreads reads over the replicas in turn.
type roundRobin struct {
	replicas []Replica
	next     atomic.Uint64
}

func (r *roundRobin) pick() Replica {
	return r.replicas[(r.next.Add(1)-1)%uint64(len(r.replicas))]
}

func (r *roundRobin) Get(ctx context.Context, t *schema.Table, key string) (schema.Row, bool, error) {
	return r.pick().Get(ctx, t, key)
}

func (r *roundRobin) Query(ctx context.Context, q *query.Query, limit int) ([]schema.Row, error) {
	return r.pick().Query(ctx, q, limit)
}

// Consistency is what a read merges.
type Consistency int

// The consistencies a read may ask for.
const (
	// Smart reads the replicas (or the primary without replicas) merged
	// with the overlay: a writer sees its own writes at once.
	Smart Consistency = iota
	// Database reads the replicas alone (fast UI reads).
	Database
	// Primary reads the primary merged with the overlay.
	Primary
)

// ParseConsistency parses ?consistency=.
func ParseConsistency(s string) (Consistency, error) {
	switch s {
	case "", "smart":
		return Smart, nil
	case "database":
		return Database, nil
	case "primary":
		return Primary, nil
	}
	return 0, &InputError{Status: 400, Op: -1, Msg: "consistency must be smart, database or primary, not " + quote(s)}
}

func quote(s string) string { return "\"" + s + "\"" }

func (g *Gateway) readerFor(c Consistency) (*query.Reader, bool) {
	switch c {
	case Database:
		return g.reader, false
	case Primary:
		return g.primary, true
	}
	return g.reader, true
}
