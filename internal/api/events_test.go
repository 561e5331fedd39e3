package api_test

import (
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/events"
	"github.com/spoolgw/spool/internal/poll"
)

// setupEvents is spool on the embedded default serving live events, with
// fast heartbeats and server timeouts shorter than a stream lasts.
func setupEvents(t testing.TB, cfg events.Config) *env {
	t.Helper()
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 50 * time.Millisecond
	}
	return setupWith(t, "", options{events: &cfg, serverTimeout: 300 * time.Millisecond})
}

// insert writes an observation and returns its id.
func (e *env) insert(target string) string {
	e.t.Helper()
	r := e.must(http.StatusCreated, "POST", "/v1/tables/observations", fmt.Sprintf(`{"target":%q,"exposure_s":30}`, target))
	return r.body["id"].(string)
}

// rowOf returns a row message's id and row.
func rowOf(t testing.TB, m evMsg) (string, map[string]any) {
	t.Helper()
	if m.Type != events.TypeRow {
		t.Fatalf("want a row message, got %v", m)
	}
	row, _ := m.Data["row"].(map[string]any)
	return m.Data["id"].(string), row
}

// TestEventsSSE: a snapshot of the filtered rows, then each change to a
// row that matches, in order, and none of a row that never matched; the
// stream outlives the server's write timeout.
func TestEventsSSE(t *testing.T) {
	e := setupEvents(t, events.Config{})
	a := e.insert("M31")
	e.insert("M42")
	c := openSSE(t, e.srv.URL+"/v1/events?table=observations&target=eq.M31", "")
	defer c.close()
	snap := c.next(t, 5*time.Second)
	rows := snap.Data["rows"].([]any)
	if snap.Type != events.TypeSnapshot || len(rows) != 1 || rows[0].(map[string]any)["id"] != a {
		t.Fatalf("snapshot: %v", snap)
	}
	// Heartbeats for longer than the server's 300 ms write timeout.
	poll.Until(t, 5*time.Second, "heartbeats for a second", func() bool { return c.heartbeats.Load() >= 20 })

	e.insert("M42") // never matches: no event
	b := e.insert("M31")
	e.must(http.StatusAccepted, "PATCH", "/v1/tables/observations/"+a, `{"exposure_s":60}`)
	e.must(http.StatusAccepted, "DELETE", "/v1/tables/observations/"+b, "")
	e.must(http.StatusAccepted, "PATCH", "/v1/tables/observations/"+a, `{"target":"M33"}`) // leaves the filter

	want := []struct {
		id, op string
		check  func(row map[string]any) bool
	}{
		{b, "insert", func(r map[string]any) bool { return r["target"] == "M31" }},
		{a, "update", func(r map[string]any) bool { return r["exposure_s"] == 60.0 }},
		{b, "delete", func(r map[string]any) bool { return r == nil }},
		{a, "update", func(r map[string]any) bool { return r["target"] == "M33" }},
	}
	prev := snap.cursor(t)
	for i, w := range want {
		m := c.next(t, 5*time.Second)
		id, row := rowOf(t, m)
		if id != w.id || m.Data["op"] != w.op || !w.check(row) || m.Data["state"] != "queued" || m.Data["transaction_id"] == "" {
			t.Fatalf("message %d: want %s of %s, got %v", i, w.op, w.id, m.Data)
		}
		if cur := m.cursor(t); cur.Compare(prev) <= 0 {
			t.Fatalf("cursor %s not after %s", m.Cursor, prev)
		} else {
			prev = cur
		}
	}
	// A later insert that matches comes next: nothing came in between.
	d := e.insert("M31")
	if id, _ := rowOf(t, c.next(t, 5*time.Second)); id != d {
		t.Fatalf("got %s, want %s", id, d)
	}
}

