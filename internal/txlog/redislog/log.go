package redislog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txlog/handoff"
	"github.com/spoolgw/spool/internal/txn"
)

var _ txlog.Log = (*Log)(nil)

// ErrUnsafeServer is wrapped by Open when the Redis server is configured so
// that it could lose acknowledged writes silently (a maxmemory-policy that
// evicts keys) or lacks what the log needs (a version before 6.2).
var ErrUnsafeServer = errors.New("redis server unsuitable for the log")

// ErrCorrupt is wrapped by errors about a stream entry that does not hold a
// transaction: the log's keys were written by something other than spool.
var ErrCorrupt = errors.New("corrupt log entry")

// ErrLaterLayout is wrapped by Open when the log's keys were written by a
// later spool, in a layout this one does not know.
var ErrLaterLayout = errors.New("log written by a later spool")

// Log is the Redis log of one name: a stream of transactions, a consumer
// group of appliers, and the overlay the appends keep. It is safe for
// concurrent use; Claim and Ack are meant for one applier goroutine.
type Log struct {
	cfg    Config
	keys   keys
	client redis.UniversalClient
	logger *slog.Logger

	queue      *handoff.Queue[encoded]
	closing    chan struct{} // closed when Close starts
	writerDone chan struct{} // closed when the writer goroutine has returned
	closeOnce  sync.Once
	closeErr   error
	bgMu       sync.Mutex     // guards bgClosed, orders goBackground before Close's wait
	bgClosed   bool           // set by Close: no more background goroutines
	bg         sync.WaitGroup // lease renewers

	calls    atomic.Int64 // append script calls, for tests and benchmarks
	appended atomic.Int64 // transactions those calls appended

	claimMu sync.Mutex // serialises Claim and Takeover
	// ackMu serialises Acks. It is not claimMu: the applier acknowledges a
	// batch while the next one is being claimed, and a Claim waiting for
	// new entries holds claimMu for up to ClaimBlock. An ack touches
	// nothing of claimState: XACK and XDEL of entries already delivered.
	ackMu sync.Mutex
	claim claimState
	// recent is what this process appended, for its own Claim.
	recent recent
	// restartClaim is set by Lease.Acquire and by a failed read: the next
	// Claim starts over.
	restartClaim atomic.Bool
	// leased is set once the log has a Lease: from then on only the
	// lease's holder claims (see deliver).
	leased atomic.Bool
	// holder is the lease's value while this process holds it, nil
	// otherwise.
	holder atomic.Pointer[string]

	overlay *Overlay
}

// Open connects to the Redis server cfg.URL names, checks that it keeps
// acknowledged writes (see the package documentation), creates the log's
// stream and consumer group if they are missing, and starts the writer. A
// nil logger discards. ctx bounds Open only.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	client, err := newClient(cfg.URL)
	if err != nil {
		return nil, err
	}
	l := &Log{
		cfg:        cfg,
		keys:       newKeys(cfg.Name),
		client:     client,
		logger:     logger.With("log", cfg.Name),
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	l.queue = handoff.NewQueue[encoded]("redislog: append", cfg.QueueLength, l.closing, l.writerDone)
	l.overlay = &Overlay{l: l, normalize: cfg.Normalize}
	if err := l.open(ctx); err != nil {
		_ = client.Close()
		return nil, err
	}
	go l.run()
	return l, nil
}

// open checks the server and creates the stream and its group.
func (l *Log) open(ctx context.Context) error {
	if err := l.ping(ctx); err != nil {
		return err
	}
	if err := l.checkServer(ctx); err != nil {
		return err
	}
	if err := l.checkReplication(ctx); err != nil {
		return err
	}
	if err := l.createGroup(ctx); err != nil {
		return err
	}
	if err := l.migrate(ctx); err != nil {
		return err
	}
	l.logger.Debug("redislog: opened", "stream", l.keys.stream, "consumer", l.cfg.Consumer)
	return nil
}

