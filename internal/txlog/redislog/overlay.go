package redislog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"
	"github.com/spoolgw/spool/internal/overlay"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// Overlay is the shared overlay of a Redis log: the pending changes of every
// transaction appended and not yet evicted, kept by the append script in the
// same atomic step as the stream entry, and read by every spool process
// that opens the log. Values come back as JSON decodes them (numbers as
// json.Number) and are normalised by Config.Normalize.
type Overlay struct {
	l *Log
	// normalize restores canonical values (Config.Normalize).
	normalize func(table string, values map[string]any)
	mu        sync.Mutex
	read      map[string]*tableRead // by table: what Table last read of it
	flights   map[string]*flights   // by table: the reads of it under way
}

var _ overlay.Changes = (*Overlay)(nil)

// MaxDecoded bounds the changes of one table that Table keeps decoded
// between reads (see Table).
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

// Rows returns the pending changes to each of keys' rows of table, with
// one round trip (a pipeline of LRANGEs).
func (o *Overlay) Rows(ctx context.Context, table string, keys []string) ([]overlay.Pending, error) {
	if o.l.isClosing() {
		return nil, fmt.Errorf("redislog: overlay rows: %w", txlog.ErrClosed)
	}
	cmds := make([]*redis.StringSliceCmd, len(keys))
	if _, err := o.l.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.LRange(ctx, o.l.keys.row(table, k), 0, -1)
		}
		return nil
	}); err != nil {
		return nil, o.l.fail("overlay rows", err)
	}
	out := make([]overlay.Pending, len(keys))
	for i, c := range cmds {
		p, err := decodePending(c.Val())
		if err != nil {
			return nil, fmt.Errorf("redislog: overlay rows: %s/%s: %w", table, keys[i], err)
		}
		if o.normalize != nil {
			for _, op := range p {
				o.normalize(table, op.Values)
			}
		}
		out[i] = p
	}
	return out, nil
}

// Table returns the pending changes to every row of table. It keeps what
// it read of each table, decoded and normalised (up to MaxDecoded changes
// of a table; past that, it reads and decodes the whole list every time),
// and reads only the changes added since, with one script call: a list of
// a table with a backlog costs the new changes, not the backlog. The map
// is the caller's; the changes in it are shared between reads, and
// callers must not modify them.
func (o *Overlay) Table(ctx context.Context, table string) (map[string]overlay.Pending, error) {
	if o.l.isClosing() {
		return nil, fmt.Errorf("redislog: overlay table: %w", txlog.ErrClosed)
	}
	next, err := o.readShared(ctx, table)
	if err != nil {
		return nil, err
	}
	out := make(map[string]overlay.Pending, len(next.elems))
	for i, s := range next.elems {
		_, key, _ := splitElement(s) // checked when it was decoded
		if p, ok := out[key]; ok {
			out[key] = append(p, next.ops[i])
		} else {
			// A row's first change is a view of next's, capped, so that
			// a second one is appended to a copy.
			out[key] = next.ops[i : i+1 : i+1]
		}
	}
	return out, nil
}

// flights are the reads of one table under way: the one running, and
// the next, which every caller that arrives while one runs joins, and
// which starts once the running one has ended. Concurrent readers of a
// table share its reading and decoding (with a backlog of thousands of
// changes, each would otherwise decode the same new changes), and a
// caller never shares a read that began before it called, so it sees
// every change appended before its call.
type flights struct {
	running, next *flight
}

// flight is one read of a table, shared by the callers that joined it.
type flight struct {
	done chan struct{} // closed once read or err is set
	read *tableRead
	err  error
}

// readShared returns what a read of table that began after the call read,
// sharing it with concurrent callers (see flights).
func (o *Overlay) readShared(ctx context.Context, table string) (*tableRead, error) {
	for {
		o.mu.Lock()
		fs := o.flights[table]
		if fs == nil {
			if o.flights == nil {
				o.flights = map[string]*flights{}
			}
			fs = &flights{}
			o.flights[table] = fs
		}
		if fs.running == nil {
			// Nothing runs: run the next read, which callers may have
			// joined already.
			f := fs.next
			if f == nil {
				f = &flight{done: make(chan struct{})}
			}
			fs.running, fs.next = f, nil
			o.mu.Unlock()
			f.read, f.err = o.readTable(ctx, table)
			o.mu.Lock()
			fs.running = nil
			o.mu.Unlock()
			close(f.done)
			return f.read, f.err
		}
		if fs.next == nil {
			fs.next = &flight{done: make(chan struct{})}
		}
		f, running := fs.next, fs.running
		o.mu.Unlock()
		// Wait for the running read to end; then the first of the next
		// read's callers to get here runs it, and the others wait for it.
		select {
		case <-running.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("redislog: overlay table: %w", ctx.Err())
		}
		// f has started once it is no longer the next read. Not "f is
		// running": by the time a caller woken late gets here, f may have
		// ended too, and that caller must take f's result, not read again.
		o.mu.Lock()
		started := fs.next != f
		o.mu.Unlock()
		if !started {
			continue // f is still the next read: run it
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("redislog: overlay table: %w", ctx.Err())
		}
		if f.err != nil && ctx.Err() == nil && (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) {
			continue // the caller that ran it gave up; this one has not
		}
		return f.read, f.err
	}
}

