package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// examples/prometheus/alerts.yml is valid (promtool check rules), its
// unit tests pass (promtool test rules), and every spool metric it names
// is one spool exports. Without promtool (Debian's prometheus package) it
// skips, unless SPOOL_REQUIRE_SERVERS=1 (CI), where it fails.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("SPOOL_REQUIRE_SERVERS") == "1" {
			t.Fatal("promtool is missing (apt-get install prometheus) and SPOOL_REQUIRE_SERVERS=1")
		}
		t.Skip("promtool is missing (apt-get install prometheus)")
	}
	const dir = "../../examples/prometheus"
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.CommandContext(t.Context(), promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	rules, err := os.ReadFile(dir + "/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var sources string
	for _, f := range []string{"metrics.go", "../../internal/api/metrics.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources += string(b)
	}
	names := regexp.MustCompile(`\bspool_[a-z_]+`).FindAllString(string(rules), -1)
	if len(names) < 10 {
		t.Fatalf("alerts.yml names only %d spool metrics", len(names))
	}
	for _, n := range names {
		base := n
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !strings.Contains(sources, `"`+base+`"`) {
			t.Errorf("alerts.yml names %s, which spool does not export (cmd/spool/metrics.go, internal/api/metrics.go)", n)
		}
	}
}
