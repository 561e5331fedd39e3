package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/spoolgw/spool/internal/schema"
)

// Defaults of the lanes' writers, spill files and intake.
const (
	// DefaultBatchSize is the rows that make a batch: a full batch wakes
	// the writer, and a spill file is replayed a batch at a time. 500 rows
	// of a few columns is one multi-row statement in SQLite (2,500 bind
	// variables, far under its 32,766) and one COPY in PostgreSQL, large
	// enough that a batch costs one commit per 500 rows and small enough
	// that a spilled batch is a few tens of kilobytes.
	DefaultBatchSize = 500
	// DefaultCatchUpBatches is how many batches the writer takes into one
	// database transaction when the ring holds that many (it fell behind,
	// as after a slow commit): fewer commits per row let it catch up
	// before the ring fills. Four batches of 500 are a fifth of a default
	// ring.
	DefaultCatchUpBatches = 4
	// DefaultFlushInterval is how long a partial batch may wait in the ring:
	// a slow poller's samples reach the database within half a second, and
	// a fast one fills DefaultBatchSize long before.
	DefaultFlushInterval = 500 * time.Millisecond
	// DefaultWriteTimeout bounds one batch insert: 500 rows take
	// milliseconds, so a database that has not answered in ten seconds is
	// treated as unreachable and the batch is spilled.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultRetryMin is the first wait before the writer tries an
	// unreachable database again; it doubles up to DefaultRetryMax.
	DefaultRetryMin = 250 * time.Millisecond
	// DefaultRetryMax caps that wait: a database that returns is noticed
	// within five seconds, and one probe every five seconds costs nothing.
	DefaultRetryMax = 5 * time.Second
	// DefaultSpillMaxFileBytes caps one spill file; a file is also
	// rotated every hour. 64 MiB holds about an hour of a 100 samples/s
	// poller, and replaying one file is a few seconds of COPY.
	DefaultSpillMaxFileBytes = 64 << 20
	// DefaultSpillMaxFiles caps the spill files of one table (the oldest
	// is removed first and its rows counted as dropped): two days of
	// hourly files, at most 3 GiB a table with DefaultSpillMaxFileBytes.
	DefaultSpillMaxFiles = 48
	// DefaultStopTimeout bounds the final flush at Stop: the rings' rows
	// go to the database, or to the spill files when it does not answer
	// in time.
	DefaultStopTimeout = 10 * time.Second
	// DefaultMaxBodyBytes bounds an ingest request body: 10,000 samples of
	// about 200 bytes with room to spare.
	DefaultMaxBodyBytes = 8 << 20
	// DefaultMaxRequestRows bounds the rows of one ingest request: as many
	// as a default ring holds, so one request cannot push out its own head.
	DefaultMaxRequestRows = 10_000
)

// Config configures the telemetry lanes.
type Config struct {
	// Lanes are the tables that take samples, each with its own ring and
	// writer. Each table must be in the catalog (see Tables).
	Lanes []LaneConfig
	// Default names the lane behind GET /api/buffer/status and
	// /api/buffer/health; default: the first lane.
	Default string

	// Tables returns the catalog's table of a name, or an error wrapping
	// schema.ErrUnknownTable. Required. New looks every lane's table up
	// once; a lane keeps that table until the process restarts.
	Tables func(name string) (*schema.Table, error)
	// Inserter writes batches into the database. Required.
	Inserter Inserter
	// Dir is the directory of the spill files, one subdirectory a table.
	// Required.
	Dir string
	// Logger receives warnings and errors; default: discarded.
	Logger *slog.Logger

	// BatchSize is the rows of a batch (see DefaultBatchSize); default
	// DefaultBatchSize.
	BatchSize int
	// MaxBatchSize is the most rows inserted in one database transaction,
	// taken when the ring holds more than a batch; at least BatchSize,
	// default DefaultCatchUpBatches × BatchSize.
	MaxBatchSize int
	// FlushInterval is how long a partial batch waits; default
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// WriteTimeout bounds one batch insert; default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// RetryMin and RetryMax bound the wait before an unreachable database
	// is tried again; defaults DefaultRetryMin and DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// SpillMaxFileBytes caps one spill file; default
	// DefaultSpillMaxFileBytes.
	SpillMaxFileBytes int64
	// SpillMaxFiles caps the spill files of a table, at least 2; default
	// DefaultSpillMaxFiles.
	SpillMaxFiles int
	// StopTimeout bounds the final flush at Stop; default
	// DefaultStopTimeout.
	StopTimeout time.Duration
	// WarnThreshold is the ring utilisation in percent that logs a
	// warning; default DefaultWarnThreshold.
	WarnThreshold float64
	// WarnInterval rate-limits the rings' warnings; default
	// DefaultWarnInterval.
	WarnInterval time.Duration
	// MaxBodyBytes bounds an ingest request body; default
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxRequestRows bounds the rows of one ingest request; default
	// DefaultMaxRequestRows.
	MaxRequestRows int
}

