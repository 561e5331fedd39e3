package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// outageWarm is how long writes flow before the database goes down.
const outageWarm = time.Second

// memSample is one look at spool during the outage.
type memSample struct {
	at       time.Duration // since the database went down
	heap     int64         // Go heap in use (runtime HeapAlloc)
	rss      int64         // resident set of the process
	logBytes int64
	depth    int64
}

// outageScenario writes at a fixed rate while the database is down and
// samples spool's memory and log; then every write must reach the
// database once it is back.
func (b *bench) outageScenario(ctx context.Context) error {
	d, err := b.env.deploy(ctx, "outage", false)
	if err != nil {
		return err
	}
	defer d.stop()
	lg := newLoadgen("outage")
	var seq atomic.Int64
	loadDone := make(chan *result, 1)
	go func() {
		loadDone <- lg.open(ctx, d.url()+"/v1/tables/observations", b.cfg.outageRate, outageWarm+b.cfg.outage, http.StatusCreated, &seq)
	}()
	if err := sleepCtx(ctx, outageWarm); err != nil {
		return err
	}
	up, err := b.databaseDown(ctx, d)
	if err != nil {
		return err
	}
	samples, sampleErr := d.sampleMemory(ctx, b.cfg.sample, b.cfg.outage/10, loadDone, b.prof.heap)
	load := <-loadDone
	if err := up(); err != nil {
		return err
	}
	if sampleErr != nil {
		return sampleErr
	}
	if err := load.failed(fmt.Sprintf("writes at %.0f/s with the database down", b.cfg.outageRate)); err != nil {
		return err
	}
	if err := d.verify(ctx, lg.tag, int(seq.Load())); err != nil {
		return err
	}
	b.outageReport(load, samples)
	return nil
}

// databaseDown takes the database away: PostgreSQL's primary stopped, or
// (embedded) SQLite's write lock held by another connection. up brings it
// back.
func (b *bench) databaseDown(ctx context.Context, d *deployment) (up func() error, err error) {
	if b.env.servers() {
		if err := b.env.pg.StopPrimary(); err != nil {
			return nil, fmt.Errorf("stop the primary: %w", err)
		}
		return func() error {
			if err := b.env.pg.StartPrimary(); err != nil {
				return fmt.Errorf("start the primary again: %w", err)
			}
			return nil
		}, nil
	}
	if err := d.hold(ctx); err != nil {
		return nil, err
	}
	return func() error { return d.release(ctx) }, nil
}

// sampleMemory samples every interval until the load ends. With the first
// sample from early on, and with the last, it calls heap to keep a heap
// profile (--pprof), labelled outage-early and outage-end.
func (d *deployment) sampleMemory(ctx context.Context, every, early time.Duration, loadDone chan *result, heap func(context.Context, *spoolProc, string) error) ([]memSample, error) {
	start := time.Now()
	var out []memSample
	kept := false
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		s := memSample{at: time.Since(start)}
		var err error
		if s.heap, err = heapAlloc(ctx, d.api.pprofURL); err != nil {
			return out, err
		}
		if s.rss, err = rss(d.api.pid()); err != nil {
			return out, err
		}
		st, err := d.stats(ctx)
		if err != nil {
			return out, err
		}
		s.logBytes, s.depth = st.Log.Bytes, st.Log.Depth
		out = append(out, s)
		if !kept && s.at >= early {
			if err := heap(ctx, d.api, "outage-early"); err != nil {
				return out, err
			}
			kept = true
		}
		select {
		case r := <-loadDone:
			loadDone <- r
			return out, heap(ctx, d.api, "outage-end")
		case <-ctx.Done():
			return out, ctx.Err()
		case <-tick.C:
		}
	}
}

func (b *bench) outageReport(load *result, samples []memSample) {
	early := samples[0]
	for _, s := range samples {
		if s.at >= b.cfg.outage/10 {
			early = s
			break
		}
	}
	end := samples[len(samples)-1]
	at := fmt.Sprintf("at %s", early.at.Round(time.Second))
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	b.out.print(figure{Scenario: "outage", Figure: fmt.Sprintf("writes/s over a %s outage", b.cfg.outage), Value: load.perSecond(), Unit: "1/s", Baseline: "offered", BaselineValue: b.cfg.outageRate})
	b.out.percentiles("outage", "write latency", []int{50, 99}, load, "", nil)
	b.out.print(figure{Scenario: "outage", Figure: "heap at the end", Value: mib(end.heap), Unit: "MiB", Baseline: "heap " + at, BaselineValue: mib(early.heap)})
	b.out.print(figure{Scenario: "outage", Figure: "RSS at the end", Value: mib(end.rss), Unit: "MiB", Baseline: "RSS " + at, BaselineValue: mib(early.rss)})
	b.out.print(figure{Scenario: "outage", Figure: "log size at the end", Value: mib(end.logBytes), Unit: "MiB", Baseline: "log " + at, BaselineValue: mib(early.logBytes)})
	b.out.print(figure{Scenario: "outage", Figure: "writes buffered at the end", Value: float64(end.depth), Unit: "rows", Baseline: "buffered " + at, BaselineValue: float64(early.depth)})
	if n := end.depth - early.depth; n > 0 {
		b.out.print(figure{Scenario: "outage", Figure: "heap per write buffered since " + early.at.Round(time.Second).String(), Value: float64(end.heap-early.heap) / float64(n) / 1024, Unit: "KiB"})
	}
}

// heapAlloc reads the live Go heap from the heap profile's text form,
// asking for a collection first (gc=1): without it, HeapAlloc also counts
// garbage not yet collected, and two samples differ by where they fall in
// the collector's cycle.
func heapAlloc(ctx context.Context, pprofURL string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pprofURL+"/debug/pprof/heap?gc=1&debug=1", nil)
	if err != nil {
		return 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("heap: %w", err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("heap: no HeapAlloc in the heap profile (%v)", sc.Err())
}

// rss reads a process's resident set from /proc.
func rss(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("rss: no VmRSS for pid %d", pid)
}
