package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const benchUsage = `Usage: spool bench [scenario…] [flags]

Drives a spool with a built-in load generator and prints each figure beside
its ceiling or baseline measured in the same run. Without --url it starts
spool itself (this binary, embedded default, in a temporary data dir).

Scenarios (default: ingest read):
  ingest   acknowledged writes/s and latency at each --concurrency, closed
           loop, beside a no-op handler on the same HTTP stack (the ceiling);
           with --rate, an open loop at that fixed arrival rate instead
           (latency from each request's scheduled time: no coordinated
           omission)
  read     GET by id and a filtered list, p50/p99, with the rows buffered in
           the overlay and after the drain

`

// figure is one line of the bench's output.
type figure struct {
	Scenario      string  `json:"scenario"`
	Figure        string  `json:"figure"`
	Value         float64 `json:"value"`
	Unit          string  `json:"unit"`
	Baseline      string  `json:"baseline"`
	BaselineValue float64 `json:"baseline_value,omitempty"`
	Ratio         float64 `json:"ratio,omitempty"`
}

func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("spool bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage); fs.PrintDefaults() }
	target := fs.String("url", "", "`URL` of a running spool to drive (default: start one)")
	duration := fs.Duration("duration", 5*time.Second, "how long each measurement runs")
	conc := fs.String("concurrency", "1,16,64,256", "comma-separated writer counts of the closed loop")
	rate := fs.Float64("rate", 0, "open loop: writes per second at a fixed arrival rate (0: closed loop)")
	asJSON := fs.Bool("json", false, "print one JSON object per line and figure")
	var scenarios []string
	rest := args
	for {
		if err := parse(fs, rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		scenarios = append(scenarios, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(scenarios) == 0 {
		scenarios = []string{"ingest", "read"}
	}
	var levels []int
	for _, s := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("--concurrency: %q is not a positive integer", s)
		}
		levels = append(levels, n)
	}
	url := strings.TrimRight(*target, "/")
	if url == "" {
		u, stop, err := startSelf(ctx, stderr)
		if err != nil {
			return err
		}
		defer stop()
		url = u
	}
	ceiling, stopCeiling, err := startNoop()
	if err != nil {
		return err
	}
	defer stopCeiling()

	print := func(f figure) {
		if f.BaselineValue > 0 {
			f.Ratio = f.Value / f.BaselineValue
		}
		if *asJSON {
			b, _ := json.Marshal(f)
			fmt.Fprintln(stdout, string(b))
			return
		}
		line := fmt.Sprintf("%-8s %-34s %12.2f %-8s", f.Scenario, f.Figure, f.Value, f.Unit)
		if f.Baseline != "" {
			line += fmt.Sprintf("  %s %.2f  ratio %.2f", f.Baseline, f.BaselineValue, f.Ratio)
		}
		fmt.Fprintln(stdout, line)
	}
	lg := &loadgen{client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 1024}, Timeout: 30 * time.Second}}
	for _, sc := range scenarios {
		switch sc {
		case "ingest":
			if *rate > 0 {
				base := lg.open(ctx, ceiling+"/v1/tables/observations", *rate, *duration, http.StatusAccepted)
				got := lg.open(ctx, url+"/v1/tables/observations", *rate, *duration, http.StatusCreated)
				if got.errors > 0 {
					return fmt.Errorf("ingest: %d writes failed at %.0f/s: %v", got.errors, *rate, got.lastErr)
				}
				for _, q := range []int{50, 90, 99, 999} {
					print(figure{Scenario: "ingest", Figure: fmt.Sprintf("open %.0f/s latency p%d", *rate, q), Value: got.pct(q), Unit: "ms", Baseline: "no-op", BaselineValue: base.pct(q)})
				}
				continue
			}
			for _, c := range levels {
				base := lg.closed(ctx, ceiling+"/v1/tables/observations", c, *duration, http.StatusAccepted)
				got := lg.closed(ctx, url+"/v1/tables/observations", c, *duration, http.StatusCreated)
				if got.errors > 0 || got.n == 0 {
					return fmt.Errorf("ingest c=%d: %d acknowledged, %d failed: %v", c, got.n, got.errors, got.lastErr)
				}
				print(figure{Scenario: "ingest", Figure: fmt.Sprintf("c=%d writes/s", c), Value: got.perSecond(), Unit: "1/s", Baseline: "no-op", BaselineValue: base.perSecond()})
				for _, q := range []int{50, 90, 99, 999} {
					print(figure{Scenario: "ingest", Figure: fmt.Sprintf("c=%d latency p%d", c, q), Value: got.pct(q), Unit: "ms", Baseline: "no-op", BaselineValue: base.pct(q)})
				}
			}
		case "read":
			if err := benchRead(ctx, lg, url, *duration, print); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown scenario %q (want ingest or read)", sc)
		}
	}
	return nil
}

