package redislog

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults of Config and LeaseConfig. A zero field takes its default.
const (
	// DefaultName is the log's name when Config.Name is empty: one spool
	// deployment with one log needs no name.
	DefaultName = "default"
	// DefaultMinIdle is 3 s: far above the few milliseconds between a
	// live applier's claim and its ack, so that entries in flight are not
	// taken from a live applier by one that claims without a lease. A log
	// with a Lease does not wait for it: its holder takes every pending
	// entry over when its term starts (see Claim).
	DefaultMinIdle = 3 * time.Second
	// DefaultClaimBlock is 250 ms: a waiting Claim blocks in Redis at most
	// this long per call and then looks at its context and at Close, so
	// both are honoured within a quarter of a second, while an idle
	// applier costs four cheap XREADGROUP calls a second.
	DefaultClaimBlock = 250 * time.Millisecond
	// DefaultQueueLength is 4096 appends waiting for the writer: more than
	// the concurrent writers the HTTP layer lets in, so Append does not
	// block on the queue itself in normal use, while bounding the memory a
	// stalled Redis can pin (a stall shows up as Append latency, the
	// backpressure the API needs).
	DefaultQueueLength = 4096
	// DefaultMaxBatchBytes is 256 KiB of transactions per script call:
	// about 1,300 transactions of 200 bytes, twenty times what 64
	// concurrent writers produce, so groups are never cut short in
	// practice; and small enough that one call keeps the single-threaded
	// Redis event loop (and every reader behind it) busy for a few
	// milliseconds at most.
	DefaultMaxBatchBytes = 256 << 10
	// DefaultMaxInFlight is 1 script call at a time, like the local log's
	// one fsync at a time: appends queue behind the call in flight and go
	// as one group in the next, so groups are as large as the load makes
	// them (about half the writers) and Redis does the least work per
	// append. On this machine (2 shared cores, Redis and spool on the
	// same ones) 2 or 4 calls in flight split the groups (20 and 10
	// appends instead of 32 at 64 writers) without more appends per
	// second (BenchmarkAppendInFlight); a Redis on its own machine, where
	// the round trip is the cost, may gain from 2.
	DefaultMaxInFlight = 1
	// DefaultMaxRecordSize is 16 MiB: the same limit as the local log, well
	// above any request body the API accepts, so the log never refuses
	// what the API took, and far below Redis's 512 MB bulk-string limit.
	DefaultMaxRecordSize = 16 << 20
	// DefaultKeyRetention is how long an idempotency key stays taken: a
	// client's retries of one write come within it.
	DefaultKeyRetention = 24 * time.Hour
	// DefaultLeaseTTL is 2 s: a dead applier is replaced within TTL +
	// Renew (2.5 s; about 2 s on average), while renewals every TTL/4 may
	// fail three times in a row (a GC pause, a slow network) before the
	// lease is in danger. What keeps a paused holder from committing is
	// the fencing token, and from claiming, the claim's lease check; so a
	// short TTL costs at worst a needless change of holder, never a write.
	DefaultLeaseTTL = 2 * time.Second
	// DefaultEventsMaxLen is about 100,000 entries kept in the events
	// stream (XADD MAXLEN ~): some 20 MB of Redis memory with compact
	// entries of a few operations, and at a few thousand transactions a
	// second (three entries each, at most: queued, then applied and
	// replicated batched) some ten seconds of history to resume from;
	// a subscriber away longer gets a reset and a fresh snapshot.
	DefaultEventsMaxLen = 100_000
	// DefaultReplicaTimeout is 1 s: a replica on a healthy network has a
	// write within a millisecond or two (a few tens under a heavy
	// drain), so a WAIT that takes a second means a replica is gone or
	// far behind, and the write is refused (503) rather than left
	// hanging; and it stays well below go-redis's 3 s read timeout, under
	// which the WAIT's reply is read.
	DefaultReplicaTimeout = time.Second
)

