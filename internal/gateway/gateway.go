// Package gateway is spool's intake and read path, independent of HTTP: it
// checks transactions against the catalog, makes them durable in the log
// (whose append keeps the overlay in step), publishes them queued, and
// answers smart reads and status queries. What happens to a transaction
// after the log is the applier's and the settler's; the gateway hears of
// it through the status tracker, which the feed of state changes keeps.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/overlay"
	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/status"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// KVTable is spool's own key-value table behind /write and /read.
const KVTable = "spool_kv"

// Overlay is the pending state reads merge: the in-memory overlay of a
// process with a local log (overlay.Logged), or the shared one a Redis log
// keeps in the same atomic step as each append. Its values come back
// canonical: each overlay is built with the catalog's normaliser.
type Overlay interface {
	Row(ctx context.Context, table, key string) (overlay.Pending, error)
	Rows(ctx context.Context, table string, keys []string) ([]overlay.Pending, error)
	Table(ctx context.Context, table string) (map[string]overlay.Pending, error)
	// Has reports whether a transaction still has changes pending.
	Has(ctx context.Context, id string) (bool, error)
	Stats(ctx context.Context) (overlay.Stats, error)
}

var _ Overlay = (*overlay.Overlay)(nil)

// Publisher hears the transactions the gateway queues (changes.Feed).
type Publisher interface {
	Publish(cs ...changes.Change)
}

// Config is what a gateway is built from.
type Config struct {
	// Log is the log whose every append also records the transaction in
	// Overlay (overlay.Logged, or a Redis log and its overlay).
	Log     txlog.Log
	Overlay Overlay
	// Shared is set when other processes append to and apply the log
	// (Redis): the tracker then knows only some states, and status
	// queries ask the database first.
	Shared bool
	Store  store.Store
	// Catalog is the catalog in use (ReadCatalog reads it).
	Catalog *schema.Live
	// Tracker answers status queries and waits; Feed keeps it (and
	// everything else that follows states) told of each queued write.
	Tracker *status.Tracker
	Feed    Publisher
	// Replicas are the read replicas smart reads and consistency=database
	// reads go to, in turn; empty means reads go to Store.
	Replicas []Replica
	// Backpressure bounds the log: writes are refused over its high mark.
	Backpressure Backpressure
	// Keys looks up idempotency keys; nil refuses writes that carry one.
	Keys   Keys
	Logger *slog.Logger
}

// Replica is a read replica as the gateway reads it.
type Replica interface {
	query.Database
	// Applied tells whether the replica has replayed transaction id.
	Applied(ctx context.Context, id string) (time.Time, bool, error)
}

// Gateway takes writes into the log and answers reads and status queries.
type Gateway struct {
	log     txlog.Log
	store   store.Store
	overlay Overlay
	shared  bool
	tracker *status.Tracker
	feed    Publisher
	// reader reads the replicas (or the primary without replicas) merged
	// with the overlay; primary reads the primary.
	reader   *query.Reader
	primary  *query.Reader
	replicas []Replica
	logger   *slog.Logger
	pressure pressure
	catalog  *schema.Live
	keys     Keys
	keyLocks keyLocks
}

