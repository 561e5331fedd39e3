package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"
)

// benchRun runs spool bench with args and returns its figures by
// "scenario figure".
func benchRun(t *testing.T, args ...string) map[string]figure {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"bench", "--json"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("spool bench %v: %v\n%s\n%s", args, err, out, stderr.String())
	}
	seen := map[string]figure{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var f figure
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		seen[f.Scenario+" "+f.Figure] = f
	}
	return seen
}

// positive fails t unless the figure exists, is above zero and, when it
// has a baseline, has a ratio.
func positive(t *testing.T, seen map[string]figure, name string) {
	t.Helper()
	f, ok := seen[name]
	if !ok || f.Value <= 0 || (f.Baseline != "" && (f.BaselineValue <= 0 || f.Ratio <= 0)) {
		t.Errorf("figure %q missing or impossible: %+v (have %d figures)", name, f, len(seen))
	}
}

// spool bench runs each scenario end to end and prints possible figures
// (never timing assertions: only that the figures exist and are possible;
// the bench itself fails on errors and lost writes).
func TestBenchSmoke(t *testing.T) {
	t.Parallel()
	seen := benchRun(t, "ingest", "read", "--duration", "300ms", "--concurrency", "4", "--read-buffered", "0,100")
	for _, name := range []string{
		"ingest c=4 writes/s", "ingest c=4 writes/s vs synchronous", "ingest c=4 latency p99",
		"read get by id, 0 buffered p99", "read get by id, 100 buffered p99", "read list of 50, 100 buffered p99",
	} {
		positive(t, seen, name)
	}
}
