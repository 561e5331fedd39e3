package applier

import (
	"fmt"
	"time"

	"github.com/spoolgw/spool/internal/deadletter"
)

// Defaults of Config.
const (
	// DefaultBatchSize bounds a batch: big enough that one commit (one
	// fsync) carries hundreds of transactions, small enough that one
	// batch's database transaction stays short.
	DefaultBatchSize = 500
	// DefaultBatchTimeout is how long a batch that is not full waits for
	// more after its first transaction. Under load the batch fills while
	// the previous one commits, so this only adds latency when idle; a
	// few milliseconds buys larger batches at moderate load.
	DefaultBatchTimeout = 5 * time.Millisecond
	// DefaultMinBackoff is the first wait after a transient failure.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff caps the wait between two attempts at a batch, so
	// that a database failing for a long time is not hammered. The end of
	// an outage is noticed sooner, by probing (DefaultProbeInterval).
	DefaultMaxBackoff = 30 * time.Second
	// DefaultProbeInterval is how often the applier, while it backs off,
	// asks the database whether it answers (a ping, not a batch), when the
	// store can be asked: a database that comes back is noticed within
	// about a second, whatever the backoff has grown to.
	DefaultProbeInterval = time.Second
	// DefaultFinalFlush bounds the drain at shutdown.
	DefaultFinalFlush = 10 * time.Second
	// DefaultAttemptTimeout bounds one attempt at a batch. A batch of
	// hundreds of transactions commits in milliseconds; an attempt still
	// running after a minute is stuck on a connection that will never
	// answer (its host vanished without a reset, a firewall dropped its
	// state), which TCP alone would take up to a quarter of an hour to
	// notice.
	DefaultAttemptTimeout = time.Minute
)

// Config configures an Applier. Zero fields take their defaults.
type Config struct {
	// Poison is the set of rows failed transactions left unwritten, shared
	// with the settler and the dead-letter queue (default: a set of this
	// applier's own).
	Poison *deadletter.Poison
	// BatchSize is the most transactions per database transaction
	// (default DefaultBatchSize).
	BatchSize int
	// BatchTimeout is how long a partial batch waits for more (default
	// DefaultBatchTimeout; negative means do not wait).
	BatchTimeout time.Duration
	// MinBackoff and MaxBackoff bound the retry waits after transient
	// failures (defaults DefaultMinBackoff, DefaultMaxBackoff).
	MinBackoff, MaxBackoff time.Duration
	// ProbeInterval is how often a backoff asks a store that can be pinged
	// whether the database answers again; if it did not answer a probe and
	// then answers one, the batch is retried at once (default
	// DefaultProbeInterval).
	ProbeInterval time.Duration
	// FinalFlush bounds the drain at Stop (default DefaultFinalFlush).
	FinalFlush time.Duration
	// AttemptTimeout bounds one attempt at a batch; an attempt cut off is
	// a transient failure, retried with backoff (default
	// DefaultAttemptTimeout).
	AttemptTimeout time.Duration
	// LogName names the log in fencing records (default "default").
	LogName string
	// HeadName names the log in spool_log_heads, where the pruning of
	// spool_applied finds how far behind every log draining into the
	// database is (default LogName). It must be unique among them: a
	// shared log's name is, but local logs of several hosts may all be
	// "default".
	HeadName string
	// Lease, when set, is acquired before applying and its fencing token
	// checked at every commit; nil for a log only this process applies.
	Lease Lease
	// Observer, when set, is told the size and the stages' times of every
	// committed batch (default: nobody).
	Observer Observer
	// AppliedRetention is how long spool_applied keeps the record of an
	// applied transaction at least (default DefaultAppliedRetention;
	// negative: for ever). The applier deletes older records while it
	// applies, every PruneEvery (default DefaultPruneEvery), but never
	// those the log may still deliver (see pruneOnce).
	AppliedRetention time.Duration
	PruneEvery       time.Duration
	// Now is the clock pruning measures the retention by (default
	// time.Now). It is read once at the start of each pruning; the
	// database stamps applied_at with its own clock.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.Poison == nil {
		c.Poison = deadletter.NewPoison()
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchSize < 0 {
		return fmt.Errorf("applier: BatchSize must be positive, not %d", c.BatchSize)
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("applier: MaxBackoff %v is below MinBackoff %v", c.MaxBackoff, c.MinBackoff)
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.FinalFlush <= 0 {
		c.FinalFlush = DefaultFinalFlush
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.LogName == "" {
		c.LogName = "default"
	}
	if c.HeadName == "" {
		c.HeadName = c.LogName
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
	if c.AppliedRetention == 0 {
		c.AppliedRetention = DefaultAppliedRetention
	}
	if c.PruneEvery <= 0 {
		c.PruneEvery = DefaultPruneEvery
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
