package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// eventsFanout is how many subscribers the fan-out part of the events
// scenario holds open, and eventsFanoutRate the writes a second it sends
// them: each write is a delivery to every subscriber.
const (
	eventsFanout     = 1000
	eventsFanoutRate = 100
)

// eventsFloorRate caps the rate of the floor's hand-offs while spool
// carries the events scenario's load: enough for a p99 of thousands, few
// enough to add little load of their own.
const eventsFloorRate = 500

// events measures live events: at half the highest ingest rate, the time
// from each write's acknowledgement to its row message at a subscriber
// (SSE), beside the floor of the same hand-off without spool (a bare Redis
// XADD to a blocking XREAD with --servers, on the Redis spool uses; a
// bare HTTP POST → SSE hand-off on the embedded default) measured at the
// same time, under the same load, at up to eventsFloorRate; the floor
// alone follows, at the same rate as spool's writes. Then eventsFanout
// subscribers of one process and writes at eventsFanoutRate:
// deliveries/s against those offered, and the CPU of the deployment per
// delivery.
func (b *bench) events(ctx context.Context) error {
	d, err := b.env.deploy(ctx, "events", false, "--max-subscribers", fmt.Sprint(eventsFanout+10))
	if err != nil {
		return err
	}
	defer d.stop()
	target := d.url() + "/v1/tables/observations"
	lg := newLoadgen("events")
	var seq atomic.Int64
	rate, err := b.visibilityRate(ctx, lg, target, &seq)
	if err != nil {
		return err
	}

	// Acknowledgement → row message, one subscriber.
	subCtx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	pairs := newHandoffs()
	lg.onAck = func(a benchAck) { pairs.ack(a.TransactionID, a.at) }
	var closed atomic.Value
	var closes atomic.Int64
	sub, err := follow(subCtx, d.url()+"/v1/events?table=observations", func(typ string, data []byte) {
		if typ == "close" {
			closed.Store(string(data))
			closes.Add(1)
		}
		if typ != "row" {
			return
		}
		var m struct {
			TxID string `json:"transaction_id"`
		}
		if json.Unmarshal(data, &m) == nil {
			pairs.see(m.TxID, time.Now())
		}
	})
	if err != nil {
		return err
	}
	// The hub may still be resolving the writes of the rate measurement:
	// a write the subscriber sees marks it caught up, and the measurement
	// starts after it.
	if err := lg.post(ctx, target, seq.Add(1), http.StatusCreated); err != nil {
		return err
	}
	if _, missing := pairs.latencies(ctx, 30*time.Second); missing > 0 {
		return fmt.Errorf("events: the subscriber never saw a write of its own (closed: %v)", closed.Load())
	}
	pairs.reset()
	type floorRun struct {
		name string
		res  *result
		err  error
	}
	underLoad := make(chan floorRun, 1)
	go func() {
		name, res, err := b.eventsFloor(ctx, min(rate, eventsFloorRate))
		underLoad <- floorRun{name, res, err}
	}()
	got := lg.open(ctx, target, rate, b.cfg.duration, http.StatusCreated, &seq)
	loaded := <-underLoad
	if err := got.failed(fmt.Sprintf("open loop at %.0f/s", rate)); err != nil {
		return err
	}
	if loaded.err != nil {
		return loaded.err
	}
	lat, missing := pairs.latencies(ctx, 10*time.Second)
	if missing > 0 {
		return fmt.Errorf("%d of %d acknowledged writes never reached the subscriber (closed: %v)", missing, missing+len(lat), closed.Load())
	}
	stopSub()
	<-sub
	floorName, floor, err := b.eventsFloor(ctx, rate)
	if err != nil {
		return err
	}
	res := &result{lat: lat}
	if b.env.servers() {
		b.out.percentiles("events", fmt.Sprintf("ack → event at %.0f/s", rate), []int{50, 99}, res,
			loaded.name+" under the same load", loaded.res)
	} else {
		// A bare HTTP hand-off's event comes before its answer at the
		// client nearly always: no ratio to a floor of zero.
		b.out.percentiles("events", fmt.Sprintf("ack → event at %.0f/s", rate), []int{50, 99}, res, "", nil)
		b.out.percentiles("events", fmt.Sprintf("%s under the same load at %.0f/s", loaded.name, min(rate, eventsFloorRate)), []int{50, 99}, loaded.res, "", nil)
	}
	b.out.percentiles("events", fmt.Sprintf("%s alone at %.0f/s", floorName, rate), []int{50, 99}, floor, "", nil)
	b.out.print(figure{Scenario: "events", Figure: fmt.Sprintf("subscriber closed as slow at %.0f/s, and resumed", rate), Value: float64(closes.Load())})

	return b.eventsFanout(ctx, d)
}