// TestEventsWebSocket: the same messages as JSON text frames; a followed
// transaction's states, and a failed one's rows withdrawn.
func TestEventsWebSocket(t *testing.T) {
	e := setupEvents(t, events.Config{})
	r := e.must(http.StatusCreated, "POST", "/v1/tables/observations", `{"target":"M31"}`)
	id, tx := r.body["id"].(string), r.body["transaction_id"].(string)
	c := openWS(t, e.srv.URL+"/v1/events?table=frames&transaction="+tx)
	defer c.close()
	if m := c.next(t, 5*time.Second); m.Type != events.TypeSnapshot || m.Data["table"] != "frames" {
		t.Fatalf("first: %v", m)
	}
	if m := c.next(t, 5*time.Second); m.Type != events.TypeTransaction || m.Data["state"] != "queued" || m.Data["transaction_id"] != tx {
		t.Fatalf("second: %v", m)
	}
	poll.Until(t, 5*time.Second, "pings for a second", func() bool {
		return e.hub.Stats().Subscribers == 1 // pings are answered below the client; the stream lives on
	})
	e.startApplier()
	if m := c.nextOf(t, events.TypeTransaction, 10*time.Second); m.Data["state"] != "replicated" || m.Cursor == "" {
		t.Fatalf("followed transaction: %v", m)
	}
	// A frame of an observation that does not exist: queued, then
	// withdrawn when the database refuses it.
	bad := e.must(http.StatusCreated, "POST", "/v1/tables/frames", `{"observation_id":"0190b5a0-0000-7000-8000-000000000001","seq":1}`).body["id"].(string)
	good := e.must(http.StatusCreated, "POST", "/v1/tables/frames", fmt.Sprintf(`{"observation_id":%q,"seq":2}`, id)).body["id"].(string)
	// Its row is read when the hub resolves the write: null if the
	// database refused it by then.
	m := c.next(t, 5*time.Second)
	if got, _ := rowOf(t, m); got != bad || m.Data["state"] != "queued" {
		t.Fatalf("queued bad frame: %v", m.Data)
	}
	// The good frame's write and the bad one's withdrawal race (the
	// applier runs): either comes first, each once.
	var queued, withdrawn bool
	for !queued || !withdrawn {
		m := c.next(t, 10*time.Second)
		switch got, row := rowOf(t, m); {
		case got == good && row != nil && m.Data["state"] == "queued" && !queued:
			queued = true
		case got == bad && row == nil && m.Data["state"] == "failed" && !withdrawn:
			withdrawn = true
		default:
			t.Fatalf("want the good frame queued and the bad one withdrawn, got %v", m.Data)
		}
	}
}

// TestEventsResume: a subscriber that disconnects while writes go on and
// comes back with Last-Event-ID (or ?after=) gets exactly what it missed,
// in order: no gap, no duplicate.
func TestEventsResume(t *testing.T) {
	e := setupEvents(t, events.Config{})
	url := e.srv.URL + "/v1/events?table=observations"
	const total = 60
	var written []string
	var mu sync.Mutex
	c := openSSE(t, url, "")
	c.next(t, 5*time.Second) // snapshot
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range total {
			id := e.insert("M31")
			mu.Lock()
			written = append(written, id)
			mu.Unlock()
		}
	}()
	var got []string
	seen := map[string]bool{}
	var last events.Cursor
	read := func(c *evClient, n int) {
		for range n {
			m := c.next(t, 10*time.Second)
			id, _ := rowOf(t, m)
			if seen[id] {
				t.Fatalf("row %s sent twice", id)
			}
			seen[id] = true
			if cur := m.cursor(t); cur.Compare(last) <= 0 {
				t.Fatalf("cursor %s not after %s", cur, last)
			} else {
				last = cur
			}
			got = append(got, id)
		}
	}
	read(c, 10)
	c.close() // writes go on
	mu.Lock()
	behind := len(written) - len(got)
	mu.Unlock()
	c = openSSE(t, url, last.String())
	read(c, 15)
	c.close()
	c = openSSE(t, url+"&after="+last.String(), "")
	read(c, total-25)
	<-done
	c.close()
	if strings.Join(got, ",") != strings.Join(written, ",") {
		t.Fatalf("got %d rows in a different order or with gaps than the %d written", len(got), len(written))
	}
	t.Logf("first reconnect was %d writes behind", behind)
}

