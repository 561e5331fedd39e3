// Package testservers starts throwaway servers for tests: a redis-server
// with AOF on, and a PostgreSQL primary with a streaming replica, each on a
// free loopback port in a temporary directory, stopped by pid.
//
// Start them once per test package in TestMain. When the binaries are not
// installed, Start returns an error wrapping ErrMissing and tests skip with
// a message saying what to install — unless SPOOL_REQUIRE_SERVERS=1 (CI sets
// it), in which case they fail: CI must never pass by skipping.
package testservers

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// ErrMissing is wrapped by Start errors when a server binary is not installed.
var ErrMissing = errors.New("server binary not installed")

// Required reports whether missing servers must fail the tests instead of
// skipping them (SPOOL_REQUIRE_SERVERS=1).
func Required() bool { return os.Getenv("SPOOL_REQUIRE_SERVERS") == "1" }

// Need skips or fails t when err (from a Start in TestMain) says the servers
// are not there.
func Need(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrMissing) && !Required() {
		t.Skipf("integration test skipped: %v (install redis-server and postgresql, or set SPOOL_REQUIRE_SERVERS=1 to make this a failure)", err)
	}
	t.Fatalf("test servers: %v", err)
}

// Installed returns nil if redis-server and PostgreSQL's binaries are
// installed, else an error wrapping ErrMissing: for a package whose tests
// start no server themselves but run a program that does.
func Installed() error {
	for _, name := range []string{"redis-server", "initdb", "pg_basebackup"} {
		if _, err := findBinary(name); err != nil {
			return err
		}
	}
	return nil
}

// FreePort returns a loopback port nobody listens on right now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// findBinary looks for name on PATH, then under /usr/lib/postgresql/*/bin
// (newest version first).
func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	if len(matches) > 0 {
		return matches[0], nil
	}
	return "", fmt.Errorf("%w: %s (not on PATH nor under /usr/lib/postgresql/*/bin)", ErrMissing, name)
}

func version(path string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return v
}

// waitPort waits until something accepts connections on addr, or the
// process exits, or the timeout passes.
func waitPort(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("server exited before listening on %s", addr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopPid sends sig to pid and waits up to timeout for it to exit, then
// kills it.
func stopPid(pid int, sig syscall.Signal, timeout time.Duration) error {
	if pid <= 0 {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("signal pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return fmt.Errorf("pid %d did not stop within %v; killed", pid, timeout)
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// TempDir makes a directory that the postgres user can also use (t.TempDir
// is private to the test's user).
func TempDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}
