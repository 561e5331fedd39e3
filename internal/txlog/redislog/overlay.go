package redislog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/overlay"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

var _ gateway.Overlay = (*Overlay)(nil)

// Overlay is the shared overlay of a Redis log: the pending changes of every
// transaction appended and not yet evicted, kept by the append script in the
// same atomic step as the stream entry, and read by every spool process
// that opens the log. Values come back as JSON decodes them (numbers as
// json.Number); the gateway normalises them against the catalog.
type Overlay struct {
	l *Log
	// normalize, set by SetNormalize before any read, restores canonical
	// values; with it, Table keeps what it decoded (see SetNormalize).
	normalize func(table string, values map[string]any)
	mu        sync.Mutex
	decoded   map[string]map[string]overlay.Op // table → element of its list of changes → the change, decoded and normalised
}

// SetNormalize makes Row and Table return values normalised by fn (the
// gateway's catalog), and lets Table keep every change it decoded until
// the change leaves the overlay: an entry never changes once appended, so
// a list of a table with a backlog decodes the backlog once, not at every
// read (up to MaxDecoded changes of a table; past that, at every read).
// The changes returned then share their values with that cache, and
// callers must not modify them. Call it before any read.
func (o *Overlay) SetNormalize(fn func(table string, values map[string]any)) {
	o.normalize = fn
	o.decoded = map[string]map[string]overlay.Op{}
}

// MaxDecoded bounds the changes of one table that Table keeps decoded
// between reads (see SetNormalize).
const MaxDecoded = overlay.DefaultMaxOps

// evictBatch is how many transactions one evict script call removes: a
// committed batch of the applier is usually one call, while one call keeps
// Redis busy for a few milliseconds at most.
const evictBatch = 500

// Row returns the pending changes to one row in log order, nil if none.
func (o *Overlay) Row(ctx context.Context, table, key string) (overlay.Pending, error) {
	if o.l.isClosing() {
		return nil, fmt.Errorf("redislog: overlay row: %w", txlog.ErrClosed)
	}
	entries, err := o.l.client.LRange(ctx, o.l.keys.row(table, key), 0, -1).Result()
	if err != nil {
		return nil, o.l.fail("overlay row", err)
	}
	p, err := decodePending(entries)
	if err == nil && o.normalize != nil {
		for _, op := range p {
			o.normalize(table, op.Values)
		}
	}
	return p, err
}

// Table returns the pending changes to every row of table, with one LRANGE
// of the table's list of changes whatever the number of rows.
func (o *Overlay) Table(ctx context.Context, table string) (map[string]overlay.Pending, error) {
	if o.l.isClosing() {
		return nil, fmt.Errorf("redislog: overlay table: %w", txlog.ErrClosed)
	}
	elems, err := o.l.client.LRange(ctx, o.l.keys.ops(table), 0, -1).Result()
	if err != nil {
		return nil, o.l.fail("overlay table", err)
	}
	var known, seen map[string]overlay.Op
	if o.normalize != nil {
		o.mu.Lock()
		known = o.decoded[table]
		o.mu.Unlock()
		seen = make(map[string]overlay.Op, len(known))
	}
	out := make(map[string]overlay.Pending)
	for _, s := range elems {
		entry, key, ok := splitElement(s)
		if !ok {
			return nil, fmt.Errorf("redislog: overlay table %q: %w: a change without its row's key", table, ErrCorrupt)
		}
		op, ok := known[s]
		if !ok {
			if op, err = decodeChange(entry); err != nil {
				return nil, fmt.Errorf("redislog: overlay table %q row %q: %w", table, key, err)
			}
			if o.normalize != nil {
				o.normalize(table, op.Values)
			}
		}
		if seen != nil {
			seen[s] = op
		}
		out[key] = append(out[key], op)
	}
	if o.normalize == nil {
		return out, nil
	}
	// What this read did not see has left the overlay: drop it. A backlog
	// past the bound is decoded at every read instead of kept: the heap
	// must not grow with a long outage.
	if len(seen) > MaxDecoded {
		seen = nil
	}
	o.mu.Lock()
	o.decoded[table] = seen
	o.mu.Unlock()
	return out, nil
}

