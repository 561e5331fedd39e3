package gateway

import (
	"context"
	"sync/atomic"

	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// roundRobin spreads reads over the replicas in turn. A replica that
// fails is skipped for the next one, and when none answers the primary
// serves the read: a replica outage slows nothing and hides no row (the
// primary is at least as new as any replica, and the overlay merges over
// it the same way).
type roundRobin struct {
	replicas []Replica
	primary  query.Database
	next     atomic.Uint64
}

func (r *roundRobin) each(fn func(db query.Database) error) error {
	start := r.next.Add(1) - 1
	var err error
	for i := range uint64(len(r.replicas)) {
		if err = fn(r.replicas[(start+i)%uint64(len(r.replicas))]); err == nil {
			return nil
		}
	}
	return fn(r.primary)
}

func (r *roundRobin) Get(ctx context.Context, t *schema.Table, key string) (row schema.Row, found bool, err error) {
	err = r.each(func(db query.Database) error {
		row, found, err = db.Get(ctx, t, key)
		return err
	})
	return row, found, err
}

func (r *roundRobin) Query(ctx context.Context, q *query.Query, limit int) (rows []schema.Row, err error) {
	err = r.each(func(db query.Database) error {
		rows, err = db.Query(ctx, q, limit)
		return err
	})
	return rows, err
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
	return 0, &txn.InputError{Kind: txn.ErrInvalid, Op: -1, Msg: "consistency must be smart, database or primary, not " + quote(s)}
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
