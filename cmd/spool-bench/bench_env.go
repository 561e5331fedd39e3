package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/testservers"
)

// benchEnv is where one bench run's spools live: a temporary directory
// and, with --servers, a throwaway redis-server and PostgreSQL primary with
// a streaming replica.
type benchEnv struct {
	spool  string // the spool binary, run as spool serve
	dir    string
	stderr io.Writer
	redis  *testservers.Redis
	pg     *testservers.Postgres
	admin  *pgxpool.Pool // the primary's postgres database
	n      int           // backends made so far, for unique names
	// latency, if set, is added each way between PostgreSQL and what the
	// bench runs against it, by proxies (by the server's host:port).
	latency time.Duration
	proxies map[string]*delayProxy
}

func newBenchEnv(ctx context.Context, spool string, servers bool, latency time.Duration, stderr io.Writer) (*benchEnv, error) {
	spool, err := findSpool(spool)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "spool-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: temporary directory: %w", err)
	}
	e := &benchEnv{spool: spool, dir: dir, stderr: stderr, latency: latency, proxies: make(map[string]*delayProxy)}
	if err := os.WriteFile(e.schemaPath(), []byte(benchSchema), 0o644); err != nil {
		e.Close()
		return nil, fmt.Errorf("bench: write schema: %w", err)
	}
	if !servers {
		return e, nil
	}
	if err := e.startServers(ctx); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *benchEnv) startServers(ctx context.Context) error {
	var err error
	if e.redis, err = testservers.StartRedis(filepath.Join(e.dir, "redis")); err != nil {
		return fmt.Errorf("bench --servers: %w", err)
	}
	// Redis rewrites its AOF between scenarios (see rewriteAOF), never by
	// itself during a measurement.
	if err := e.redisDo(ctx, "CONFIG", "SET", "auto-aof-rewrite-percentage", "0"); err != nil {
		return fmt.Errorf("bench --servers: %w", err)
	}
	pgDir, err := testservers.TempDir("spool-bench-pg-")
	if err != nil {
		return fmt.Errorf("bench --servers: %w", err)
	}
	if e.pg, err = testservers.StartPostgres(pgDir); err != nil {
		os.RemoveAll(pgDir)
		return fmt.Errorf("bench --servers: %w", err)
	}
	if e.admin, err = pgxpool.New(ctx, e.pg.PrimaryURL); err != nil {
		return fmt.Errorf("bench --servers: connect to the primary: %w", err)
	}
	return nil
}

// redisClient returns a client of the bench's Redis, for a baseline or a
// ceiling of the bench's own; what names it goes in its errors.
func (e *benchEnv) redisClient(what string) (*redis.Client, error) {
	o, err := redis.ParseURL(e.redis.URL)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", what, err)
	}
	return redis.NewClient(o), nil
}

// redisDo runs one command on the bench's Redis.
func (e *benchEnv) redisDo(ctx context.Context, args ...any) error {
	c, err := e.redisClient(fmt.Sprint(args...))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Do(ctx, args...).Err(); err != nil {
		return fmt.Errorf("bench: redis %v: %w", args, err)
	}
	return nil
}

