package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/api"
)

// outcomeWithin is how long the timeout tests wait for a cut-off that the
// configured timeouts (a fraction of a second) should bring at once.
const outcomeWithin = 15 * time.Second

// trickle opens a connection to srv, sends head, then calls next every
// 20 ms and writes what it returns until the server stops taking it or
// the test ends. It returns the connection.
func trickle(t *testing.T, srv *httptest.Server, head string, next func() string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if _, err := io.WriteString(conn, next()); err != nil {
				return
			}
		}
	}()
	return conn
}

// cutOff waits (up to outcomeWithin) for the server to answer or close
// conn, and returns the status it answered (0 for none) and how long it
// took.
func cutOff(t *testing.T, conn net.Conn, start time.Time) (int, time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(outcomeWithin))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	took := time.Since(start)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("the server neither answered nor closed the connection within %v", outcomeWithin)
	case err != nil:
		return 0, took // closed
	}
	res.Body.Close()
	return res.StatusCode, took
}

// A body sent a byte at a time, and a chunked body that never ends, are
// cut off by the body's read deadline: 408 (or a closed connection), and
// nothing appended.
func TestSlowBodiesCutOff(t *testing.T) {
	t.Parallel()
	const bodyTimeout = 300 * time.Millisecond
	e := setupWith(t, "", options{api: api.Config{BodyTimeout: bodyTimeout}})
	host := e.srv.Listener.Addr().String()
	for _, tc := range []struct {
		name string
		head string
		next func() string
	}{
		{"slow body", "POST /v1/tables/observations HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", func() string { return " " }},
		{"endless chunked body", "POST /v1/transactions HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n", func() string { return "1\r\n \r\n" }},
	} {
		start := time.Now()
		conn := trickle(t, e.srv, tc.head, tc.next)
		status, took := cutOff(t, conn, start)
		if status != 0 && status != http.StatusRequestTimeout {
			t.Errorf("%s: answered %d; want 408 or the connection closed", tc.name, status)
		}
		if took < bodyTimeout {
			t.Errorf("%s: cut off after %v, before the body timeout %v", tc.name, took, bodyTimeout)
		}
		t.Logf("%s: cut off after %v (body timeout %v), status %d", tc.name, took.Round(time.Millisecond), bodyTimeout, status)
	}
	if d := e.depth(); d != 0 {
		t.Fatalf("cut-off bodies appended %d transactions", d)
	}
}

// A client that asks for a large list and never reads it is cut off by
// the response's write deadline: the handler returns (its rows freed)
// while the client has read nothing, and the client then finds the
// answer truncated.
func TestClientThatNeverReadsCutOff(t *testing.T) {
	t.Parallel()
	const writeTimeout = 2 * time.Second
	e := setupWith(t, "", options{api: api.Config{WriteTimeout: writeTimeout}})
	// 10,000 rows of about 1 KiB: some 10 MiB, more than the sockets'
	// buffers hold.
	if err := e.st.Exec(t.Context(), `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
		INSERT INTO instruments (code, name) SELECT 'c' || i, printf('%.1000c', 'x') FROM n`); err != nil {
		t.Fatal(err)
	}
	done := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.srv.Config.Handler.ServeHTTP(w, r)
		done <- time.Now()
	}))
	t.Cleanup(srv.Close)
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := d.DialContext(context.Background(), "tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "GET /v1/tables/instruments?limit=10000 HTTP/1.1\r\nHost: %s\r\n\r\n", srv.Listener.Addr())
	select {
	case at := <-done:
		t.Logf("the handler of an unread 10 MiB list returned after %v (write timeout %v)", at.Sub(start).Round(time.Millisecond), writeTimeout)
	case <-time.After(outcomeWithin):
		t.Fatalf("the handler still writes to a client that reads nothing after %v", outcomeWithin)
	}
	conn.SetReadDeadline(time.Now().Add(outcomeWithin))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return // closed before the headers: cut off
	}
	n, err := io.Copy(io.Discard, res.Body)
	if err == nil {
		t.Fatalf("the client read the whole answer (%d bytes) after the cut-off", n)
	}
	if strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the connection stayed open after the cut-off: %v", err)
	}
	t.Logf("the client got %d bytes, then %v", n, err)
}

// More requests waiting for a state than MaxWaits get 503 at once.
func TestWaitsCapped(t *testing.T) {
	t.Parallel()
	e := setupWith(t, "", options{api: api.Config{MaxWaits: 1}})
	id := e.must(201, "POST", "/v1/tables/instruments", `{"code":"w","name":"x"}`).body["transaction_id"].(string)
	held := make(chan response, 1)
	go func() {
		// The probes below take the one slot for an instant each: a held
		// wait that arrived during one got 503, and tries again.
		for {
			r := e.do("GET", "/v1/transactions/"+id+"?wait=applied&timeout=20s", "")
			if r.status != http.StatusServiceUnavailable {
				held <- r
				return
			}
		}
	}()
	for deadline := time.Now().Add(outcomeWithin); ; {
		r := e.do("GET", "/v1/transactions/"+id+"?wait=applied&timeout=0s", "")
		if r.status == http.StatusServiceUnavailable && r.header.Get("Retry-After") != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a second wait with MaxWaits 1: %d %s; want 503", r.status, r.raw)
		}
	}
	e.startApplier()
	if r := <-held; r.status != 200 {
		t.Fatalf("the held wait: %d %s", r.status, r.raw)
	}
	e.must(200, "GET", "/v1/transactions/"+id+"?wait=applied&timeout=1s", "") // its slot is free again
}

// The rate limit counts each principal apart: one over its rate gets 429,
// another is not held.
func TestRateLimitPerPrincipal(t *testing.T) {
	t.Parallel()
	e, c := setupAuth(t, options{api: api.Config{RateLimit: api.RateLimit{Rate: 1, Burst: 1}}})
	if r := e.as(c.secret["writer"], "POST", "/v1/tables/instruments", `{"code":"a","name":"x"}`); r.status != 201 {
		t.Fatalf("first write: %d %s", r.status, r.raw)
	}
	if r := e.as(c.secret["writer"], "POST", "/v1/tables/instruments", `{"code":"b","name":"x"}`); r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("second write of the same principal: %d %s; want 429", r.status, r.raw)
	}
	if r := e.as(c.secret["obs-writer"], "POST", "/v1/tables/observations", `{"target":"M1"}`); r.status != 201 {
		t.Fatalf("another principal: %d %s", r.status, r.raw)
	}
	if r := e.as(c.secret["admin"], "POST", "/v1/dlq/retry?table=instruments", ""); r.status != 202 {
		t.Fatalf("admin's first retry: %d %s", r.status, r.raw)
	}
	if r := e.as(c.secret["admin"], "POST", "/v1/dlq/retry?table=instruments", ""); r.status != 429 {
		t.Fatalf("dead-letter retries are limited too: %d %s", r.status, r.raw)
	}
}