// New returns a gateway over an open log and store.
func New(cfg Config) (*Gateway, error) {
	switch {
	case cfg.Log == nil || cfg.Overlay == nil || cfg.Store == nil || cfg.Catalog == nil || cfg.Tracker == nil || cfg.Feed == nil:
		return nil, errors.New("gateway: a gateway needs a log, an overlay, a store, a catalog, a tracker and a feed")
	case cfg.Backpressure.High > 0 && (cfg.Backpressure.Low <= 0 || cfg.Backpressure.Low > cfg.Backpressure.High):
		return nil, fmt.Errorf("backpressure: low mark %d must be above 0 and at most the high mark %d", cfg.Backpressure.Low, cfg.Backpressure.High)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{log: cfg.Log, store: cfg.Store, overlay: cfg.Overlay, shared: cfg.Shared, tracker: cfg.Tracker, feed: cfg.Feed,
		logger: logger, replicas: cfg.Replicas, pressure: pressure{cfg: cfg.Backpressure}, catalog: cfg.Catalog, keys: cfg.Keys}
	g.primary = &query.Reader{DB: cfg.Store, Overlay: g.overlay}
	g.reader = g.primary
	if len(cfg.Replicas) > 0 {
		g.reader = &query.Reader{DB: &roundRobin{replicas: cfg.Replicas, primary: cfg.Store}, Overlay: g.overlay}
	}
	return g, nil
}

// ReadCatalog returns the reader of the catalog clients use: the user
// tables of st and spool's key-value table, restricted to tables (with
// KVTable) unless tables is empty.
func ReadCatalog(st store.Store, tables []string) func(ctx context.Context) (*schema.Catalog, error) {
	return func(ctx context.Context) (*schema.Catalog, error) {
		cat, err := st.Catalog(ctx)
		if err != nil {
			return nil, fmt.Errorf("read catalog: %w", err)
		}
		if len(tables) > 0 {
			if cat, err = cat.Restrict(append(slices.Clone(tables), KVTable)); err != nil {
				return nil, fmt.Errorf("--tables: %w", err)
			}
		}
		return cat, nil
	}
}

// Catalog returns the tables clients may use.
func (g *Gateway) Catalog() *schema.Catalog { return g.catalog.Load().Without(KVTable) }

// Table returns a table clients may use.
func (g *Gateway) Table(name string) (*schema.Table, error) {
	if name == KVTable {
		return nil, fmt.Errorf("%w %q", schema.ErrUnknownTable, name)
	}
	return g.catalog.Load().Table(name)
}

// Tracker returns the transaction state tracker.
func (g *Gateway) Tracker() *status.Tracker { return g.tracker }

// Overlay returns the overlay.
func (g *Gateway) Overlay() Overlay { return g.overlay }

// ErrUnavailable wraps a failure to make a write durable: the client should
// retry later; nothing was acknowledged.
var ErrUnavailable = errors.New("log unavailable")

// Submit checks a request, makes it durable and visible, and returns its
// receipt. A refused request changes nothing.
func (g *Gateway) Submit(ctx context.Context, req *Request) (*Receipt, error) {
	return g.submit(ctx, req, g.Table)
}

func (g *Gateway) submit(ctx context.Context, req *Request, lookup func(string) (*schema.Table, error)) (*Receipt, error) {
	if req.Key != "" {
		return g.submitKeyed(ctx, req, lookup)
	}
	tx, rc, err := g.resolve(req, lookup)
	if err != nil {
		return nil, err
	}
	if err := g.Enqueue(ctx, tx); err != nil {
		return nil, err
	}
	return rc, nil
}

// Resolve checks a request against the catalog clients may use and turns
// it into a transaction, without enqueueing it (a corrected dead letter's
// retry, which the dead-letter queue enqueues).
func (g *Gateway) Resolve(req *Request) (*txn.Transaction, *Receipt, error) {
	return g.resolve(req, g.Table)
}

func (g *Gateway) resolve(req *Request, lookup func(string) (*schema.Table, error)) (*txn.Transaction, *Receipt, error) {
	// Client requests may only name exposed tables.
	for i, o := range req.Operations {
		if _, err := lookup(o.Table); err != nil {
			return nil, nil, txn.BadOp(i, "%v", err)
		}
	}
	return resolve(g.catalog.Load(), req, time.Now().UTC())
}

// Enqueue takes a resolved transaction in: refused over the backpressure
// mark or when an update or delete names a row that does not exist,
// else made durable in the log and visible in the overlay, and published
// queued. It implements deadletter.Intake.
func (g *Gateway) Enqueue(ctx context.Context, tx *txn.Transaction) error {
	if err := g.checkPressure(ctx); err != nil {
		return err
	}
	if err := g.checkRowsExist(ctx, tx); err != nil {
		return err
	}
	return g.enqueue(ctx, tx)
}

// ReceiptFor is the receipt of an enqueued transaction: its id, and the
// ids of its rows and aliases.
func ReceiptFor(tx *txn.Transaction) *Receipt {
	rc := &Receipt{TransactionID: tx.ID, State: txn.Queued, IDs: make([]string, 0, len(tx.Operations)), Refs: map[string]string{}}
	for _, op := range tx.Operations {
		rc.IDs = append(rc.IDs, op.ID)
		if op.As != "" {
			rc.Refs[op.As] = op.ID
		}
	}
	return rc
}

// enqueue makes tx durable in the log and visible in the overlay, and
// publishes it queued before the append (so that no later state of it can
// come first), then logged, or refused if the append failed.
func (g *Gateway) enqueue(ctx context.Context, tx *txn.Transaction) error {
	g.feed.Publish(changes.Change{ID: tx.ID, State: txn.Queued, At: tx.CreatedAt, Tx: tx})
	if _, err := g.log.Append(ctx, tx); err != nil {
		g.feed.Publish(changes.Change{ID: tx.ID, State: txn.Queued, Refused: true, Tx: tx})
		return fmt.Errorf("%w: append: %w", ErrUnavailable, err)
	}
	g.feed.Publish(changes.Change{ID: tx.ID, State: txn.Queued, Logged: true, At: tx.CreatedAt, Tx: tx})
	return nil
}

// checkRowsExist refuses an update or delete of a row that exists neither in
// the database nor in the overlay (nor earlier in the same transaction).
func (g *Gateway) checkRowsExist(ctx context.Context, tx *txn.Transaction) error {
	if !slices.ContainsFunc(tx.Operations, func(op txn.Operation) bool { return op.Op == txn.Update || op.Op == txn.Delete }) {
		return nil // inserts and upserts only: nothing to check
	}
	type ref struct{ table, id string }
	var seen map[ref]bool // rows this transaction wrote or deleted so far
	for i, op := range tx.Operations {
		r := ref{op.Table, op.ID}
		switch op.Op {
		case txn.Insert, txn.Upsert:
			if seen == nil {
				seen = map[ref]bool{}
			}
			seen[r] = true
			continue
		}
		exists, known := seen[r]
		if !known {
			t, _ := g.catalog.Load().Table(op.Table)
			var err error
			if exists, err = g.rowExists(ctx, t, op.ID); err != nil {
				return err
			}
		}
		if !exists {
			return &txn.InputError{Kind: txn.ErrNotFound, Op: i, Msg: fmt.Sprintf("operation %d: %s of %s/%s: no such row (neither in the database nor buffered)", i, op.Op, op.Table, op.ID)}
		}
		if seen == nil {
			seen = map[ref]bool{}
		}
		seen[r] = op.Op != txn.Delete
	}
	return nil
}

// ExistsCheckTimeout bounds the database read that tells whether the row
// an update or delete names exists: a healthy primary answers in a few
// milliseconds, and intake must not wait on a slow or absent database.
const ExistsCheckTimeout = 500 * time.Millisecond

// rowExists tells whether a row exists for an update or delete to act on.
// When the overlay's pending changes decide it (an insert, upsert or
// delete among them) the database is not asked: a row written moments ago
// is updated without touching the database, even while it is down. Else
// the primary is asked (a row a replica lacks may be committed already),
// under the overlay. That check is a courtesy, a 404 at once for a row
// that does not exist; the applier checks again, and an update or delete
// of a missing row is dead-lettered. So when the database does not answer
// within ExistsCheckTimeout, the row is taken to exist: intake never waits
// on, nor fails with, the database.
func (g *Gateway) rowExists(ctx context.Context, t *schema.Table, key string) (bool, error) {
	pending, err := g.overlay.Row(ctx, t.Name, key)
	if err != nil {
		return false, fmt.Errorf("%w: check row %s/%s: %w", ErrUnavailable, t.Name, key, err)
	}
	if slices.ContainsFunc(pending, func(op overlay.Op) bool { return op.Kind != txn.Update }) {
		_, exists := pending.Apply(nil)
		return exists, nil
	}
	dbCtx, cancel := context.WithTimeout(ctx, ExistsCheckTimeout)
	defer cancel()
	base, found, err := g.store.Get(dbCtx, t, key)
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("check row %s/%s: %w", t.Name, key, ctx.Err())
		}
		g.logger.Debug("row existence not checked: the database did not answer; the applier checks it", "table", t.Name, "key", key, "err", err)
		return true, nil
	}
	if !found {
		base = nil
	}
	_, exists := pending.Apply(base)
	return exists, nil
}

