package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"
)

// ingest measures acknowledged writes against the no-op ceiling, the
// durable no-op and the synchronous baseline at each concurrency, then an
// open loop at half the highest rate.
func (b *bench) ingest(ctx context.Context) error {
	r := &ingestRun{lg: newLoadgen("ingest"), base: newLoadgen("noop"), top: slices.Max(b.cfg.levels)}
	noop, stopNoop, err := startNoop()
	if err != nil {
		return err
	}
	defer stopNoop()
	r.noop, r.spool = noop, b.cfg.url
	var d *deployment
	if r.spool == "" {
		var err error
		if d, err = b.env.deploy(ctx, "ingest", b.cfg.drainHeld); err != nil {
			return err
		}
		defer d.stop()
		r.spool, r.proc, r.dep = d.url(), d.api, d
		if b.cfg.drainHeld {
			if err := d.hold(ctx); err != nil {
				return err
			}
			r.held = true
		}
		db, err := d.be.baselineDB(ctx, "sync")
		if err != nil {
			return err
		}
		defer db.Close()
		syncURL, stopSync, err := startSync(db)
		if err != nil {
			return err
		}
		defer stopSync()
		durableURL, stopDurable, err := b.env.startDurable()
		if err != nil {
			return err
		}
		defer stopDurable()
		pdb, err := d.be.baselineDB(ctx, "pipeline")
		if err != nil {
			return err
		}
		defer pdb.Close()
		if r.pipeline, err = b.env.startMinimalPipeline(ctx, pdb, false); err != nil {
			return err
		}
		defer r.pipeline.stop()
		r.sync, r.durable = syncURL, durableURL
	}
	for _, c := range b.cfg.levels {
		if err := b.ingestClosed(ctx, r, c); err != nil {
			return err
		}
	}
	if err := b.ingestOpen(ctx, r); err != nil {
		return err
	}
	if d != nil {
		if r.held {
			// What the held drain left: every write, if it held.
			st, err := d.stats(ctx)
			if err != nil {
				return err
			}
			b.out.print(figure{Scenario: "ingest", Figure: "writes in the log, drain held", Value: float64(st.Log.Depth), Unit: "writes", Baseline: "acknowledged", BaselineValue: float64(r.seq.Load())})
		}
		if err := d.release(ctx); err != nil {
			return err
		}
		return d.verify(ctx, r.lg.tag, int(r.seq.Load()))
	}
	return nil
}

// ingestRun is what the ingest scenario drives: spool, and the baselines
// beside it on the same HTTP stack (sync and durable are empty with --url).
type ingestRun struct {
	lg, base     *loadgen         // spool's load, and the baselines'
	seq, baseSeq atomic.Int64     // their writes so far
	spool        string           // spool's base URL
	proc         *spoolProc       // spool's process, nil with --url
	dep          *deployment      // spool's deployment, nil with --url
	noop         string           // the ceiling
	durable      string           // the durable no-op
	pipeline     *minimalPipeline // the durable no-op that drains, too
	sync         string           // the synchronous baseline
	cpuGroups    cpuGroups        // the processes whose CPU time is measured
	top          int              // the highest concurrency of the closed loop
	held         bool             // spool's drain is held (--drain-held)
}

func (r *ingestRun) target() string { return r.spool + "/v1/tables/observations" }

// cpuFrom is the lowest concurrency of the closed loop at which the CPU
// time per write of each process is measured, spool's and the minimal
// pipeline's: the concurrencies the targets name. The highest of a run is
// measured too.
const cpuFrom = 64

// beginCPU begins a span of the deployment's processes' CPU time for a
// closed loop at concurrency c, nil where none is measured (below
// cpuFrom and the run's highest, or --url).
func (r *ingestRun) beginCPU(c int) *cpuMeter {
	if r.dep == nil || r.pipeline == nil || (c < cpuFrom && c < r.top) {
		return nil
	}
	if r.cpuGroups == nil {
		r.cpuGroups = r.dep.cpuGroups()
	}
	m := new(cpuMeter)
	m.begin()
	return m
}

// endCPU waits for a closed loop's writes to be drained (see
// spoolDrained), so that the span holds the drain's CPU time too, and
// ends the span m began (nil: none).
func (r *ingestRun) endCPU(m *cpuMeter, drained func() error) (cpuSpan, error) {
	if m == nil {
		return cpuSpan{}, nil
	}
	if err := drained(); err != nil {
		return cpuSpan{}, err
	}
	return m.end(r.cpuGroups)
}

