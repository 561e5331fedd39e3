package redislog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/leakcheck"
	"github.com/spoolgw/spool/internal/syncbuf"
	"github.com/spoolgw/spool/internal/testservers"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txlog/txlogtest"
)

// srv is the package's redis-server (AOF always, noeviction), started once
// in TestMain; srvErr says why it is not there. Tests share it, each on
// logs of its own name.
var (
	srv    *testservers.Redis
	srvErr error
)

// TestMain starts the redis-server, runs the tests, stops the server by
// pid, and fails the package if goroutines outlive the tests: every Log
// must stop its writer and its lease renewers on Close.
func TestMain(m *testing.M) {
	flag.Parse()
	if fuzzing() {
		// The fuzz targets need no server, and the fuzzing engine's own
		// goroutines outlive them.
		os.Exit(m.Run())
	}
	dir, err := testservers.TempDir("spool-redislog-")
	if err != nil {
		srvErr = err
	} else {
		srv, srvErr = testservers.StartRedis(dir)
	}
	leakcheck.Main(m, func() {
		if srv != nil {
			if err := srv.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stop redis-server:", err)
			}
		}
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
	})
}

// fuzzing reports whether the test binary runs the fuzzing engine.
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	w := flag.Lookup("test.fuzzworker")
	return (f != nil && f.Value.String() != "") || (w != nil && w.Value.String() == "true")
}

// uniqueName is a log name for t: its name, made safe, and a random
// suffix, so that parallel tests and repeated runs never share keys.
func uniqueName(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '-'
	}, t.Name())
	return name + "-" + hex.EncodeToString(b[:])
}

// openLog opens a log on the package's server for t (a fresh one unless
// cfg names one) and closes it when t ends.
func openLog(t testing.TB, cfg Config) *Log {
	t.Helper()
	testservers.Need(t, srvErr)
	if cfg.URL == "" {
		cfg.URL = srv.URL
	}
	if cfg.Name == "" {
		cfg.Name = uniqueName(t)
	}
	if cfg.Consumer == "" {
		cfg.Consumer = "test"
	}
	l, err := Open(t.Context(), cfg, nil)
	if err != nil {
		t.Fatalf("open log %q: %v", cfg.Name, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// testCtx is t's context bounded by a generous deadline: a test that
// waits that long has failed.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	t.Parallel()
	txlogtest.Run(t, txlogtest.Harness{
		New: func(t testing.TB) func() (txlog.Log, error) {
			testservers.Need(t, srvErr)
			cfg := Config{URL: srv.URL, Name: uniqueName(t), Consumer: "conformance"}
			return func() (txlog.Log, error) { return Open(context.Background(), cfg, nil) }
		},
		ComparePos: ComparePos,
	})
}

// TestConformanceInFlight runs the suite with several script calls in
// flight at once.
func TestConformanceInFlight(t *testing.T) {
	t.Parallel()
	txlogtest.Run(t, txlogtest.Harness{
		New: func(t testing.TB) func() (txlog.Log, error) {
			testservers.Need(t, srvErr)
			cfg := Config{URL: srv.URL, Name: uniqueName(t), Consumer: "conformance", MaxInFlight: 4}
			return func() (txlog.Log, error) { return Open(context.Background(), cfg, nil) }
		},
		ComparePos: ComparePos,
	})
}

// testLogger returns a logger writing JSON lines into the returned buffer.
func testLogger() (*slog.Logger, *syncbuf.Buffer) {
	b := &syncbuf.Buffer{}
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// evalshaStat returns one field (calls, usec) of EVALSHA in the INFO
// commandstats of the server c talks to: the server's own count of the
// script calls it ran and of the time they took.
func evalshaStat(t testing.TB, c redis.UniversalClient, field string) int64 {
	t.Helper()
	info, err := c.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:")
		if !ok {
			continue
		}
		for f := range strings.SplitSeq(strings.TrimSpace(rest), ",") {
			if v, ok := strings.CutPrefix(f, field+"="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
	}
	return 0
}
