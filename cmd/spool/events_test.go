package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/events"
)

// follower subscribes to live events of observations and, when its
// stream breaks, resumes on the next process with its last cursor. It
// keeps every row id in the order received.
type follower struct {
	mu      sync.Mutex
	ids     []string
	seen    map[string]int
	last    string
	resumed int
	err     error
}

func (f *follower) run(ctx context.Context, urls []string) {
	for i := 0; ctx.Err() == nil; i++ {
		f.stream(ctx, urls[min(i, len(urls)-1)])
		f.mu.Lock()
		f.resumed++
		f.mu.Unlock()
	}
}

// stream reads one connection until it ends.
func (f *follower) stream(ctx context.Context, url string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/events?table=observations", nil)
	f.mu.Lock()
	if f.last != "" {
		req.Header.Set("Last-Event-ID", f.last)
	}
	f.mu.Unlock()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	var typ, id string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: ") && typ == events.TypeRow:
			var m struct{ ID string }
			if err := json.Unmarshal([]byte(line[6:]), &m); err != nil {
				f.fail(fmt.Errorf("row %q: %w", line, err))
				return
			}
			f.mu.Lock()
			if f.last != "" {
				prev, _ := events.ParseCursor(f.last)
				cur, _ := events.ParseCursor(id)
				if cur.Compare(prev) <= 0 {
					f.err = fmt.Errorf("cursor %s after %s", id, f.last)
				}
			}
			f.ids = append(f.ids, m.ID)
			f.seen[m.ID]++
			f.last = id
			f.mu.Unlock()
		case strings.HasPrefix(line, "data: ") && typ == events.TypeReset:
			f.fail(fmt.Errorf("reset after %s: %s", f.last, line))
		case strings.HasPrefix(line, "data: ") && typ == events.TypeSnapshot:
			f.mu.Lock()
			if f.last == "" {
				f.last = id
			}
			f.mu.Unlock()
		}
	}
}

func (f *follower) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *follower) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ids)
}

// TestEventsSubscribersSurviveKill: subscribers of an api process that is
// SIGKILLed under them reconnect to another api process with their last
// cursors and get every acknowledged write once, in order: no gap.
func TestEventsSubscribersSurviveKill(t *testing.T) {
	db := newDatabase(t)
	name := fmt.Sprintf("events-%d", rand.Uint32())
	apiA := startArgs(t, sharedArgs(t, db, name, "api")...)
	apiB := startArgs(t, sharedArgs(t, db, name, "api")...)
	startArgs(t, sharedArgs(t, db, name, "applier")...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fs := make([]*follower, 3)
	var wg sync.WaitGroup
	for i := range fs {
		fs[i] = &follower{seen: map[string]int{}}
		wg.Go(func() { fs[i].run(ctx, []string{apiA.url, apiB.url}) })
	}
	waitFor(t, 10*time.Second, "the subscribers' snapshots", func() bool {
		for _, f := range fs {
			f.mu.Lock()
			ok := f.last != ""
			f.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})

	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		client := &http.Client{Timeout: 5 * time.Second}
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			res, err := client.Post(apiB.url+"/v1/tables/observations", "application/json", strings.NewReader(fmt.Sprintf(`{"target":"T%d"}`, n)))
			if err != nil {
				continue
			}
			var body struct{ ID string }
			_ = json.NewDecoder(res.Body).Decode(&body)
			res.Body.Close()
			if res.StatusCode == http.StatusCreated {
				mu.Lock()
				acked = append(acked, body.ID)
				mu.Unlock()
			}
		}
	}()
	waitFor(t, 20*time.Second, "rows to the subscribers of A", func() bool { return fs[0].count() >= 50 })
	if err := apiA.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the subscribers resumed on B, with rows after", func() bool {
		for _, f := range fs {
			f.mu.Lock()
			ok := f.resumed >= 1
			f.mu.Unlock()
			if !ok {
				return false
			}
		}
		return fs[0].count() >= 200
	})
	close(stop)
	<-writerDone
	mu.Lock()
	want := acked
	mu.Unlock()
	waitFor(t, 30*time.Second, "every acknowledged write at every subscriber", func() bool {
		for _, f := range fs {
			f.mu.Lock()
			n := 0
			for _, id := range want {
				if f.seen[id] > 0 {
					n++
				}
			}
			f.mu.Unlock()
			if n < len(want) {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	for i, f := range fs {
		if f.err != nil {
			t.Fatalf("subscriber %d: %v", i, f.err)
		}
		for id, n := range f.seen {
			if n > 1 {
				t.Fatalf("subscriber %d: row %s %d times", i, id, n)
			}
		}
		// In the order written: the one writer waits for each answer.
		pos := map[string]int{}
		for j, id := range f.ids {
			pos[id] = j
		}
		for j := 1; j < len(want); j++ {
			if pos[want[j-1]] >= pos[want[j]] {
				t.Fatalf("subscriber %d: %s came after %s", i, want[j-1], want[j])
			}
		}
		t.Logf("subscriber %d: %d rows, %d acknowledged writes, reconnected %d times", i, len(f.ids), len(want), f.resumed)
	}
}