// loadingPoll is how often open asks a server that is loading its
// dataset whether it is done.
const loadingPoll = 50 * time.Millisecond

// ping checks that the server answers. A server that has just started
// answers LOADING until its AOF is read back (seconds for a large one):
// ping waits for it, for as long as ctx allows, so that spool and Redis
// started together (a host's reboot) do not fail spool's start. Any other
// error fails at once.
func (l *Log) ping(ctx context.Context) error {
	for logged := false; ; logged = true {
		err := l.client.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		if !redis.HasErrorPrefix(err, "LOADING") {
			return fmt.Errorf("redislog: open: connect: %w", err)
		}
		if !logged {
			l.logger.Info("redislog: Redis is loading its dataset; waiting for it", "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redislog: open: connect: %w (%w)", err, ctx.Err())
		case <-time.After(loadingPoll):
		}
	}
}

// createGroup creates the stream and the appliers' group, reading from the
// stream's start, unless the group is there already.
func (l *Log) createGroup(ctx context.Context) error {
	err := l.client.XGroupCreateMkStream(ctx, l.keys.stream, groupName, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("redislog: create consumer group: %w", err)
	}
	return nil
}

// migrate brings the log's keys to the current layout (see migrateScript),
// and refuses a log written by a later spool, whose keys this one would
// misread.
func (l *Log) migrate(ctx context.Context) error {
	res, err := migrateScript.Run(ctx, l.client, []string{l.keys.layout, l.keys.tables},
		l.keys.prefix, layoutVersion).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("script returned %d values, want 2", len(res))
	}
	if err != nil {
		return fmt.Errorf("redislog: open: key layout: %w", err)
	}
	switch had, moved := res[0], res[1]; {
	case had == 0 && moved > 0:
		l.logger.Info("redislog: the overlay's keys moved to the current layout", "version", layoutVersion, "changes", moved)
	case had < 0:
		return fmt.Errorf("redislog: open: %w: %s holds no layout version", ErrCorrupt, l.keys.layout)
	case had > layoutVersion:
		return fmt.Errorf("redislog: open: %w: the log's keys are in layout %d, this spool knows %d at most",
			ErrLaterLayout, had, layoutVersion)
	}
	return nil
}

// checkServer refuses a server that could evict the log's keys or is too
// old, and warns about one that can lose acknowledged writes in a crash.
func (l *Log) checkServer(ctx context.Context) error {
	if v, err := l.serverVersion(ctx); err != nil {
		l.logger.Warn("redislog: could not read the Redis version; the log needs 6.2 or later", "err", err)
	} else if !atLeast(v, 6, 2) {
		return fmt.Errorf("redislog: open: %w: Redis %s; the log needs 6.2 or later (XAUTOCLAIM)", ErrUnsafeServer, v)
	}
	policy, err := l.configGet(ctx, "maxmemory-policy")
	if err != nil {
		l.logger.Warn("redislog: could not verify that Redis never evicts the log's keys (CONFIG GET refused); make sure maxmemory-policy is noeviction", "err", err)
	} else if policy != "noeviction" {
		return fmt.Errorf("redislog: open: %w: maxmemory-policy is %q; set it to noeviction (CONFIG SET maxmemory-policy noeviction), since a policy that can evict keys could silently drop acknowledged writes",
			ErrUnsafeServer, policy)
	}
	aof, errA := l.configGet(ctx, "appendonly")
	fsync, errF := l.configGet(ctx, "appendfsync")
	switch {
	case errA != nil || errF != nil:
		l.logger.Warn("redislog: could not verify Redis durability (CONFIG GET refused); an acknowledged write is only as durable as the server's AOF: set appendonly yes and appendfsync always",
			"err", errors.Join(errA, errF))
	case aof != "yes":
		l.logger.Warn("redislog: Redis AOF is off (appendonly no): a Redis crash or restart loses every acknowledged write since the last RDB snapshot, or all of them if snapshots are off; set appendonly yes and appendfsync always",
			"appendonly", aof, "may_lose", "everything since the last snapshot")
	case fsync == "everysec":
		l.logger.Warn("redislog: Redis appendfsync is everysec: a crash of the Redis server's machine can lose up to about 1 s of acknowledged writes; set appendfsync always to lose none",
			"appendfsync", fsync, "may_lose", "about 1 s of acknowledged writes")
	case fsync != "always":
		l.logger.Warn("redislog: Redis appendfsync is "+fsync+": the kernel decides when the AOF reaches the disk, so a crash of the Redis server's machine can lose every acknowledged write it had not written back (often the last 30 s); set appendfsync always to lose none",
			"appendfsync", fsync, "may_lose", "everything the kernel had not written back")
	}
	return nil
}

