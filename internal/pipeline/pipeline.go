// Package pipeline builds spool's write path in dependency order, each part
// given everything it needs when it is made, and nothing told of another
// afterwards:
//
//	status tracker, record of retries, live events' intake ← feed of state changes
//	log (+ overlay) → gateway → dead-letter queue, live events hub
//	poison set, replication watcher, events stream → settler → applier
//
// A write goes one way: the gateway appends it to the log, whose append
// keeps the overlay in step (overlay.Logged for the local log; the Redis
// log's own script), and publishes it queued; the applier claims it from
// the log and commits it, the settler evicts it from the overlay and
// publishes its state; the feed hands every state to the tracker (which
// answers status queries and waits) and to the record of retries.
package pipeline

import (
	"context"
	"errors"
	"log/slog"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/deadletter"
	"github.com/spoolgw/spool/internal/events"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/idempotency"
	"github.com/spoolgw/spool/internal/overlay"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/settle"
	"github.com/spoolgw/spool/internal/status"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// Config is what a pipeline is built from. The log, the store, the
// catalog and the replication watcher are opened (and closed) by the
// caller.
type Config struct {
	Store   store.Store
	Catalog *schema.Live
	Log     txlog.Log
	// Shared is the overlay a shared log keeps with each append (Redis);
	// nil means the log is this process's alone, and Local is wrapped
	// around it (overlay.Logged).
	Shared overlay.Changes
	// Local is the overlay of a local log, empty (overlay.Open bounds its
	// memory); nil means a new one held in memory alone. The caller
	// closes it.
	Local *overlay.Overlay
	// SharedKeys looks up the idempotency keys a shared log keeps
	// (redislog.Log); LocalKeys keeps those of a local log. Neither:
	// writes with an Idempotency-Key are refused.
	SharedKeys gateway.Keys
	LocalKeys  *idempotency.Local
	// Replicas are the read replicas the gateway reads.
	Replicas []gateway.Replica
	// Replication follows committed batches to the replicas; nil without
	// replicas.
	Replication  settle.Replication
	Backpressure gateway.Backpressure
	// Applier, if not nil, configures the applier this process runs
	// (not started); nil for a process that only takes writes in.
	Applier *applier.Config
	// Events, if not nil, configures live events: Build makes the hub
	// (Pipeline.Events, not started) and fills in its Reader (the
	// gateway) and its Intake or Stream.
	Events *events.Config
	// EventStream is a shared log's events stream, which every process's
	// hub reads and the settler of the process that applies writes the
	// transactions' states to; needed with Events and Shared.
	EventStream EventStream
	Logger      *slog.Logger
}

// EventStream is a shared log's events stream (redislog.Log).
type EventStream interface {
	events.Stream
	settle.EventLog
}

// Pipeline is the built write path.
type Pipeline struct {
	Tracker *status.Tracker
	Feed    *changes.Feed
	Gateway *gateway.Gateway
	Queue   *deadletter.Queue
	// Applier is nil without Config.Applier.
	Applier *applier.Applier
	// Overlay is the overlay the gateway reads.
	Overlay overlay.Changes
	// Rebuilt is how many transactions a local log held at start, now
	// back in the overlay.
	Rebuilt int
	// Events is the live events hub (not started); nil without
	// Config.Events.
	Events *events.Hub
}

// Build builds the pipeline of cfg.
func Build(ctx context.Context, cfg Config) (*Pipeline, error) {
	if cfg.Store == nil || cfg.Catalog == nil || cfg.Log == nil {
		return nil, errors.New("pipeline: needs a store, a catalog and a log")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{Tracker: status.New(0)}
	retries := deadletter.NewRetries()
	subs := []changes.Subscriber{p.Tracker, retries}
	var intake *events.Intake
	switch {
	case cfg.Events == nil:
	case cfg.Shared != nil && cfg.EventStream == nil:
		return nil, errors.New("pipeline: live events on a shared log need its events stream")
	case cfg.Shared == nil:
		intake = events.NewIntake(0)
		subs = append(subs, intake)
	}
	p.Feed = changes.New(subs...)
	poison := deadletter.NewPoison()

	lg := cfg.Log
	p.Overlay = cfg.Shared
	if cfg.Shared == nil {
		local := cfg.Local
		if local == nil {
			local = overlay.New()
		}
		var also func(*txn.Transaction)
		if cfg.LocalKeys != nil {
			also = cfg.LocalKeys.Hold // the keys of what the log holds
		}
		logged, n, err := overlay.NewLogged(ctx, cfg.Log, local, cfg.Catalog, also)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			logger.Info("overlay rebuilt from the log", "transactions", n)
		}
		lg, p.Overlay, p.Rebuilt = logged, local, n
	}
	var keys gateway.Keys
	var keep settle.Keys
	switch {
	case cfg.Shared != nil && cfg.SharedKeys != nil:
		keys = cfg.SharedKeys
	case cfg.Shared == nil && cfg.LocalKeys != nil:
		lg, keys, keep = cfg.LocalKeys.Wrap(lg), cfg.LocalKeys, cfg.LocalKeys
	}
	gw, err := gateway.New(gateway.Config{Log: lg, Overlay: p.Overlay, Shared: cfg.Shared != nil, Store: cfg.Store, Catalog: cfg.Catalog,
		Tracker: p.Tracker, Feed: p.Feed, Replicas: cfg.Replicas, Backpressure: cfg.Backpressure, Keys: keys, Logger: logger})
	if err != nil {
		return nil, err
	}
	p.Gateway = gw
	if cfg.Events != nil {
		ec := *cfg.Events
		ec.Reader, ec.Intake, ec.Logger = gw, intake, logger
		if cfg.Shared != nil {
			ec.Stream = cfg.EventStream
		}
		if p.Events, err = events.New(ec); err != nil {
			return nil, err
		}
	}
	if p.Queue, err = deadletter.NewQueue(deadletter.Config{Store: cfg.Store, Intake: gw, Catalog: cfg.Catalog,
		Poison: poison, Retries: retries, Logger: logger}); err != nil {
		return nil, err
	}
	if cfg.Applier == nil {
		return p, nil
	}
	sc := settle.Config{Overlay: p.Overlay, Poison: poison, Replication: cfg.Replication, Feed: p.Feed, Keys: keep, Logger: logger}
	if cfg.Shared != nil && cfg.EventStream != nil {
		sc.Events = cfg.EventStream
	}
	settler, err := settle.New(sc)
	if err != nil {
		return nil, err
	}
	acfg := *cfg.Applier
	acfg.Poison = poison
	if p.Applier, err = applier.New(acfg, cfg.Log, cfg.Store, settler, logger); err != nil {
		return nil, err
	}
	return p, nil
}
