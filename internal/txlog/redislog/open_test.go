package redislog

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/testservers"
)

// setConfig sets a server parameter for the rest of t and restores it
// after. Tests that use it are not parallel: the package's parallel tests
// run only after every sequential one has finished, so none of them sees
// the changed server.
func setConfig(t *testing.T, name, value string) {
	t.Helper()
	testservers.Need(t, srvErr)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	old, err := c.ConfigGet(context.Background(), name).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigSet(context.Background(), name, value).Err(); err != nil {
		t.Fatalf("CONFIG SET %s %s: %v", name, value, err)
	}
	t.Cleanup(func() {
		if err := c.ConfigSet(context.Background(), name, old[name]).Err(); err != nil {
			t.Errorf("restore %s: %v", name, err)
		}
	})
}

func TestOpenRefusesEvictingPolicy(t *testing.T) {
	setConfig(t, "maxmemory-policy", "allkeys-lru")
	l, err := Open(t.Context(), Config{URL: srv.URL, Name: uniqueName(t)}, nil)
	if err == nil {
		_ = l.Close()
		t.Fatal("open with maxmemory-policy allkeys-lru: no error")
	}
	if !errors.Is(err, ErrUnsafeServer) || !strings.Contains(err.Error(), "allkeys-lru") || !strings.Contains(err.Error(), "noeviction") {
		t.Fatalf("open with maxmemory-policy allkeys-lru: %v; want ErrUnsafeServer naming the policy and noeviction", err)
	}
}

func TestOpenWarnsAboutDurability(t *testing.T) {
	for _, tt := range []struct{ fsync, want string }{
		{"everysec", "about 1 s"},
		{"no", "the kernel decides"},
	} {
		t.Run(tt.fsync, func(t *testing.T) {
			setConfig(t, "appendfsync", tt.fsync)
			logger, buf := testLogger()
			l, err := Open(t.Context(), Config{URL: srv.URL, Name: uniqueName(t)}, logger)
			if err != nil {
				t.Fatal(err)
			}
			_ = l.Close()
			out := buf.String()
			if !strings.Contains(out, `"level":"WARN"`) || !strings.Contains(out, "appendfsync is "+tt.fsync) || !strings.Contains(out, tt.want) {
				t.Fatalf("open with appendfsync %s logged\n%s\nwant a warning saying %q", tt.fsync, out, tt.want)
			}
		})
	}
}

func TestOpenQuietOnSafeServer(t *testing.T) {
	t.Parallel()
	testservers.Need(t, srvErr)
	logger, buf := testLogger()
	l, err := Open(t.Context(), Config{URL: srv.URL, Name: uniqueName(t)}, logger)
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
	if out := buf.String(); strings.Contains(out, `"level":"WARN"`) || strings.Contains(out, `"level":"ERROR"`) {
		t.Fatalf("open on a server with AOF always and noeviction logged\n%s", out)
	}
}

func TestOpenWarnsWhenConfigRefused(t *testing.T) {
	t.Parallel()
	testservers.Need(t, srvErr)
	// A user that may do everything but CONFIG, as managed servers have.
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	user := strings.ToLower(uniqueName(t))
	if err := admin.Do(t.Context(), "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-config").Err(); err != nil {
		t.Fatal(err)
	}
	defer admin.Do(context.Background(), "ACL", "DELUSER", user)
	logger, buf := testLogger()
	url := strings.Replace(srv.URL, "redis://", "redis://"+user+":pw@", 1)
	l, err := Open(t.Context(), Config{URL: url, Name: uniqueName(t)}, logger)
	if err != nil {
		t.Fatalf("open without CONFIG: %v", err)
	}
	_ = l.Close()
	if out := buf.String(); !strings.Contains(out, "could not verify") {
		t.Fatalf("open without CONFIG logged\n%s\nwant a warning that it could not verify", out)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{}, "URL"},
		{"brace in name", Config{URL: "redis://x", Name: "a}b"}, "Name"},
		{"negative MinIdle", Config{URL: "redis://x", MinIdle: -1}, "MinIdle"},
		{"sub-millisecond ClaimBlock", Config{URL: "redis://x", ClaimBlock: 10}, "ClaimBlock"},
		{"negative QueueLength", Config{URL: "redis://x", QueueLength: -1}, "QueueLength"},
	} {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
	if err := (Config{URL: "redis://x"}).Validate(); err != nil {
		t.Errorf("URL only: %v", err)
	}
	if err := (LeaseConfig{TTL: 100, Renew: 200}).Validate(); err == nil {
		t.Error("lease config with Renew above TTL: no error")
	}
	if _, err := Open(t.Context(), Config{URL: "http://nowhere"}, nil); err == nil {
		t.Error("open with an http URL: no error")
	}
}