// benchRead writes 1,000 rows, reads them while they may still be
// buffered, waits for the drain, and reads them again from the database.
func benchRead(ctx context.Context, lg *loadgen, url string, d time.Duration, print func(figure)) error {
	target := fmt.Sprintf("bench-read-%d", time.Now().UnixNano())
	var ids []string
	var last string
	for i := range 1000 {
		res, err := lg.client.Post(url+"/v1/tables/observations", "application/json", strings.NewReader(fmt.Sprintf(`{"target":%q,"exposure_s":%d}`, target, i)))
		if err != nil {
			return fmt.Errorf("read: fill: %w", err)
		}
		var rc struct {
			ID            string `json:"id"`
			TransactionID string `json:"transaction_id"`
		}
		err = json.NewDecoder(res.Body).Decode(&rc)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusCreated {
			return fmt.Errorf("read: fill: %s %v", res.Status, err)
		}
		ids, last = append(ids, rc.ID), rc.TransactionID
	}
	measure := func(when string) {
		var n atomic.Int64
		get := lg.closedFn(ctx, 8, d, func() error {
			i := n.Add(1)
			return lg.get(url + "/v1/tables/observations/" + ids[int(i)%len(ids)])
		})
		list := lg.closedFn(ctx, 8, d, func() error {
			return lg.get(url + "/v1/tables/observations?target=eq." + target + "&order=exposure_s.desc&limit=50")
		})
		for _, q := range []int{50, 99} {
			print(figure{Scenario: "read", Figure: fmt.Sprintf("get by id %s p%d", when, q), Value: get.pct(q), Unit: "ms"})
			print(figure{Scenario: "read", Figure: fmt.Sprintf("list of 1k %s p%d", when, q), Value: list.pct(q), Unit: "ms"})
		}
	}
	measure("just written")
	if err := lg.get(url + "/v1/transactions/" + last + "?wait=applied&timeout=60s"); err != nil {
		return fmt.Errorf("read: wait for the drain: %w", err)
	}
	measure("after the drain")
	return nil
}

// result is the outcome of one measurement.
type result struct {
	n, errors int
	elapsed   time.Duration
	lat       []time.Duration
	lastErr   error
}

func (r *result) perSecond() float64 { return float64(r.n) / r.elapsed.Seconds() }

// pct is a latency percentile in ms; q over 100 is per mille (999).
func (r *result) pct(q int) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	slices.Sort(r.lat)
	den := 100
	if q > 100 {
		den = 1000
	}
	return float64(r.lat[min(len(r.lat)-1, len(r.lat)*q/den)].Microseconds()) / 1000
}

type loadgen struct{ client *http.Client }

func (l *loadgen) post(url string, i int64, want int) error {
	body := fmt.Sprintf(`{"target":"bench-%d","exposure_s":%d,"meta":{"n":%d}}`, i, i%600, i)
	res, err := l.client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		return fmt.Errorf("status %s", res.Status)
	}
	return nil
}

func (l *loadgen) get(url string) error {
	res, err := l.client.Get(url)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return nil
}

// closed runs c writers back to back for d.
func (l *loadgen) closed(ctx context.Context, url string, c int, d time.Duration, want int) *result {
	var seq atomic.Int64
	return l.closedFn(ctx, c, d, func() error { return l.post(url, seq.Add(1), want) })
}

func (l *loadgen) closedFn(ctx context.Context, c int, d time.Duration, fn func() error) *result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	r := &result{}
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			var lat []time.Duration
			var n, errs int
			var last error
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := fn(); err != nil {
					errs, last = errs+1, err
					continue
				}
				lat = append(lat, time.Since(t0))
				n++
			}
			mu.Lock()
			r.n, r.errors, r.lat = r.n+n, r.errors+errs, append(r.lat, lat...)
			if last != nil {
				r.lastErr = last
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r
}

// open sends writes at a fixed rate for d, each on its own goroutine, and
// measures each latency from its scheduled start.
func (l *loadgen) open(ctx context.Context, url string, rate float64, d time.Duration, want int) *result {
	interval := time.Duration(float64(time.Second) / rate)
	var mu sync.Mutex
	r := &result{}
	var wg sync.WaitGroup
	start := time.Now()
	for i := int64(0); ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Until(at))
		wg.Go(func() {
			err := l.post(url, i, want)
			lat := time.Since(at)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.errors, r.lastErr = r.errors+1, err
				return
			}
			r.n++
			r.lat = append(r.lat, lat)
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r
}

// startNoop serves the ceiling: the same HTTP stack decoding the body and
// answering 202, nothing behind it.
func startNoop() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"0190b5a0-0000-7000-8000-000000000000","transaction_id":"0190b5a0-0000-7000-8000-000000000000","state":"queued"}`)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// startSelf runs this binary's serve on the embedded default in a
// temporary data dir, with the observatory schema, and waits for it.
func startSelf(ctx context.Context, stderr io.Writer) (string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "spool-bench-")
	if err != nil {
		return "", nil, err
	}
	schema := dir + "/schema.sql"
	if err := os.WriteFile(schema, []byte(benchSchema), 0o644); err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.CommandContext(ctx, self, "serve", "--data-dir", dir, "--listen", addr, "--schema", schema, "--log-level", "warn")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		os.RemoveAll(dir)
	}
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(url + "/health")
		if err == nil {
			res.Body.Close()
			return url, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, errors.New("bench: spool did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// benchSchema is the table the bench writes.
const benchSchema = `CREATE TABLE IF NOT EXISTS observations (
    id uuid PRIMARY KEY, target text NOT NULL, telescope text NOT NULL DEFAULT 'main',
    exposure_s double precision, status text NOT NULL DEFAULT 'planned',
    started_at timestamptz, finished_at timestamptz, meta jsonb);
CREATE INDEX IF NOT EXISTS observations_target ON observations (target);`
