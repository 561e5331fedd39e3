// Package gateway is spool's core, independent of HTTP: it accepts
// transactions (checked, made durable in the log, visible in the overlay),
// answers smart reads and status queries, and takes the applier's results
// to advance states and evict the overlay.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

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
// process with a local log, or a shared one that the log keeps in the same
// atomic step as each append (Redis).
type Overlay interface {
	Row(ctx context.Context, table, key string) (overlay.Pending, error)
	Table(ctx context.Context, table string) (map[string]overlay.Pending, error)
	// Evict removes the changes of the given transactions.
	Evict(ctx context.Context, ids ...string) error
	// Withdraw evicts every pending transaction with a change depends
	// reports true for, and returns their ids.
	Withdraw(ctx context.Context, depends func(table, key string, op overlay.Op) bool) ([]string, error)
	// Has reports whether a transaction still has changes pending.
	Has(ctx context.Context, id string) (bool, error)
	Stats(ctx context.Context) (overlay.Stats, error)
	// SetNormalize gives the overlay the catalog's normaliser, for the
	// changes it reads back through JSON (from disk, from Redis): Row and
	// Table return canonical values.
	SetNormalize(fn func(table string, values map[string]any))
}

var _ Overlay = (*overlay.Overlay)(nil)

// Config is what a gateway is built from.
type Config struct {
	Log   txlog.Log
	Store store.Store
	// Overlay is a shared overlay that Log fills with each append; nil
	// means a local overlay this gateway fills before each append and
	// rebuilds from the log at start.
	Overlay Overlay
	// Local is that local overlay, empty (overlay.Open bounds its memory);
	// nil means a new one held in memory alone. The caller closes it.
	Local *overlay.Overlay
	// Replicas are the read replicas smart reads and consistency=database
	// reads go to, in turn; empty means reads go to Store.
	Replicas []Replica
	// Replication is told of every committed batch and reports, through
	// Replicated, when the replicas have it; nil means a transaction is
	// replicated when it commits (no replica, or SQLite).
	Replication Tracker
	// Tables names the tables clients may use; empty means every user table.
	Tables []string
	// Backpressure bounds the log: writes are refused over its high mark.
	Backpressure Backpressure
	Logger       *slog.Logger
}

// Replica is a read replica as the gateway reads it.
type Replica interface {
	query.Database
	// Applied tells whether the replica has replayed transaction id.
	Applied(ctx context.Context, id string) (time.Time, bool, error)
}

// Tracker follows committed batches until the replicas have them.
type Tracker interface {
	Track(lsn txn.LSN, ids []string, applied time.Time) <-chan struct{}
}

// Gateway ties the log, the overlay, the store and the tracker together.
type Gateway struct {
	log     txlog.Log
	store   store.Store
	overlay Overlay
	// local is the in-memory overlay this gateway fills itself, nil when
	// the log keeps a shared one.
	local   *overlay.Overlay
	tracker *status.Tracker
	// reader reads the replicas (or the primary without replicas) merged
	// with the overlay; primary reads the primary.
	reader      *query.Reader
	primary     *query.Reader
	replicas    []Replica
	replication Tracker
	logger      *slog.Logger
	exposed     []string
	pressure    pressure
	catalog     atomic.Pointer[schema.Catalog]
	// depends tells whether a pending change depends on a failed
	// transaction; set by SetApplier.
	depends   func(op txn.Operation) (string, bool)
	forgiveFn func(id string)
	retries   queuedRetries
}

// New returns a gateway over an open log and store.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{log: cfg.Log, store: cfg.Store, overlay: cfg.Overlay, tracker: status.New(0), logger: logger, exposed: cfg.Tables,
		replicas: cfg.Replicas, replication: cfg.Replication, pressure: pressure{cfg: cfg.Backpressure}}
	if b := cfg.Backpressure; b.High > 0 && (b.Low <= 0 || b.Low > b.High) {
		return nil, fmt.Errorf("backpressure: low mark %d must be above 0 and at most the high mark %d", b.Low, b.High)
	}
	if g.overlay == nil {
		g.local = cfg.Local
		if g.local == nil {
			g.local = overlay.New()
		}
		g.overlay = g.local
	}
	g.overlay.SetNormalize(g.normalizeTable)
	g.primary = &query.Reader{DB: cfg.Store, Overlay: g.overlay}
	g.reader = g.primary
	if len(cfg.Replicas) > 0 {
		g.reader = &query.Reader{DB: &roundRobin{replicas: cfg.Replicas, primary: cfg.Store}, Overlay: g.overlay}
	}
	if err := g.RefreshCatalog(ctx); err != nil {
		return nil, err
	}
	if g.local == nil {
		return g, nil
	}
	// Rebuild the overlay and the queued states from the log, a chunk at
	// a time (a backlog that spills goes to disk in a write per chunk).
	n := 0
	var chunk []*txn.Transaction
	flush := func() error {
		err := g.local.Rebuild(ctx, chunk)
		chunk = chunk[:0]
		return err
	}
	err := cfg.Log.Pending(ctx, func(e txlog.Entry) error {
		if err := g.normalize(e.Tx); err != nil {
			return fmt.Errorf("transaction %s in the log: %w", e.Tx.ID, err)
		}
		chunk = append(chunk, e.Tx)
		g.tracker.Queued()
		n++
		if len(chunk) == rebuildChunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, fmt.Errorf("rebuild overlay from log: %w", err)
	}
	if n > 0 {
		logger.Info("overlay rebuilt from the log", "transactions", n)
	}
	return g, nil
}

