package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// result is the outcome of one measurement.
type result struct {
	n, errors int
	elapsed   time.Duration
	lat       []time.Duration
	lastErr   error
}

// add adds o's requests, time and latencies to r, and returns r.
func (r *result) add(o *result) *result {
	r.n += o.n
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.lat = append(r.lat, o.lat...)
	if o.lastErr != nil {
		r.lastErr = o.lastErr
	}
	return r
}

func (r *result) perSecond() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.n) / r.elapsed.Seconds()
}

// pct is a latency percentile in ms; q over 100 is per mille (999).
func (r *result) pct(q int) float64 { return pctOf(r.lat, q) }

func pctOf(lat []time.Duration, q int) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	den := 100
	if q > 100 {
		den = 1000
	}
	return float64(lat[min(len(lat)-1, len(lat)*q/den)].Microseconds()) / 1000
}

// failed says why a measurement is impossible: errors, or nothing done.
func (r *result) failed(what string) error {
	if r.errors > 0 {
		return fmt.Errorf("%s: %d of %d requests failed: %w", what, r.errors, r.n+r.errors, r.lastErr)
	}
	if r.n == 0 {
		return fmt.Errorf("%s: nothing was acknowledged", what)
	}
	return nil
}

// benchAck is one acknowledged write.
type benchAck struct {
	ID            string `json:"id"`
	TransactionID string `json:"transaction_id"`
	at            time.Time
}

// loadgen sends the bench's writes; tag names them, so a scenario can
// count its own rows in the database.
type loadgen struct {
	client *http.Client
	tag    string
	// onAck, when set, is called with every acknowledged write.
	onAck func(benchAck)
}

func newLoadgen(tag string) *loadgen {
	return &loadgen{tag: tag, client: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 1024},
		Timeout:   30 * time.Second,
	}}
}

// body is the i-th write: a ~70-byte observation.
func (l *loadgen) body(i int64) string {
	return fmt.Sprintf(`{"target":"%s-%d","exposure_s":%d,"meta":{"n":%d}}`, l.tag, i, i%600, i)
}

func (l *loadgen) post(ctx context.Context, url string, i int64, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(l.body(i))))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := l.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("POST %s: %s: %s", url, res.Status, bytes.TrimSpace(b))
	}
	if l.onAck == nil {
		io.Copy(io.Discard, res.Body)
		return nil
	}
	var a benchAck
	if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
		return fmt.Errorf("POST %s: answer: %w", url, err)
	}
	a.at = time.Now()
	l.onAck(a)
	return nil
}

func (l *loadgen) get(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := l.client.Do(req)
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

// closed runs c writers back to back for d; seq numbers the writes.
func (l *loadgen) closed(ctx context.Context, url string, c int, d time.Duration, want int, seq *atomic.Int64) *result {
	return closedFn(ctx, c, d, func(ctx context.Context) error { return l.post(ctx, url, seq.Add(1), want) })
}

// count runs c writers until n writes are acknowledged.
func (l *loadgen) count(ctx context.Context, url string, c, n int, want int, seq *atomic.Int64) *result {
	var left atomic.Int64
	left.Store(int64(n))
	r := &result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			for left.Add(-1) >= 0 && ctx.Err() == nil {
				err := l.post(ctx, url, seq.Add(1), want)
				mu.Lock()
				if err != nil {
					r.errors, r.lastErr = r.errors+1, err
				} else {
					r.n++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r
}

// closedFn runs fn on c goroutines back to back for d.
func closedFn(ctx context.Context, c int, d time.Duration, fn func(context.Context) error) *result {
	runCtx, cancel := context.WithTimeout(ctx, d)
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
			for runCtx.Err() == nil {
				t0 := time.Now()
				// The request itself may outlive the window: only
				// the bench's own context cancels it.
				if err := fn(ctx); err != nil {
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
// measures each latency from its scheduled start (no coordinated
// omission).
func (l *loadgen) open(ctx context.Context, url string, rate float64, d time.Duration, want int, seq *atomic.Int64) *result {
	return openFn(ctx, rate, d, func(ctx context.Context) error { return l.post(ctx, url, seq.Add(1), want) })
}

func openFn(ctx context.Context, rate float64, d time.Duration, fn func(context.Context) error) *result {
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
		if err := sleepCtx(ctx, time.Until(at)); err != nil {
			break
		}
		wg.Go(func() {
			err := fn(ctx)
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
