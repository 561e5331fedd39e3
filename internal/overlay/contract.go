package overlay

import "context"

// Changes is the contract of an overlay, whoever keeps it: this package's
// Overlay (a process's own, filled by Logged), or the shared one a Redis
// log fills in the same script as each append (redislog.Overlay, which
// TestOverlayMatchesInMemory holds to the same answers as this one).
// Readers merge it over the database; the settler evicts from it what the
// readers' database has.
type Changes interface {
	// Row returns the pending changes to one row in log order, nil if none.
	Row(ctx context.Context, table, key string) (Pending, error)
	// Rows returns the pending changes to each of keys' rows of table,
	// read at once: the i-th for keys[i].
	Rows(ctx context.Context, table string, keys []string) ([]Pending, error)
	// Table returns the pending changes of every row of table.
	Table(ctx context.Context, table string) (map[string]Pending, error)
	// Has reports whether a transaction still has changes pending.
	Has(ctx context.Context, id string) (bool, error)
	// Evict removes the changes of the given transactions.
	Evict(ctx context.Context, ids ...string) error
	// Withdraw evicts every pending transaction with a change depends
	// reports true for, and returns their ids.
	Withdraw(ctx context.Context, depends func(table, key string, op Op) bool) ([]string, error)
	Stats(ctx context.Context) (Stats, error)
}

var _ Changes = (*Overlay)(nil)
