package redislog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated is wrapped by the error of a call whose writes fewer
// than Config.MinReplicas replicas acknowledged within
// Config.ReplicaTimeout. The writes are on the master: an append so
// refused may still be delivered and applied later, once a replica has it
// (see the package documentation); or lost, if the master fails first.
var ErrNotReplicated = errors.New("not on enough Redis replicas")

// queueWait adds to pipe what makes its writes, and every write the master
// took before them, wait for Config.MinReplicas replicas: a write of the
// log's synced key, then WAIT. WAIT waits for the replication offset of
// the connection's last write, and a call that wrote nothing (an append
// whose transactions were all there already, a lookup) would leave that
// at an older write, or none; the replication stream is in order, so a
// replica that has the synced write has everything before it. It returns
// nil when the log waits for no replica.
func (l *Log) queueWait(ctx context.Context, pipe redis.Pipeliner) *redis.Cmd {
	if l.cfg.MinReplicas == 0 {
		return nil
	}
	pipe.Set(ctx, l.keys.synced, l.cfg.Consumer, 0)
	return pipe.Do(ctx, "WAIT", l.cfg.MinReplicas, l.cfg.ReplicaTimeout.Milliseconds())
}

// waited checks the reply of a WAIT queueWait queued (nil: none).
func (l *Log) waited(wait *redis.Cmd) error {
	if wait == nil {
		return nil
	}
	n, err := wait.Int64()
	if err != nil {
		return err
	}
	if n < int64(l.cfg.MinReplicas) {
		return fmt.Errorf("%w: %d of %d replicas acknowledged within %v", ErrNotReplicated, n, l.cfg.MinReplicas, l.cfg.ReplicaTimeout)
	}
	return nil
}

// waitReplicas waits until Config.MinReplicas replicas have every write
// the master took so far, for at most Config.ReplicaTimeout; fewer is an
// error wrapping ErrNotReplicated. With MinReplicas 0 it returns at once.
func (l *Log) waitReplicas(ctx context.Context) error {
	if l.cfg.MinReplicas == 0 {
		return nil
	}
	pipe := l.client.Pipeline()
	wait := l.queueWait(ctx, pipe)
	_, err := pipe.Exec(ctx)
	if err == nil {
		err = l.waited(wait)
	}
	return err
}

// runAppend runs the append script with keys and args and, with
// MinReplicas, the WAIT after it in the same round trip.
func (l *Log) runAppend(ctx context.Context, keys []string, args []any) ([]string, error) {
	if l.cfg.MinReplicas == 0 {
		return appendScript.Run(ctx, l.client, keys, args...).StringSlice()
	}
	for loaded := false; ; loaded = true {
		pipe := l.client.Pipeline()
		ids := pipe.EvalSha(ctx, appendScript.Hash(), keys, args...)
		wait := l.queueWait(ctx, pipe)
		_, _ = pipe.Exec(ctx) // errors are in the commands
		if !loaded && redis.HasErrorPrefix(ids.Err(), "NOSCRIPT") {
			// A new master (after a failover) or a restarted server has
			// no scripts: load it and send the call again, which did
			// nothing.
			if err := appendScript.Load(ctx, l.client).Err(); err != nil {
				return nil, fmt.Errorf("load the append script: %w", err)
			}
			continue
		}
		out, err := ids.StringSlice()
		if err != nil {
			return nil, err
		}
		if err := l.waited(wait); err != nil {
			return nil, err
		}
		return out, nil
	}
}

// checkReplication refuses a Redis Cluster node and warns when the master
// has fewer replicas than every write waits for.
func (l *Log) checkReplication(ctx context.Context) error {
	info, err := l.client.Info(ctx, "cluster", "replication").Result()
	if err != nil {
		l.logger.Warn("redislog: could not read INFO cluster and replication", "err", err)
		return nil
	}
	fields := map[string]string{}
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	if fields["cluster_enabled"] == "1" {
		return fmt.Errorf("redislog: open: %w: the server is a Cluster node; use a single server or a Sentinel set (redis-sentinel://)", ErrClusterUnsupported)
	}
	if l.cfg.MinReplicas == 0 {
		return nil
	}
	if n, err := strconv.Atoi(fields["connected_slaves"]); err == nil && n < l.cfg.MinReplicas {
		l.logger.Warn("redislog: the master has fewer replicas than every write waits for: writes are refused until enough are connected",
			"replicas", n, "min_replicas", l.cfg.MinReplicas)
	}
	return nil
}