// TestEventsResumeReadsUnfollowedRows: the hub reads no rows of a table
// nobody follows; a subscriber that resumes from before such changes
// gets them with their rows, filtered as any other: an insert's as it
// left it (its values, which its message carries), an update's read then.
func TestEventsResumeReadsUnfollowedRows(t *testing.T) {
	e := setupEvents(t, events.Config{})
	url := e.srv.URL + "/v1/events?table=observations&target=eq.M31"
	c := openSSE(t, url, "")
	snap := c.next(t, 5*time.Second)
	c.close()
	poll.Until(t, 5*time.Second, "no subscriber", func() bool { return e.hub.Stats().Subscribers == 0 })
	a := e.insert("M31")
	e.insert("M42") // never matches
	e.must(http.StatusAccepted, "PATCH", "/v1/tables/observations/"+a, `{"exposure_s":90}`)
	from := snap.cursor(t)
	poll.Until(t, 5*time.Second, "the hub past the three writes", func() bool {
		head, err := events.ParseCursor(e.hub.Stats().Head)
		return err == nil && head.B >= from.B+3
	})
	c = openSSE(t, url, snap.Cursor)
	defer c.close()
	for i, want := range []struct {
		op       string
		exposure float64
	}{{"insert", 30}, {"update", 90}} {
		m := c.next(t, 5*time.Second)
		id, row := rowOf(t, m)
		if id != a || m.Data["op"] != want.op || row["target"] != "M31" || row["exposure_s"] != want.exposure {
			t.Fatalf("message %d: want the %s of %s with exposure_s %v, got %v", i, want.op, a, want.exposure, m.Data)
		}
	}
}

// TestEventsReset: a cursor older than the history kept, or of another
// run, gets a reset and a fresh snapshot, never a silent gap.
func TestEventsReset(t *testing.T) {
	e := setupEvents(t, events.Config{History: 8})
	url := e.srv.URL + "/v1/events?table=observations"
	c := openSSE(t, url, "")
	snap := c.next(t, 5*time.Second)
	c.close()
	for range 10 {
		e.insert("M31")
	}
	for _, cursor := range []string{snap.Cursor, "1-2-3"} {
		c = openSSE(t, url, cursor)
		if m := c.next(t, 5*time.Second); m.Type != events.TypeReset {
			t.Fatalf("cursor %s: want a reset, got %v", cursor, m)
		}
		if m := c.next(t, 5*time.Second); m.Type != events.TypeSnapshot || len(m.Data["rows"].([]any)) != 10 {
			t.Fatalf("cursor %s: want a snapshot of 10 rows, got %v", cursor, m)
		}
		c.close()
	}
	if r := e.do("GET", "/v1/events?table=observations&after=nonsense", ""); r.status != http.StatusBadRequest {
		t.Fatalf("bad cursor: %d", r.status)
	}
	if r := e.do("GET", "/v1/events", ""); r.status != http.StatusBadRequest {
		t.Fatalf("nothing to follow: %d", r.status)
	}
}

// TestEventsBurstReadsOnFromHistory: a burst larger than a subscriber's
// buffer (one transaction of 100 rows, published at once) does not close
// a subscriber that reads: it gets every row, in order, from the history,
// and then the changes after it from its buffer again.
func TestEventsBurstReadsOnFromHistory(t *testing.T) {
	e := setupEvents(t, events.Config{Buffer: 4})
	c := openSSE(t, e.srv.URL+"/v1/events?table=observations", "")
	defer c.close()
	c.next(t, 5*time.Second) // the snapshot
	var ops []string
	for i := range 100 {
		ops = append(ops, fmt.Sprintf(`{"op":"insert","table":"observations","values":{"target":"B%d"}}`, i))
	}
	var want []any
	for range 2 {
		r := e.must(http.StatusAccepted, "POST", "/v1/transactions", `{"operations":[`+strings.Join(ops, ",")+`]}`)
		want = append(want, r.body["ids"].([]any)...)
	}
	want = append(want, e.insert("M31"))
	for i, id := range want {
		m := c.next(t, 5*time.Second)
		if got, _ := rowOf(t, m); got != id {
			t.Fatalf("message %d: row %s, want %s", i, got, id)
		}
	}
	if s := e.hub.Stats(); s.SlowClosed != 0 || s.Subscribers != 1 {
		t.Fatalf("stats %+v: the subscriber was closed", s)
	}
}