// eventsFanout holds eventsFanout subscribers to one process and writes
// at eventsFanoutRate: deliveries/s and CPU per delivery.
func (b *bench) eventsFanout(ctx context.Context, d *deployment) error {
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	var delivered, closed atomic.Int64
	var lastClose atomic.Value
	var ended []<-chan struct{}
	for range eventsFanout {
		done, err := subscribe(subCtx, d.url()+"/v1/events?table=observations&exposure_s=gte.0", func(typ string, data []byte) {
			switch typ {
			case "row":
				delivered.Add(1)
			case "close":
				closed.Add(1)
				lastClose.Store(string(data))
			}
		})
		if err != nil {
			return err
		}
		ended = append(ended, done)
	}
	lg := newLoadgen("fanout")
	var seq atomic.Int64
	groups := d.cpuGroups()
	var cpu cpuMeter
	cpu.begin()
	start := time.Now()
	got := lg.open(ctx, d.url()+"/v1/tables/observations", eventsFanoutRate, b.cfg.duration, http.StatusCreated, &seq)
	if err := got.failed("fan-out writes"); err != nil {
		return err
	}
	want := seq.Load() * eventsFanout
	deadline := time.Now().Add(30 * time.Second)
	for delivered.Load() < want && time.Now().Before(deadline) {
		_ = sleepCtx(ctx, 20*time.Millisecond)
	}
	elapsed := time.Since(start)
	span, err := cpu.end(groups)
	stopSubs()
	for _, e := range ended {
		<-e
	}
	if err != nil {
		return err
	}
	n := delivered.Load()
	offered := float64(eventsFanoutRate * eventsFanout)
	b.out.print(figure{Scenario: "events", Figure: fmt.Sprintf("fan-out to %d subscribers, deliveries/s", eventsFanout),
		Value: float64(n) / elapsed.Seconds(), Unit: "1/s", Baseline: "offered", BaselineValue: offered})
	if n < want {
		b.out.print(figure{Scenario: "events", Figure: "fan-out deliveries missing", Value: float64(want - n)})
		fmt.Fprintf(b.stderr, "events: fan-out: %d subscribers closed, the last: %v\n", closed.Load(), lastClose.Load())
	}
	if span.used != nil && n > 0 {
		var all time.Duration
		for _, name := range groups.order() {
			all += span.used[name]
		}
		b.out.print(figure{Scenario: "events", Figure: "fan-out CPU per delivery, server side", Value: float64(all.Nanoseconds()) / 1e3 / float64(n), Unit: "µs"})
		b.out.print(figure{Scenario: "events", Figure: "fan-out CPU per delivery, subscribers (bench)", Value: float64(span.used[cpuBench].Nanoseconds()) / 1e3 / float64(n), Unit: "µs"})
	}
	return nil
}

