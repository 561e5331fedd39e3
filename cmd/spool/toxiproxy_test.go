package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
)

// startToxiproxy runs a Toxiproxy server in this test process: its HTTP API
// on a loopback port, driven through its own client as a deployment's
// tests would drive a separate toxiproxy-server.
func startToxiproxy(t *testing.T) *toxiclient.Client {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Routes(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Collection.Clear(); err != nil {
			t.Errorf("stop toxiproxy's proxies: %v", err)
		}
		_ = hs.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("toxiproxy api: %v", err)
		}
	})
	return toxiclient.NewClient(ln.Addr().String())
}

// throughProxy returns db's URL with its host and port replaced by addr.
func throughProxy(t *testing.T, db, addr string) (upstream, proxied string) {
	t.Helper()
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	upstream, u.Host = u.Host, addr
	return upstream, u.String()
}

// TestNetworkFaults puts Toxiproxy between spool (local log) and its
// PostgreSQL and, while a steady load of inserts and updates flows, makes
// the network slow (latency), then swallow every byte (timeout: a black
// hole, where the applier must cut off its hung attempts), then reset
// every connection (reset_peer), one after the other. Every write is
// answered 2xx throughout; once the toxics are removed everything is
// applied, once, in order, and nothing is dead-lettered.
func TestNetworkFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("network faults run real processes")
	}
	db := newDatabase(t)
	tp := startToxiproxy(t)
	upstream, _ := throughProxy(t, db, "")
	proxy, err := tp.CreateProxy("postgres", "127.0.0.1:0", upstream)
	if err != nil {
		t.Fatal(err)
	}
	_, proxied := throughProxy(t, db, proxy.Listen)
	// Attempts cut off after 2 s: the black hole must show as an applier
	// backing off, not as one attempt hanging for as long as it lasts.
	p := startArgs(t, "--data-dir", t.TempDir(), "--database", proxied, "--apply-timeout", "2s")

	ctx := context.Background()
	direct, err := pgx.Connect(ctx, db) // the test's own view, around the proxy
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	applied := func() int {
		var n int
		if err := direct.QueryRow(ctx, "select count(*) from spool_applied").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	l := newRowLoad("toxic", 3, 10*time.Millisecond)
	stop := make(chan struct{})
	l.start(p.url, 4, stop)
	time.Sleep(2 * time.Second)

	type toxic struct {
		name, kind, stream string
		attrs              toxiclient.Attributes
	}
	phases := []struct {
		name   string
		toxics []toxic
		cutOff bool // attempts hang: the applier must cut them off
	}{
		{"latency 100±50 ms each way", []toxic{
			{"slow-up", "latency", "upstream", toxiclient.Attributes{"latency": 100, "jitter": 50}},
			{"slow-down", "latency", "downstream", toxiclient.Attributes{"latency": 100, "jitter": 50}},
		}, false},
		{"timeout 0: every byte swallowed, connections held open", []toxic{
			{"blackhole", "timeout", "upstream", toxiclient.Attributes{"timeout": 0}},
		}, true},
		{"reset_peer: every connection reset as data arrives", []toxic{
			{"reset", "reset_peer", "upstream", toxiclient.Attributes{"timeout": 0}},
		}, false},
	}
	const phaseLength = 5 * time.Second
	hc := &http.Client{Timeout: 5 * time.Second}
	type window struct {
		name     string
		from, to time.Time
		applied  int
	}
	var windows []window
	for _, ph := range phases {
		for _, tx := range ph.toxics {
			if _, err := proxy.AddToxic(tx.name, tx.kind, tx.stream, 1, tx.attrs); err != nil {
				t.Fatalf("add toxic %s: %v", tx.name, err)
			}
		}
		w := window{name: ph.name, from: time.Now()}
		a0 := applied()
		if ph.cutOff {
			// A hung attempt shows on /readyz as an applier backing
			// off, within the attempt timeout and one backoff.
			// It comes right after a phase that applied, so the
			// applier is not already waiting out a long backoff.
			waitFor(t, 3*phaseLength, "/readyz to show the hung attempt cut off", func() bool {
				status, body, err := getJSON(hc, p.url+"/readyz")
				return err == nil && status == http.StatusServiceUnavailable && strings.Contains(fmt.Sprint(body), "cut off")
			})
		}
		time.Sleep(time.Until(w.from.Add(phaseLength)))
		for _, tx := range ph.toxics {
			if err := proxy.RemoveToxic(tx.name); err != nil {
				t.Fatalf("remove toxic %s: %v", tx.name, err)
			}
		}
		w.to, w.applied = time.Now(), applied()-a0
		windows = append(windows, w)
	}
	healed := time.Now()
	waitFor(t, 60*time.Second, "/readyz 200 after the toxics are removed", func() bool {
		status, _, err := getJSON(hc, p.url+"/readyz")
		return err == nil && status == http.StatusOK
	})
	t.Logf("applying again %v after the last toxic was removed", time.Since(healed).Round(time.Millisecond))
	time.Sleep(time.Second)
	close(stop)
	l.wait()
	waitDrained(t, p)

	failed := 0
	for _, w := range windows {
		tl := l.tally(w.from, w.to)
		failed += tl.failed()
		t.Logf("%s: %v; %d transactions applied meanwhile", w.name, tl, w.applied)
	}
	all := l.tally(time.Time{}, time.Time{})
	t.Logf("whole run: %v", all)
	if all.failed() > 0 {
		t.Errorf("%d writes not answered 2xx; want none (errors %q)\n%s", all.failed(), all.errs, logLines(p, "write refused", 3))
	}
	if windows[0].applied == 0 {
		t.Error("nothing was applied through the slow network")
	}
	if !strings.Contains(p.stderr.String(), "database recovered") {
		t.Errorf("the applier never logged a recovery:\n%s", p.stderr)
	}
	l.checkRows(t, db)
}