// Config says which Redis log to open and tunes it. Only URL is required.
type Config struct {
	// URL is the Redis server, as redis.ParseURL takes it:
	// redis://[user:password@]host:port/db[?dial_timeout=3s&...],
	// rediss:// for TLS, unix:///path/to/socket; or the master of a
	// Sentinel set, found and followed through failovers:
	// redis-sentinel://[user:password@]host:port[,host:port…]/master[?db=N&...]
	// (rediss-sentinel:// for TLS; see sentinelOptions). A Redis Cluster
	// is refused (ErrClusterUnsupported). Required.
	URL string
	// MinReplicas is how many replicas must have a write before it is
	// acknowledged: after each append, and before an entry is delivered
	// to an applier, a lease's token is used or a taken idempotency key
	// answers a repeat, the log sends WAIT MinReplicas ReplicaTimeout,
	// and fewer replicas than that fail the call (ErrNotReplicated).
	// 0 (the default) waits for none: a write is as durable as the
	// server's AOF makes it.
	MinReplicas int
	// ReplicaTimeout is how long a WAIT waits for MinReplicas replicas.
	// Default DefaultReplicaTimeout (1 s).
	ReplicaTimeout time.Duration
	// Name is the log's name: every key of the log starts with
	// "spool:{Name}:", so that logs of different sites or tenants share one
	// Redis, and the {Name} hash tag keeps all of one log's keys in one
	// Redis Cluster slot (its scripts touch many of them at once). It must
	// not contain '{' or '}'. It is also the log name the applier's fencing
	// token is recorded under in the database. Default DefaultName
	// ("default").
	Name string
	// Consumer is this process's name in the log's consumer group: the
	// entries an applier claimed and did not acknowledge are pending under
	// it. A restarted process that keeps its name gets them back at once;
	// one with a new name takes them over after MinIdle. Default
	// "<hostname>-<pid>".
	Consumer string
	// Normalize restores canonical values (JSON turns integers into
	// numbers and bytes into text) in the changes the overlay reads back:
	// the catalog's (schema.Live.Normalize). Nil leaves them as JSON
	// decodes them.
	Normalize func(table string, values map[string]any)
	// KeyRetention is how long an idempotency key stays taken after its
	// write's append (default DefaultKeyRetention).
	KeyRetention time.Duration
	// MinIdle is how long the entries another consumer claimed must have
	// been left alone before this one takes them over (XAUTOCLAIM) when it
	// starts claiming; younger ones it waits for, so that entries are
	// delivered in log order. Default DefaultMinIdle (3 s).
	MinIdle time.Duration
	// ClaimBlock is the longest one blocking read of a waiting Claim;
	// Claim honours its context and Close between reads. Default
	// DefaultClaimBlock (250 ms).
	ClaimBlock time.Duration
	// QueueLength is how many appends may wait for the writer before
	// Append blocks (honouring its context) to enqueue. Default
	// DefaultQueueLength (4096).
	QueueLength int
	// MaxBatchBytes caps the transaction bytes one script call carries;
	// the writer stops draining the queue once a group holds that much. A
	// single larger transaction still goes, alone. Default
	// DefaultMaxBatchBytes (256 KiB).
	MaxBatchBytes int
	// MaxInFlight is how many append script calls may be under way at
	// once, each carrying one group; 1 makes the writer wait for each
	// call's reply before it sends the next. Calls in flight at once run
	// in either order, so appends of different calls have no order
	// between them (each caller's own appends keep theirs, since a caller
	// waits for one before the next). Default DefaultMaxInFlight (1).
	MaxInFlight int
	// MaxRecordSize is the largest encoded transaction (JSON) Append
	// accepts. Default DefaultMaxRecordSize (16 MiB).
	MaxRecordSize int
	// EventsMaxLen is about how many entries the events stream keeps
	// (XADD MAXLEN ~, so Redis trims whole nodes: a few more are kept).
	// Default DefaultEventsMaxLen (100,000).
	EventsMaxLen int
}

