package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/poll"
	"github.com/spoolgw/spool/internal/testservers"
	"github.com/spoolgw/spool/internal/txlog/redislog"
)

// newDatabase creates a fresh PostgreSQL database with the observatory
// schema and returns its URL.
func newDatabase(t *testing.T) string {
	t.Helper()
	schema, err := os.ReadFile("../../examples/observatory.sql")
	if err != nil {
		t.Fatal(err)
	}
	primary, _ := createDatabase(t, "spool", string(schema))
	return primary
}

// createDatabase creates a fresh PostgreSQL database named from prefix,
// runs schema in it, and returns its primary and replica URLs.
func createDatabase(t *testing.T, prefix, schema string) (primary, replica string) {
	t.Helper()
	testservers.Need(t, serversErr)
	ctx := t.Context()
	name := fmt.Sprintf("%s_%d", prefix, rand.Uint32())
	conn, err := pgx.Connect(ctx, pgSrv.PrimaryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "create database "+name); err != nil {
		t.Fatal(err)
	}
	primary, replica = pgSrv.DatabaseURLs(name)
	db, err := pgx.Connect(ctx, primary)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, schema); err != nil {
		t.Fatal(err)
	}
	return primary, replica
}

// sharedArgs are the flags of a process on the shared Redis log.
func sharedArgs(t *testing.T, db, logName, role string, extra ...string) []string {
	return logArgs(t, redisSrv.URL, db, logName, role, extra...)
}

// logArgs are the flags of a process on the Redis log logURL names.
func logArgs(t *testing.T, logURL, db, logName, role string, extra ...string) []string {
	return append([]string{"--data-dir", t.TempDir(), "--log", logURL, "--log-name", logName, "--database", db, "--role", role}, extra...)
}

// writer inserts an observation through one api process and updates it
// through the other, again and again; it remembers the last acknowledged
// exposure of every row it wrote.
type writer struct {
	mu    sync.Mutex
	final map[string]int64 // row id → last acknowledged exposure_s
	txns  []string
}

func (w *writer) run(client *http.Client, urls []string, stop <-chan struct{}) {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		insert := urls[n%2]
		res, err := client.Post(insert+"/v1/tables/observations", "application/json", strings.NewReader(`{"target":"cluster","exposure_s":0}`))
		if err != nil {
			continue
		}
		var rc struct {
			ID            string `json:"id"`
			TransactionID string `json:"transaction_id"`
		}
		ok := res.StatusCode == http.StatusCreated && json.NewDecoder(res.Body).Decode(&rc) == nil
		res.Body.Close()
		if !ok {
			continue
		}
		w.ack(rc.ID, rc.TransactionID, 0)
		// Updates through the other process, while the insert may still
		// be buffered: they must never be lost to it.
		for v := int64(1); v <= 3; v++ {
			req, _ := http.NewRequest(http.MethodPatch, urls[(n+1)%2]+"/v1/tables/observations/"+rc.ID, strings.NewReader(fmt.Sprintf(`{"exposure_s":%d}`, v)))
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				break
			}
			var u struct {
				TransactionID string `json:"transaction_id"`
			}
			ok := res.StatusCode == http.StatusAccepted && json.NewDecoder(res.Body).Decode(&u) == nil
			res.Body.Close()
			if !ok {
				break
			}
			w.ack(rc.ID, u.TransactionID, v)
		}
	}
}

func (w *writer) ack(id, tx string, v int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.final[id] = v
	w.txns = append(w.txns, tx)
}