// TestEventsStalledSubscriberDropped: a subscriber that stops reading is
// closed once it is further behind than the history reaches (its buffer
// filled long before), while writes go on at full rate and another
// subscriber gets every change. The write timeout is longer than the
// test: the history alone decides.
func TestEventsStalledSubscriberDropped(t *testing.T) {
	e := setupEvents(t, events.Config{Buffer: 8, History: 200, WriteTimeout: time.Minute})
	url := e.srv.URL + "/v1/events?table=observations"
	healthy := openSSE(t, url, "")
	defer healthy.close()
	healthy.next(t, 5*time.Second)

	// A client that sends the request and never reads, with a small
	// receive buffer so the server's writes block soon.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024) })
	}}
	conn, err := d.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/events?table=observations HTTP/1.1\r\nHost: x\r\n\r\n")
	poll.Until(t, 5*time.Second, "two subscribers", func() bool { return e.hub.Stats().Subscribers == 2 })

	meta := strings.Repeat("x", 4000)
	var written atomic.Int64
	var slowest atomic.Int64
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			r := e.do("POST", "/v1/tables/observations", fmt.Sprintf(`{"target":"M31","meta":{"pad":%q}}`, meta))
			if r.status != http.StatusCreated {
				panic(fmt.Sprintf("write: %d %s", r.status, r.raw))
			}
			if d := time.Since(start); d.Nanoseconds() > slowest.Load() {
				slowest.Store(d.Nanoseconds())
			}
			written.Add(1)
		}
	}()
	poll.Until(t, 60*time.Second, "the stalled subscriber closed", func() bool { return e.hub.Stats().SlowClosed >= 1 })
	atDrop := written.Load()
	poll.Until(t, 10*time.Second, "more writes after the drop", func() bool { return written.Load() >= atDrop+50 })
	close(stop)
	<-writerDone
	n := int(written.Load())
	for i := range n {
		if m := healthy.next(t, 10*time.Second); m.Type != events.TypeRow {
			t.Fatalf("healthy subscriber, message %d: %v", i, m)
		}
	}
	if s := e.hub.Stats(); s.SlowClosed != 1 || s.Subscribers != 1 {
		t.Fatalf("stats %+v: want the stalled subscriber alone closed", s)
	}
	t.Logf("%d writes, %d before the drop; slowest write %v", n, atDrop, time.Duration(slowest.Load()))
	if time.Duration(slowest.Load()) > 2*time.Second {
		t.Fatalf("a write took %v: the stalled subscriber held writers up", time.Duration(slowest.Load()))
	}
}

// TestEventsThousandSubscribers: 1,000 subscribers on one process each get
// every change; goroutines and heap stay bounded; one more gets 503.
func TestEventsThousandSubscribers(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections")
	}
	const n = 1000
	e := setupEvents(t, events.Config{MaxSubscribers: n, Heartbeat: time.Minute})
	url := e.srv.URL + "/v1/events?table=observations&target=eq.M31"
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	subs := make([]*evClient, n)
	for i := range subs {
		c, status := trySSEBuffer(t, url, "", 16)
		if c == nil {
			t.Fatalf("subscriber %d: status %d", i, status)
		}
		subs[i] = c
	}
	defer func() {
		for _, c := range subs {
			c.close()
		}
	}()
	for _, c := range subs {
		c.next(t, 10*time.Second)
	}
	if c, status := trySSE(t, url, ""); c != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("subscriber %d: status %d, want 503", n+1, status)
	}
	var ids []string
	for range 5 {
		ids = append(ids, e.insert("M31"))
	}
	for i, c := range subs {
		for _, id := range ids {
			if got, _ := rowOf(t, c.next(t, 20*time.Second)); got != id {
				t.Fatalf("subscriber %d: got %s, want %s", i, got, id)
			}
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	perSub := float64(runtime.NumGoroutine()-goroutines) / n
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d subscribers: %.1f goroutines each (client and server), heap +%d KiB (%d B each)", n, perSub, heap>>10, heap/n)
	if perSub > 6 || heap > n*100<<10 {
		t.Fatalf("%.1f goroutines per subscriber, heap +%d MiB", perSub, heap>>20)
	}
}