// Validate reports the first field that holds a value a Log cannot use.
// Zero fields are valid (they take their defaults), except URL.
func (c Config) Validate() error {
	switch {
	case c.URL == "":
		return fmt.Errorf("redislog: config: URL is empty")
	case strings.ContainsAny(c.Name, "{}"):
		return fmt.Errorf("redislog: config: Name %q contains '{' or '}' (it is the Redis Cluster hash tag of the log's keys)", c.Name)
	case c.MinIdle < 0:
		return fmt.Errorf("redislog: config: MinIdle %v is negative", c.MinIdle)
	case c.ClaimBlock < 0:
		return fmt.Errorf("redislog: config: ClaimBlock %v is negative", c.ClaimBlock)
	case c.ClaimBlock > 0 && c.ClaimBlock < time.Millisecond:
		return fmt.Errorf("redislog: config: ClaimBlock %v is under Redis's 1 ms resolution", c.ClaimBlock)
	case c.QueueLength < 0:
		return fmt.Errorf("redislog: config: QueueLength %d is negative", c.QueueLength)
	case c.MaxBatchBytes < 0:
		return fmt.Errorf("redislog: config: MaxBatchBytes %d is negative", c.MaxBatchBytes)
	case c.MaxInFlight < 0:
		return fmt.Errorf("redislog: config: MaxInFlight %d is negative", c.MaxInFlight)
	case c.MaxRecordSize < 0:
		return fmt.Errorf("redislog: config: MaxRecordSize %d is negative", c.MaxRecordSize)
	case c.EventsMaxLen < 0:
		return fmt.Errorf("redislog: config: EventsMaxLen %d is negative", c.EventsMaxLen)
	case c.MinReplicas < 0:
		return fmt.Errorf("redislog: config: MinReplicas %d is negative", c.MinReplicas)
	case c.ReplicaTimeout < 0:
		return fmt.Errorf("redislog: config: ReplicaTimeout %v is negative", c.ReplicaTimeout)
	case c.ReplicaTimeout > 0 && c.ReplicaTimeout < time.Millisecond:
		return fmt.Errorf("redislog: config: ReplicaTimeout %v is under WAIT's 1 ms resolution", c.ReplicaTimeout)
	}
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Consumer == "" {
		c.Consumer = defaultConsumer()
	}
	if c.MinIdle == 0 {
		c.MinIdle = DefaultMinIdle
	}
	if c.ClaimBlock == 0 {
		c.ClaimBlock = DefaultClaimBlock
	}
	if c.QueueLength == 0 {
		c.QueueLength = DefaultQueueLength
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxRecordSize == 0 {
		c.MaxRecordSize = DefaultMaxRecordSize
	}
	if c.KeyRetention <= 0 {
		c.KeyRetention = DefaultKeyRetention
	}
	if c.EventsMaxLen == 0 {
		c.EventsMaxLen = DefaultEventsMaxLen
	}
	if c.ReplicaTimeout == 0 {
		c.ReplicaTimeout = DefaultReplicaTimeout
	}
	return c
}

// defaultConsumer is "<hostname>-<pid>": unique among live processes.
func defaultConsumer() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "spool"
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}

// LeaseConfig tunes a Lease. The zero value is the default configuration.
type LeaseConfig struct {
	// TTL is how long the lease lasts without a renewal: a holder that
	// dies is replaced within about TTL + Renew. Default DefaultLeaseTTL
	// (2 s).
	TTL time.Duration
	// Renew is how often the holder renews the lease, and how often a
	// standby tries to take it. Must be below TTL. Default TTL/4, so that
	// failed renewals are retried three times before the lease runs out.
	Renew time.Duration
}

// Validate reports the first field that holds a value a Lease cannot use.
func (c LeaseConfig) Validate() error {
	d := c.withDefaults()
	switch {
	case c.TTL < 0:
		return fmt.Errorf("redislog: lease config: TTL %v is negative", c.TTL)
	case c.Renew < 0:
		return fmt.Errorf("redislog: lease config: Renew %v is negative", c.Renew)
	case d.TTL < time.Millisecond:
		return fmt.Errorf("redislog: lease config: TTL %v is under Redis's 1 ms resolution", d.TTL)
	case d.Renew >= d.TTL:
		return fmt.Errorf("redislog: lease config: Renew %v is not below TTL %v", d.Renew, d.TTL)
	case d.Renew <= 0:
		return fmt.Errorf("redislog: lease config: Renew %v is not positive", d.Renew)
	}
	return nil
}

func (c LeaseConfig) withDefaults() LeaseConfig {
	if c.TTL == 0 {
		c.TTL = DefaultLeaseTTL
	}
	if c.Renew == 0 {
		c.Renew = c.TTL / 4
	}
	return c
}