// Two api processes and two appliers share one Redis log and one
// PostgreSQL; the active applier is killed mid-load; after the drain every
// acknowledged write is in PostgreSQL exactly once and every row holds its
// last acknowledged update.
func TestClusterKillActiveApplier(t *testing.T) {
	db := newDatabase(t)
	logName := fmt.Sprintf("cluster-%d", rand.Uint32())
	api1 := startArgs(t, sharedArgs(t, db, logName, "api")...)
	api2 := startArgs(t, sharedArgs(t, db, logName, "api")...)
	app1 := startArgs(t, sharedArgs(t, db, logName, "applier")...)
	app2 := startArgs(t, sharedArgs(t, db, logName, "applier")...)

	w := &writer{final: map[string]int64{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(client, []string{api1.url, api2.url}, stop) }()
	}
	waitFor(t, 30*time.Second, "an applier to hold the lease", func() bool {
		return strings.Contains(app1.stderr.String(), "lease acquired") || strings.Contains(app2.stderr.String(), "lease acquired")
	})
	active, standby := app1, app2
	if !strings.Contains(app1.stderr.String(), "lease acquired") {
		active, standby = app2, app1
	}
	// GET /v1/stats says which one holds the lease (the dashboard's
	// applier card).
	for _, p := range []struct {
		proc *proc
		held bool
	}{{active, true}, {standby, false}} {
		_, st, err := getJSON(client, p.proc.url+"/v1/stats")
		ap, _ := st["applier"].(map[string]any)
		lease, _ := ap["lease"].(map[string]any)
		if err != nil || ap["running"] != true || lease["held"] != p.held {
			t.Errorf("stats of an applier (holder %v): applier %v, %v", p.held, st["applier"], err)
		}
	}
	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	applied := func() int64 {
		var n int64
		if err := conn.QueryRow(t.Context(), "select count(*) from spool_applied").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, 30*time.Second, "the active applier applying the load", func() bool { return applied() > 0 })
	if err := active.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// The dead applier's last commit lands at once, if at all; what
	// comes after is the standby's. The sleep is the scenario: no signal
	// says a killed process's last commit has landed.
	time.Sleep(100 * time.Millisecond)
	before := applied()
	waitFor(t, 15*time.Second, "the standby applying after the active applier's SIGKILL", func() bool { return applied() != before })
	// The lease's TTL is 2 s, a standby tries every 500 ms: about 2 s,
	// 2.5 s at worst, with slack for a loaded machine.
	took := time.Since(killed)
	t.Logf("the standby applied %v after the active applier's SIGKILL", took.Round(time.Millisecond))
	if took > 4*time.Second {
		t.Errorf("the standby took %v to apply after the active applier's SIGKILL; want about 2 s (the lease's TTL)", took.Round(time.Millisecond))
	}
	close(stop)
	wg.Wait()

	waitDrained(t, api1)
	waitLog(t, standby, "lease acquired")
	if len(w.final) == 0 {
		t.Fatal("no write was acknowledged")
	}
	checkPostgres(t, db, w)
}

// checkPostgres checks every acknowledged write of w is applied once, and
// every row holds its last acknowledged update.
func checkPostgres(t *testing.T, db string, w *writer) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var dead int
	if err := conn.QueryRow(ctx, "select count(*) from spool_dead_letters").Scan(&dead); err != nil {
		t.Fatal(err)
	}
	if dead != 0 {
		t.Errorf("%d transactions dead-lettered; want none", dead)
	}
	var applied int
	if err := conn.QueryRow(ctx, "select count(*) from spool_applied where txn_id = any($1::uuid[])", w.txns).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != len(w.txns) {
		t.Errorf("%d of %d acknowledged transactions in spool_applied", applied, len(w.txns))
	}
	got := exposures(t, conn, "target = 'cluster'")
	wrong := 0
	for id, v := range w.final {
		if g, ok := got[id]; !ok || g != float64(v) {
			wrong++
			if wrong <= 5 {
				t.Errorf("row %s: exposure_s %v (present %v), want the last acknowledged %d", id, g, ok, v)
			}
		}
	}
	if wrong > 0 {
		t.Fatalf("%d of %d rows wrong or missing", wrong, len(w.final))
	}
	t.Logf("%d rows, %d acknowledged transactions, all applied once and in order", len(w.final), len(w.txns))
}