// configGet returns one CONFIG GET parameter. An error means the server
// would not say: CONFIG is refused on many managed servers.
func (l *Log) configGet(ctx context.Context, name string) (string, error) {
	m, err := l.client.ConfigGet(ctx, name).Result()
	if err != nil {
		return "", err
	}
	v, ok := m[name]
	if !ok {
		return "", fmt.Errorf("CONFIG GET %s: no such parameter in the reply", name)
	}
	return strings.ToLower(v), nil
}

// serverVersion reads redis_version from INFO server.
func (l *Log) serverVersion(ctx context.Context) (string, error) {
	info, err := l.client.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v, nil
		}
	}
	return "", errors.New("INFO server: no redis_version")
}

// atLeast reports whether version v ("7.0.15") is major.minor or later.
func atLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return true // unknown form: do not refuse on a guess
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return true
	}
	return ma > major || ma == major && mi >= minor
}

// Name returns the log's name: the name its fencing tokens are recorded
// under in the database.
func (l *Log) Name() string { return l.cfg.Name }

// Consumer returns this process's consumer name in the log's group.
func (l *Log) Consumer() string { return l.cfg.Consumer }

// Overlay returns the overlay this log keeps with every append.
func (l *Log) Overlay() *Overlay { return l.overlay }

// Stats reports the entries in the stream (acknowledged ones are deleted,
// so these are the ones not yet acknowledged) and, where the server allows
// MEMORY USAGE, the stream's approximate size in bytes.
func (l *Log) Stats(ctx context.Context) (txlog.Stats, error) {
	if l.isClosing() {
		return txlog.Stats{}, fmt.Errorf("redislog: stats: %w", txlog.ErrClosed)
	}
	pipe := l.client.Pipeline()
	depth := pipe.XLen(ctx, l.keys.stream)
	mem := pipe.MemoryUsage(ctx, l.keys.stream)
	_, _ = pipe.Exec(ctx) // errors are in the commands
	if err := depth.Err(); err != nil {
		return txlog.Stats{}, l.fail("stats", err)
	}
	st := txlog.Stats{Depth: depth.Val()}
	if mem.Err() == nil {
		st.Bytes = mem.Val()
	}
	return st, nil
}

// pendingPage is how many entries Pending reads per XRANGE: big enough
// that a long log takes few round trips, small enough that one reply stays
// well under a megabyte for 200-byte transactions.
const pendingPage = 1000