// readTable reads table with one script call, given what was read of it
// before, and keeps what it read for the next read.
func (o *Overlay) readTable(ctx context.Context, table string) (*tableRead, error) {
	o.mu.Lock()
	last := o.read[table]
	o.mu.Unlock()
	args := []any{o.l.keys.prefix, table, "", -1, -1, -1, -1}
	if last != nil {
		args = []any{o.l.keys.prefix, table, last.epoch, last.added, last.dropped, last.removed, len(last.elems)}
	}
	res, err := tableScript.Run(ctx, o.l.client, []string{o.l.keys.stream}, args...).Slice()
	if err != nil {
		return nil, o.l.fail("overlay table", err)
	}
	next, err := o.nextRead(table, last, res)
	if err != nil {
		return nil, fmt.Errorf("redislog: overlay table %q: %w", table, err)
	}
	o.mu.Lock()
	switch cur := o.read[table]; {
	case len(next.ops) > MaxDecoded:
		delete(o.read, table) // the heap must not grow with a long outage
	case cur == nil || next.after(cur):
		if o.read == nil {
			o.read = map[string]*tableRead{}
		}
		o.read[table] = next
	}
	o.mu.Unlock()
	return next, nil
}

// tableRead is what Table read of one table: the table's list of changes
// (elements, see keys.ops), each change decoded, and the table's counters
// when it was read (see tableScript). It is never modified once made.
type tableRead struct {
	epoch                   string
	added, dropped, removed int64
	elems                   []string
	ops                     []overlay.Op
}

// after reports whether r was read after cur.
func (r *tableRead) after(cur *tableRead) bool {
	if r.epoch != cur.epoch {
		return true // the table's changes were numbered anew
	}
	return r.added >= cur.added && r.dropped >= cur.dropped && r.removed >= cur.removed &&
		(r.added > cur.added || r.dropped > cur.dropped || r.removed > cur.removed)
}

// nextRead makes what Table read from the script's reply res, given what
// it read before (last, nil if nothing).
func (o *Overlay) nextRead(table string, last *tableRead, res []any) (*tableRead, error) {
	if len(res) < 5 {
		return nil, fmt.Errorf("%w: table read returned %d values", ErrCorrupt, len(res))
	}
	epoch, ok0 := res[0].(string)
	added, ok1 := res[1].(int64)
	dropped, ok2 := res[2].(int64)
	removed, ok3 := res[3].(int64)
	tail, ok4 := res[4].(int64)
	if !ok0 || !ok1 || !ok2 || !ok3 || !ok4 {
		return nil, fmt.Errorf("%w: table read returned %v", ErrCorrupt, res[:5])
	}
	next := &tableRead{epoch: epoch, added: added, dropped: dropped, removed: removed}
	elems := make([]string, len(res)-5)
	for i, v := range res[5:] {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%w: table read returned a %T", ErrCorrupt, v)
		}
		elems[i] = s
	}
	// keep is how many of last's changes, from its end, are still in the
	// list ahead of elems; reuse pairs elems with what last decoded.
	var keep int
	var reuse *tableRead
	switch {
	case last == nil:
	case tail == 1:
		keep = len(last.elems) - int(min(next.dropped-last.dropped, int64(len(last.elems))))
	case next.epoch == last.epoch:
		// Changes went from the middle of the list: it is last's, less
		// some, plus a tail, in the same order.
		reuse = last
	}
	if keep > 0 && keep == len(last.elems) && len(elems) == 0 {
		// Nothing went and nothing came: the same list.
		next.elems, next.ops = last.elems, last.ops
		return next, nil
	}
	n := keep + len(elems)
	next.elems = make([]string, 0, n)
	next.ops = make([]overlay.Op, 0, n)
	if keep > 0 {
		from := len(last.elems) - keep
		next.elems = append(next.elems, last.elems[from:]...)
		next.ops = append(next.ops, last.ops[from:]...)
	}
	j := 0 // the next of reuse's changes that may still be in the list
	for _, s := range elems {
		if reuse != nil {
			k := slices.Index(reuse.elems[j:], s)
			if k >= 0 {
				j += k
				next.elems = append(next.elems, s)
				next.ops = append(next.ops, reuse.ops[j])
				j++
				continue
			}
			j = len(reuse.elems) // past the old changes: the rest are new
		}
		entry, key, ok := splitElement(s)
		if !ok {
			return nil, fmt.Errorf("%w: a change without its row's key", ErrCorrupt)
		}
		op, err := decodeChange(entry)
		if err != nil {
			return nil, fmt.Errorf("row %q: %w", key, err)
		}
		if o.normalize != nil {
			o.normalize(table, op.Values)
		}
		next.elems = append(next.elems, s)
		next.ops = append(next.ops, op)
	}
	return next, nil
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