// LaneConfig is one table's lane.
type LaneConfig struct {
	// Table is the table the samples are inserted into.
	Table string
	// Capacity is the ring's size in samples; default DefaultCapacity.
	Capacity int
}

// Inserter is the bulk write a lane needs from the database. Both stores
// implement it (internal/store/sqlite and internal/store/postgres, in
// bulk.go).
type Inserter interface {
	// InsertRows inserts rows into t in one database transaction: row i
	// holds the canonical values (see schema.Column.Normalize) of the
	// columns cols, in that order. A row the database refuses for good
	// (a constraint, a type) is left out and returned in rejected under
	// its index, with the database's error; the other rows are written.
	// Any returned error is transient (the database is unreachable,
	// locked, or ctx ended) and means nothing was written: the whole
	// batch may be tried again later and lands exactly once.
	InsertRows(ctx context.Context, t *schema.Table, cols []string, rows [][]any) (rejected map[int]error, err error)
}

// ParseLanes parses the value of --telemetry-table (or
// SPOOL_TELEMETRY_TABLE): one or more comma-separated lanes, each TABLE or
// TABLE:CAPACITY.
func ParseLanes(s string) ([]LaneConfig, error) {
	var out []LaneConfig
	for _, item := range strings.Split(s, ",") {
		name, capText, hasCap := strings.Cut(strings.TrimSpace(item), ":")
		if name == "" {
			return nil, fmt.Errorf("telemetry table %q: want TABLE or TABLE:CAPACITY, comma-separated", s)
		}
		lc := LaneConfig{Table: name}
		if hasCap {
			n, err := strconv.Atoi(capText)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("telemetry table %q: capacity %q must be a positive integer", item, capText)
			}
			lc.Capacity = n
		}
		out = append(out, lc)
	}
	return out, nil
}

// withDefaults fills in defaults and validates, naming the field at fault.
func (c Config) withDefaults() (Config, error) {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxBatchSize == 0 {
		c.MaxBatchSize = DefaultCatchUpBatches * c.BatchSize
	}
	def(&c.FlushInterval, DefaultFlushInterval)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.StopTimeout, DefaultStopTimeout)
	def(&c.WarnInterval, DefaultWarnInterval)
	if c.SpillMaxFileBytes == 0 {
		c.SpillMaxFileBytes = DefaultSpillMaxFileBytes
	}
	if c.SpillMaxFiles == 0 {
		c.SpillMaxFiles = DefaultSpillMaxFiles
	}
	if c.WarnThreshold == 0 {
		c.WarnThreshold = DefaultWarnThreshold
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxRequestRows == 0 {
		c.MaxRequestRows = DefaultMaxRequestRows
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, fmt.Errorf("telemetry: %s %v: %s", field, v, why))
	}
	if c.Tables == nil {
		bad("Tables", "nil", "required")
	}
	if c.Inserter == nil {
		bad("Inserter", "nil", "required")
	}
	if c.Dir == "" {
		bad("Dir", `""`, "required: the spill files need a directory")
	}
	if c.BatchSize < 1 {
		bad("BatchSize", c.BatchSize, "must be at least 1")
	}
	if c.MaxBatchSize < c.BatchSize {
		bad("MaxBatchSize", c.MaxBatchSize, "must be at least BatchSize")
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"FlushInterval", c.FlushInterval}, {"WriteTimeout", c.WriteTimeout}, {"RetryMin", c.RetryMin},
		{"RetryMax", c.RetryMax}, {"StopTimeout", c.StopTimeout}, {"WarnInterval", c.WarnInterval}} {
		if f.d < 0 {
			bad(f.name, f.d, "must be positive")
		}
	}
	if c.RetryMax < c.RetryMin {
		bad("RetryMax", c.RetryMax, "must not be less than RetryMin")
	}
	if c.SpillMaxFileBytes < 1 {
		bad("SpillMaxFileBytes", c.SpillMaxFileBytes, "must be positive")
	}
	if c.SpillMaxFiles < 2 {
		bad("SpillMaxFiles", c.SpillMaxFiles, "must be at least 2 (one written, one replayed)")
	}
	if c.MaxBodyBytes < 1 {
		bad("MaxBodyBytes", c.MaxBodyBytes, "must be positive")
	}
	if c.MaxRequestRows < 1 {
		bad("MaxRequestRows", c.MaxRequestRows, "must be positive")
	}
	seen := make(map[string]bool)
	for _, l := range c.Lanes {
		if l.Table == "" {
			bad("Lanes", "[]", "a lane needs a table")
		}
		if seen[l.Table] {
			bad("Lanes", l.Table, "configured twice")
		}
		seen[l.Table] = true
	}
	if c.Default == "" && len(c.Lanes) > 0 {
		c.Default = c.Lanes[0].Table
	}
	if c.Default != "" && !seen[c.Default] {
		bad("Default", c.Default, "is not one of the lanes")
	}
	return c, errors.Join(errs...)
}
