package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/spoolgw/spool/internal/testservers"
)

// benchRun runs spool-bench with args and returns its figures by
// "scenario figure".
func benchRun(t *testing.T, args ...string) map[string]figure {
	t.Helper()
	cmd := exec.Command(benchBinary, append([]string{"--json"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("spool-bench %v: %v\n%s\n%s", args, err, out, stderr.String())
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

// smokeArgs runs every scenario as briefly as it can still measure.
var smokeArgs = []string{"ingest", "drain", "visibility", "read", "events", "outage", "telemetry",
	"--duration", "300ms", "--concurrency", "4", "--read-buffered", "0,100",
	"--outage", "2s", "--sample", "500ms", "--telemetry-rate", "5000"}

// want names figures by prefix and suffix: figures carry their sizes and
// rates in their names ("drain 2507 rows drained, rows/s").
type want struct{ prefix, suffix string }

// smokeFigures must exist and be possible in every smoke run.
var smokeFigures = []want{
	{"ingest c=4 writes/s", ""}, {"ingest c=4 writes/s vs synchronous", ""}, {"ingest c=4 latency p99", ""},
	{"ingest c=4 writes/s vs durable no-op", ""}, {"ingest c=4 durable no-op writes/s", ""},
	{"ingest CPU per row at c=4", "c=4"}, {"ingest CPU per row at c=4, minimal pipeline", "pipeline"},
	{"ingest open 0.5×max", "latency p99"}, {"ingest open 0.5×max", "latency p99 vs durable no-op"},
	{"drain ", "rows drained, rows/s"}, {"drain CPU per row drained", "drained"}, {"drain cores busy drained", ""},
	{"visibility ack → applied at ", " p99"}, {"visibility ack → applied at ", " in the warm-up p99"}, {"visibility cores busy at ", ""},
	{"events ack → event at ", " p99"}, {"events fan-out to ", "deliveries/s"},
	{"read get by id, 0 buffered p99", ""}, {"read get by id, 100 buffered p99", ""}, {"read list of 50, 100 buffered p99", ""},
	{"read get by id, 0 buffered reads/s", ""}, {"read get by id, 100 buffered at 0.5×max", " p99"},
	{"read list of 50, 100 buffered at 0.5×max", " p99"},
	{"outage writes/s over", ""}, {"outage heap at the end", ""}, {"outage log size at the end", ""},
	{"telemetry rows/s accepted", ""}, {"telemetry rows written in all", ""},
}

// checkFigures fails t unless every wanted figure exists, is above zero
// and, when it has a baseline, has a ratio. The bench itself fails on
// errors and lost writes; timing is never asserted.
func checkFigures(t *testing.T, seen map[string]figure, wants []want) {
	t.Helper()
	for _, w := range wants {
		found := false
		for key, f := range seen {
			if !strings.HasPrefix(key, w.prefix) || !strings.HasSuffix(key, w.suffix) {
				continue
			}
			found = true
			if f.Value <= 0 || (f.Baseline != "" && (f.BaselineValue <= 0 || f.Ratio <= 0)) {
				t.Errorf("figure %q impossible: %+v", key, f)
			}
		}
		if !found {
			t.Errorf("no figure %q…%q among %d", w.prefix, w.suffix, len(seen))
		}
	}
}

// spool-bench runs every scenario end to end on the embedded default.
func TestBenchSmoke(t *testing.T) {
	t.Parallel()
	checkFigures(t, benchRun(t, smokeArgs...), smokeFigures)
}

// The same on throwaway Redis and PostgreSQL with a replica, which adds
// the replicated figures and the raw replica lag.
func TestBenchSmokeServers(t *testing.T) {
	t.Parallel()
	testservers.Need(t, serversErr)
	checkFigures(t, benchRun(t, append(smokeArgs, "--servers")...), append(smokeFigures,
		want{"visibility ack → replicated at ", " p99"}, want{"visibility applied → replicated at ", " p99"},
		want{"drain ", "rows/s vs one COPY"}, want{"drain minimal drain rows/s", ""}, want{"drain ", "rows/s vs minimal drain"},
		want{"visibility ack → applied at ", ", vs minimal pipeline p99"},
		want{"read get by id, 0 buffered at 0.5×max", ", vs minimal reader p99"},
		want{"read get by id, 0 buffered at 0.5×max", ", minimal reader, server-side p99"},
		want{"read get by id, 100 buffered at 0.5×max", ", minimal reader, server-side p99"}))
}

// With --drain-held spool's drain waits while writes are measured, and
// every write is still in the log at the end, then in the database.
func TestBenchDrainHeld(t *testing.T) {
	t.Parallel()
	args := []string{"ingest", "--drain-held", "--duration", "300ms", "--concurrency", "4"}
	if serversErr == nil {
		args = append(args, "--servers")
	}
	seen := benchRun(t, args...)
	checkFigures(t, seen, []want{{"ingest c=4 writes/s vs minimal pipeline", ""}, {"ingest CPU per row at c=4", "c=4"}})
	if f := seen["ingest writes in the log, drain held"]; f.Value == 0 || f.Ratio != 1 {
		t.Errorf("the drain did not hold: %+v", f)
	}
}

// With --db-latency the database is that far away for spool and the
// baselines: four synchronous writers, each insert a round trip of 10 ms
// at least, cannot pass 400 inserts/s, whatever the machine.
func TestBenchSmokeRemoteDatabase(t *testing.T) {
	t.Parallel()
	testservers.Need(t, serversErr)
	seen := benchRun(t, "ingest", "drain", "--servers", "--db-latency", "5ms",
		"--duration", "300ms", "--concurrency", "4")
	checkFigures(t, seen, []want{
		{"ingest c=4 writes/s", ""}, {"ingest c=4 writes/s vs synchronous", ""},
		{"drain ", "rows drained, rows/s"}, {"drain ", "rows/s vs one COPY"},
	})
	if sync := seen["ingest c=4 writes/s vs synchronous"].BaselineValue; sync > 400 {
		t.Errorf("synchronous inserts %.0f/s at 4 writers through 5 ms each way; the proxy is not in the way", sync)
	}
}
