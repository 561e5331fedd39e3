package main

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// parseStat reads the fields after the command name, which may hold
// spaces and parentheses.
func TestParseStat(t *testing.T) {
	stat := []byte("4242 (a (b) c) S 17 4242 4242 0 -1 4194560 120 0 0 0 25 7 3 1 20 0 1 0 100 0 0\n")
	ppid, ticks, err := parseStat(stat)
	if err != nil || ppid != 17 || ticks != 36 {
		t.Fatalf("parseStat: ppid %d, ticks %d, %v; want 17, 36, nil", ppid, ticks, err)
	}
	for _, bad := range []string{"", "4242 no-name S 1", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13"} {
		if _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

// A group counts the CPU time of its root's descendants: a shell whose
// child spins for half a second has used about that much, and a group
// rooted elsewhere none of it.
func TestCPUMeterCountsDescendants(t *testing.T) {
	needProc(t)
	sh := startSpinner(t)
	var m cpuMeter
	m.begin()
	time.Sleep(500 * time.Millisecond) // the span measured, not a wait for an outcome
	span, err := m.end(cpuGroups{"shell": {sh}, "self": {os.Getpid()}})
	if err != nil {
		t.Fatal(err)
	}
	used, wall := span.used, span.wall
	if used["shell"] < 100*time.Millisecond || used["shell"] > wall+50*time.Millisecond {
		t.Errorf("the spinning child used %v over %v", used["shell"], wall)
	}
	if used["self"] > used["shell"] {
		t.Errorf("this process, idle, used %v, more than the spinning child's %v", used["self"], used["shell"])
	}
}

// A process started after the span began (as the drain's applier is)
// counts from zero: all it used falls within the span.
func TestCPUMeterCountsProcessesStartedWithin(t *testing.T) {
	needProc(t)
	var m cpuMeter
	m.begin()
	sh := startSpinner(t)
	time.Sleep(500 * time.Millisecond) // the span measured, not a wait for an outcome
	span, err := m.end(cpuGroups{"shell": {sh}})
	if err != nil {
		t.Fatal(err)
	}
	if used := span.used["shell"]; used < 100*time.Millisecond || used > span.wall+50*time.Millisecond {
		t.Errorf("a shell started within the span, its child spinning, used %v over %v", used, span.wall)
	}
}

func needProc(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc:", err)
	}
}

// startSpinner starts a shell whose child spins until the test ends, and
// returns the shell's pid.
func startSpinner(t *testing.T) int {
	t.Helper()
	sh := exec.Command("sh", "-c", `sh -c 'while :; do :; done' & wait`)
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-sh.Process.Pid, syscall.SIGKILL) // the shell and its child
		sh.Wait()
	})
	return sh.Process.Pid
}