// rewriteAOF rewrites the Redis AOF and waits until it is done, as
// database() checkpoints PostgreSQL: what the scenarios before appended is
// compacted now, not in a rewrite (a fork and a rewrite of every key beside
// spool's fsyncs) during the next measurement.
func (e *benchEnv) rewriteAOF(ctx context.Context) error {
	c, err := e.redisClient("rewrite the AOF")
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.BgRewriteAOF(ctx).Err(); err != nil {
		return fmt.Errorf("bench: BGREWRITEAOF: %w", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, err := c.Info(ctx, "persistence").Result()
		if err != nil {
			return fmt.Errorf("bench: rewrite the AOF: %w", err)
		}
		if strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("bench: the AOF rewrite took over 60 s")
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// servers reports whether the run uses Redis and PostgreSQL.
func (e *benchEnv) servers() bool { return e.pg != nil }

func (e *benchEnv) schemaPath() string { return filepath.Join(e.dir, "schema.sql") }

// Close stops the servers by pid and removes everything the run made.
func (e *benchEnv) Close() {
	if e.admin != nil {
		e.admin.Close()
	}
	for _, p := range e.proxies {
		p.close()
	}
	if e.redis != nil {
		e.redis.Stop()
	}
	if e.pg != nil {
		e.pg.Stop()
		os.RemoveAll(e.pg.Dir)
	}
	os.RemoveAll(e.dir)
}

// describe names the shape under test, for the output.
func (e *benchEnv) describe() string {
	if e.servers() && e.latency > 0 {
		return fmt.Sprintf("Redis log (AOF always) + PostgreSQL with a streaming replica, %s away each way (a proxy in the bench)", e.latency)
	}
	if e.servers() {
		return "Redis log (AOF always) + PostgreSQL with a streaming replica"
	}
	return "local log + SQLite"
}

// backend is one scenario's own log and database, so scenarios never
// see each other's rows or backlog.
type backend struct {
	env     *benchEnv
	name    string
	dataDir string
	args    []string // the serve flags naming the log and the database
	dbURL   string   // postgres://… or the SQLite file
	replica string   // postgres://… of the replica, or ""
}

func (e *benchEnv) backend(ctx context.Context, scenario string) (*backend, error) {
	e.n++
	name := fmt.Sprintf("bench_%s_%d", scenario, e.n)
	b := &backend{env: e, name: name, dataDir: filepath.Join(e.dir, name)}
	if !e.servers() {
		b.dbURL = filepath.Join(b.dataDir, "spool.db")
		b.args = []string{"--data-dir", b.dataDir}
		return b, nil
	}
	primary, replica, err := e.database(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := e.rewriteAOF(ctx); err != nil {
		return nil, err
	}
	b.dbURL, b.replica = primary, replica
	b.args = []string{"--data-dir", b.dataDir, "--log", e.redis.URL, "--log-name", name, "--database", primary, "--replica", replica}
	return b, nil
}

// database creates a PostgreSQL database, checkpoints, and waits until
// the replica has it too.
func (e *benchEnv) database(ctx context.Context, name string) (primary, replica string, err error) {
	if _, err := e.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", "", fmt.Errorf("bench: create database %s: %w", name, err)
	}
	// What the measurements before wrote goes to disk now, not in a
	// checkpoint during the next one.
	if _, err := e.admin.Exec(ctx, "CHECKPOINT"); err != nil {
		return "", "", fmt.Errorf("bench: checkpoint: %w", err)
	}
	primary, replica = e.pg.DatabaseURLs(name)
	if e.latency > 0 {
		if primary, err = viaProxy(e.proxies, primary, e.latency); err != nil {
			return "", "", err
		}
		if replica, err = viaProxy(e.proxies, replica, e.latency); err != nil {
			return "", "", err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := pgx.Connect(ctx, replica)
		if err == nil {
			c.Close(ctx)
			return primary, replica, nil
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("bench: database %s never reached the replica: %w", name, err)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return "", "", err
		}
	}
}

// baselineDB opens a database beside the backend's for a baseline: a
// separate SQLite file with spool's pragmas, or another database on the
// same PostgreSQL server, holding the bench schema.
func (b *backend) baselineDB(ctx context.Context, what string) (benchDB, error) {
	if !b.env.servers() {
		if err := os.MkdirAll(b.dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		db, err := openBenchSQLite(filepath.Join(b.dataDir, what+".db"))
		if err != nil {
			return nil, err
		}
		return db, db.exec(ctx, benchSchema)
	}
	url, _, err := b.env.database(ctx, b.name+"_"+what)
	if err != nil {
		return nil, err
	}
	db, err := openBenchPostgres(ctx, url)
	if err != nil {
		return nil, err
	}
	return db, db.exec(ctx, benchSchema)
}

// spoolDB opens the database spool drains into, to count its rows.
func (b *backend) spoolDB(ctx context.Context) (benchDB, error) {
	if !b.env.servers() {
		return openBenchSQLite(b.dbURL)
	}
	return openBenchPostgres(ctx, b.dbURL)
}

// spoolProc is one spool serve process the bench started.
type spoolProc struct {
	url      string
	pprofURL string
	cmd      *exec.Cmd
	done     chan struct{}
}

// start runs spool serve on the backend with extra flags and waits until
// it answers.
func (b *backend) start(ctx context.Context, extra ...string) (*spoolProc, error) {
	addr, err := freeLoopback()
	if err != nil {
		return nil, err
	}
	pprofAddr, err := freeLoopback()
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--listen", addr, "--pprof-listen", pprofAddr, "--schema", b.env.schemaPath(), "--log-level", "warn"}, b.args...)
	cmd := exec.Command(b.env.spool, append(args, extra...)...)
	cmd.Stderr = b.env.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start spool: %w", err)
	}
	p := &spoolProc{url: "http://" + addr, pprofURL: "http://" + pprofAddr, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	if err := p.waitUp(ctx); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *spoolProc) waitUp(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/health", nil)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			return nil
		}
		select {
		case <-p.done:
			return errors.New("bench: spool exited at start (its log is above)")
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("bench: spool did not answer within 30s")
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func (p *spoolProc) pid() int { return p.cmd.Process.Pid }

// stop asks spool to stop (SIGINT: intake stops, a local log drains) and
// waits; after 30 s it is killed.
func (p *spoolProc) stop() {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func freeLoopback() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// benchSchema is the table the bench writes; the baselines get the same.
const benchSchema = `CREATE TABLE IF NOT EXISTS observations (
    id uuid PRIMARY KEY, target text NOT NULL, telescope text NOT NULL DEFAULT 'main',
    exposure_s double precision, status text NOT NULL DEFAULT 'planned',
    started_at timestamptz, finished_at timestamptz, meta jsonb);
CREATE INDEX IF NOT EXISTS observations_target ON observations (target);
CREATE TABLE IF NOT EXISTS readings (
    id uuid PRIMARY KEY, station text NOT NULL, taken_at timestamptz NOT NULL,
    temp_c double precision, humidity double precision);`

// findSpool returns the spool binary to start: path if given, else a
// spool beside this program (make builds both into bin/), else one on
// PATH.
func findSpool(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	if self, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(self), "spool")
		if fi, err := os.Stat(beside); err == nil && !fi.IsDir() {
			return beside, nil
		}
	}
	if p, err := exec.LookPath("spool"); err == nil {
		return p, nil
	}
	return "", errors.New("bench: no spool binary beside this program nor on PATH: build one (make build puts both in bin/) or name it with --spool")
}
