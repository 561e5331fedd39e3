package main

import (
	"strings"
	"testing"
)

// TestHeadName: local logs of one name in two directories get two heads
// in spool_log_heads; a shared log is its name.
func TestHeadName(t *testing.T) {
	t.Parallel()
	a := headName(&serveConfig{logURL: "local", logName: "default", dataDir: "site-a"})
	b := headName(&serveConfig{logURL: "local", logName: "default", dataDir: "site-b"})
	if a == b || !strings.HasPrefix(a, "local:") || !strings.HasSuffix(a, "site-a/log") {
		t.Errorf("local logs' heads %q and %q: want two, each named for its directory", a, b)
	}
	if got := headName(&serveConfig{logURL: "redis://127.0.0.1:6379/0", logName: "north"}); got != "north" {
		t.Errorf("shared log's head %q, want its name north", got)
	}
}
