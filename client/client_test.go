package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolgw/spool/client"
)

func newClient(t *testing.T, base, token string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(base, append([]client.Option{client.WithToken(token)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every write and read of the client against a real spool: rows,
// an atomic transaction with $refs, waits, filters, and the buffered
// writes read back before the database has them.
func TestWritesAndReads(t *testing.T) {
	t.Parallel()
	s := startSpool(t)
	ctx := t.Context()
	c := newClient(t, s.srv.URL, s.secret["writer"])

	ins, err := c.Insert(ctx, "observations", client.Values{"target": "M31", "exposure_s": 30})
	if err != nil || ins.ID == "" || ins.State != client.Queued {
		t.Fatalf("Insert: %+v %v", ins, err)
	}
	row, err := c.Get(ctx, "observations", ins.ID)
	if err != nil || row["target"] != "M31" || row["status"] != "planned" {
		t.Fatalf("Get after Insert: %v %v", row, err)
	}
	up, err := c.Update(ctx, "observations", ins.ID, client.Values{"status": "done"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(ctx, up.TransactionID, client.Applied)
	if err != nil || st.State != client.Replicated || st.AppliedAt.IsZero() || st.Principal != "token:writer" {
		t.Fatalf("Wait applied: %+v %v", st, err)
	}
	if st, err := c.Status(ctx, ins.TransactionID); err != nil || st.State != client.Replicated {
		t.Fatalf("Status: %+v %v", st, err)
	}
	if row, err := c.Get(ctx, "observations", ins.ID, client.FromDatabase()); err != nil || row["status"] != "done" {
		t.Fatalf("Get from the database: %v %v", row, err)
	}

	rc, err := c.Transaction(ctx,
		client.InsertOp("observations", client.Values{"target": "M42", "status": "running"}).Alias("obs"),
		client.InsertOp("frames", client.Values{"observation_id": client.Ref("obs"), "seq": 1}),
		client.InsertOp("frames", client.Values{"observation_id": client.Ref("obs"), "seq": 2}),
		client.InsertOp("frames", client.Values{"observation_id": client.Ref("obs"), "seq": 3}),
		client.UpdateOp("observations", client.Ref("obs"), client.Values{"exposure_s": 12.5}),
	)
	if err != nil || len(rc.IDs) != 5 || rc.Refs["obs"] != rc.IDs[0] || rc.IDs[4] != rc.IDs[0] {
		t.Fatalf("Transaction: %+v %v", rc, err)
	}
	obs := rc.Refs["obs"]
	frames, err := c.List(ctx, "frames", client.Eq("observation_id", obs), client.Gt("seq", 1), client.Order("seq", client.Desc), client.Limit(10))
	if err != nil || len(frames) != 2 || frames[0]["seq"] != json.Number("3") {
		t.Fatalf("List frames seq > 1 by seq desc: %v %v", frames, err)
	}
	running, err := c.List(ctx, "observations", client.In("status", "running", "paused"), client.IsNull("finished_at"), client.NotNull("exposure_s"))
	if err != nil || len(running) != 1 || running[0]["id"] != obs {
		t.Fatalf("List observations in (running, paused): %v %v", running, err)
	}
	if _, err := c.List(ctx, "observations", client.In("target", "a,b")); err == nil {
		t.Fatal("In with a comma in a value must be refused")
	}

	ups, err := c.Upsert(ctx, "instruments", client.Values{"code": "cam", "name": "Camera"})
	if err != nil || ups.ID != "cam" {
		t.Fatalf("Upsert: %+v %v", ups, err)
	}
	if _, err := c.Upsert(ctx, "instruments", client.Values{"code": "cam", "name": "Camera 2"}); err != nil {
		t.Fatal(err)
	}
	if row, err := c.Get(ctx, "instruments", "cam"); err != nil || row["name"] != "Camera 2" {
		t.Fatalf("Get after two upserts: %v %v", row, err)
	}
	del, err := c.Delete(ctx, "observations", ins.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, del.TransactionID, client.Replicated); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "observations", ins.ID); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get after Delete: %v; want ErrNotFound", err)
	}
}

// Dead letters through the client: listed by filter and page, shown,
// retried as is (fails again: Wait says ErrFailed), edited and retried
// (applies), dropped; Retry of a retried one is ErrConflict.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	s := startSpool(t)
	ctx := t.Context()
	c := newClient(t, s.srv.URL, s.secret["admin"])
	first, err := c.Insert(ctx, "instruments", client.Values{"code": "dup", "name": "first"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, first.TransactionID, client.Applied); err != nil {
		t.Fatal(err)
	}
	var dead []string
	for _, name := range []string{"a", "b", "c"} {
		rc, err := c.Insert(ctx, "instruments", client.Values{"code": "dup", "name": name})
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.Wait(ctx, rc.TransactionID, client.Applied)
		var fe *client.FailedError
		if !errors.Is(err, client.ErrFailed) || !errors.As(err, &fe) || fe.Status.State != client.Failed || st.Code == "" {
			t.Fatalf("Wait of a poison insert: %+v %v; want ErrFailed", st, err)
		}
		dead = append(dead, rc.TransactionID)
	}
	page, err := c.DeadLetters(ctx, client.DeadLetterFilter{Table: "instruments", Code: "SQLITE_CONSTRAINT", Limit: 2})
	if err != nil || len(page.DeadLetters) != 2 || page.After != dead[1] {
		t.Fatalf("first page: %+v %v", page, err)
	}
	page, err = c.DeadLetters(ctx, client.DeadLetterFilter{Table: "instruments", Limit: 2, After: page.After})
	if err != nil || len(page.DeadLetters) != 1 || page.After != "" || page.DeadLetters[0].Transaction.ID != dead[2] {
		t.Fatalf("second page: %+v %v", page, err)
	}
	dl, err := c.DeadLetter(ctx, dead[0])
	if err != nil || dl.Attempts != 1 || !strings.Contains(dl.Error, "UNIQUE") || dl.Transaction.Principal != "token:admin" {
		t.Fatalf("DeadLetter: %+v %v", dl, err)
	}
	again, err := c.Retry(ctx, dead[0])
	if err != nil || again.RetryOf != dead[0] || again.By != "token:admin" {
		t.Fatalf("Retry: %+v %v", again, err)
	}
	if _, err := c.Wait(ctx, again.TransactionID, client.Applied); !errors.Is(err, client.ErrFailed) {
		t.Fatalf("a retry without a fix fails again: %v", err)
	}
	if _, err := c.Retry(ctx, dead[0]); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("Retry of a retried dead letter: %v; want ErrConflict", err)
	}
	fixed, err := c.RetryEdited(ctx, dead[1], client.InsertOp("instruments", client.Values{"code": "fixed", "name": "b"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, fixed.TransactionID, client.Applied); err != nil {
		t.Fatalf("an edited retry applies: %v", err)
	}
	if err := c.Drop(ctx, dead[2]); err != nil {
		t.Fatal(err)
	}
	if dl, err := c.DeadLetter(ctx, dead[2]); err != nil || dl.DroppedBy != "token:admin" {
		t.Fatalf("after Drop: %+v %v", dl, err)
	}
	stats, err := c.Stats(ctx)
	if err != nil || stats.Accepted < 6 || stats.Failed < 4 || stats.Applier == nil || !stats.Applier.Running || !stats.Applier.HoldsLease {
		t.Fatalf("Stats: %+v %v", stats, err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

// Refusals are *client.Error with the status, spool's message and the
// operation at fault, and errors.Is tells them apart.
func TestTypedErrors(t *testing.T) {
	t.Parallel()
	s := startSpool(t)
	ctx := t.Context()
	w := newClient(t, s.srv.URL, s.secret["writer"])
	_, err := w.Transaction(ctx,
		client.InsertOp("observations", client.Values{"target": "ok"}),
		client.InsertOp("observations", client.Values{"target": 5}))
	var e *client.Error
	if !errors.As(err, &e) || e.StatusCode != 400 || e.Operation != 1 || !strings.Contains(e.Message, "target") || !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("a bad operation: %v; want a 400 naming operation 1", err)
	}
	if _, err := w.Update(ctx, "observations", "0190b5a0-0000-7000-8000-00000000abcd", client.Values{"status": "x"}); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("update of a missing row: %v; want ErrNotFound", err)
	}
	if _, err := newClient(t, s.srv.URL, "wrong").List(ctx, "observations"); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("a wrong token: %v; want ErrUnauthorized", err)
	}
	r := newClient(t, s.srv.URL, s.secret["reader"])
	if _, err := r.Insert(ctx, "instruments", client.Values{"code": "x", "name": "x"}); !errors.Is(err, client.ErrForbidden) || errors.Is(err, client.ErrNotFound) {
		t.Fatalf("a reader's write: %v; want ErrForbidden", err)
	}
	if _, err := w.Stats(ctx); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("Stats without admin: %v; want ErrForbidden", err)
	}
	if _, err := client.New("localhost:8080"); err == nil {
		t.Fatal("a base URL without a scheme must be refused")
	}
}

// flaky stands in front of spool: it answers 503 with Retry-After to the
// first n requests, then passes every request to spool; it records the
// Idempotency-Key of each.
type flaky struct {
	mu   sync.Mutex
	n    int
	keys []string
	srv  *httptest.Server
}

func newFlaky(t *testing.T, target string, n int) *flaky {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	f := &flaky{n: n}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.keys = append(f.keys, r.Header.Get(client.IdempotencyKeyHeader))
		refuse := len(f.keys) <= f.n
		f.mu.Unlock()
		if refuse {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"spool is full; retry later"}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// A write answered 503 twice is sent a third time after each Retry-After,
// with the same Idempotency-Key each time, and applies once.
func TestRetriesHonourRetryAfter(t *testing.T) {
	t.Parallel()
	s := startSpool(t)
	ctx := t.Context()
	f := newFlaky(t, s.srv.URL, 2)
	c := newClient(t, f.srv.URL, s.secret["writer"])
	start := time.Now()
	rc, err := c.Insert(ctx, "instruments", client.Values{"code": "r1", "name": "retried"})
	if err != nil {
		t.Fatalf("Insert through two 503s: %v", err)
	}
	if took := time.Since(start); took < 2*time.Second || took > 5*time.Second {
		t.Errorf("two Retry-After: 1 took %v; want 2 s to 3 s (plus jitter)", took)
	}
	f.mu.Lock()
	keys := append([]string(nil), f.keys...)
	f.mu.Unlock()
	if len(keys) != 3 || keys[0] == "" || keys[1] != keys[0] || keys[2] != keys[0] {
		t.Fatalf("Idempotency-Keys of the three attempts: %q; want one key, three times", keys)
	}
	if _, err := c.Wait(ctx, rc.TransactionID, client.Applied); err != nil {
		t.Fatal(err)
	}
	rows, err := c.List(ctx, "instruments", client.Eq("name", "retried"), client.FromDatabase())
	if err != nil || len(rows) != 1 {
		t.Fatalf("rows after the retried insert: %v %v; want one", rows, err)
	}
	// Another call gets another key.
	if _, err := c.Insert(ctx, "instruments", client.Values{"code": "r2", "name": "second"}); err != nil {
		t.Fatal(err)
	}
	own := client.WithIdempotencyKey(ctx, "my-key-1")
	if _, err := c.Insert(own, "instruments", client.Values{"code": "r3", "name": "third"}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var writes []string // reads carry none
	for _, k := range f.keys {
		if k != "" {
			writes = append(writes, k)
		}
	}
	if len(writes) != 5 || writes[3] == keys[0] || writes[4] != "my-key-1" {
		t.Fatalf("keys of the writes: %q; want a new key per call, and the one given", writes)
	}
}

// Retries end with the context: a spool that keeps answering 503 gets
// ErrUnavailable back at once when the context would end before the
// Retry-After, and a cancel ends the wait between attempts; reads carry
// no Idempotency-Key.
func TestRetriesBoundedByContext(t *testing.T) {
	t.Parallel()
	s := startSpool(t)
	f := newFlaky(t, s.srv.URL, 1000)
	c := newClient(t, f.srv.URL, s.secret["writer"])
	ctx, cancel := context.WithTimeout(t.Context(), 800*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Insert(ctx, "instruments", client.Values{"code": "x", "name": "x"})
	var e *client.Error
	if !errors.Is(err, client.ErrUnavailable) || !errors.As(err, &e) || e.RetryAfter != time.Second {
		t.Fatalf("Insert against endless 503s: %v; want ErrUnavailable with Retry-After 1s", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("gave up after %v; want at once (the context ends before the Retry-After)", took)
	}
	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	start = time.Now()
	if _, err := c.Delete(ctx, "instruments", "x"); !errors.Is(err, context.Canceled) || !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("Delete cancelled between attempts: %v; want context.Canceled and the last answer", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a cancel took %v to end the wait", took)
	}
	c0 := newClient(t, f.srv.URL, s.secret["writer"], client.WithMaxRetries(0))
	if _, err := c0.List(t.Context(), "instruments"); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("List without retries: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if last := f.keys[len(f.keys)-1]; last != "" {
		t.Fatalf("a read carried Idempotency-Key %q", last)
	}
}

// The example program runs against a real spool: it inserts, waits for
// the database and reads the row back.
func TestExampleInsertRuns(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs an example program")
	}
	s := startSpool(t)
	cmd := exec.CommandContext(t.Context(), "go", "run", "../examples/client-insert", "--url", s.srv.URL)
	cmd.Env = append(cmd.Environ(), "SPOOL_TOKEN="+s.secret["writer"])
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "applied") || !strings.Contains(string(out), "M31") {
		t.Fatalf("examples/client-insert: %v\n%s", err, out)
	}
}

// The client is all a program using spool gets: it imports none of
// spool's internal packages.
func TestImportsNothingInternal(t *testing.T) {
	t.Parallel()
	out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/spoolgw/spool/") && dep != "github.com/spoolgw/spool/client" {
			t.Errorf("package client imports %s", dep)
		}
	}
}
