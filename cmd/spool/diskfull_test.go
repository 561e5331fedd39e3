package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDiskFull puts the local log on a 2 MiB tmpfs and fills it with
// writes from 16 writers, while the applier drains into a SQLite database
// on another disk.
//
// What spool does, and this test pins down: the write(2) that finds the
// disk full fails with ENOSPC and the log fails for good, as for a failed
// fsync (filelog.ErrFailed; see RELIABILITY.md for why, and what a partial
// write leaves). That write and every later one is refused with 503, at
// once; none gets a 500 or hangs. When space returns, intake stays refused
// (the log says why) until spool is restarted; the restart rereads the log
// from disk, repairs the torn tail, and intake resumes. Every write that got
// a 2xx is then applied once; nothing is dead-lettered.
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
	// A short shutdown: the failed log cannot record the acknowledgement
	// of the last batch applied (its checkpoint write failed too), so its
	// depth stays above zero until the restart and the drain at SIGTERM
	// waits the whole timeout.
	args := []string{"--data-dir", disk, "--database", "sqlite:" + dbPath, "--schema", "../../examples/observatory.sql", "--shutdown-timeout", "2s"}
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
	close(stop)
	l.wait()
	filled := l.tally(time.Time{}, time.Time{})
	rows, _ := l.acked()
	t.Logf("filling the 2 MiB disk: %v; %d writes acknowledged", filled, rows)
	if !strings.Contains(p.stderr.String(), "no space left on device") {
		t.Errorf("the log does not say the disk is full:\n%s", p.stderr)
	}

	// Space returns; the log stays failed until a restart.
	if out, err := exec.Command("mount", "-o", "remount,size=16m", disk).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs: %v: %s", err, out)
	}
	res, err := http.Post(p.url+"/v1/tables/observations", "application/json", strings.NewReader(`{"target":"disk-after-space-returned"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	ready, _, _ := getJSON(http.DefaultClient, p.url+"/readyz")
	t.Logf("a write after space returned, before the restart: %d (/readyz: %d)", res.StatusCode, ready)
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a write to the failed log after space returned: %d, want 503 until the restart", res.StatusCode)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil

	p = startArgs(t, args...)
	if s := logLines(p, "torn", 1); s != "" {
		t.Logf("at the restart: %s", strings.TrimSpace(s))
	}
	restarted := time.Now()
	stop = make(chan struct{})
	l.start(p.url, 4, stop)
	time.Sleep(time.Second)
	close(stop)
	l.wait()
	after := l.tally(restarted, time.Time{})
	t.Logf("after the restart: %v", after)
	if after.ok == 0 || after.failed() > 0 {
		t.Errorf("intake did not resume after the restart: %v", after)
	}
	waitDrained(t, p)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil

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
	t.Logf("%d writes refused with 503; %d of them applied after the restart (whole records of the failed write)", f.refused, f.unacked)
}