// ingestClosed measures c writers in a closed loop on spool and on each
// baseline.
func (b *bench) ingestClosed(ctx context.Context, r *ingestRun, c int) error {
	ceil := r.base.closed(ctx, r.noop, c, b.cfg.duration, http.StatusAccepted, &r.baseSeq)
	var got *result
	cpu := r.beginCPU(c)
	if err := b.prof.around(ctx, r.proc, fmt.Sprintf("ingest-c%d", c), b.cfg.duration, func() {
		got = r.lg.closed(ctx, r.target(), c, b.cfg.duration, http.StatusCreated, &r.seq)
	}); err != nil {
		return err
	}
	if err := got.failed(fmt.Sprintf("c=%d", c)); err != nil {
		return err
	}
	spoolCPU, err := r.endCPU(cpu, func() error { return r.spoolDrained(ctx) })
	if err != nil {
		return err
	}
	b.maxRate = max(b.maxRate, got.perSecond())
	b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("c=%d writes/s", c), Value: got.perSecond(), Unit: "1/s", Baseline: "no-op", BaselineValue: ceil.perSecond()})
	baseline := func(url, what string, code int) (*result, error) {
		res := r.base.closed(ctx, url, c, b.cfg.duration, code, &r.baseSeq)
		return res, res.failed(fmt.Sprintf("%s c=%d", what, c))
	}
	var dur *result
	if r.durable != "" {
		var err error
		if dur, err = baseline(r.durable, "durable no-op", http.StatusAccepted); err != nil {
			return err
		}
		b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("c=%d writes/s vs durable no-op", c), Value: got.perSecond(), Unit: "1/s", Baseline: "durable no-op", BaselineValue: dur.perSecond()})
		b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("c=%d durable no-op writes/s", c), Value: dur.perSecond(), Unit: "1/s", Baseline: "no-op", BaselineValue: ceil.perSecond()})
	}
	if r.pipeline != nil {
		cpu := r.beginCPU(c)
		pip, err := baseline(r.pipeline.url, "minimal pipeline", http.StatusCreated)
		if err != nil {
			return err
		}
		pipCPU, err := r.endCPU(cpu, func() error { return r.pipeline.caughtUp(ctx, time.Minute) })
		if err != nil {
			return err
		}
		b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("c=%d writes/s vs minimal pipeline", c), Value: got.perSecond(), Unit: "1/s", Baseline: "minimal pipeline", BaselineValue: pip.perSecond()})
		b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("c=%d minimal pipeline writes/s", c), Value: pip.perSecond(), Unit: "1/s", Baseline: "durable no-op", BaselineValue: dur.perSecond()})
		if cpu != nil {
			order := append(r.cpuGroups.order(), cpuBench)
			base := b.cpuFigures("ingest", fmt.Sprintf("at c=%d, minimal pipeline", c), pip.n, pipCPU, order, "", 0)
			b.cpuFigures("ingest", fmt.Sprintf("at c=%d", c), got.n, spoolCPU, order, "minimal pipeline", base)
		}
	}
	if r.sync != "" {
		syn, err := baseline(r.sync, "synchronous", http.StatusCreated)
		if err != nil {
			return err
		}
		b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("c=%d writes/s vs synchronous", c), Value: got.perSecond(), Unit: "1/s", Baseline: "synchronous insert", BaselineValue: syn.perSecond()})
	}
	b.out.percentiles("ingest", fmt.Sprintf("c=%d latency", c), []int{50, 90, 99, 999}, got, "no-op", ceil)
	return nil
}

// openRounds is how many rounds the open loop runs spool and its floors
// in, one after another in each round, each for its share of --duration:
// a stretch of a slow machine (this one's fsyncs and neighbours drift
// by the second) then falls on all of them alike, where one measurement
// after another would give it to whichever ran then.
const openRounds = 3