// follow is subscribe that resumes with Last-Event-ID whenever its stream
// ends (closed as slow, say), until ctx ends; the channel closes then.
func follow(ctx context.Context, url string, fn func(typ string, data []byte)) (<-chan struct{}, error) {
	var last string
	track := func(typ, id string, data []byte) {
		if id != "" {
			last = id
		}
		fn(typ, data)
	}
	first, err := subscribeFrom(ctx, url, "", track)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-first
		for ctx.Err() == nil {
			next, err := subscribeFrom(ctx, url, last, track)
			if err != nil {
				_ = sleepCtx(ctx, 10*time.Millisecond)
				continue
			}
			<-next
		}
	}()
	return done, nil
}

// subscribe reads an SSE stream in the background, calling fn with each
// message's type and data, until ctx ends; the channel closes then. It
// returns once the subscription answered.
func subscribe(ctx context.Context, url string, fn func(typ string, data []byte)) (<-chan struct{}, error) {
	return subscribeFrom(ctx, url, "", func(typ, _ string, data []byte) { fn(typ, data) })
}

// subscribeFrom is subscribe resuming after cursor lastID, if set, and
// telling fn each message's cursor.
func subscribeFrom(ctx context.Context, url, lastID string, fn func(typ, id string, data []byte)) (<-chan struct{}, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: subscribe: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		res.Body.Close()
		return nil, fmt.Errorf("bench: subscribe: %s: %s", res.Status, bytes.TrimSpace(b))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer res.Body.Close()
		r := bufio.NewReaderSize(res.Body, 4096)
		var typ, id string
		for {
			line, err := r.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				// A long line (a snapshot): its type is all we need.
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = r.ReadSlice('\n')
				}
				if err == nil {
					fn(typ, id, nil)
					continue
				}
			}
			if err != nil {
				return
			}
			switch {
			case bytes.HasPrefix(line, []byte("event: ")):
				typ = strings.TrimSpace(string(line[7:]))
			case bytes.HasPrefix(line, []byte("id: ")):
				id = strings.TrimSpace(string(line[4:]))
			case bytes.HasPrefix(line, []byte("data: ")):
				fn(typ, id, line[6:])
			}
		}
	}()
	return done, nil
}

// eventsFloor measures the least a hand-off from a write to a subscriber
// takes here, at rate: with --servers a bare XADD to a Redis stream read
// by a blocking XREAD, else a bare HTTP POST → SSE hand-off (sseFloor).
func (b *bench) eventsFloor(ctx context.Context, rate float64) (string, *result, error) {
	var mu sync.Mutex
	var lat []time.Duration
	record := func(sent time.Time) {
		d := time.Since(sent)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
	}
	if !b.env.servers() {
		return sseFloor(ctx, rate, b.cfg.duration)
	}
	rc, err := b.env.redisClient("events floor")
	if err != nil {
		return "", nil, err
	}
	defer rc.Close()
	stream := fmt.Sprintf("bench:events:%d", time.Now().UnixNano())
	defer rc.Del(context.Background(), stream)
	readCtx, stopRead := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := "$"
		for readCtx.Err() == nil {
			res, err := rc.XRead(readCtx, &redis.XReadArgs{Streams: []string{stream, last}, Count: 1000, Block: 250 * time.Millisecond}).Result()
			if err != nil {
				continue
			}
			for _, m := range res[0].Messages {
				if ns, ok := m.Values["t"].(string); ok {
					var n int64
					fmt.Sscan(ns, &n)
					record(time.Unix(0, n))
				}
				last = m.ID
			}
		}
	}()
	// The reader is blocked on the stream before the first XADD.
	_ = sleepCtx(ctx, 50*time.Millisecond)
	r := openFn(ctx, rate, b.cfg.duration, func(ctx context.Context) error {
		return rc.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"t", time.Now().UnixNano()}}).Err()
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(lat)
		mu.Unlock()
		if n >= r.n || time.Now().After(deadline) {
			break
		}
		_ = sleepCtx(ctx, 10*time.Millisecond)
	}
	stopRead()
	<-done
	if err := r.failed("Redis XADD → XREAD"); err != nil {
		return "", nil, err
	}
	return "Redis XADD → XREAD", &result{lat: lat}, nil
}