func decodePending(entries []string) (overlay.Pending, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	p := make(overlay.Pending, len(entries))
	for i, s := range entries {
		op, err := decodeChange(s)
		if err != nil {
			return nil, err
		}
		p[i] = op
	}
	return p, nil
}

// decodeChange decodes one entry of a row's list of pending changes.
func decodeChange(s string) (overlay.Op, error) {
	e, err := decodeOp(s)
	if err != nil {
		return overlay.Op{}, err
	}
	return overlay.Op{Tx: e.Tx, Kind: txn.Kind(e.Kind), Values: schema.Row(e.Values)}, nil
}

// Evict removes the changes of transactions ids; rows left with no pending
// change leave the overlay. Evicting a transaction that is not pending is a
// no-op. One script call removes up to 500 transactions.
func (o *Overlay) Evict(ctx context.Context, ids ...string) error {
	if o.l.isClosing() {
		return fmt.Errorf("redislog: overlay evict: %w", txlog.ErrClosed)
	}
	for chunk := range slices.Chunk(ids, evictBatch) {
		args := make([]any, 0, 1+2*len(chunk))
		args = append(args, o.l.keys.prefix)
		for _, id := range chunk {
			args = append(args, id, entryPrefix(id))
		}
		err := evictScript.Run(ctx, o.l.client, []string{o.l.keys.stream, o.l.keys.tables, o.l.keys.counts}, args...).Err()
		if err != nil {
			return o.l.fail("overlay evict", err)
		}
	}
	return nil
}

// Withdraw evicts every pending transaction one of whose changes depends
// reports true (a transaction once, however many of its changes do), and
// returns their ids. It reads every table with pending rows (in name order,
// then key order) and evicts with one script call per 500 transactions. A
// transaction appended while Withdraw runs may be missed; the applier fails
// it anyway when it reaches it.
func (o *Overlay) Withdraw(ctx context.Context, depends func(table, key string, op overlay.Op) bool) ([]string, error) {
	if o.l.isClosing() {
		return nil, fmt.Errorf("redislog: overlay withdraw: %w", txlog.ErrClosed)
	}
	tables, err := o.l.client.SMembers(ctx, o.l.keys.tables).Result()
	if err != nil {
		return nil, o.l.fail("overlay withdraw", err)
	}
	slices.Sort(tables)
	var ids []string
	seen := map[string]bool{}
	for _, table := range tables {
		rows, err := o.Table(ctx, table)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(rows))
		for k := range rows {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			for _, op := range rows[k] {
				if !seen[op.Tx] && depends(table, k, op) {
					seen[op.Tx] = true
					ids = append(ids, op.Tx)
				}
			}
		}
	}
	if err := o.Evict(ctx, ids...); err != nil {
		return nil, err
	}
	return ids, nil
}

// Has reports whether transaction id has changes pending.
func (o *Overlay) Has(ctx context.Context, id string) (bool, error) {
	if o.l.isClosing() {
		return false, fmt.Errorf("redislog: overlay has: %w", txlog.ErrClosed)
	}
	n, err := o.l.client.Exists(ctx, o.l.keys.tx(id)).Result()
	if err != nil {
		return false, o.l.fail("overlay has", err)
	}
	return n == 1, nil
}

// Stats reports the overlay's size from counters the scripts keep.
func (o *Overlay) Stats(ctx context.Context) (overlay.Stats, error) {
	if o.l.isClosing() {
		return overlay.Stats{}, fmt.Errorf("redislog: overlay stats: %w", txlog.ErrClosed)
	}
	vals, err := o.l.client.HMGet(ctx, o.l.keys.counts, "txs", "rows", "ops").Result()
	if err != nil {
		return overlay.Stats{}, o.l.fail("overlay stats", err)
	}
	n := make([]int, len(vals))
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // not set yet: 0
		}
		if n[i], err = strconv.Atoi(s); err != nil {
			return overlay.Stats{}, fmt.Errorf("redislog: overlay stats: %w", errors.Join(ErrCorrupt, err))
		}
	}
	return overlay.Stats{Transactions: n[0], Rows: n[1], Ops: n[2]}, nil
}
