package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDiskFull puts the local log on a 2 MiB tmpfs and fills it with
// writes from 16 writers, while the applier drains into a SQLite database
// on another disk.
//
// What spool does, and this test pins down: the write(2) that finds the
// disk full fails with ENOSPC; the log cuts off what of that group reached
// the file, refuses the group, and stays open (filelog.ErrNoSpace). That
// write and every later one is refused with 503, at once; none gets a 500
// or hangs, and /readyz says the disk is full. When space returns, intake
// resumes by itself, without a restart. Every write that got a 2xx is
// applied once, none that got a 503 is, and nothing is dead-lettered.
//
// It mounts a tmpfs, so it needs root and a sandbox that permits mount;
// elsewhere it skips, saying so.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a tmpfs")
	}
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Skipf("the disk-full test needs to mount a 2 MiB tmpfs (root, and a sandbox that permits mount): %v: %s", err, strings.TrimSpace(string(out)))
	}
	// Registered before any process: cleanups run last first, so the
	// processes are killed before the unmount.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", disk).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", disk, err, out)
		}
	})
	dbPath := filepath.Join(t.TempDir(), "spool.db")
	args := []string{"--data-dir", disk, "--database", "sqlite:" + dbPath, "--schema", "../../examples/observatory.sql"}
	p := startArgs(t, args...)

	l := newRowLoad("disk", 0, 0)
	stop := make(chan struct{})
	began := time.Now()
	l.start(p.url, 16, stop)
	// Full: no write acknowledged for a second.
	waitFor(t, 60*time.Second, "the disk fills up and writes are refused", func() bool {
		last := l.tally(time.Now().Add(-time.Second), time.Time{})
		return time.Since(began) > time.Second && last.total > 0 && last.ok == 0
	})
	ready, body, _ := getJSON(http.DefaultClient, p.url+"/readyz")
	if ready != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(body), "no space") {
		t.Errorf("/readyz while the disk is full: %d %s, want 503 saying there is no space", ready, body)
	}
	filled := l.tally(time.Time{}, time.Time{})
	rows, _ := l.acked()
	t.Logf("filling the 2 MiB disk: %v; %d writes acknowledged; /readyz %d", filled, rows, ready)
	if !strings.Contains(p.stderr.String(), "no space left on device") {
		t.Errorf("the log does not say the disk is full:\n%s", p.stderr)
	}

	// Space returns, under the same load: intake resumes by itself.
	if out, err := exec.Command("mount", "-o", "remount,size=16m", disk).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs: %v: %s", err, out)
	}
	grown := time.Now()
	waitFor(t, 10*time.Second, "intake resumes once space returns", func() bool {
		return l.tally(grown, time.Time{}).ok > 0
	})
	resumed := time.Since(grown)
	time.Sleep(time.Second)
	close(stop)
	l.wait()
	after := l.tally(grown.Add(resumed), time.Time{})
	t.Logf("space returned: first write acknowledged after %v; since then %v", resumed.Round(time.Millisecond), after)
	if after.failed() > 0 {
		t.Errorf("writes refused after intake resumed: %v", after)
	}
	if ready, body, _ := getJSON(http.DefaultClient, p.url+"/readyz"); ready != http.StatusOK {
		t.Errorf("/readyz after space returned: %d %s, want 200", ready, body)
	}
	waitDrained(t, p)
	p.stop(t)

	all := l.tally(time.Time{}, time.Time{})
	for status, n := range all.byStatus {
		if status != http.StatusServiceUnavailable {
			t.Errorf("%d writes answered %d (0: no answer); a full disk must give 503 (errors %q)", n, status, all.errs)
		}
	}
	if all.byStatus[http.StatusServiceUnavailable] == 0 {
		t.Error("no write was refused: the disk never filled")
	}
	if all.slowest > 2*time.Second {
		t.Errorf("a write waited %v for its answer; want at most 2s", all.slowest)
	}
	f := l.checkSQLite(t, dbPath)
	t.Logf("%d writes refused with 503; %d of them applied", f.refused, f.unacked)
	if f.unacked > 0 {
		t.Errorf("%d writes refused with 503 were applied: the refused group was not cut off", f.unacked)
	}
}
