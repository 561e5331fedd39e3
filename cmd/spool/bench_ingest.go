package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// ingest measures acknowledged writes against the no-op ceiling and the
// synchronous baseline at each concurrency, then an open loop at half the
// highest rate.
func (b *bench) ingest(ctx context.Context) error {
	ceiling, stopCeiling, err := startNoop()
	if err != nil {
		return err
	}
	defer stopCeiling()
	url, proc := b.cfg.url, (*spoolProc)(nil)
	var syncURL, durableURL string
	var d *deployment
	if url == "" {
		var err error
		if d, err = b.env.deploy(ctx, "ingest", false); err != nil {
			return err
		}
		defer d.stop()
		url, proc = d.url(), d.api
		db, err := d.be.baselineDB(ctx, "sync")
		if err != nil {
			return err
		}
		defer db.Close()
		u, stop, err := startSync(db)
		if err != nil {
			return err
		}
		defer stop()
		syncURL = u
		f, stopDurable, err := b.env.startDurable()
		if err != nil {
			return err
		}
		defer stopDurable()
		durableURL = f
	}
	lg, base := newLoadgen("ingest"), newLoadgen("noop")
	var seq, baseSeq atomic.Int64
	target := url + "/v1/tables/observations"
	for _, c := range b.cfg.levels {
		ceil := base.closed(ctx, ceiling, c, b.cfg.duration, http.StatusAccepted, &baseSeq)
		var got *result
		if err := b.prof.around(ctx, proc, fmt.Sprintf("ingest-c%d", c), b.cfg.duration, func() {
			got = lg.closed(ctx, target, c, b.cfg.duration, http.StatusCreated, &seq)
		}); err != nil {
			return err
		}
		if err := got.failed(fmt.Sprintf("c=%d", c)); err != nil {
			return err
		}
		b.maxRate = max(b.maxRate, got.perSecond())
		b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("c=%d writes/s", c), Value: got.perSecond(), Unit: "1/s", Baseline: "no-op", BaselineValue: ceil.perSecond()})
		if durableURL != "" {
			dur := base.closed(ctx, durableURL, c, b.cfg.duration, http.StatusAccepted, &baseSeq)
			if err := dur.failed(fmt.Sprintf("durable no-op c=%d", c)); err != nil {
				return err
			}
			b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("c=%d writes/s vs durable no-op", c), Value: got.perSecond(), Unit: "1/s", Baseline: "durable no-op", BaselineValue: dur.perSecond()})
			b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("c=%d durable no-op writes/s", c), Value: dur.perSecond(), Unit: "1/s", Baseline: "no-op", BaselineValue: ceil.perSecond()})
		}
		if syncURL != "" {
			syn := base.closed(ctx, syncURL, c, b.cfg.duration, http.StatusCreated, &baseSeq)
			if err := syn.failed(fmt.Sprintf("synchronous c=%d", c)); err != nil {
				return err
			}
			b.out.print(figure{Scenario: "ingest", Figure: fmt.Sprintf("c=%d writes/s vs synchronous", c), Value: got.perSecond(), Unit: "1/s", Baseline: "synchronous insert", BaselineValue: syn.perSecond()})
		}
		b.out.percentiles("ingest", fmt.Sprintf("c=%d latency", c), []int{50, 90, 99, 999}, got, "no-op", ceil)
	}
	if err := b.ingestOpen(ctx, lg, base, target, ceiling, proc, &seq, &baseSeq); err != nil {
		return err
	}
	if d != nil {
		return d.verify(ctx, lg.tag, int(seq.Load()))
	}
	return nil
}

// ingestOpen runs the open loop at --rate or half the highest rate, beside
// the no-op at the same rate.
func (b *bench) ingestOpen(ctx context.Context, lg, base *loadgen, target, ceiling string, proc *spoolProc, seq, baseSeq *atomic.Int64) error {
	rate, label := b.cfg.rate, "open %.0f/s latency"
	if rate == 0 {
		rate, label = b.maxRate/2, "open 0.5×max (%.0f/s) latency"
	}
	ceil := base.open(ctx, ceiling, rate, b.cfg.duration, http.StatusAccepted, baseSeq)
	spool := strings.TrimSuffix(target, "/v1/tables/observations")
	// A spool the bench did not start (--url) may not serve /metrics:
	// then the server-side figures are left out.
	var writes, syncs serverSide
	if err := writes.start(ctx, requests(spool, writeRoute, "201")); err != nil && b.cfg.url == "" {
		return err
	}
	syncs.start(ctx, logSyncs(spool)) //nolint:errcheck // left out like the writes'
	var got *result
	if err := b.prof.around(ctx, proc, "ingest-open", b.cfg.duration, func() {
		got = lg.open(ctx, target, rate, b.cfg.duration, http.StatusCreated, seq)
		writes.stop(ctx)
		syncs.stop(ctx)
	}); err != nil {
		return err
	}
	if err := got.failed(fmt.Sprintf("open loop at %.0f/s", rate)); err != nil {
		return err
	}
	b.out.percentiles("ingest", fmt.Sprintf(label, rate), []int{50, 99, 999}, got, "no-op", ceil)
	// The server's own time per write, from its request histogram: what
	// the loopback and the load generator's scheduling add is left out.
	writes.print(b.out, "ingest", fmt.Sprintf(label, rate))
	// Beside it, the local log's fdatasyncs in the same interval: a write
	// waits for the one in flight when it arrives, then for its own.
	syncs.print(b.out, "ingest", fmt.Sprintf("open %.0f/s log fdatasync", rate))
	return nil
}

// startNoop serves the ceiling: the same HTTP stack decoding the body and
// answering 202, nothing behind it.
func startNoop() (string, func(), error) {
	return serveLocal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"0190b5a0-0000-7000-8000-000000000000","transaction_id":"0190b5a0-0000-7000-8000-000000000000","state":"queued"}`)
	}))
}

// startSync serves the synchronous baseline, "before spool": the same HTTP
// stack and body, each request's row inserted into db with one statement
// before the answer.
func startSync(db benchDB) (string, func(), error) {
	return serveLocal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
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