// sseFloor measures, at rate for d, the embedded shape's floor of live
// events: a write POSTed over loopback (by the load generator spool's
// writes come from) to a server that answers 201 and then sends it at
// once as a Server-Sent Event to one subscriber (an SSE stream of the
// same server, read by the bench), and nothing else; the time from each
// answer at the client to its event at the subscriber, as spool's
// acknowledgement → event is measured.
func sseFloor(ctx context.Context, rate float64, d time.Duration) (string, *result, error) {
	const name = "HTTP POST → SSE"
	var mu sync.Mutex
	subs := map[chan string]struct{}{}
	var ids atomic.Int64
	url, stop, err := serveLocal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			// Acknowledged first, then handed to the subscriber.
			id := fmt.Sprint(ids.Add(1))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"transaction_id":%q}`, id)
			_ = http.NewResponseController(w).Flush()
			mu.Lock()
			for ch := range subs {
				select {
				case ch <- id:
				default: // a floor never waits for its subscriber
				}
			}
			mu.Unlock()
			return
		}
		ch := make(chan string, 4096)
		mu.Lock()
		subs[ch] = struct{}{}
		mu.Unlock()
		defer func() { mu.Lock(); delete(subs, ch); mu.Unlock() }()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case id := <-ch:
				if _, err := fmt.Fprintf(w, "event: row\ndata: %s\n\n", id); err != nil || rc.Flush() != nil {
					return
				}
			}
		}
	}))
	if err != nil {
		return "", nil, err
	}
	defer stop()
	pairs := newHandoffs()
	subCtx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	sub, err := subscribe(subCtx, url+"/events", func(_ string, data []byte) { pairs.see(string(data), time.Now()) })
	if err != nil {
		return "", nil, err
	}
	lg := newLoadgen("sse-floor")
	lg.onAck = func(a benchAck) { pairs.ack(a.TransactionID, a.at) }
	var seq atomic.Int64
	r := lg.open(ctx, url+"/write", rate, d, http.StatusCreated, &seq)
	lat, _ := pairs.latencies(ctx, 5*time.Second) // a floor may drop an event: the rest count
	stopSub()
	<-sub
	if err := r.failed(name); err != nil {
		return "", nil, err
	}
	return name, &result{lat: lat}, nil
}

// handoffs pairs each write's acknowledgement at the client with its
// event at a subscriber, by id.
type handoffs struct {
	mu          sync.Mutex
	acked, seen map[string]time.Time
}

func newHandoffs() *handoffs {
	return &handoffs{acked: map[string]time.Time{}, seen: map[string]time.Time{}}
}

func (h *handoffs) ack(id string, at time.Time) { h.mu.Lock(); h.acked[id] = at; h.mu.Unlock() }
func (h *handoffs) see(id string, at time.Time) { h.mu.Lock(); h.seen[id] = at; h.mu.Unlock() }

// reset forgets every write so far.
func (h *handoffs) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.acked)
	clear(h.seen)
}

// latencies waits up to timeout for the event of every acknowledged
// write, and returns the time from each acknowledgement to its event (0
// when the event came first) and how many events never came.
func (h *handoffs) latencies(ctx context.Context, timeout time.Duration) ([]time.Duration, int) {
	deadline := time.Now().Add(timeout)
	for {
		h.mu.Lock()
		var lat []time.Duration
		for id, a := range h.acked {
			if s, ok := h.seen[id]; ok {
				lat = append(lat, max(0, s.Sub(a)))
			}
		}
		missing := len(h.acked) - len(lat)
		h.mu.Unlock()
		if missing == 0 || time.Now().After(deadline) || sleepCtx(ctx, 20*time.Millisecond) != nil {
			return lat, missing
		}
	}
}
