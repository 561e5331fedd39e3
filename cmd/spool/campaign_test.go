package main

// Fault campaigns: a deployment of real spool processes under a steady
// load (campaign_load_test.go) while a nemesis injects faults picked at
// random from a seed; then the history of every request is checked
// against what the database applied (internal/history). A failure prints
// its seed; SPOOL_CAMPAIGN_SEED=N runs that schedule again, and
// SPOOL_CAMPAIGN=10m runs for that long (make soak).

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver of database/sql
	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/history"
	"github.com/spoolgw/spool/internal/syncbuf"
	"github.com/spoolgw/spool/internal/txlog/redislog"
)

// campaignLength is how long the nemesis injects faults: SPOOL_CAMPAIGN
// (a Go duration), else def.
func campaignLength(t *testing.T, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv("SPOOL_CAMPAIGN")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("SPOOL_CAMPAIGN=%q: want a positive Go duration", v)
	}
	return d
}

// campaignSeed is SPOOL_CAMPAIGN_SEED, else a fresh random seed. It is
// logged first, and again if the test fails.
func campaignSeed(t *testing.T) uint64 {
	t.Helper()
	seed := rand.Uint64()
	if v := os.Getenv("SPOOL_CAMPAIGN_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("SPOOL_CAMPAIGN_SEED=%q: %v", v, err)
		}
	}
	t.Logf("campaign seed %d (SPOOL_CAMPAIGN_SEED=%d reruns this schedule)", seed, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the campaign failed with seed %d: rerun with SPOOL_CAMPAIGN_SEED=%d go test -run '^%s$' ./cmd/spool", seed, seed, t.Name())
		}
	})
	return seed
}

// node is one spool process of a deployment, at a fixed address, that
// the nemesis kills, stops and restarts.
type node struct {
	name string
	addr string
	args []string

	mu   sync.Mutex
	p    *proc
	logs []*syncbuf.Buffer // every run's log, the last one last
}

func newNode(t *testing.T, name string, args ...string) *node {
	n := &node{name: name, addr: freeAddr(t), args: args}
	t.Cleanup(func() {
		if p := n.proc(); p != nil {
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			_ = p.cmd.Process.Kill()
			err := <-p.done
			p.done <- err
		}
		if t.Failed() {
			t.Logf("--- %s, last run:\n%s", n.name, n.lastLog())
		}
	})
	return n
}

func (n *node) url() string { return "http://" + n.addr }

func (n *node) proc() *proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.p
}

func (n *node) lastLog() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.logs) == 0 {
		return ""
	}
	return n.logs[len(n.logs)-1].String()
}

