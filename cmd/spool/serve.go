package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spoolgw/spool/internal/api"
	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/events"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/idempotency"
	"github.com/spoolgw/spool/internal/overlay"
	"github.com/spoolgw/spool/internal/pipeline"
	"github.com/spoolgw/spool/internal/replication"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/telemetry"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txlog/filelog"
	"github.com/spoolgw/spool/internal/txlog/redislog"
)

// serveConfig is everything spool serve is told.
type serveConfig struct {
	role            string
	logURL          string
	logName         string
	minReplicas     int  // --log-min-replicas
	minReplicasSet  bool // whether it was given
	listen          string
	dataDir         string
	database        string
	schemaFile      string
	tables          string
	batchSize       int
	batchTimeout    time.Duration
	applyTimeout    time.Duration
	retention       time.Duration
	keyRetention    time.Duration
	shutdownTimeout time.Duration
	logLevel        string
	highMark        int64
	lowMark         int64
	rateLimit       float64
	rateBurst       int
	replicas        []string
	replicaPoll     time.Duration
	telemetryLanes  []telemetry.LaneConfig
	pprofListen     string
	overlayMemory   int
	sec             securityConfig
	maxSubscribers  int
	eventsHeartbeat time.Duration
}

// MinAppliedRetention is the least --applied-retention: a margin far
// above a clock's error and the local log's checkpoint lag (see
// applier.Config.AppliedRetention).
const MinAppliedRetention = time.Hour

// DefaultShutdownTimeout bounds the drain at shutdown: long enough to apply
// a healthy backlog, short enough for a service manager's stop timeout.
const DefaultShutdownTimeout = 15 * time.Second

