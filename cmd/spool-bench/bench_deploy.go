package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"
)

// deployment is spool as a scenario runs it. On the embedded default one
// process does everything; with --servers and holdable, an api process
// takes writes and reads and a separate applier process drains the Redis
// log, so the drain can be held by stopping the applier.
//
// Holding the drain on the embedded default: the bench takes SQLite's
// write lock from its own connection (BEGIN IMMEDIATE), as another program
// on the same file would. spool's applier then waits on SQLITE_BUSY and
// backs off (a transient error), while intake and reads go on; releasing
// the lock lets the drain resume in the same process.
type deployment struct {
	be       *backend
	api      *spoolProc
	applier  *spoolProc
	split    bool
	extra    []string
	lock     *sqliteLock
	lockPath string
}

// deploy makes a fresh backend for scenario and deploys spool on it.
func (e *benchEnv) deploy(ctx context.Context, scenario string, holdable bool, extra ...string) (*deployment, error) {
	be, err := e.backend(ctx, scenario)
	if err != nil {
		return nil, err
	}
	return be.deploy(ctx, holdable, extra...)
}

func (b *backend) deploy(ctx context.Context, holdable bool, extra ...string) (*deployment, error) {
	d := &deployment{be: b, extra: extra, split: holdable && b.env.servers(), lockPath: b.dbURL}
	if !d.split {
		p, err := b.start(ctx, extra...)
		if err != nil {
			return nil, err
		}
		d.api = p
		return d, nil
	}
	p, err := b.start(ctx, append([]string{"--role", "api"}, extra...)...)
	if err != nil {
		return nil, err
	}
	d.api = p
	if err := d.startApplier(ctx); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

func (d *deployment) startApplier(ctx context.Context) error {
	p, err := d.be.start(ctx, append([]string{"--role", "applier"}, d.extra...)...)
	if err != nil {
		return fmt.Errorf("bench: start the applier: %w", err)
	}
	d.applier = p
	return nil
}

func (d *deployment) url() string { return d.api.url }

// hold stops the drain; writes stay in the log and the overlay.
func (d *deployment) hold(ctx context.Context) error {
	if d.split {
		d.applier.stop()
		d.applier = nil
		return nil
	}
	l, err := lockSQLite(ctx, d.lockPath)
	if err != nil {
		return err
	}
	d.lock = l
	return nil
}

// release lets the drain run again; without a hold before it, it does
// nothing.
func (d *deployment) release(ctx context.Context) error {
	if d.split {
		if d.applier != nil {
			return nil // a second applier would stand by, and outlive stop
		}
		return d.startApplier(ctx)
	}
	if d.lock == nil {
		return nil
	}
	err := d.lock.release()
	d.lock = nil
	return err
}

func (d *deployment) stop() {
	if d.lock != nil {
		d.lock.release()
	}
	d.applier.stop()
	d.api.stop()
}

// spoolStats is the part of GET /v1/stats the bench reads.
type spoolStats struct {
	Log struct {
		Depth int64 `json:"depth"`
		Bytes int64 `json:"bytes"`
	} `json:"log"`
	Failed int64 `json:"failed"`
}

func (d *deployment) stats(ctx context.Context) (spoolStats, error) {
	var st spoolStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url()+"/v1/stats", nil)
	if err != nil {
		return st, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("bench: stats: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return st, fmt.Errorf("bench: stats: %s", res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("bench: stats: %w", err)
	}
	return st, nil
}

// drained waits until the log is empty.
func (d *deployment) drained(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := d.stats(ctx)
		if err == nil && st.Log.Depth == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: log not drained after %v (depth %d, %v)", timeout, st.Log.Depth, err)
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}

// verify checks that every acknowledged write of tag reached the database
// and nothing failed: lost writes are an impossible result.
func (d *deployment) verify(ctx context.Context, tag string, acked int) error {
	if err := d.drained(ctx, 2*time.Minute); err != nil {
		return err
	}
	db, err := d.be.spoolDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := db.count(ctx, tag+"-")
	if err != nil {
		return err
	}
	if n != int64(acked) {
		return fmt.Errorf("bench: %d writes acknowledged, %d rows in the database", acked, n)
	}
	return nil
}

// cpuGroups names the deployment's processes by group (see cpuGroups), the
// bench's own among them so that it counts apart from its children.
func (d *deployment) cpuGroups() cpuGroups {
	g := cpuGroups{cpuBench: {os.Getpid()}}
	if d.split {
		g[cpuAPI] = []int{d.api.pid()}
		if d.applier != nil { // nil while the drain is held
			g[cpuApplier] = []int{d.applier.pid()}
		}
	} else {
		g[cpuSpool] = []int{d.api.pid()}
	}
	if e := d.be.env; e.servers() {
		g[cpuRedis] = []int{e.redis.Pid()}
		for _, pid := range []int{e.pg.PrimaryPid(), e.pg.ReplicaPid()} {
			if pid != 0 {
				g[cpuPostgres] = append(g[cpuPostgres], pid)
			}
		}
	}
	return g
}