// ingestOpen runs the open loop at --rate or half the highest rate, beside
// the no-op, the durable no-op and the minimal pipeline at the same rate,
// interleaved in openRounds rounds, each one's latencies pooled.
func (b *bench) ingestOpen(ctx context.Context, r *ingestRun) error {
	rate, label := b.cfg.rate, "open %.0f/s latency"
	if rate == 0 {
		rate, label = b.maxRate/2, "open 0.5×max (%.0f/s) latency"
	}
	label = fmt.Sprintf(label, rate)
	seg := max(time.Second, b.cfg.duration/openRounds)
	var ceil, dur, pip, got result
	// A spool the bench did not start (--url) may not serve /metrics:
	// then the server-side figures are left out. They count spool's
	// writes alone, whatever else runs meanwhile.
	var writes, syncs serverSide
	if err := writes.start(ctx, requests(r.spool, writeRoute, "201")); err != nil && b.cfg.url == "" {
		return err
	}
	syncs.start(ctx, logSyncs(r.spool)) //nolint:errcheck // left out like the writes'
	var err error
	if perr := b.prof.around(ctx, r.proc, "ingest-open", openRounds*seg, func() {
		for round := range openRounds {
			if err = b.openRound(ctx, r, rate, seg, &ceil, &dur, &pip, &got); err != nil {
				err = fmt.Errorf("open loop at %.0f/s, round %d: %w", rate, round+1, err)
				return
			}
		}
	}); perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	writes.stop(ctx)
	syncs.stop(ctx)
	b.out.percentiles("ingest", label, []int{50, 99, 999}, &got, "no-op", &ceil)
	if r.durable != "" {
		for _, q := range []int{50, 99} {
			b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("%s p%d vs durable no-op", label, q), Value: got.pct(q), Unit: "ms", Baseline: "durable no-op", BaselineValue: dur.pct(q)})
		}
	}
	if r.pipeline != nil {
		for _, q := range []int{50, 99} {
			b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("%s p%d vs minimal pipeline", label, q), Value: got.pct(q), Unit: "ms", Baseline: "minimal pipeline", BaselineValue: pip.pct(q)})
		}
		if r.durable != "" {
			b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("%s p99, minimal pipeline vs durable no-op", label), Value: pip.pct(99), Unit: "ms", Baseline: "durable no-op", BaselineValue: dur.pct(99)})
		}
	}
	// The server's own time per write, from its request histogram: what
	// the loopback and the load generator's scheduling add is left out.
	writes.print(b.out, "ingest", label)
	// Beside it, the local log's fdatasyncs in the same interval: a write
	// waits for the one in flight when it arrives, then for its own.
	syncs.print(b.out, "ingest", fmt.Sprintf("open %.0f/s log fdatasync", rate))
	return nil
}

// openRound runs the open loop at rate for d on the no-op, the durable
// no-op, the minimal pipeline and spool, one after another, adding each
// one's latencies to its result; a drain's backlog is left to empty
// before the next begins.
func (b *bench) openRound(ctx context.Context, r *ingestRun, rate float64, d time.Duration, ceil, dur, pip, got *result) error {
	ceil.add(r.base.open(ctx, r.noop, rate, d, http.StatusAccepted, &r.baseSeq))
	if r.durable != "" {
		if err := dur.add(r.base.open(ctx, r.durable, rate, d, http.StatusAccepted, &r.baseSeq)).failed("durable no-op"); err != nil {
			return err
		}
	}
	if r.pipeline != nil {
		if err := pip.add(r.base.open(ctx, r.pipeline.url, rate, d, http.StatusCreated, &r.baseSeq)).failed("minimal pipeline"); err != nil {
			return err
		}
		if err := r.pipeline.caughtUp(ctx, time.Minute); err != nil {
			return err
		}
	}
	if err := got.add(r.lg.open(ctx, r.target(), rate, d, http.StatusCreated, &r.seq)).failed("spool"); err != nil {
		return err
	}
	return r.spoolDrained(ctx)
}

// spoolDrained waits for spool's log to be empty, unless its drain is
// held or the bench did not start it.
func (r *ingestRun) spoolDrained(ctx context.Context) error {
	if r.dep == nil || r.held {
		return nil
	}
	return r.dep.drained(ctx, time.Minute)
}

// startNoop serves the ceiling: the same HTTP stack decoding the body and
// answering 202, nothing behind it.
func startNoop() (string, func(), error) {
	return serveLocal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := decodeBody(w, r); ok {
			answerQueued(w)
		}
	}))
}

// startSync serves the synchronous baseline, "before spool": the same HTTP
// stack and body, each request's row inserted into db with one statement
// before the answer.
func startSync(db benchDB) (string, func(), error) {
	return serveLocal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := decodeBody(w, r)
		if !ok {
			return
		}
		row, err := obsRowFromBody(v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := db.insert(r.Context(), row); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%q}`, row.id)
	}))
}

// decodeBody decodes a baseline's request body, the JSON object of a row,
// or answers 400.
func decodeBody(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	var v map[string]any
	if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return v, true
}

// answerQueued answers 202 with a body the size of spool's.
func answerQueued(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, `{"id":"0190b5a0-0000-7000-8000-000000000000","transaction_id":"0190b5a0-0000-7000-8000-000000000000","state":"queued"}`)
}

// serveLocal serves h on a free loopback port.
func serveLocal(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("bench: listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}