// Get reads one row.
func (g *Gateway) Get(ctx context.Context, t *schema.Table, key string, c Consistency) (schema.Row, query.Source, bool, error) {
	k, err := t.Key.NormalizeKey(key)
	if err != nil {
		return nil, "", false, &txn.InputError{Kind: txn.ErrInvalid, Op: -1, Msg: fmt.Sprintf("id: %v", err)}
	}
	r, merge := g.readerFor(c)
	return r.Get(ctx, t, k, merge)
}

// GetMany reads rows of t by canonical key text, as operations carry
// them (query.Reader.GetMany): rows[i] is keys[i]'s, nil if none.
func (g *Gateway) GetMany(ctx context.Context, t *schema.Table, keys []string, c Consistency) ([]schema.Row, error) {
	r, merge := g.readerFor(c)
	return r.GetMany(ctx, t, keys, merge)
}

// List reads many rows.
func (g *Gateway) List(ctx context.Context, q *query.Query, c Consistency) ([]schema.Row, query.Source, error) {
	rows, _, src, err := g.ListMarked(ctx, q, c)
	return rows, src, err
}

// ListMarked is List telling which rows have changes still buffered
// (query.Reader.ListMarked).
func (g *Gateway) ListMarked(ctx context.Context, q *query.Query, c Consistency) ([]schema.Row, []bool, query.Source, error) {
	r, merge := g.readerFor(c)
	if q.Table.Key == nil {
		merge = false // without a key there is nothing to merge by
	}
	return r.ListMarked(ctx, q, merge)
}

