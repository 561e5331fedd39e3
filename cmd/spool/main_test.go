package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/leakcheck"
	"github.com/spoolgw/spool/internal/poll"
	"github.com/spoolgw/spool/internal/store/sqlite"
	"github.com/spoolgw/spool/internal/syncbuf"
	"github.com/spoolgw/spool/internal/testservers"
)

// binary is spool built once for the tests that run it as a real process.
var binary string

// Throwaway servers for the tests of several processes sharing Redis and
// PostgreSQL, started once; serversErr says why they are missing.
var (
	redisSrv   *testservers.Redis
	pgSrv      *testservers.Postgres
	serversErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spool-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "spool")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build spool: %v\n%s", err, out)
		os.Exit(1)
	}
	serversErr = startServers(dir)
	leakcheck.Main(m, func() {
		if redisSrv != nil {
			redisSrv.Stop()
		}
		if pgSrv != nil {
			pgSrv.Stop()
			os.RemoveAll(pgSrv.Dir)
		}
		os.RemoveAll(dir)
	})
}

func startServers(dir string) error {
	var err error
	if redisSrv, err = testservers.StartRedis(filepath.Join(dir, "redis")); err != nil {
		return err
	}
	pgDir, err := testservers.TempDir("spool-pg-")
	if err != nil {
		return err
	}
	pgSrv, err = testservers.StartPostgres(pgDir)
	return err
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is one running spool process.
type proc struct {
	cmd    *exec.Cmd
	url    string
	stderr *syncbuf.Buffer
	done   chan error
}

// stop sends SIGTERM and waits for a clean exit: intake stopped, the log
// drained, everything closed.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := <-p.done
	p.done <- nil
	if err != nil {
		t.Fatalf("spool exited with %v after SIGTERM\n%s", err, p.stderr)
	}
}

func start(t *testing.T, dataDir string, extra ...string) *proc {
	t.Helper()
	return startArgs(t, append([]string{"--data-dir", dataDir, "--schema", "../../examples/observatory.sql"}, extra...)...)
}

