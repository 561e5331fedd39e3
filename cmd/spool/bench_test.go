package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"
)

// spool bench runs every scenario end to end and prints sane figures (never
// timing assertions: only that the figures exist and are possible).
func TestBenchSmoke(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "bench", "ingest", "read", "--duration", "300ms", "--concurrency", "4", "--json").Output()
	if err != nil {
		t.Fatalf("spool bench: %v\n%s", err, out)
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
	w, ok := seen["ingest c=4 writes/s"]
	if !ok || w.Value <= 0 || w.BaselineValue <= 0 || w.Ratio <= 0 {
		t.Fatalf("ingest figure missing or impossible: %+v\n%s", w, out)
	}
	if g, ok := seen["read get by id after the drain p99"]; !ok || g.Value <= 0 {
		t.Fatalf("read figure missing: %+v\n%s", g, out)
	}
}
