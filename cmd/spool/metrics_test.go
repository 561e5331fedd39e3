package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/spoolgw/spool/internal/testservers"
)

// TestMetrics reads GET /metrics after three writes and a bad one: each
// request is timed under its route and status, and the log, the overlay
// and the transaction counters are there, with the values of the moment.
func TestMetrics(t *testing.T) {
	t.Parallel()
	p := start(t, t.TempDir(), "--telemetry-table", "readings")
	post := func(body string, want int) {
		t.Helper()
		res, err := http.Post(p.url+"/v1/tables/observations", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("POST %s: %d, want %d", body, res.StatusCode, want)
		}
	}
	for range 3 {
		post(`{"target":"metrics"}`, http.StatusCreated)
	}
	post(`{"target":"metrics","no_such_column":1}`, http.StatusBadRequest)
	waitDrained(t, p)

	res, err := http.Get(p.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", res.StatusCode, body)
	}
	for _, want := range []string{
		`spool_http_request_duration_seconds_count{code="201",route="POST /v1/tables/{table}"} 3`,
		`spool_http_request_duration_seconds_count{code="400",route="POST /v1/tables/{table}"} 1`,
		`spool_http_request_duration_seconds_bucket{code="201",route="POST /v1/tables/{table}",le="+Inf"} 3`,
		"spool_log_depth 0",
		"spool_overlay_rows 0",
		"spool_overlay_spilled_operations 0",
		`spool_log_sync_duration_seconds_bucket{le="1"} `,
		"spool_transactions_accepted_total 3",
		"spool_transactions_applied_total 3",
		"spool_transactions_dead_lettered_total 0",
		"spool_applier_failed_attempts 0",
		"spool_applied_records_pruned_total 0",
		`spool_applier_stage_duration_seconds_bucket{stage="apply",le="+Inf"} `,
		`spool_applier_stage_duration_seconds_count{stage="ack"} `,
		"spool_applier_batch_transactions_sum 3",
		`spool_telemetry_ring_capacity{table="readings"} 10000`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /metrics lacks %q", want)
		}
	}
	// Three writes one after the other: three syncs at least.
	var syncs int
	if _, rest, ok := strings.Cut(string(body), "\nspool_log_sync_duration_seconds_count "); !ok {
		t.Error("GET /metrics lacks spool_log_sync_duration_seconds_count")
	} else if _, err := fmt.Sscan(rest, &syncs); err != nil || syncs < 3 {
		t.Errorf("spool_log_sync_duration_seconds_count %d (%v), want 3 or more", syncs, err)
	}
	// The scrape passes Prometheus's own lint (names, units, help).
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.CommandContext(t.Context(), promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else if testservers.Required() {
		t.Error("promtool is missing (apt-get install prometheus) and SPOOL_REQUIRE_SERVERS=1")
	}
	if t.Failed() {
		t.Logf("GET /metrics:\n%s", body)
	}
}