func startArgs(t *testing.T, extra ...string) *proc {
	t.Helper()
	addr := freeAddr(t)
	args := append([]string{"serve", "--listen", addr}, extra...)
	p := &proc{cmd: exec.Command(binary, args...), url: "http://" + addr, stderr: &syncbuf.Buffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	var exited error
	err := poll.Wait(20*time.Second, func() error {
		select {
		case exited = <-p.done:
			p.done <- exited
			return nil
		default:
		}
		res, err := http.Get(p.url + "/health")
		if err == nil {
			res.Body.Close()
		}
		return err
	})
	switch {
	case exited != nil:
		t.Fatalf("spool exited at start: %v\n%s", exited, p.stderr)
	case err != nil:
		t.Fatalf("spool did not start in 20 s: %v\n%s", err, p.stderr)
	}
	return p
}

// waitDrained polls /stats until the log is empty.
func waitDrained(t *testing.T, p *proc, others ...*proc) {
	t.Helper()
	err := poll.Wait(60*time.Second, func() error {
		res, err := http.Get(p.url + "/stats")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		var s struct {
			QueueDepth int64 `json:"queue_depth"`
		}
		if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
			return err
		}
		if s.QueueDepth != 0 {
			return fmt.Errorf("queue depth %d", s.QueueDepth)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("log not drained in 60 s (%v); where each process waits:\n%s", err, stacks(append([]*proc{p}, others...)))
	}
}

// stacks ends procs with SIGQUIT, which makes a Go program print the stack
// of every goroutine before it exits, and returns their logs: what a test
// that timed out shows of where they were waiting.
func stacks(procs []*proc) string {
	var b strings.Builder
	for i, p := range procs {
		p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case err := <-p.done:
			p.done <- err // for the test's cleanup
		case <-time.After(5 * time.Second):
		}
		fmt.Fprintf(&b, "--- process %d (%s):\n%s\n", i+1, strings.Join(p.cmd.Args[1:], " "), p.stderr)
	}
	return b.String()
}

type ack struct{ id, tx string }

// load posts inserts from writers goroutines until stop closes, and
// returns every write that got a 2xx.
func load(url string, writers int, round int, stop <-chan struct{}) []ack {
	var mu sync.Mutex
	var acked []ack
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"target":"r%d-w%d-%d","exposure_s":%d}`, round, w, n, n)
				res, err := client.Post(url+"/v1/tables/observations", "application/json", strings.NewReader(body))
				if err != nil {
					continue // the process is gone or going; not acknowledged
				}
				var r struct{ ID, TransactionID string }
				if res.StatusCode == http.StatusCreated && json.NewDecoder(res.Body).Decode(&struct {
					ID            *string `json:"id"`
					TransactionID *string `json:"transaction_id"`
				}{&r.ID, &r.TransactionID}) == nil {
					mu.Lock()
					acked = append(acked, ack{r.ID, r.TransactionID})
					mu.Unlock()
				}
				res.Body.Close()
			}
		}()
	}
	wg.Wait()
	return acked
}

// A spool under concurrent write load is killed with SIGKILL at a random
// moment, again and again; after the last restart and the drain, every
// write that got a 2xx is in the database exactly once.
func TestCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("crash loop runs real processes")
	}
	dir := t.TempDir()
	var acked []ack
	const rounds = 20
	for round := range rounds {
		// A small overlay in memory: backlogs spill to disk, and a kill
		// leaves the spill file behind for the next start.
		p := start(t, dir, "--overlay-memory", "50")
		stop := make(chan struct{})
		got := make(chan []ack)
		go func() { got <- load(p.url, 16, round, stop) }()
		time.Sleep(time.Duration(150+rand.IntN(500)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		p.done <- nil
		close(stop)
		a := <-got
		t.Logf("round %d: %d writes acknowledged before SIGKILL", round, len(a))
		acked = append(acked, a...)
	}
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged; the load did not run")
	}
	p := start(t, dir)
	waitDrained(t, p)
	p.stop(t)
	checkApplied(t, filepath.Join(dir, "spool.db"), acked)
}

// checkApplied opens the database spool drained into and checks that every
// acknowledged write is there, applied once, and none dead-lettered.
func checkApplied(t *testing.T, path string, acked []ack) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cat, err := st.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := cat.Table("observations")
	if err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, a := range acked {
		if _, found, err := st.Get(ctx, obs, a.id); err != nil || !found {
			missing++
			continue
		}
		if _, ok, err := st.Applied(ctx, a.tx); err != nil || !ok {
			t.Errorf("transaction %s: row present but not recorded in spool_applied (%v)", a.tx, err)
		}
		if dl, err := st.DeadLetter(ctx, a.tx); err == nil {
			t.Errorf("transaction %s dead-lettered: %s", a.tx, dl.Error)
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged writes are missing from the database", missing, len(acked))
	}
	t.Logf("%d acknowledged writes, all applied exactly once", len(acked))
}

// SIGTERM stops intake, drains the log into the database and exits 0.
func TestGracefulShutdownDrains(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, "--batch-size", "7")
	stop := make(chan struct{})
	got := make(chan []ack)
	go func() { got <- load(p.url, 8, 0, stop) }()
	time.Sleep(300 * time.Millisecond)
	p.stop(t)
	close(stop)
	acked := <-got
	if !strings.Contains(p.stderr.String(), "spool stopped") {
		t.Fatalf("no clean stop in the log:\n%s", p.stderr)
	}
	checkApplied(t, filepath.Join(dir, "spool.db"), acked)
}

func TestServeHelpAndBadFlags(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "serve", "--help").CombinedOutput()
	if err == nil {
		t.Fatal("--help must exit non-zero")
	}
	for _, want := range []string{"-listen", "-data-dir", "-database", "-schema", "-tables", "-batch-size", "-batch-timeout", "-applied-retention", "SPOOL_DATA_DIR"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("serve --help lacks %q:\n%s", want, out)
		}
	}
	cmd := exec.Command(binary, "serve", "--data-dir", t.TempDir(), "--listen", freeAddr(t))
	cmd.Env = append(os.Environ(), "SPOOL_BATCH_SIZE=many")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "SPOOL_BATCH_SIZE") {
		t.Fatalf("a bad SPOOL_BATCH_SIZE must fail naming it: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "serve", "--data-dir", t.TempDir(), "--database", "mysql://x").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--database") {
		t.Fatalf("an unknown database must fail naming the flag: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "serve", "--data-dir", t.TempDir(), "--applied-retention", "10m").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--applied-retention 10m0s: at least 1h0m0s") {
		t.Fatalf("a retention below an hour must fail naming the flag and the least: %v\n%s", err, out)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-min-replicas", "1"}, "--log-min-replicas needs a Redis --log"},
		{[]string{"--log-min-replicas", "-1"}, "-log-min-replicas: want a number of replicas"},
		{[]string{"--log", "redis-cluster://127.0.0.1:1,127.0.0.1:2", "--database", "postgres://127.0.0.1:1/x"}, "does not run on a Redis Cluster"},
	} {
		out, err := exec.Command(binary, append([]string{"serve", "--data-dir", t.TempDir(), "--listen", freeAddr(t)}, bad.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), bad.want) {
			t.Errorf("serve %q: %v; want a failure saying %q\n%s", bad.args, err, bad.want, out)
		}
	}
}
