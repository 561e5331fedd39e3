package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	spoolclient "github.com/spoolgw/spool/client"
	"github.com/spoolgw/spool/internal/poll"
)

// cutter forwards each request to spool, reads spool's whole answer (so
// the write is logged and acknowledged), and then cuts the client's
// connection without a byte of it: a timeout or a dropped link after spool
// logged the write. It remembers the answers it swallowed.
type cutter struct {
	target string
	mu     sync.Mutex
	eaten  []string
}

func (c *cutter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, c.target+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	res, err := http.DefaultClient.Do(req)
	if err == nil {
		answer, _ := io.ReadAll(res.Body)
		res.Body.Close()
		c.mu.Lock()
		c.eaten = append(c.eaten, string(answer))
		c.mu.Unlock()
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func (c *cutter) answers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.eaten...)
}

// insertLost inserts an observation of target through a cutter in front
// of url: spool logs it, the client never hears. It returns what spool
// answered.
func insertLost(t *testing.T, url, key, target string) string {
	t.Helper()
	cut := &cutter{target: url}
	front := httptest.NewServer(cut)
	defer front.Close()
	c, err := spoolclient.New(front.URL, spoolclient.WithMaxRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Insert(spoolclient.WithIdempotencyKey(t.Context(), key), "observations", spoolclient.Values{"target": target}); err == nil {
		t.Fatal("the client heard an answer the cutter swallowed")
	}
	eaten := cut.answers()
	if len(eaten) != 1 {
		t.Fatalf("spool answered %d times behind the cutter, want once", len(eaten))
	}
	return eaten[0]
}

// retryInsert sends the same insert, with the same key, to url.
func retryInsert(t *testing.T, url, key, target string) spoolclient.RowReceipt {
	t.Helper()
	c, err := spoolclient.New(url)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.Insert(spoolclient.WithIdempotencyKey(t.Context(), key), "observations", spoolclient.Values{"target": target})
	if err != nil {
		t.Fatalf("retry with key %s: %v", key, err)
	}
	return rc
}

// rowsOf counts the observations of target, buffered or applied, once
// the log has drained.
func rowsOf(t *testing.T, url, target string) int {
	t.Helper()
	c, err := spoolclient.New(url)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := c.List(t.Context(), "observations", spoolclient.Eq("target", target))
	if err != nil {
		t.Fatal(err)
	}
	return len(rows)
}

// TestRetryAfterLostAnswer: the answer to a logged write is lost; the
// client's retry with the same Idempotency-Key applies once and answers
// the first write's transaction. Embedded, across a SIGKILL and restart
// of spool between the two; on Redis, the retry through another api
// process.
func TestRetryAfterLostAnswer(t *testing.T) {
	t.Run("restart", func(t *testing.T) {
		dir := t.TempDir()
		p := start(t, dir)
		target := fmt.Sprintf("lost-%d", rand.Uint32())
		eaten := insertLost(t, p.url, "k-restart", target)
		p.cmd.Process.Kill() // the write is in the log; spool dies
		<-p.done
		p.done <- nil
		p = start(t, dir)
		rc := retryInsert(t, p.url, "k-restart", target)
		if !bytes.Contains([]byte(eaten), []byte(rc.TransactionID)) || !bytes.Contains([]byte(eaten), []byte(rc.ID)) {
			t.Fatalf("the retry answered %+v, the lost answer was %s", rc, eaten)
		}
		waitDrained(t, p)
		rc2 := retryInsert(t, p.url, "k-restart", target) // applied: the key is kept
		if rc2.TransactionID != rc.TransactionID {
			t.Fatalf("a retry after apply answered %+v, want %+v", rc2, rc)
		}
		if n := rowsOf(t, p.url, target); n != 1 {
			t.Fatalf("%d rows of %s after a lost answer and two retries, want 1", n, target)
		}
	})
	t.Run("redis", func(t *testing.T) {
		db := newDatabase(t)
		logName := fmt.Sprintf("lost-%d", rand.Uint32())
		api1 := startArgs(t, sharedArgs(t, db, logName, "api")...)
		api2 := startArgs(t, sharedArgs(t, db, logName, "api")...)
		startArgs(t, sharedArgs(t, db, logName, "applier")...)
		target := fmt.Sprintf("lost-%d", rand.Uint32())
		eaten := insertLost(t, api1.url, "k-redis", target)
		rc := retryInsert(t, api2.url, "k-redis", target)
		if !bytes.Contains([]byte(eaten), []byte(rc.TransactionID)) {
			t.Fatalf("the retry through the other api process answered %+v, the lost answer was %s", rc, eaten)
		}
		c, _ := spoolclient.New(api2.url)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if _, err := c.Wait(ctx, rc.TransactionID, spoolclient.Applied); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 10*time.Second, "the row readable through both api processes", func() bool {
			return rowsOf(t, api1.url, target) == 1 && rowsOf(t, api2.url, target) == 1
		})
	})
}