func serveFlags(stderr io.Writer) (*flag.FlagSet, *serveConfig) {
	c := &serveConfig{}
	fs := flag.NewFlagSet("spool serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.role, "role", "all", "what this process runs: all (API and applier), api (API only) or applier (applier, plus the API for health and stats); api and applier need a shared --log")
	fs.StringVar(&c.logURL, "log", "local", "the log: local (files in DATA-DIR/log), redis://HOST:PORT/DB, or redis-sentinel://HOST:PORT[,HOST:PORT…]/MASTER[?db=N] (shared by every process of a site; run Redis with appendfsync always)")
	fs.Func("log-min-replicas", "Redis replicas that must have a write (WAIT) before it is acknowledged, and before the applier takes it; fewer within 1 s: 503 (default 1 with a redis-sentinel:// --log, else 0)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("want a number of replicas, 0 or more")
		}
		c.minReplicas, c.minReplicasSet = n, true
		return nil
	})
	fs.StringVar(&c.logName, "log-name", "default", "`name` of the log in a shared Redis: one per site or tenant, each with its own applier")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "`address` the HTTP API listens on")
	fs.StringVar(&c.dataDir, "data-dir", "./spool-data", "`directory` for the log and the embedded database")
	fs.StringVar(&c.database, "database", "", "database to drain into: sqlite:PATH or postgres://USER@HOST:PORT/DB (default sqlite:DATA-DIR/spool.db)")
	fs.StringVar(&c.schemaFile, "schema", "", "SQL `file` applied at start (make it idempotent: CREATE TABLE IF NOT EXISTS)")
	fs.StringVar(&c.tables, "tables", "", "comma-separated `tables` clients may use (default: every user table)")
	fs.IntVar(&c.batchSize, "batch-size", applier.DefaultBatchSize, "most transactions applied in one database transaction")
	fs.DurationVar(&c.batchTimeout, "batch-timeout", applier.DefaultBatchTimeout, "how long a partial batch waits for more after its first transaction")
	fs.DurationVar(&c.applyTimeout, "apply-timeout", applier.DefaultAttemptTimeout, "how long one attempt at a batch may take before it is cut off and retried (a database that stopped answering)")
	fs.DurationVar(&c.keyRetention, "idempotency-retention", idempotency.DefaultRetention, "how long an Idempotency-Key stays taken after its write: a repeat within it answers what the write answered")
	fs.DurationVar(&c.retention, "applied-retention", applier.DefaultAppliedRetention, "how long spool_applied keeps the record of an applied transaction, which answers GET /v1/transactions/{id} once this process has forgotten it and makes a transaction delivered twice apply once; older records are deleted hourly, never while a log draining into the database may deliver their transaction again (at least 1h; 0: keep every record)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "how long shutdown waits to drain the log into the database")
	fs.IntVar(&c.overlayMemory, "overlay-memory", overlay.DefaultMaxOps, "pending changes the overlay of a local log holds in memory; those beyond go to DATA-DIR/overlay-spill.db until the backlog drains, so a long database outage costs a bounded heap (0: no bound, all in memory)")
	fs.Int64Var(&c.highMark, "log-high-mark", 0, "`bytes` of buffered log over which writes get 503 until it drains below --log-low-mark (0: no limit)")
	fs.Int64Var(&c.lowMark, "log-low-mark", 0, "`bytes` below which intake resumes after --log-high-mark (default: 80% of the high mark)")
	fs.Float64Var(&c.rateLimit, "rate-limit", 0, "requests that change something (writes, ingest, dead-letter retries and drops) per second allowed to each principal (each client address without credentials); more get 429 (0: no limit)")
	fs.IntVar(&c.rateBurst, "rate-burst", 0, "burst of such requests a principal may send above --rate-limit (default: one second's worth)")
	fs.Func("replica", "a read replica `postgres://…` that smart reads query and the applier follows (repeatable, or comma-separated)", func(v string) error {
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimSpace(u); u != "" {
				c.replicas = append(c.replicas, u)
			}
		}
		return nil
	})
	fs.DurationVar(&c.replicaPoll, "replica-poll", replication.DefaultInterval, "how often the replicas' replay positions are read while writes wait for them")
	fs.Func("telemetry-table", "a `TABLE[:CAPACITY]` that takes samples on the lossy telemetry lane (POST /v1/ingest/TABLE; repeatable or comma-separated; capacity default 10000)", func(v string) error {
		ls, err := telemetry.ParseLanes(v)
		if err != nil {
			return err
		}
		c.telemetryLanes = append(c.telemetryLanes, ls...)
		return nil
	})
	fs.IntVar(&c.maxSubscribers, "max-subscribers", events.DefaultMaxSubscribers, "live event subscribers (GET /v1/events) this process serves at once; more get 503")
	fs.DurationVar(&c.eventsHeartbeat, "events-heartbeat", events.DefaultHeartbeat, "interval of heartbeats on idle live event streams (SSE comments, WebSocket pings), so proxies keep them open")
	fs.StringVar(&c.pprofListen, "pprof-listen", "", "`address` of a separate listener serving Go's /debug/pprof/ profiles (CPU, heap; spool-bench --pprof uses it); keep it on loopback (default: off)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	securityFlags(fs, &c.sec)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: spool serve [flags]

Runs the gateway. With no flags: a local log and a SQLite database in
./spool-data, the API on 127.0.0.1:8080. On SIGINT or SIGTERM spool stops
taking writes, drains a local log into the database (up to
--shutdown-timeout) and exits; a second signal exits at once. Writes not
drained stay in the log and are applied at the next start.

Several processes share one log in Redis (--log redis://…): any number with
--role api behind a load balancer, and --role applier processes of which one
holds the log's lease and applies while the others stand by.

Flags (each also set by its SPOOL_* environment variable, e.g. SPOOL_DATA_DIR):
`)
		fs.PrintDefaults()
	}
	return fs, c
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs, c := serveFlags(stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runServer(ctx, stop, c, logger)
}

// roles a process can run.
const (
	roleAll     = "all"
	roleAPI     = "api"
	roleApplier = "applier"
)

// runServer runs spool until ctx ends, then shuts down in dependency order:
// HTTP intake, the applier (draining a local log), the log, the database.
func runServer(ctx context.Context, restoreSignals func(), c *serveConfig, logger *slog.Logger) error {
	shared := sharedLog(c.logURL)
	switch {
	case c.role != roleAll && c.role != roleAPI && c.role != roleApplier:
		return fmt.Errorf("--role %q: want all, api or applier", c.role)
	case c.role != roleAll && !shared:
		return fmt.Errorf("--role %s needs a shared --log (redis://…): a local log is only this process's", c.role)
	case !shared && c.logURL != "local":
		return fmt.Errorf("--log %q: want local, redis://HOST:PORT/DB or redis-sentinel://HOST:PORT,…/MASTER", redact(c.logURL))
	case c.minReplicasSet && !shared:
		return fmt.Errorf("--log-min-replicas needs a Redis --log: a local log has no replicas")
	}
	if shared {
		if err := redislog.CheckURL(c.logURL); err != nil {
			return fmt.Errorf("--log %s: %w", redact(c.logURL), err)
		}
	}
	// Credentials, TLS and limits first: a spool that may not listen
	// where it is told opens nothing.
	authn, err := newAuth(c, logger)
	if err != nil {
		return err
	}
	apiCfg, err := apiConfig(c, authn)
	if err != nil {
		return err
	}
	cert, err := loadCertificate(c.sec.tlsCert, c.sec.tlsKey)
	if err != nil {
		return err
	}
	if c.highMark > 0 && c.lowMark == 0 {
		c.lowMark = c.highMark * 4 / 5
	}
	retention := c.retention
	switch {
	case retention == 0:
		retention = -1 // for ever
	case retention < MinAppliedRetention:
		return fmt.Errorf("--applied-retention %v: at least %v (or 0 to keep every record)", c.retention, MinAppliedRetention)
	}
	if err := os.MkdirAll(c.dataDir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	st, err := openStore(ctx, c, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	var tables []string
	if c.tables != "" {
		for _, t := range strings.Split(c.tables, ",") {
			tables = append(tables, strings.TrimSpace(t))
		}
	}
	cat, err := schema.NewLive(ctx, gateway.ReadCatalog(st, tables))
	if err != nil {
		return err
	}
	lg, sharedOverlay, lease, err := openLog(ctx, c, shared, cat, logger)
	if err != nil {
		return err
	}
	defer lg.Close()
	var local *overlay.Overlay
	if sharedOverlay == nil && c.overlayMemory > 0 {
		// Closed after everything that uses it: intake, the applier.
		if local, err = overlay.Open(ctx, filepath.Join(c.dataDir, "overlay-spill.db"), c.overlayMemory, cat.Normalize); err != nil {
			return err
		}
		defer local.Close()
	}
	replicas, err := openReplicas(ctx, c, logger)
	if err != nil {
		return err
	}
	defer func() {
		for _, r := range replicas {
			r.Close()
		}
	}()
	pc := pipeline.Config{Store: st, Catalog: cat, Log: lg, Local: local, Logger: logger,
		Backpressure: gateway.Backpressure{High: c.highMark, Low: c.lowMark},
		Events:       &events.Config{MaxSubscribers: c.maxSubscribers, Heartbeat: c.eventsHeartbeat}}
	if sharedOverlay != nil {
		pc.Shared, pc.SharedKeys = sharedOverlay, lg.(*redislog.Log)
		pc.EventStream = lg.(pipeline.EventStream)
	} else {
		keys, err := idempotency.Open(ctx, filepath.Join(c.dataDir, "idempotency.db"), c.keyRetention, nil)
		if err != nil {
			return err
		}
		defer keys.Close()
		pc.LocalKeys = keys
	}
	for _, r := range replicas {
		pc.Replicas = append(pc.Replicas, r)
	}
	reg := prometheus.NewRegistry()
	var watcher *replication.Watcher
	var held *heldLease
	if lease != nil {
		held = &heldLease{Lease: lease}
		lease = held
	}
	if c.role != roleAPI {
		pc.Applier = &applier.Config{BatchSize: c.batchSize, BatchTimeout: c.batchTimeout, AttemptTimeout: c.applyTimeout, LogName: c.logName, Lease: lease,
			Observer: newApplierMetrics(reg), AppliedRetention: retention, HeadName: headName(c)}
		if len(replicas) > 0 {
			if watcher, err = startWatcher(ctx, c, st, replicas, logger); err != nil {
				return err
			}
			defer watcher.Stop()
			pc.Replication = watcher
		}
	}
	p, err := pipeline.Build(ctx, pc)
	if err != nil {
		return err
	}
	gw, ap := p.Gateway, p.Applier
	// Live events: the hub stops after intake (below, at the HTTP
	// server's shutdown, it closes its streams).
	if err := p.Events.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	defer p.Events.Stop()
	stats := map[string]func() any{"events": func() any { return p.Events.Stats() }}
	metrics := &collector{gw: gw, logger: logger}
	if fl, ok := lg.(*filelog.Log); ok {
		metrics.syncs = fl.Syncs
	}
	var health api.Health = logHealth{lg}
	if ap != nil {
		metrics.applier = ap
		stats["applier"] = applierState(ap, held)
		health = api.WithChecks(ap, logHealth{lg}.Healthy)
		if watcher != nil {
			health = api.WithChecks(health, func(context.Context) error { return watcher.Degraded() })
			stats["replication"] = func() any { return watcher.Status() }
			metrics.replication = watcher
		}
		// The applier runs on its own context: a signal stops intake
		// first, then the drain below, then the applier.
		if err := ap.Start(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		defer ap.Stop()
	}
	tel, err := startTelemetry(ctx, c, st, gw, logger)
	if err != nil {
		return err
	}
	if tel != nil {
		defer tel.Stop()
		stats["telemetry"] = func() any { return tel.Status() }
		metrics.telemetry = tel
	}

	if c.pprofListen != "" {
		stopPprof, err := startPprof(c.pprofListen, logger)
		if err != nil {
			return err
		}
		defer stopPprof()
	}

	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), metrics)
	apiCfg.Stats, apiCfg.Metrics, apiCfg.Events = stats, reg, p.Events
	apiServer := api.New(gw, p.Queue, health, apiCfg, logger)
	apiServer.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}))
	if tel != nil {
		tel.Routes(apiServer)
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	limited := newLimitListener(ln, c.sec.maxConnections)
	ln = limited
	srv := newHTTPServer(c, apiServer, cert, logger)
	srv.ConnState = limited.ConnState
	// Event streams never end by themselves: Shutdown closes them.
	srv.RegisterOnShutdown(func() { p.Events.CloseAll("shutting down") })
	reloadOnHangup(ctx, authn, cert, logger)
	serveErr := make(chan error, 1)
	go func() {
		if cert != nil {
			serveErr <- srv.ServeTLS(ln, "", "")
			return
		}
		serveErr <- srv.Serve(ln)
	}()
	logger.Info("spool serving", "role", c.role, "listen", ln.Addr().String(), "tls", cert != nil, "auth", authn.Enabled(),
		"log", describeLog(c), "database", redact(describeDatabase(c)))

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	restoreSignals() // a second signal now ends the process at once
	logger.Info("shutting down: intake stopped", "timeout", c.shutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("http shutdown", "err", err)
	}
	if tel != nil {
		tel.Stop() // the final flush: into the database, or the spill files
	}
	if ap != nil {
		if !shared {
			// A shared log is drained by whichever applier holds it next.
			drain(shutdownCtx, gw, logger)
		}
		ap.Stop()
	}
	logger.Info("spool stopped")
	return nil
}

// logHealth is the health of the log, and of a process without an
// applier: the log answers, and takes appends.
type logHealth struct{ lg txlog.Log }

// failing is a log that knows why its appends fail (the local log: it
// failed, or the disk is full).
type failing interface{ Err() error }

func (h logHealth) Healthy(ctx context.Context) error {
	if f, ok := h.lg.(failing); ok {
		if err := f.Err(); err != nil {
			return fmt.Errorf("log refuses writes: %w", err)
		}
	}
	if _, err := h.lg.Stats(ctx); err != nil {
		return fmt.Errorf("log unavailable: %w", err)
	}
	return nil
}

func (logHealth) WorkerActive() bool { return false }

// headName names the log in spool_log_heads: a shared log by its name,
// a local one by its host and directory, since local logs of several
// hosts may drain into one database under the same --log-name.
func headName(c *serveConfig) string {
	if c.logURL != "local" {
		return c.logName
	}
	host, _ := os.Hostname()
	dir := localLogDir(c.dataDir)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return "local:" + host + ":" + dir
}

// localLogDir is where the local log of data directory dataDir lives.
func localLogDir(dataDir string) string { return filepath.Join(dataDir, "log") }

func describeLog(c *serveConfig) string {
	if c.logURL == "local" {
		return "local:" + localLogDir(c.dataDir)
	}
	return redact(c.logURL) + " (" + c.logName + ")"
}

// sharedLog reports whether --log names a Redis log (a Cluster URL too:
// redislog refuses it, saying why).
func sharedLog(logURL string) bool {
	scheme, _, _ := strings.Cut(logURL, "://")
	switch scheme {
	case "redis", "rediss", redislog.SentinelScheme, redislog.SentinelTLSScheme, "redis-cluster", "rediss-cluster":
		return true
	}
	return false
}

// minReplicas is what --log-min-replicas says, or its default: 1 on a
// Sentinel set (so that a failover loses no acknowledged write), else 0.
func minReplicas(c *serveConfig) int {
	if c.minReplicasSet {
		return c.minReplicas
	}
	if redislog.IsSentinelURL(c.logURL) {
		return 1
	}
	return 0
}

// redact hides a password in a URL for the log; a URL it cannot parse
// loses everything up to its last '@'.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if i := strings.LastIndexByte(s, '@'); i >= 0 {
			scheme, _, _ := strings.Cut(s, "://")
			return scheme + "://xxxxx" + s[i:]
		}
		return s
	}
	if u.User == nil {
		return s
	}
	return u.Redacted()
}

// drain waits until the applier has emptied the log or ctx ends.
func drain(ctx context.Context, gw *gateway.Gateway, logger *slog.Logger) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := gw.LogStats(ctx)
		if err == nil && st.Depth == 0 {
			return
		}
		select {
		case <-ctx.Done():
			logger.Warn("shutdown: log not drained; the rest is applied at the next start", "depth", st.Depth)
			return
		case <-tick.C:
		}
	}
}
