package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/txlog/redislog"
)

// redisDownAnswerBound is the longest a write may wait for its answer while
// Redis is down: a refusal must come quickly, not after a hang.
const redisDownAnswerBound = 2 * time.Second

// TestRedisRestart crashes the Redis server (SIGKILL) and later stops it
// cleanly (SIGTERM), each time for 3 s, while an api process takes a steady
// load of inserts and updates and an applier process drains into
// PostgreSQL. Redis runs with appendonly yes, appendfsync always. While it
// is down every write is refused with 503 within redisDownAnswerBound, never
// left hanging; both processes reconnect by themselves and 2xx resume; after
// the drain no acknowledged write is lost, every row holds its last
// acknowledged update, nothing is applied twice or dead-lettered.
//
// It restarts the Redis server the package shares: it must not run in
// parallel with any test that uses it (see faults_test.go).
func TestRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts redis-server under load")
	}
	db := newDatabase(t)
	logName := fmt.Sprintf("restart-%d", rand.Uint32())
	api := startArgs(t, sharedArgs(t, db, logName, "api")...)
	applier := startArgs(t, sharedArgs(t, db, logName, "applier")...)
	redisDown := false
	t.Cleanup(func() {
		if t.Failed() && !redisDown {
			t.Logf("the log in Redis at the end:\n%s", streamState(logName))
		}
	})
	t.Cleanup(func() {
		if redisDown {
			if err := redisSrv.Start(); err != nil {
				t.Errorf("start redis-server again: %v", err)
			}
		}
	})

	l := newRowLoad("redis", 3, 10*time.Millisecond)
	stop := make(chan struct{})
	l.start(api.url, 4, stop)
	time.Sleep(3 * time.Second)

	hc := &http.Client{Timeout: 5 * time.Second}
	type outage struct {
		name         string
		down, up     time.Time
		resumedAfter time.Duration
		readyz       map[int]int // /readyz statuses while down
		reads        map[int]int // statuses of GETs of a row while down
		retryAfter   int         // 503s to those GETs with Retry-After
	}
	var outages []*outage
	for _, how := range []struct {
		name string
		stop func() error
	}{
		{"SIGKILL (crash)", func() error { redisSrv.Kill(); return nil }},
		{"SIGTERM (clean stop)", redisSrv.Stop},
	} {
		o := &outage{name: how.name, readyz: map[int]int{}, reads: map[int]int{}}
		var row string
		for id := range l.rows() {
			row = id
			break
		}
		o.down = time.Now()
		if err := how.stop(); err != nil {
			t.Fatal(err)
		}
		redisDown = true
		for time.Since(o.down) < 3*time.Second {
			status, _, _ := getJSON(hc, api.url+"/readyz")
			o.readyz[status]++
			// A read needs the overlay in Redis: it must be refused as
			// unavailable (503, Retry-After), never a 500.
			if res, err := hc.Get(api.url + "/v1/tables/observations/" + row); err == nil {
				o.reads[res.StatusCode]++
				if res.StatusCode == http.StatusServiceUnavailable && res.Header.Get("Retry-After") != "" {
					o.retryAfter++
				}
				res.Body.Close()
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err := redisSrv.Start(); err != nil {
			t.Fatal(err)
		}
		redisDown = false
		o.up = time.Now()
		waitFor(t, 30*time.Second, how.name+": writes acknowledged again", func() bool {
			return l.tally(o.up, time.Time{}).ok > 0
		})
		o.resumedAfter = time.Since(o.up)
		outages = append(outages, o)
		time.Sleep(3 * time.Second)
	}
	close(stop)
	l.wait()
	waitDrained(t, api, applier)

	for _, o := range outages {
		// Requests sent while Redis was down, and the second before: those
		// in flight when it went.
		tl := l.tally(o.down.Add(-time.Second), o.up)
		t.Logf("Redis %s, down %v: %v; /readyz while down: %v; GET of a row while down: %v; 2xx again %v after the restart",
			o.name, o.up.Sub(o.down).Round(time.Millisecond), tl, o.readyz, o.reads, o.resumedAfter.Round(time.Millisecond))
		for status, n := range o.reads {
			if status != http.StatusOK && status != http.StatusServiceUnavailable {
				t.Errorf("Redis %s: %d reads of a row answered %d while Redis was down; want 503 (or 200 before the first failure)", o.name, n, status)
			}
		}
		if o.reads[http.StatusServiceUnavailable] == 0 || o.retryAfter != o.reads[http.StatusServiceUnavailable] {
			t.Errorf("Redis %s: reads while down %v, %d of the 503s with Retry-After; want 503s, each with Retry-After", o.name, o.reads, o.retryAfter)
		}
		if tl.byStatus[http.StatusServiceUnavailable] == 0 {
			t.Errorf("Redis %s: no write was refused with 503 while Redis was down", o.name)
		}
		if o.readyz[http.StatusServiceUnavailable] == 0 {
			t.Errorf("Redis %s: /readyz never said 503 while Redis was down: %v", o.name, o.readyz)
		}
	}
	all := l.tally(time.Time{}, time.Time{})
	t.Logf("whole run: %v", all)
	for status, n := range all.byStatus {
		if status != http.StatusServiceUnavailable {
			t.Errorf("%d writes answered %d (0: no answer); every refusal must be a 503 (errors %q)\n%s", n, status, all.errs, logLines(api, "request failed", 3))
		}
	}
	// Logged once per outage and once per recovery, not once per refusal.
	refusedLines := strings.Count(api.stderr.String(), "write refused")
	recoveredLines := strings.Count(api.stderr.String(), "writes accepted again")
	t.Logf("the api's log: %d refusal lines, %d recovery lines, for %d refused writes", refusedLines, recoveredLines, all.byStatus[http.StatusServiceUnavailable])
	if refusedLines > len(outages) || recoveredLines < len(outages) {
		t.Errorf("the api logged %d refusals and %d recoveries for %d outages; want at most one refusal line (the rest summarised) and one recovery line each\n%s",
			refusedLines, recoveredLines, len(outages), logLines(api, "refused", 10))
	}
	if all.slowest > redisDownAnswerBound {
		t.Errorf("a write waited %v for its answer; want at most %v", all.slowest, redisDownAnswerBound)
	}
	l.checkRows(t, db)
}

// streamState describes the Redis stream of log logName: its length, its
// consumer group and what is pending in it, for a test that failed.
func streamState(logName string) string {
	opt, err := redis.ParseURL(redisSrv.URL)
	if err != nil {
		return err.Error()
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	stream := redislog.StreamKey(logName)
	var b strings.Builder
	for _, args := range [][]any{
		{"XLEN", stream}, {"XINFO", "GROUPS", stream}, {"XPENDING", stream, redislog.GroupName},
		{"XRANGE", stream, "-", "+", "COUNT", 3},
	} {
		v, err := rdb.Do(ctx, args...).Result()
		fmt.Fprintf(&b, "%v: %v %v\n", args, v, err)
	}
	return b.String()
}