// start starts the process, trying again every half second until it
// answers /health or ctx ends: at a restart, Redis or the database may be
// down, and spool then exits at start.
func (n *node) start(ctx context.Context) error {
	for {
		p, err := launch(n.addr, n.args)
		if err == nil {
			n.mu.Lock()
			n.p = p
			n.logs = append(n.logs, p.stderr)
			n.mu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("start %s: %w (last: %v)", n.name, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// kill ends the process with SIGKILL and waits for it.
func (n *node) kill() {
	p := n.proc()
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies too, but say so
	_ = p.cmd.Process.Kill()
	err := <-p.done
	p.done <- err
}

// alive reports whether the process runs.
func (n *node) alive() bool {
	select {
	case err := <-n.proc().done:
		n.proc().done <- err
		return false
	default:
		return true
	}
}

// launch starts spool serve on addr and waits for /health.
func launch(addr string, args []string) (*proc, error) {
	cmd := exec.Command(binary, append([]string{"serve", "--listen", addr}, args...)...)
	p := &proc{cmd: cmd, url: "http://" + addr, stderr: &syncbuf.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(p.url + "/health")
		if err == nil {
			res.Body.Close()
			return p, nil
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("exited at start: %v: %s", err, lastLines(p.stderr.String(), 3))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-p.done
			return nil, fmt.Errorf("no answer after 20 s: %s", lastLines(p.stderr.String(), 3))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// fault is one kind of fault the nemesis injects: inject breaks something
// and heals it before it returns, drawing its timings from rng. A fault
// that does not apply right now (its target is busy or absent) returns
// errSkip. target names what it breaks, several names joined by "+": two
// faults that share a target never overlap.
type fault struct {
	kind   string
	target func(rng *rand.Rand) string
	inject func(ctx context.Context, rng *rand.Rand, target string) error
}

var errSkip = errors.New("fault does not apply now")

// nemesis injects faults picked at random from seed, one starting every
// 1–2.5 s, for length; faults on different targets overlap.
type nemesis struct {
	t      *testing.T
	faults []fault

	mu       sync.Mutex
	busy     map[string]bool
	injected map[string]int
	skipped  int
	errs     []error
}

func (nm *nemesis) run(ctx context.Context, seed uint64, length time.Duration) {
	rng := rand.New(rand.NewPCG(seed, 0x6e656d))
	nm.busy, nm.injected = map[string]bool{}, map[string]int{}
	var wg sync.WaitGroup
	for end := time.Now().Add(length); time.Now().Before(end) && ctx.Err() == nil; {
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(1000+rng.IntN(1500)) * time.Millisecond):
		}
		f := nm.faults[rng.IntN(len(nm.faults))]
		frng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		target := f.target(frng)
		parts := strings.Split(target, "+")
		nm.mu.Lock()
		if target == "" || slices.ContainsFunc(parts, func(p string) bool { return nm.busy[p] }) {
			nm.skipped++
			nm.mu.Unlock()
			continue
		}
		for _, p := range parts {
			nm.busy[p] = true
		}
		nm.mu.Unlock()
		wg.Go(func() {
			err := f.inject(ctx, frng, target)
			nm.mu.Lock()
			defer nm.mu.Unlock()
			for _, p := range parts {
				delete(nm.busy, p)
			}
			switch {
			case errors.Is(err, errSkip):
				nm.skipped++
			case err != nil:
				nm.errs = append(nm.errs, fmt.Errorf("%s of %s: %w", f.kind, target, err))
			default:
				nm.injected[f.kind]++
			}
		})
	}
	wg.Wait()
}

// report logs what was injected and fails the test for a fault that could
// not be injected or healed.
func (nm *nemesis) report() {
	nm.mu.Lock()
	defer nm.mu.Unlock()
	kinds := make([]string, 0, len(nm.injected))
	total := 0
	for k, n := range nm.injected {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	slices.Sort(kinds)
	nm.t.Logf("faults injected: %d (%s); %d skipped (target busy or absent)", total, strings.Join(kinds, ", "), nm.skipped)
	for _, err := range nm.errs {
		nm.t.Errorf("nemesis: %v", err)
	}
}

// between returns a duration in [lo, hi) drawn from rng.
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// sleepCtx sleeps d, or less if ctx ends first.
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

// killFault SIGKILLs one of nodes, waits, and starts it again.
func killFault(kind string, nodes []*node) fault {
	return fault{
		kind:   kind,
		target: func(rng *rand.Rand) string { return nodes[rng.IntN(len(nodes))].name },
		inject: func(ctx context.Context, rng *rand.Rand, target string) error {
			n := nodeNamed(nodes, target)
			n.kill()
			_ = sleepCtx(ctx, between(rng, 200*time.Millisecond, 1500*time.Millisecond))
			return n.start(context.WithoutCancel(ctx))
		},
	}
}

func nodeNamed(nodes []*node, name string) *node {
	for _, n := range nodes {
		if n.name == name {
			return n
		}
	}
	panic("no node " + name)
}

// checkHistory checks the load's history against final and fails the test
// for each anomaly.
func checkHistory(t *testing.T, l *campaignLoad, final history.Final) {
	t.Helper()
	rep := l.hist.Check(final)
	t.Logf("history: %v", rep.Summary)
	for i, a := range rep.Anomalies {
		if i == 20 {
			t.Errorf("… and %d more anomalies", len(rep.Anomalies)-i)
			break
		}
		t.Errorf("anomaly: %v", a)
	}
	if err := l.refusals(); err != nil {
		t.Error(err)
	}
	if rep.Summary.Txns.OK == 0 {
		t.Error("no write was acknowledged: the load did not run")
	}
}

// readFinal reads the audit, the table, spool_applied and the dead letters
// from db (PostgreSQL through pgx's database/sql driver, or SQLite: the
// same SQL).
func readFinal(ctx context.Context, db *sql.DB) (history.Final, error) {
	q := func(ctx context.Context, text string, each func(scan func(...any) error) error) error {
		rows, err := db.QueryContext(ctx, text)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := each(rows.Scan); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	f := history.Final{Applied: map[string][]history.Applied{}, Rows: map[string]int64{}, AppliedTxns: map[string]bool{}}
	err := q(ctx, "select cast(row_id as text), op, counter from "+campaignAudit+" order by seq", func(scan func(...any) error) error {
		var id, op string
		var c int64
		if err := scan(&id, &op, &c); err != nil {
			return err
		}
		f.Applied[id] = append(f.Applied[id], history.Applied{Op: history.Op(op), Counter: c})
		return nil
	})
	if err == nil {
		err = q(ctx, "select cast(id as text), counter from "+campaignTable, func(scan func(...any) error) error {
			var id string
			var c int64
			if err := scan(&id, &c); err != nil {
				return err
			}
			f.Rows[id] = c
			return nil
		})
	}
	if err == nil {
		err = q(ctx, "select cast(txn_id as text) from spool_applied", func(scan func(...any) error) error {
			var id string
			if err := scan(&id); err != nil {
				return err
			}
			f.AppliedTxns[id] = true
			return nil
		})
	}
	if err == nil {
		err = q(ctx, "select cast(txn_id as text), error from spool_dead_letters", func(scan func(...any) error) error {
			var d history.DeadLetter
			if err := scan(&d.Txn, &d.Error); err != nil {
				return err
			}
			f.DeadLetters = append(f.DeadLetters, d)
			return nil
		})
	}
	return f, err
}

// waitLogEmpty waits until the log's depth, as url's /stats tells it, is
// 0, and returns how long that took; it fails the test after bound.
func waitLogEmpty(t *testing.T, url string, bound time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	for {
		if res, err := http.Get(url + "/stats"); err == nil {
			var s struct {
				QueueDepth *int64 `json:"queue_depth"`
			}
			err = jsonDecode(res, &s)
			if err == nil && s.QueueDepth != nil && *s.QueueDepth == 0 {
				return time.Since(began)
			}
		}
		if time.Since(began) > bound {
			t.Errorf("the log did not drain within %v of the last fault", bound)
			return time.Since(began)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jsonDecode(res *http.Response, v any) error {
	defer res.Body.Close()
	return json.NewDecoder(res.Body).Decode(v)
}

// campaignPGSchema is the campaign's table in PostgreSQL, with the
// triggers that record every change applied to it.
const campaignPGSchema = `
create table campaign_rows (id uuid primary key, owner text not null, counter bigint not null);
create table campaign_audit (seq bigserial primary key, row_id uuid not null, op text not null, counter bigint not null);
create function campaign_audit() returns trigger language plpgsql as $$
begin
  if tg_op = 'DELETE' then
    insert into campaign_audit (row_id, op, counter) values (old.id, 'delete', old.counter);
  else
    insert into campaign_audit (row_id, op, counter) values (new.id, lower(tg_op), new.counter);
  end if;
  return null;
end $$;
create trigger campaign_audit after insert or update or delete on campaign_rows
  for each row execute function campaign_audit();
`

// campaignSQLiteSchema is the same for SQLite, given to spool --schema.
const campaignSQLiteSchema = `
CREATE TABLE IF NOT EXISTS campaign_rows (id TEXT PRIMARY KEY, owner TEXT NOT NULL, counter INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS campaign_audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, row_id TEXT NOT NULL, op TEXT NOT NULL, counter INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS campaign_audit_insert AFTER INSERT ON campaign_rows
  BEGIN INSERT INTO campaign_audit (row_id, op, counter) VALUES (new.id, 'insert', new.counter); END;
CREATE TRIGGER IF NOT EXISTS campaign_audit_update AFTER UPDATE ON campaign_rows
  BEGIN INSERT INTO campaign_audit (row_id, op, counter) VALUES (new.id, 'update', new.counter); END;
CREATE TRIGGER IF NOT EXISTS campaign_audit_delete AFTER DELETE ON campaign_rows
  BEGIN INSERT INTO campaign_audit (row_id, op, counter) VALUES (old.id, 'delete', old.counter); END;
`

// TestCampaignServers: two --role api and two --role applier processes on
// one Redis (AOF, appendfsync always) and PostgreSQL with a streaming
// replica, the appliers reaching the primary through Toxiproxy; eight
// writers insert, update, delete and send two-operation transactions
// through both api processes, read their rows back through either and ask
// their transactions' states. The nemesis SIGKILLs any spool process (and
// restarts it), stops the lease holder with SIGSTOP past the lease's TTL
// and continues it, SIGKILLs Redis and restarts it on its AOF, restarts
// the PostgreSQL primary, pauses the replica's replay, and slows or
// resets the network to PostgreSQL. Once the faults stop, the log must
// drain within a bound, and the history must show every acknowledged
// write applied once and in order, every row ending with its last
// acknowledged write, no stale read, no state going backwards and no
// dead letter.
//
// It kills and restarts the Redis server and the PostgreSQL primary the
// package shares: it must not run in parallel with any test that uses
// them (see faults_test.go).
func TestCampaignServers(t *testing.T) {
	if testing.Short() {
		t.Skip("a fault campaign on real servers")
	}
	seed := campaignSeed(t)
	length := campaignLength(t, 60*time.Second)
	primary, replica := createDatabase(t, "campaign", campaignPGSchema)
	tp := startToxiproxy(t)
	upstream, _ := throughProxy(t, primary, "")
	proxy, err := tp.CreateProxy("campaign-postgres", "127.0.0.1:0", upstream)
	if err != nil {
		t.Fatal(err)
	}
	_, proxied := throughProxy(t, primary, proxy.Listen)
	logName := fmt.Sprintf("campaign-%d", seed%1_000_000)
	shared := func(role string) []string {
		return []string{"--data-dir", t.TempDir(), "--log", redisSrv.URL, "--log-name", logName,
			"--database", proxied, "--replica", replica, "--role", role, "--apply-timeout", "5s"}
	}
	apis := []*node{newNode(t, "api-0", shared("api")...), newNode(t, "api-1", shared("api")...)}
	appliers := []*node{newNode(t, "applier-0", shared("applier")...), newNode(t, "applier-1", shared("applier")...)}
	all := append(slices.Clone(apis), appliers...)
	for _, n := range all {
		if err := n.start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	rc := redis.NewClient(&redis.Options{Addr: redisSrv.Addr, MaxRetries: -1, DialerRetries: 1})
	defer rc.Close()
	leaseKey := "spool:{" + logName + "}:lease"

	var redisMu sync.Mutex // Redis down: the restart must finish before the test ends
	redisDown := false
	t.Cleanup(func() {
		redisMu.Lock()
		defer redisMu.Unlock()
		if redisDown {
			if err := redisSrv.Start(); err != nil {
				t.Errorf("start redis-server again: %v", err)
			}
		}
	})
	nm := &nemesis{t: t, faults: []fault{
		killFault("SIGKILL api", apis),
		killFault("SIGKILL applier", appliers),
		{
			kind: "SIGSTOP lease holder past its TTL",
			target: func(*rand.Rand) string {
				v, err := rc.Get(context.Background(), leaseKey).Result()
				if err != nil {
					return ""
				}
				for _, n := range appliers {
					if p := n.proc(); p != nil && strings.HasSuffix(v[:max(0, strings.LastIndexByte(v, '/'))], "-"+strconv.Itoa(p.cmd.Process.Pid)) {
						return n.name
					}
				}
				return ""
			},
			inject: func(ctx context.Context, rng *rand.Rand, target string) error {
				p := nodeNamed(appliers, target).proc()
				if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
					return errSkip // it died meanwhile
				}
				_ = sleepCtx(ctx, between(rng, redislog.DefaultLeaseTTL+500*time.Millisecond, redislog.DefaultLeaseTTL+3*time.Second))
				_ = p.cmd.Process.Signal(syscall.SIGCONT)
				return nil
			},
		},
		{
			kind:   "SIGKILL redis, restart on its AOF",
			target: func(*rand.Rand) string { return "redis" },
			inject: func(ctx context.Context, rng *rand.Rand, _ string) error {
				redisMu.Lock()
				defer redisMu.Unlock()
				redisSrv.Kill()
				redisDown = true
				_ = sleepCtx(ctx, between(rng, 300*time.Millisecond, 3*time.Second))
				if err := redisSrv.Start(); err != nil {
					return err
				}
				redisDown = false
				return nil
			},
		},
		{
			kind:   "restart the PostgreSQL primary",
			target: func(*rand.Rand) string { return "primary" },
			inject: func(ctx context.Context, rng *rand.Rand, _ string) error {
				if err := pgSrv.StopPrimary(); err != nil {
					return err
				}
				_ = sleepCtx(ctx, between(rng, 500*time.Millisecond, 4*time.Second))
				return pgSrv.StartPrimary()
			},
		},
		{
			kind:   "pause the replica's replay",
			target: func(*rand.Rand) string { return "replica" },
			inject: func(ctx context.Context, rng *rand.Rand, _ string) error {
				conn, err := pgx.Connect(ctx, replica)
				if err != nil {
					return errSkip
				}
				defer conn.Close(context.WithoutCancel(ctx))
				if _, err := conn.Exec(ctx, "select pg_wal_replay_pause()"); err != nil {
					return err
				}
				_ = sleepCtx(ctx, between(rng, time.Second, 5*time.Second))
				_, err = conn.Exec(context.WithoutCancel(ctx), "select pg_wal_replay_resume()")
				return err
			},
		},
		{
			kind:   "latency or resets to PostgreSQL",
			target: func(*rand.Rand) string { return "network" },
			inject: func(ctx context.Context, rng *rand.Rand, _ string) error {
				name, kind, attrs := "slow", "latency", map[string]any{"latency": 50 + rng.IntN(100), "jitter": 30}
				if rng.IntN(2) == 0 {
					name, kind, attrs = "reset", "reset_peer", map[string]any{"timeout": 0}
				}
				if _, err := proxy.AddToxic(name, kind, "upstream", 1, attrs); err != nil {
					return err
				}
				_ = sleepCtx(ctx, between(rng, time.Second, 4*time.Second))
				return proxy.RemoveToxic(name)
			},
		},
	}}

	l := newCampaignLoad([]string{apis[0].url(), apis[1].url()})
	stop := make(chan struct{})
	l.start(8, seed, stop)
	nm.run(t.Context(), seed, length)
	nm.report()
	quiet := time.Now()
	close(stop)
	l.wait()
	for _, n := range all {
		if !n.alive() {
			t.Errorf("%s exited by itself:\n%s", n.name, lastLines(n.lastLog(), 20))
		}
	}
	drained := waitLogEmpty(t, apis[0].url(), 60*time.Second)
	t.Logf("the log drained %v after the last fault healed (%v after the campaign began)", drained.Round(time.Millisecond), time.Since(quiet.Add(-length)).Round(time.Second))
	if t.Failed() {
		t.Logf("the log in Redis:\n%s", streamState(logName))
		t.Logf("the replica:\n%s", replicaState(primary, replica))
		t.Logf("where each process waits:\n%s", stacks(procsOf(all)))
		return
	}
	if p, err := rc.XPending(t.Context(), redislog.StreamKey(logName), redislog.GroupName).Result(); err != nil || p.Count != 0 {
		t.Errorf("entries still pending once the log drained: %+v, %v\n%s", p, err, streamState(logName))
	}

	db, err := sql.Open("pgx", primary)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	final, err := readFinal(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	checkHistory(t, l, final)
}

// TestCampaignEmbedded: the embedded shape, one process on the local log
// and SQLite, under the same writers and checker. The nemesis SIGKILLs the
// process (and restarts it), tears the log's tail (a SIGKILL, then half a
// record's bytes appended to the last segment, as a write cut off by a
// power loss leaves it) and fills the log's disk (a tmpfs, where mount is
// permitted) for a while.
func TestCampaignEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("a fault campaign")
	}
	seed := campaignSeed(t)
	length := campaignLength(t, 30*time.Second)
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	faults := []string{"SIGKILL", "torn log tail"}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Logf("no full-disk faults: mounting a tmpfs needs root and a sandbox that permits mount: %v: %s", err, strings.TrimSpace(string(out)))
	} else {
		faults = append(faults, "full disk")
		t.Cleanup(func() {
			if out, err := exec.Command("umount", disk).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", disk, err, out)
			}
		})
	}
	schema := filepath.Join(t.TempDir(), "campaign.sql")
	if err := os.WriteFile(schema, []byte(campaignSQLiteSchema), 0o644); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(t.TempDir(), "spool.db")
	n := newNode(t, "spool", "--data-dir", disk, "--database", "sqlite:"+dbPath, "--schema", schema)
	if err := n.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	nodes := []*node{n}
	nm := &nemesis{t: t, faults: []fault{killFault("SIGKILL", nodes), {
		kind: "torn log tail",
		// The disk too: a full disk has no room for the torn bytes.
		target: func(*rand.Rand) string { return n.name + "+disk" },
		inject: func(ctx context.Context, rng *rand.Rand, _ string) error {
			n.kill()
			torn := tearTail(filepath.Join(disk, "log"), rng)
			if err := n.start(context.WithoutCancel(ctx)); err != nil {
				return err
			}
			return torn
		},
	}}}
	if slices.Contains(faults, "full disk") {
		nm.faults = append(nm.faults, fault{
			kind:   "full disk",
			target: func(*rand.Rand) string { return "disk" },
			inject: func(ctx context.Context, rng *rand.Rand, _ string) error {
				filler := filepath.Join(disk, "filler")
				if err := fillDisk(filler); err != nil {
					return err
				}
				_ = sleepCtx(ctx, between(rng, 500*time.Millisecond, 3*time.Second))
				return os.Remove(filler)
			},
		})
	}

	l := newCampaignLoad([]string{n.url()})
	stop := make(chan struct{})
	l.start(8, seed, stop)
	nm.run(t.Context(), seed, length)
	nm.report()
	close(stop)
	l.wait()
	if !n.alive() {
		t.Fatalf("spool exited by itself:\n%s", lastLines(n.lastLog(), 20))
	}
	drained := waitLogEmpty(t, n.url(), 60*time.Second)
	t.Logf("the log drained %v after the last fault healed", drained.Round(time.Millisecond))
	if t.Failed() {
		return
	}
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	final, err := readFinal(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	checkHistory(t, l, final)
}

// tearTail appends part of a record, random bytes, to the newest segment
// of the local log in dir: what a write cut off mid-way leaves behind.
// Nothing of it was acknowledged; recovery must cut it off.
func tearTail(dir string, rng *rand.Rand) error {
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(names) == 0 {
		return fmt.Errorf("no segment in %s: %v", dir, err)
	}
	slices.Sort(names)
	f, err := os.OpenFile(names[len(names)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	junk := make([]byte, 1+rng.IntN(200))
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}
	if _, err := f.Write(junk); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fillDisk writes path until its file system is full.
func fillDisk(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
}

// procsOf returns the current process of each node.
func procsOf(nodes []*node) []*proc {
	ps := make([]*proc, 0, len(nodes))
	for _, n := range nodes {
		ps = append(ps, n.proc())
	}
	return ps
}

// replicaState describes how far the replica is behind the primary, for
// a campaign that failed.
func replicaState(primary, replica string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	for _, q := range []struct{ url, sql string }{
		{primary, "select pg_current_wal_lsn()::text"},
		{primary, "select coalesce(string_agg(application_name || ' ' || state || ' replay ' || coalesce(replay_lsn::text, '-'), '; '), 'no walsender') from pg_stat_replication"},
		{replica, "select pg_last_wal_replay_lsn()::text || ' paused ' || pg_is_wal_replay_paused()::text"},
		{replica, "select coalesce((select status || ' ' || coalesce(latest_end_lsn::text, '-') from pg_stat_wal_receiver), 'no wal receiver')"},
	} {
		conn, err := pgx.Connect(ctx, q.url)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", q.sql, err)
			continue
		}
		var v string
		err = conn.QueryRow(ctx, q.sql).Scan(&v)
		conn.Close(ctx)
		fmt.Fprintf(&b, "%s: %s %v\n", q.sql, v, err)
	}
	return b.String()
}