// Pending calls fn for every entry in the stream, claimed or not, in log
// order. Acknowledged entries are deleted from the stream, so these are
// exactly the ones not acknowledged. It reads the stream in pages and stops
// at the first error fn returns, and returns it.
func (l *Log) Pending(ctx context.Context, fn func(txlog.Entry) error) error {
	start := "-"
	for {
		if l.isClosing() {
			return fmt.Errorf("redislog: pending: %w", txlog.ErrClosed)
		}
		msgs, err := l.client.XRangeN(ctx, l.keys.stream, start, "+", pendingPage).Result()
		if err != nil {
			return l.fail("pending", err)
		}
		for _, m := range msgs {
			e, err := decodeMessage(m)
			if err != nil {
				return fmt.Errorf("redislog: pending: %w", err)
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(msgs) < pendingPage {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// decodeMessage turns a stream entry into a log entry. Numbers decode as
// json.Number, so integers beyond 2^53 keep every digit.
func decodeMessage(m redis.XMessage) (txlog.Entry, error) {
	return decodeMessageFrom(m, nil)
}

// decodeMessageFrom is decodeMessage handing over the transaction kept
// in r (not nil) instead of decoding it, where r kept it.
func decodeMessageFrom(m redis.XMessage, r *recent) (txlog.Entry, error) {
	payload, ok := m.Values["tx"].(string)
	if !ok {
		return txlog.Entry{}, fmt.Errorf("%w: stream entry %s has no transaction", ErrCorrupt, m.ID)
	}
	if r != nil {
		if tx, ok := r.take(m.ID, payload); ok {
			return txlog.Entry{Pos: m.ID, Tx: tx}, nil
		}
	}
	tx, err := txn.Decode([]byte(payload))
	if err != nil {
		return txlog.Entry{}, fmt.Errorf("%w: stream entry %s: %w", ErrCorrupt, m.ID, err)
	}
	return txlog.Entry{Pos: m.ID, Tx: tx}, nil
}

// decodeOp decodes a row-list entry.
func decodeOp(s string) (opEntry, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var e opEntry
	if err := dec.Decode(&e); err != nil {
		return opEntry{}, fmt.Errorf("%w: overlay entry: %w", ErrCorrupt, err)
	}
	return e, nil
}

// Close stops the writer (appends it has not taken fail with
// txlog.ErrClosed; a script call under way finishes), waits for a Claim
// under way to notice (within ClaimBlock), stops lease renewals (their lost
// channels close; the leases expire in Redis after their TTL) and closes
// the connections. It is safe to call more than once.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		close(l.closing)
		<-l.writerDone
		l.claimMu.Lock() // waits out a Claim under way
		defer l.claimMu.Unlock()
		l.ackMu.Lock() // and an Ack
		defer l.ackMu.Unlock()
		l.bgMu.Lock()
		l.bgClosed = true
		l.bgMu.Unlock()
		l.bg.Wait()
		if err := l.client.Close(); err != nil {
			l.closeErr = fmt.Errorf("redislog: close: %w", err)
		}
	})
	return l.closeErr
}

// goBackground runs fn in a goroutine that Close waits for, unless the log
// is closing; it reports whether it did.
func (l *Log) goBackground(fn func()) bool {
	l.bgMu.Lock()
	defer l.bgMu.Unlock()
	if l.bgClosed {
		return false
	}
	l.bg.Go(fn)
	return true
}

func (l *Log) isClosing() bool {
	select {
	case <-l.closing:
		return true
	default:
		return false
	}
}

// fail wraps err from operation op, as txlog.ErrClosed if the log closed
// under it.
func (l *Log) fail(op string, err error) error {
	if l.isClosing() {
		return fmt.Errorf("redislog: %s: %w", op, txlog.ErrClosed)
	}
	return fmt.Errorf("redislog: %s: %w", op, err)
}

// LookupKey returns the record of idempotency key key (txn.Idempotency)
// if a write took it within the retention.
func (l *Log) LookupKey(ctx context.Context, key string) ([]byte, bool, error) {
	if l.isClosing() {
		return nil, false, fmt.Errorf("redislog: look up key: %w", txlog.ErrClosed)
	}
	rec, err := l.client.Get(ctx, l.keys.prefix+"idem:"+key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, l.fail("look up key", err)
	}
	// The key's write may be one whose append was refused for want of
	// replicas: its repeat is acknowledged only once they have it.
	if err := l.waitReplicas(ctx); err != nil {
		return nil, false, l.fail("look up key", err)
	}
	return rec, true, nil
}
