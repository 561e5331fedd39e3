package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
)

// startDurable serves the durable no-op: the no-op answering once the
// body is durable the way spool's log makes a write durable, and nothing
// else. Each request's body is decoded, encoded again and appended: on the
// embedded shape to a file, answered once an fsync covers it, appends that
// arrive while one is in flight sharing the next (group commit, as spool's
// local log does); with --servers as one RPUSH to the bench's Redis, which
// runs with appendfsync always as spool's log does. No validation, ids,
// overlay or drain: spool against it is what spool's own work costs, it
// against the no-op what durability costs on this machine.
func (e *benchEnv) startDurable() (string, func(), error) {
	return e.startDurableWait(0)
}

// startDurableWait is the durable no-op whose RPUSH is followed, in the
// same round trip, by WAIT replicas (1 s), as spool's append is under
// --log-min-replicas: a write fewer replicas acknowledged gets 503.
// replicas 0 is the durable no-op; it needs --servers otherwise.
func (e *benchEnv) startDurableWait(replicas int) (string, func(), error) {
	var (
		appendBody func(ctx context.Context, body []byte) error
		closeLog   func()
	)
	if e.servers() {
		rdb, err := e.redisClient("durable no-op")
		if err != nil {
			return "", nil, err
		}
		key := fmt.Sprintf("bench:durable-noop-%d", replicas)
		appendBody = func(ctx context.Context, body []byte) error {
			if replicas == 0 {
				return rdb.RPush(ctx, key, body).Err()
			}
			pipe := rdb.Pipeline()
			pipe.RPush(ctx, key, body)
			wait := pipe.Do(ctx, "WAIT", replicas, 1000)
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
			if n, _ := wait.Int64(); n < int64(replicas) {
				return fmt.Errorf("WAIT: %d of %d replicas", n, replicas)
			}
			return nil
		}
		closeLog = func() {
			// Not kept for the measurements after: the AOF rewrites
			// the list holds to cost them time.
			rdb.Del(context.Background(), key)
			rdb.Close()
		}
	} else {
		if replicas > 0 {
			return "", nil, fmt.Errorf("bench: durable no-op: WAIT needs --servers")
		}
		f, err := os.OpenFile(filepath.Join(e.dir, "durable-noop.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return "", nil, fmt.Errorf("bench: durable no-op: %w", err)
		}
		g := newGroupCommit(f)
		appendBody, closeLog = g.append, func() { g.close(); f.Close() }
	}
	url, stop, err := serveLocal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := decodeBody(w, r)
		if !ok {
			return
		}
		body, err := json.Marshal(v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := appendBody(r.Context(), append(body, '\n')); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		answerQueued(w)
	}))
	if err != nil {
		closeLog()
		return "", nil, err
	}
	return url, func() { stop(); closeLog() }, nil
}

// groupCommit appends to a file from one goroutine: it takes the first
// waiting append and every other already waiting, writes them at once and
// fsyncs, then answers them all. (On this machine an fsync of an appended
// file costs what an fdatasync does, as the size must be synced either
// way; os.File.Sync is the portable one.)
type groupCommit struct {
	reqs chan groupAppend
	quit chan struct{}
	done chan struct{}
}

type groupAppend struct {
	body []byte
	err  chan error
}

func newGroupCommit(f *os.File) *groupCommit {
	g := &groupCommit{reqs: make(chan groupAppend), quit: make(chan struct{}), done: make(chan struct{})}
	go g.run(f)
	return g
}

func (g *groupCommit) run(f *os.File) {
	defer close(g.done)
	var buf []byte
	var batch []groupAppend
	for {
		select {
		case <-g.quit:
			return
		case r := <-g.reqs:
			batch, buf = append(batch[:0], r), append(buf[:0], r.body...)
		more:
			for {
				select {
				case r := <-g.reqs:
					batch, buf = append(batch, r), append(buf, r.body...)
				default:
					break more
				}
			}
			_, err := f.Write(buf)
			if err == nil {
				err = f.Sync()
			}
			for _, r := range batch {
				r.err <- err
			}
		}
	}
}

// append returns once body is durable.
func (g *groupCommit) append(ctx context.Context, body []byte) error {
	r := groupAppend{body: body, err: make(chan error, 1)}
	select {
	case g.reqs <- r:
	case <-g.done:
		return os.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-r.err
}

// close stops the goroutine; appends after it fail.
func (g *groupCommit) close() {
	close(g.quit)
	<-g.done
}