// An applier paused (SIGSTOP) past its lease while it holds a claimed
// batch, then resumed, commits nothing: the new holder applied the batch,
// and the old one steps down (the fencing token the database checks makes
// sure of it even if it tried; storetest's Fencing proves that part).
func TestFencedOutApplierCommitsNothing(t *testing.T) {
	db := newDatabase(t)
	logName := fmt.Sprintf("fence-%d", rand.Uint32())
	api := startArgs(t, sharedArgs(t, db, logName, "api")...)
	// A long batch timeout keeps the first applier's batch open long
	// enough to pause it with the batch claimed but not committed.
	old := startArgs(t, sharedArgs(t, db, logName, "applier", "--batch-timeout", "2s")...)
	waitLog(t, old, "lease acquired")
	other := startArgs(t, sharedArgs(t, db, logName, "applier")...)

	w := &writer{final: map[string]int64{}}
	res, err := http.Post(api.url+"/v1/tables/observations", "application/json", strings.NewReader(`{"target":"cluster","exposure_s":7}`))
	if err != nil {
		t.Fatal(err)
	}
	var rc struct {
		ID            string `json:"id"`
		TransactionID string `json:"transaction_id"`
	}
	if err := json.NewDecoder(res.Body).Decode(&rc); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("insert: %d %v", res.StatusCode, err)
	}
	res.Body.Close()
	w.ack(rc.ID, rc.TransactionID, 7)
	pending := redis.NewClient(&redis.Options{Addr: redisSrv.Addr})
	defer pending.Close()
	waitFor(t, 10*time.Second, "the first applier to claim the write (its batch still filling)", func() bool {
		p, err := pending.XPending(t.Context(), redislog.StreamKey(logName), redislog.GroupName).Result()
		return err == nil && p.Count == 1
	})
	if err := old.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, other, "lease acquired")
	waitDrained(t, api)
	if err := old.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Resumed, it finds its lease gone (its renewal fails) or its commit
	// refused by the fencing token the database holds; either way it
	// steps down having committed nothing.
	waitLog(t, old, "stepped down")
	checkPostgres(t, db, w)
}

// waitLog waits until p's log holds text.
func waitLog(t *testing.T, p *proc, text string) {
	t.Helper()
	if poll.Wait(30*time.Second, func() error {
		if !strings.Contains(p.stderr.String(), text) {
			return errors.New("not yet")
		}
		return nil
	}) != nil {
		t.Fatalf("%q never appeared in the log within 30 s:\n%s", text, p.stderr)
	}
}

// TestClusterRetryOnce retries one dead letter through two api processes
// while no applier runs, so both retries are queued: only the first to
// reach the database runs; the other fails as superseded, and the dead
// letter, retried, can no longer be dropped.
func TestClusterRetryOnce(t *testing.T) {
	db := newDatabase(t)
	logName := fmt.Sprintf("retry-%d", rand.Uint32())
	api1 := startArgs(t, sharedArgs(t, db, logName, "api")...)
	api2 := startArgs(t, sharedArgs(t, db, logName, "api")...)
	app := startArgs(t, sharedArgs(t, db, logName, "applier")...)
	client := &http.Client{Timeout: 30 * time.Second}
	call := func(method, url, body string, want int) map[string]any {
		t.Helper()
		code, out, err := doJSON(client, method, url, body)
		if err != nil || code != want {
			t.Fatalf("%s %s: %d %v (%v), want %d", method, url, code, out, err, want)
		}
		return out
	}
	settle := func(tx string) map[string]any {
		t.Helper()
		return call("GET", api1.url+"/v1/transactions/"+tx+"?wait=applied&timeout=20s", "", 200)
	}
	insert := func(url, code, name string) string {
		t.Helper()
		body := fmt.Sprintf(`{"operations":[{"op":"insert","table":"instruments","values":{"code":%q,"name":%q}}]}`, code, name)
		return call("POST", url+"/v1/transactions", body, 202)["transaction_id"].(string)
	}
	if st := settle(insert(api1.url, "dup", "first")); st["state"] != "applied" && st["state"] != "replicated" {
		t.Fatalf("first insert: %v", st)
	}
	dead := insert(api1.url, "dup", "second")
	if st := settle(dead); st["state"] != "failed" {
		t.Fatalf("second insert of dup: %v, want failed", st)
	}

	app.stop(t) // both retries stay queued
	fix := func(code string) string {
		return fmt.Sprintf(`{"operations":[{"op":"insert","table":"instruments","values":{"code":%q,"name":"second"}}]}`, code)
	}
	r1 := call("POST", api1.url+"/v1/dlq/"+dead+"/retry", fix("r1"), 202)["transaction_id"].(string)
	r2 := call("POST", api2.url+"/v1/dlq/"+dead+"/retry", fix("r2"), 202)["transaction_id"].(string)
	startArgs(t, sharedArgs(t, db, logName, "applier")...)

	s1, s2 := settle(r1), settle(r2)
	if s1["state"] == "failed" {
		t.Fatalf("the first retry queued failed: %v", s1)
	}
	if s2["state"] != "failed" || s2["code"] != "spool_superseded" || !strings.Contains(fmt.Sprint(s2["error"]), "retried already as "+r1) {
		t.Fatalf("the second retry: %v, want failed as superseded by %s", s2, r1)
	}
	dl := call("GET", api2.url+"/v1/dlq/"+dead, "", 200)
	if dl["retried_as"] != r1 {
		t.Fatalf("dead letter %v, want retried as %s", dl, r1)
	}
	if msg := call("DELETE", api2.url+"/v1/dlq/"+dead, "", 409)["error"]; !strings.Contains(fmt.Sprint(msg), "retried already") {
		t.Fatalf("drop of the retried dead letter: %v", msg)
	}
	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var codes []string
	rows, err := conn.Query(t.Context(), `select code from instruments order by code`)
	if err != nil {
		t.Fatal(err)
	}
	codes, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(codes, ",") != "dup,r1" {
		t.Fatalf("instruments %v, want dup and r1 only", codes)
	}
}

