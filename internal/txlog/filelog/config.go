package filelog

import (
	"fmt"
	"math"
)

// Defaults of Config. A zero field takes its default.
const (
	// DefaultSegmentSize is 64 MiB: big enough that rotation (a new file
	// and a directory fsync) is rare even at 100k appends/s of 200-byte
	// transactions (one rotation every few seconds), small enough that
	// acknowledged space is given back to the disk soon and that scanning
	// the last segment at Open takes well under a second.
	DefaultSegmentSize = 64 << 20
	// DefaultMaxRecordSize is 16 MiB: well above any request body the API
	// accepts, so the log never refuses what the API took, and small enough
	// that a corrupt length field cannot make recovery read or allocate
	// much.
	DefaultMaxRecordSize = 16 << 20
	// DefaultQueueLength is 4096 appends waiting for the writer: more than
	// the concurrent writers the HTTP layer lets in, so Append does not
	// block on the queue itself in normal use, while bounding the memory
	// of a stalled disk (a stall shows up as Append latency, the
	// backpressure the API needs).
	DefaultQueueLength = 4096
	// DefaultMaxBatchBytes is 4 MiB per group commit: about 20,000
	// transactions of 200 bytes share one fdatasync, far more than the
	// 64-256 concurrent writers measured on this machine produce, while
	// the write buffer and the time one write call takes stay bounded.
	DefaultMaxBatchBytes = 4 << 20
	// DefaultClaimCache is 8,192 appended transactions kept for Claim:
	// more than a drain that keeps up has durable and unclaimed at once,
	// so Claim hands over what Append was given instead of reading and
	// decoding it again. The transactions are the ones the overlay holds
	// too; only a drain that falls behind past it reads from the files.
	DefaultClaimCache = 8192
)

// Config tunes a Log. The zero value is the default configuration.
type Config struct {
	// SegmentSize is the size at which the writer starts a new segment
	// file. A record larger than that gets a segment of its own.
	// Default DefaultSegmentSize (64 MiB).
	SegmentSize int64
	// MaxRecordSize is the largest encoded transaction (JSON payload) an
	// Append accepts; recovery treats a longer length field as corrupt, so
	// do not lower it below what a log already holds.
	// Default DefaultMaxRecordSize (16 MiB).
	MaxRecordSize int
	// QueueLength is how many appends may wait for the writer before
	// Append blocks (honouring its context) to enqueue.
	// Default DefaultQueueLength (4096).
	QueueLength int
	// MaxBatchBytes caps the bytes one group commit writes; the writer
	// stops draining the queue once a batch holds that much. A single
	// larger record is still written, alone.
	// Default DefaultMaxBatchBytes (4 MiB).
	MaxBatchBytes int
	// ClaimCache is how many durable transactions, not yet claimed, are
	// kept in memory for Claim, which otherwise reads them back from the
	// segment files: past it, and after a reopen, Claim reads the files.
	// Default DefaultClaimCache; negative keeps none.
	ClaimCache int
}

// Validate reports the first field that holds a value a Log cannot use.
// Zero fields are valid: they take their defaults.
func (c Config) Validate() error {
	switch {
	case c.SegmentSize < 0:
		return fmt.Errorf("filelog: config: SegmentSize %d is negative", c.SegmentSize)
	case c.MaxRecordSize < 0:
		return fmt.Errorf("filelog: config: MaxRecordSize %d is negative", c.MaxRecordSize)
	case int64(c.MaxRecordSize) > math.MaxUint32:
		return fmt.Errorf("filelog: config: MaxRecordSize %d exceeds the record format's limit %d", c.MaxRecordSize, uint64(math.MaxUint32))
	case c.QueueLength < 0:
		return fmt.Errorf("filelog: config: QueueLength %d is negative", c.QueueLength)
	case c.MaxBatchBytes < 0:
		return fmt.Errorf("filelog: config: MaxBatchBytes %d is negative", c.MaxBatchBytes)
	}
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.SegmentSize == 0 {
		c.SegmentSize = DefaultSegmentSize
	}
	if c.MaxRecordSize == 0 {
		c.MaxRecordSize = DefaultMaxRecordSize
	}
	if c.QueueLength == 0 {
		c.QueueLength = DefaultQueueLength
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.ClaimCache == 0 {
		c.ClaimCache = DefaultClaimCache
	}
	return c
}
