package testservers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel timings of a SentinelSet: a master that does not answer for
// SentinelDownAfter is failed over (Redis's default, 30 s, would make a
// test wait half a minute), and a failover that has not finished in
// SentinelFailoverTimeout is started again.
const (
	SentinelDownAfter       = time.Second
	SentinelFailoverTimeout = 5 * time.Second
)

// Sentinel is a throwaway redis-server --sentinel watching one master.
type Sentinel struct {
	Addr string // 127.0.0.1:port
	Dir  string

	bin  string
	port int
	process
}

// startSentinel starts a Sentinel in dir watching master under name, with
// quorum Sentinels needed to call it down.
func startSentinel(dir, name string, master *Redis, quorum int) (*Sentinel, error) {
	bin, port, err := prepareRedis(dir)
	if err != nil {
		return nil, err
	}
	host, mport, _ := strings.Cut(master.Addr, ":")
	// Sentinel rewrites its configuration file as it learns: it must be
	// a file of its own, writable.
	conf := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
logfile %s
daemonize no
sentinel monitor %s %s %s %d
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s %d
sentinel parallel-syncs %s 1
`, port, dir, filepath.Join(dir, "sentinel.log"), name, host, mport, quorum,
		name, SentinelDownAfter.Milliseconds(), name, SentinelFailoverTimeout.Milliseconds(), name)
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	s := &Sentinel{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, bin: bin, port: port}
	if err := s.start(exec.Command(bin, path, "--sentinel")); err != nil {
		return nil, fmt.Errorf("start redis-server --sentinel: %w", err)
	}
	if err := waitPort(s.Addr, s.done, 10*time.Second); err != nil {
		s.Kill()
		log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
		return nil, fmt.Errorf("redis-server --sentinel: %w\n%s", err, log)
	}
	return s, nil
}

// SentinelSet is a master (AOF always, as StartRedis sets one up), its
// replicas and the Sentinels that watch them, on loopback.
type SentinelSet struct {
	Name      string
	Servers   []*Redis // the master at start first, then its replicas
	Sentinels []*Sentinel
}

// StartSentinelSet starts, under dir, a master named name with replicas
// replicas and sentinels Sentinels (a majority of them the quorum), and
// waits until the replicas are in sync and every Sentinel knows every
// replica and every other Sentinel: a failover can happen from then on.
func StartSentinelSet(ctx context.Context, dir, name string, replicas, sentinels int) (*SentinelSet, error) {
	s := &SentinelSet{Name: name}
	master, err := StartRedis(filepath.Join(dir, "redis-0"))
	if err != nil {
		return nil, err
	}
	s.Servers = append(s.Servers, master)
	for i := 1; i <= replicas; i++ {
		r, err := StartReplica(filepath.Join(dir, fmt.Sprintf("redis-%d", i)), master)
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.Servers = append(s.Servers, r)
	}
	for i := range sentinels {
		sn, err := startSentinel(filepath.Join(dir, fmt.Sprintf("sentinel-%d", i)), name, master, sentinels/2+1)
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.Sentinels = append(s.Sentinels, sn)
	}
	if err := s.waitReady(ctx, master, replicas); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// URL is the set's redis-sentinel:// URL, database 0.
func (s *SentinelSet) URL() string {
	addrs := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		addrs[i] = sn.Addr
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "/" + s.Name
}

// waitReady waits until master has its replicas in sync and every
// Sentinel sees them and the other Sentinels.
func (s *SentinelSet) waitReady(ctx context.Context, master *Redis, replicas int) error {
	return until(ctx, 30*time.Second, "the Sentinel set to be ready", func(ctx context.Context) error {
		if err := replicasInSync(ctx, master, replicas); err != nil {
			return err
		}
		for _, sn := range s.Sentinels {
			m, err := sentinelMaster(ctx, sn.Addr, s.Name)
			if err != nil {
				return err
			}
			if m["num-slaves"] != strconv.Itoa(replicas) || m["num-other-sentinels"] != strconv.Itoa(len(s.Sentinels)-1) {
				return fmt.Errorf("Sentinel %s sees %s replicas and %s other Sentinels", sn.Addr, m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return nil
	})
}

// replicasInSync checks that master is a master with n replicas whose
// links are up and online.
func replicasInSync(ctx context.Context, master *Redis, n int) error {
	info, err := infoFields(ctx, master.Addr, "replication")
	if err != nil {
		return err
	}
	online := 0
	for k, v := range info {
		if strings.HasPrefix(k, "slave") && strings.Contains(v, "state=online") {
			online++
		}
	}
	if info["role"] != "master" || online < n {
		return fmt.Errorf("%s: role %s, %d of %d replicas online", master.Addr, info["role"], online, n)
	}
	return nil
}

// Master returns the server the Sentinels name as the master now.
func (s *SentinelSet) Master(ctx context.Context) (*Redis, error) {
	var errs []error
	for _, sn := range s.Sentinels {
		if !alive(sn.Pid()) {
			continue
		}
		addr, err := masterAddr(ctx, sn.Addr, s.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range s.Servers {
			if r.Addr == addr {
				return r, nil
			}
		}
		return nil, fmt.Errorf("Sentinel %s names master %s, not a server of the set", sn.Addr, addr)
	}
	return nil, fmt.Errorf("no Sentinel answered: %w", errors.Join(errs...))
}

// WaitFailover waits until the Sentinels name a master other than old
// and it has n replicas in sync (0: does not wait for replicas), and
// returns it.
func (s *SentinelSet) WaitFailover(ctx context.Context, old *Redis, n int, within time.Duration) (*Redis, error) {
	return s.waitMaster(ctx, within, "a failover", old, n)
}

// WaitMaster waits until the master the Sentinels name, whichever it is
// by then, has n replicas in sync, and returns it. On a loaded machine a
// master that stalls past SentinelDownAfter is failed over again, so a
// server named master earlier may be a replica now.
func (s *SentinelSet) WaitMaster(ctx context.Context, n int, within time.Duration) (*Redis, error) {
	return s.waitMaster(ctx, within, fmt.Sprintf("the master with %d replicas in sync", n), nil, n)
}

// waitMaster waits until the Sentinels name a master other than not (if
// set) and it has n replicas in sync, and returns it.
func (s *SentinelSet) waitMaster(ctx context.Context, within time.Duration, what string, not *Redis, n int) (*Redis, error) {
	var m *Redis
	err := until(ctx, within, what, func(ctx context.Context) error {
		var err error
		if m, err = s.Master(ctx); err != nil {
			return err
		}
		if m == not {
			return fmt.Errorf("the master is still %s", not.Addr)
		}
		return replicasInSync(ctx, m, n)
	})
	return m, err
}

// WaitReplicas waits until r is a master with n replicas in sync.
func (r *Redis) WaitReplicas(ctx context.Context, n int, within time.Duration) error {
	return until(ctx, within, fmt.Sprintf("%d replicas of %s in sync", n, r.Addr), func(ctx context.Context) error {
		return replicasInSync(ctx, r, n)
	})
}

// until calls check every 50 ms until it returns nil, within passes or
// ctx ends.
func until(ctx context.Context, within time.Duration, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (%w)", what, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops every Sentinel and server of the set by pid.
func (s *SentinelSet) Stop() {
	for _, sn := range s.Sentinels {
		_ = sn.Stop()
	}
	for _, r := range s.Servers {
		_ = r.Stop()
	}
}

// infoFields returns the fields of INFO section of the server at addr.
func infoFields(ctx context.Context, addr, section string) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("INFO %s of %s: %w", section, addr, err)
	}
	return ParseInfo(info), nil
}

// ParseInfo returns the fields of an INFO reply, by name.
func ParseInfo(info string) map[string]string {
	out := map[string]string{}
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// sentinelMaster returns SENTINEL MASTER name as asked of the Sentinel at
// addr.
func sentinelMaster(ctx context.Context, addr, name string) (map[string]string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	m, err := c.Master(ctx, name).Result()
	if err != nil {
		return nil, fmt.Errorf("SENTINEL MASTER %s of %s: %w", name, addr, err)
	}
	return m, nil
}

// masterAddr asks the Sentinel at addr where master name is.
func masterAddr(ctx context.Context, addr, name string) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	hp, err := c.GetMasterAddrByName(ctx, name).Result()
	if err != nil {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME %s of %s: %w", name, addr, err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME %s of %s: %v", name, addr, hp)
	}
	return hp[0] + ":" + hp[1], nil
}