// LogStats reports the log's depth.
func (g *Gateway) LogStats(ctx context.Context) (txlog.Stats, error) { return g.log.Stats(ctx) }

// Put writes value under key in spool's key-value table (the seed's
// /write); from gives who writes it and, if any, its idempotency key and
// fingerprint (its operations are ignored).
func (g *Gateway) Put(ctx context.Context, key, value string, from Request) (*Receipt, error) {
	if key == "" {
		return nil, &txn.InputError{Kind: txn.ErrInvalid, Op: -1, Msg: "key: must not be empty"}
	}
	req := &Request{Operations: []OpRequest{{
		Op: string(txn.Upsert), Table: KVTable,
		Values: map[string]any{"key": key, "value": value, "updated_at": time.Now().UTC().Format(time.RFC3339Nano)},
	}}, Principal: from.Principal, Key: from.Key, Fingerprint: from.Fingerprint}
	return g.submit(ctx, req, g.catalog.Load().Table)
}

// Fetch reads key from spool's key-value table, buffered writes included.
func (g *Gateway) Fetch(ctx context.Context, key string) (value any, found bool, err error) {
	t, err := g.catalog.Load().Table(KVTable)
	if err != nil {
		return nil, false, err
	}
	row, _, found, err := g.reader.Get(ctx, t, key, true)
	if err != nil || !found {
		return nil, false, err
	}
	return row["value"], true, nil
}
