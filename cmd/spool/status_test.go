package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/poll"
	"github.com/spoolgw/spool/internal/syncbuf"
)

// spool status against a real spool: the figures as text and as JSON
// (dead letters counted by table, the applier holding the lease, a
// drained log), exit 0 while ready and 1 when /readyz is not 200, and
// --watch refreshing until SIGINT.
func TestStatusCommand(t *testing.T) {
	t.Parallel()
	p := start(t, t.TempDir())
	post := func(path, body string) map[string]any {
		t.Helper()
		res, err := http.Post(p.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return out
	}
	post("/v1/tables/instruments", `{"code":"dup","name":"first"}`)
	waitDrained(t, p)
	bad := post("/v1/tables/instruments", `{"code":"dup","name":"again"}`)
	if res, err := http.Get(p.url + "/v1/transactions/" + bad["transaction_id"].(string) + "?wait=applied&timeout=10s"); err == nil {
		res.Body.Close()
	}

	out, err := exec.Command(binary, "status", "--url", p.url, "--json").Output()
	if err != nil {
		t.Fatalf("spool status --json: %v\n%s", err, out)
	}
	var snap snapshot
	if err := json.Unmarshal(out, &snap); err != nil {
		t.Fatalf("spool status --json printed %s: %v", out, err)
	}
	if !snap.Ready || snap.LogDepth != 0 || snap.DeadLetters["instruments"] != 1 || snap.Applier != "applying (holds the log's lease)" ||
		snap.DrainSeconds == nil || *snap.DrainSeconds != 0 || snap.ReplicaLagSeconds != nil || snap.AckToApplyP99 == nil || *snap.AckToApplyP99 <= 0 {
		t.Fatalf("spool status --json: %s", out)
	}

	out, err = exec.Command(binary, "status", "--url", p.url).Output()
	if err != nil {
		t.Fatalf("spool status: %v\n%s", err, out)
	}
	for _, want := range []string{": ready", "log             0 transactions", "writes in", "applied out", "ack → applied   p99 ",
		"time to drain   drained", "applier         applying", "no read replicas", "instruments          1", "no lanes"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("spool status lacks %q:\n%s", want, out)
		}
	}

	// Not ready: /readyz answers 503 (a stand-in in front of the real
	// spool for that route alone); the exit status says so.
	target, _ := url.Parse(p.url)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"unavailable","error":"applier is not running"}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	out, err = exec.Command(binary, "status", "--url", front.URL).Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "NOT READY: applier is not running") {
		t.Fatalf("spool status when not ready: %v; want exit 1\n%s", err, out)
	}
	if err := exec.Command(binary, "status", "--url", "http://"+freeAddr(t)).Run(); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("spool status of nothing: %v; want exit 2", err)
	}

	// --watch: a refresh every 2 s until SIGINT.
	var buf syncbuf.Buffer
	cmd := exec.Command(binary, "status", "--url", p.url, "--watch", "--json")
	cmd.Stdout = &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	err = poll.Wait(15*time.Second, func() error {
		if n := strings.Count(buf.String(), "\n"); n < 2 {
			return errors.New("fewer than two refreshes")
		}
		return nil
	})
	_ = cmd.Process.Signal(syscall.SIGINT)
	werr := cmd.Wait()
	if err != nil || werr != nil {
		t.Fatalf("spool status --watch: %v, exit %v\n%s", err, werr, buf.String())
	}
}
