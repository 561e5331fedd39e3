package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/replication"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/postgres"
	"github.com/spoolgw/spool/internal/store/sqlite"
	"github.com/spoolgw/spool/internal/telemetry"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txlog/filelog"
	"github.com/spoolgw/spool/internal/txlog/redislog"
)

// openLog opens the local log, or the Redis log with its overlay and lease.
func openLog(ctx context.Context, c *serveConfig, shared bool, cat *schema.Live, logger *slog.Logger) (txlog.Log, *redislog.Overlay, applier.Lease, error) {
	if !shared {
		lg, err := filelog.Open(localLogDir(c.dataDir), filelog.Config{}, logger)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("open log: %w", err)
		}
		return lg, nil, nil, nil
	}
	lg, err := redislog.Open(ctx, redislog.Config{URL: c.logURL, Name: c.logName, Normalize: cat.Normalize, KeyRetention: c.keyRetention, MinReplicas: minReplicas(c)}, logger)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open log: %w", err)
	}
	return lg, lg.Overlay(), lg.Lease(redislog.LeaseConfig{}), nil
}

func openReplicas(ctx context.Context, c *serveConfig, logger *slog.Logger) ([]*postgres.Replica, error) {
	var out []*postgres.Replica
	for _, u := range c.replicas {
		r, err := postgres.OpenReplica(ctx, u, logger)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, fmt.Errorf("--replica %s: %w", redact(u), err)
		}
		out = append(out, r)
	}
	return out, nil
}

func startWatcher(ctx context.Context, c *serveConfig, st store.Store, replicas []*postgres.Replica, logger *slog.Logger) (*replication.Watcher, error) {
	primary, ok := st.(replication.Primary)
	if !ok {
		return nil, fmt.Errorf("--replica needs a PostgreSQL --database")
	}
	named := make([]replication.Named, len(replicas))
	for i, r := range replicas {
		named[i] = replication.Named{Name: redact(c.replicas[i]), Replica: r}
	}
	w, err := replication.New(replication.Config{Interval: c.replicaPoll}, named, primary, logger)
	if err != nil {
		return nil, err
	}
	if err := w.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	return w, nil
}

func startTelemetry(ctx context.Context, c *serveConfig, st store.Store, gw *gateway.Gateway, logger *slog.Logger) (*telemetry.Service, error) {
	if len(c.telemetryLanes) == 0 {
		return nil, nil
	}
	ins, ok := st.(telemetry.Inserter)
	if !ok {
		return nil, fmt.Errorf("--telemetry-table: the database has no bulk path")
	}
	tel, err := telemetry.New(telemetry.Config{Lanes: c.telemetryLanes, Tables: gw.Table, Inserter: ins,
		Dir: filepath.Join(c.dataDir, "telemetry"), Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("--telemetry-table: %w", err)
	}
	// Like the applier, Stop (not the signal) ends it, after intake.
	if err := tel.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	return tel, nil
}

// startPprof serves net/http/pprof on its own listener, apart from the
// API, so profiles are never reachable where clients are.
func startPprof(addr string, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("pprof listener", "err", err)
		}
	}()
	logger.Info("pprof serving", "listen", ln.Addr().String())
	return func() { srv.Close() }, nil
}

func describeDatabase(c *serveConfig) string {
	if c.database == "" {
		return "sqlite:" + filepath.Join(c.dataDir, "spool.db")
	}
	return c.database
}

func openStore(ctx context.Context, c *serveConfig, logger *slog.Logger) (store.Store, error) {
	db := describeDatabase(c)
	var st store.Store
	switch {
	case strings.HasPrefix(db, "sqlite:"):
		s, err := sqlite.Open(ctx, strings.TrimPrefix(db, "sqlite:"), logger)
		if err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
		st = s
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		s, err := postgres.Open(ctx, db, logger)
		if err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
		st = s
	default:
		return nil, fmt.Errorf("--database %q: want sqlite:PATH or postgres://…", redact(db))
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate database: %w", err)
	}
	if c.schemaFile != "" {
		sql, err := os.ReadFile(c.schemaFile)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("--schema: %w", err)
		}
		if err := st.Exec(ctx, string(sql)); err != nil {
			st.Close()
			return nil, fmt.Errorf("--schema %s: %w", c.schemaFile, err)
		}
	}
	return st, nil
}