// rebuildChunk is how many transactions of the log the overlay takes in
// one Rebuild at start.
const rebuildChunk = 1000

// normalizeTable restores canonical values of a row of table; see
// normalizeValues.
func (g *Gateway) normalizeTable(table string, values map[string]any) {
	if t, err := g.catalog.Load().Table(table); err == nil {
		normalizeValues(t, values)
	}
}

func normalizeValues(t *schema.Table, values map[string]any) {
	for name, v := range values {
		if c := t.Column(name); c != nil {
			if n, err := c.Normalize(v); err == nil {
				values[name] = n
			}
		}
	}
}

// normalize restores canonical values in a transaction read back from the
// log (JSON turns integers into numbers and bytes into base64 text).
func (g *Gateway) normalize(tx *txn.Transaction) error {
	cat := g.catalog.Load()
	for _, op := range tx.Operations {
		t, err := cat.Table(op.Table)
		if err != nil {
			return err
		}
		normalizeValues(t, op.Values)
	}
	return nil
}

// RefreshCatalog rereads the database catalog.
func (g *Gateway) RefreshCatalog(ctx context.Context) error {
	cat, err := g.store.Catalog(ctx)
	if err != nil {
		return fmt.Errorf("read catalog: %w", err)
	}
	if len(g.exposed) > 0 {
		names := append(slices.Clone(g.exposed), KVTable)
		if cat, err = cat.Restrict(names); err != nil {
			return fmt.Errorf("--tables: %w", err)
		}
	}
	g.catalog.Store(cat)
	return nil
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
	// Client requests may only name exposed tables.
	for i, o := range req.Operations {
		if _, err := lookup(o.Table); err != nil {
			return nil, badOp(i, "%v", err)
		}
	}
	return g.submitTx(ctx, req, "")
}

// submitTx resolves, checks and enqueues a request; retryOf links a retried
// dead letter.
func (g *Gateway) submitTx(ctx context.Context, req *Request, retryOf string) (*Receipt, error) {
	if err := g.checkPressure(ctx); err != nil {
		return nil, err
	}
	tx, rc, err := resolve(g.catalog.Load(), req, time.Now().UTC())
	if err != nil {
		return nil, err
	}
	tx.RetryOf = retryOf
	if err := g.checkRowsExist(ctx, tx); err != nil {
		return nil, err
	}
	if err := g.enqueue(ctx, tx); err != nil {
		return nil, err
	}
	return rc, nil
}

// enqueue makes tx durable in the log and visible in the overlay.
func (g *Gateway) enqueue(ctx context.Context, tx *txn.Transaction) error {
	if g.local != nil {
		if err := g.local.Add(ctx, tx); err != nil {
			return fmt.Errorf("%w: overlay: %w", ErrUnavailable, err)
		}
	}
	g.tracker.Queued()
	if _, err := g.log.Append(ctx, tx); err != nil {
		if g.local != nil {
			if err := g.local.Evict(context.WithoutCancel(ctx), tx.ID); err != nil {
				g.logger.Error("withdraw a refused write from the overlay; reads show it until spool restarts", "txn", tx.ID, "err", err)
			}
		}
		g.tracker.Forget(tx.ID)
		return fmt.Errorf("%w: append: %w", ErrUnavailable, err)
	}
	return nil
}

// checkRowsExist refuses an update or delete of a row that exists neither in
// the database nor in the overlay (nor earlier in the same transaction).
func (g *Gateway) checkRowsExist(ctx context.Context, tx *txn.Transaction) error {
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
			return &InputError{Kind: ErrNotFound, Op: i, Msg: fmt.Sprintf("operation %d: %s of %s/%s: no such row (neither in the database nor buffered)", i, op.Op, op.Table, op.ID)}
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
		return nil, "", false, &InputError{Kind: ErrInvalid, Op: -1, Msg: fmt.Sprintf("id: %v", err)}
	}
	r, merge := g.readerFor(c)
	return r.Get(ctx, t, k, merge)
}

// List reads many rows.
func (g *Gateway) List(ctx context.Context, q *query.Query, c Consistency) ([]schema.Row, query.Source, error) {
	r, merge := g.readerFor(c)
	if q.Table.Key == nil {
		merge = false // without a key there is nothing to merge by
	}
	return r.List(ctx, q, merge)
}

// LogStats reports the log's depth.
func (g *Gateway) LogStats(ctx context.Context) (txlog.Stats, error) { return g.log.Stats(ctx) }

// Put writes value under key in spool's key-value table (the seed's /write).
func (g *Gateway) Put(ctx context.Context, key, value string) (*Receipt, error) {
	if key == "" {
		return nil, &InputError{Kind: ErrInvalid, Op: -1, Msg: "key: must not be empty"}
	}
	req := &Request{Operations: []OpRequest{{
		Op: string(txn.Upsert), Table: KVTable,
		Values: map[string]any{"key": key, "value": value, "updated_at": time.Now().UTC().Format(time.RFC3339Nano)},
	}}}
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
