package api_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/api"
	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/events"
	"github.com/spoolgw/spool/internal/pipeline"
	"github.com/spoolgw/spool/internal/store/postgres"
	"github.com/spoolgw/spool/internal/txlog/redislog"
)

// redisNode is one spool process of the Redis shape: its own log client,
// gateway, hub and HTTP server over the shared log and database.
type redisNode struct {
	url string
	hub *events.Hub
}

// startRedisNode starts a process on log name in front of st; with
// applies, it runs the applier, which writes settled states to the
// events stream.
func startRedisNode(t *testing.T, st *postgres.Store, name string, applies bool) *redisNode {
	t.Helper()
	ctx := t.Context()
	cat := catalogOf(t, st)
	lg, err := redislog.Open(ctx, redislog.Config{URL: redisSrv.URL, Name: name, Normalize: cat.Normalize}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pc := pipeline.Config{Store: st, Catalog: cat, Log: lg, Shared: lg.Overlay(), SharedKeys: lg, EventStream: lg,
		Events: &events.Config{Heartbeat: 100 * time.Millisecond}}
	if applies {
		pc.Applier = &applier.Config{LogName: name, Lease: lg.Lease(redislog.LeaseConfig{})}
	}
	p := build(t, pc)
	if err := p.Events.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.Applier != nil {
		if err := p.Applier.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(api.New(p.Gateway, p.Queue, nil, api.Config{Events: p.Events}, nil))
	t.Cleanup(func() {
		p.Events.CloseAll("test over")
		srv.Close()
		if p.Applier != nil {
			p.Applier.Stop()
		}
		p.Events.Stop()
		lg.Close()
	})
	return &redisNode{url: srv.URL, hub: p.Events}
}

func post(t *testing.T, url, body string) map[string]any {
	t.Helper()
	e := &env{t: t, srv: &httptest.Server{URL: url}}
	return e.must(http.StatusCreated, "POST", "/v1/tables/observations", body).body
}

// TestEventsAcrossProcesses: on the Redis shape a write through process A
// reaches a subscriber of process B, with its transaction's states (which
// A settles); a cursor of A's resumes on B, and on a process started after
// it (from the events stream), with exactly what was missed.
func TestEventsAcrossProcesses(t *testing.T) {
	st, _, _ := newPostgres(t)
	defer st.Close()
	name := fmt.Sprintf("events-%d", rand.Uint32())
	a := startRedisNode(t, st, name, true)
	b := startRedisNode(t, st, name, false)

	first := post(t, a.url, `{"target":"M31"}`)
	tx := first["transaction_id"].(string)
	sub := openSSE(t, b.url+"/v1/events?table=observations&target=eq.M31&transaction="+tx, "")
	defer sub.close()
	snap := sub.next(t, 5*time.Second)
	if snap.Type != events.TypeSnapshot || len(snap.Data["rows"].([]any)) != 1 {
		t.Fatalf("snapshot on B: %v", snap)
	}
	start := time.Now()
	second := post(t, a.url, `{"target":"M31"}`)
	post(t, a.url, `{"target":"M42"}`) // excluded
	// The second write's row, and the first transaction's states, settled
	// by A and relayed through the stream to B: from its state when the
	// subscription began (sent after the snapshot; A may have settled it
	// already) to replicated, each once, in order. B's hub may not have
	// read the first write's event when the subscription began: its row
	// may come again, after the snapshot that has it (rows are whole, so
	// that is harmless).
	var states []string
	seen := false
	deadline := time.Now().Add(15 * time.Second)
	for !seen || len(states) == 0 || states[len(states)-1] != "replicated" {
		m := sub.next(t, time.Until(deadline))
		switch m.Type {
		case events.TypeTransaction:
			if m.Data["transaction_id"] == tx {
				states = append(states, m.Data["state"].(string))
			}
		case events.TypeRow:
			id, row := rowOf(t, m)
			if id == first["id"] {
				continue
			}
			if seen || id != second["id"] || row["target"] != "M31" {
				t.Fatalf("row on B: %s %v", id, row)
			}
			seen = true
			t.Logf("write through A seen by B's subscriber after %v", time.Since(start))
		}
	}
	order := map[string]int{"queued": 1, "applied": 2, "replicated": 3}
	for i := 1; i < len(states); i++ {
		if order[states[i]] <= order[states[i-1]] {
			t.Fatalf("the first transaction's states on B: %v, want each once, in order", states)
		}
	}

	// A subscriber of A goes away after one row; writes go on; it resumes
	// on B, then on a process started meanwhile, whose history is empty.
	onA := openSSE(t, a.url+"/v1/events?table=observations", "")
	onA.next(t, 5*time.Second)
	var want []string
	for i := range 30 {
		want = append(want, post(t, a.url, fmt.Sprintf(`{"target":"T%d"}`, i))["id"].(string))
	}
	// A change already in the snapshot may come again first (rows are
	// whole): the first of the 30 must be the first row that is new.
	isNew := map[string]bool{}
	for _, id := range want {
		isNew[id] = true
	}
	m := onA.next(t, 5*time.Second)
	for id, _ := rowOf(t, m); !isNew[id]; id, _ = rowOf(t, m) {
		m = onA.next(t, 5*time.Second)
	}
	if id, _ := rowOf(t, m); id != want[0] {
		t.Fatalf("first new row on A: %s, want %s", id, want[0])
	}
	onA.close()
	c := make([]*redisNode, 0, 1)
	c = append(c, startRedisNode(t, st, name, false)) // history empty: resumes from the stream
	got := []string{want[0]}
	last := m.Cursor
	for _, node := range []*redisNode{b, c[0]} {
		r := openSSE(t, node.url+"/v1/events?table=observations", last)
		for range 14 {
			m := r.next(t, 10*time.Second)
			id, _ := rowOf(t, m)
			got = append(got, id)
			last = m.Cursor
		}
		r.close()
	}
	r := openSSE(t, c[0].url+"/v1/events?table=observations", last)
	defer r.close()
	m = r.next(t, 10*time.Second)
	id, _ := rowOf(t, m)
	got = append(got, id)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resumed across processes:\n got %v\nwant %v", got, want)
	}
}
