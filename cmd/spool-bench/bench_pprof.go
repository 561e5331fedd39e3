package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// profiler writes the server's CPU profile over a measurement and its heap
// profile after it, from spool serve --pprof-listen, into dir.
type profiler struct{ dir string }

// around runs fn, profiling proc meanwhile when --pprof is set. label
// names the files: DIR/LABEL.cpu.pprof and DIR/LABEL.heap.pprof.
func (p *profiler) around(ctx context.Context, proc *spoolProc, label string, d time.Duration, fn func()) error {
	if p.dir == "" || proc == nil {
		fn()
		return nil
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("bench --pprof: %w", err)
	}
	// The CPU profile runs whole seconds, at least one.
	secs := max(1, int(math.Round(d.Seconds())))
	cpu := make(chan error, 1)
	go func() {
		cpu <- fetch(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", proc.pprofURL, secs), filepath.Join(p.dir, label+".cpu.pprof"))
	}()
	fn()
	if err := <-cpu; err != nil {
		return err
	}
	return fetch(ctx, proc.pprofURL+"/debug/pprof/heap", filepath.Join(p.dir, label+".heap.pprof"))
}

// heap keeps proc's heap profile now, as DIR/LABEL.heap.pprof, when
// --pprof is set.
func (p *profiler) heap(ctx context.Context, proc *spoolProc, label string) error {
	if p.dir == "" || proc == nil {
		return nil
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("bench --pprof: %w", err)
	}
	return fetch(ctx, proc.pprofURL+"/debug/pprof/heap?gc=1", filepath.Join(p.dir, label+".heap.pprof"))
}

// fetch saves what url answers into path.
func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("bench --pprof: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("bench --pprof: GET %s: %s", url, res.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench --pprof: %w", err)
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return fmt.Errorf("bench --pprof: save %s: %w", path, err)
	}
	return f.Close()
}