// TestPausedHolderLeavesNothingPending is the simplest schedule that left
// acknowledged writes in the Redis log for good (issue 19), under a
// steady load through two api processes: the lease holder is stopped
// with SIGSTOP past its lease's TTL (the standby takes over), continued,
// and killed with SIGKILL a second later. Before the claim checked the
// lease, the continued holder read new entries into its own pending list
// before it noticed the loss, and the new holder, which had taken over
// others' entries when its term began, never delivered them. Now the log
// drains, nothing stays pending, and every acknowledged write is applied
// once and in order.
func TestPausedHolderLeavesNothingPending(t *testing.T) {
	db := newDatabase(t)
	logName := fmt.Sprintf("paused-%d", rand.Uint32())
	api1 := startArgs(t, sharedArgs(t, db, logName, "api")...)
	api2 := startArgs(t, sharedArgs(t, db, logName, "api")...)
	holder := startArgs(t, sharedArgs(t, db, logName, "applier")...)
	waitLog(t, holder, "lease acquired")
	standby := startArgs(t, sharedArgs(t, db, logName, "applier")...)

	w := &writer{final: map[string]int64{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for range 8 {
		wg.Go(func() { w.run(client, []string{api1.url, api2.url}, stop) })
	}
	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	applied := func() int64 {
		var n int64
		if err := conn.QueryRow(t.Context(), "select count(*) from spool_applied").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, 30*time.Second, "the holder applying the load", func() bool { return applied() > 0 })
	if err := holder.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, standby, "lease acquired")
	taken := applied()
	waitFor(t, 30*time.Second, "the standby applying", func() bool { return applied() > taken })
	if err := holder.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The continued holder claims, or tries to, and finds its lease gone.
	waitLog(t, holder, "stepped down")
	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The scenario, not a wait: the load goes on a moment after the kill.
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	waitDrained(t, api1, standby)
	rc := redis.NewClient(&redis.Options{Addr: redisSrv.Addr})
	defer rc.Close()
	if p, err := rc.XPending(t.Context(), redislog.StreamKey(logName), redislog.GroupName).Result(); err != nil || p.Count != 0 {
		t.Fatalf("entries pending once the log drained: %+v, %v\n%s", p, err, streamState(logName))
	}
	checkPostgres(t, db, w)
}
