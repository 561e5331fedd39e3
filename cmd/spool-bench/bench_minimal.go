package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/txn"
)

// minimalDrain runs the least a drain from the shape's log into its
// database does (minimalStreamDrain, minimalFileDrain), on n transactions
// of the shape spool's log holds, and returns its rows/s and the CPU time
// its processes used.
func (b *bench) minimalDrain(ctx context.Context, db benchDB, n int, groups cpuGroups) (float64, cpuSpan, error) {
	if b.env.servers() {
		return b.minimalStreamDrain(ctx, db, n, groups)
	}
	return b.minimalFileDrain(ctx, db, n, groups)
}

// minimalStreamDrain runs the least a drain from a Redis log into PostgreSQL
// does, on n transactions of the shape spool's log holds, and returns its
// rows/s and the CPU time its processes used. The transactions' JSON is
// claimed from a stream of the bench's Redis a batch of the applier's size
// at a time (XREADGROUP) and decoded as the logs decode it (txn.Decode); each
// batch's rows are copied into db in a transaction of their own (COPY),
// then acknowledged and deleted from the stream in one round trip; the
// next batch is claimed and decoded while one is copied, as in spool.
// There is no overlay to evict, no record of what was applied, no fencing
// and no status: not a drain that keeps spool's promises, but the floor
// under any drain of this log into this database.
func (b *bench) minimalStreamDrain(ctx context.Context, db benchDB, n int, groups cpuGroups) (float64, cpuSpan, error) {
	rdb, err := b.env.redisClient("minimal drain")
	if err != nil {
		return 0, cpuSpan{}, err
	}
	defer rdb.Close()
	const stream, group = "bench:minimal", "drain"
	tag := fmt.Sprintf("minimal%d", time.Now().UnixNano())
	if err := fillStream(ctx, rdb, stream, tag, n); err != nil {
		return 0, cpuSpan{}, err
	}
	defer rdb.Del(context.WithoutCancel(ctx), stream)
	if err := rdb.XGroupCreate(ctx, stream, group, "0").Err(); err != nil {
		return 0, cpuSpan{}, fmt.Errorf("bench: minimal drain: %w", err)
	}

	if err := b.env.resetRedisStats(ctx); err != nil {
		return 0, cpuSpan{}, err
	}
	var cpu cpuMeter
	cpu.begin()
	start := time.Now()
	if err := copyStream(ctx, rdb, stream, group, db, n, nil); err != nil {
		return 0, cpuSpan{}, err
	}
	rate := float64(n) / time.Since(start).Seconds()
	span, err := cpu.end(groups)
	if err != nil {
		return 0, cpuSpan{}, err
	}
	rs, err := b.env.redisStats(ctx)
	if err != nil {
		return 0, cpuSpan{}, err
	}
	b.redisFigures("drain", "minimal drain", n, rs, redisTop)
	if got, err := db.count(ctx, tag); err != nil || got != int64(n) {
		return 0, cpuSpan{}, fmt.Errorf("bench: minimal drain: %d of %d rows in the database (%v)", got, n, err)
	}
	return rate, span, nil
}

// copyStream claims the entries of stream for group a batch of the
// applier's size at a time (XREADGROUP), decodes them as the logs do, and
// copies each batch's rows into db in a transaction of its own (COPY),
// then acknowledges and deletes them in one round trip; the next batch is
// claimed while one is copied. committed, if set, is told each batch's
// rows once they are in the database. It returns once n rows are copied,
// or with n = 0 once ctx ends.
func copyStream(ctx context.Context, rdb *redis.Client, stream, group string, db benchDB, n int, committed func([]obsRow)) error {
	type batch struct {
		ids  []string
		rows []obsRow
	}
	got := 0
	claim := func(ctx context.Context) (batch, bool, error) {
		for n == 0 || got < n {
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "bench",
				Streams: []string{stream, ">"}, Count: applier.DefaultBatchSize, Block: 100 * time.Millisecond}).Result()
			switch {
			case ctx.Err() != nil:
				return batch{}, false, nil
			case errors.Is(err, redis.Nil):
				continue // nothing new yet
			case err != nil:
				return batch{}, false, fmt.Errorf("bench: minimal drain: claim: %w", err)
			}
			var bt batch
			for _, m := range res[0].Messages {
				row, err := minimalRow(m)
				if err != nil {
					return batch{}, false, err
				}
				bt.ids, bt.rows = append(bt.ids, m.ID), append(bt.rows, row)
			}
			got += len(bt.ids)
			return bt, true, nil
		}
		return batch{}, false, nil
	}
	err := readAhead(ctx, claim, func(bt batch) error {
		if err := bulk(ctx, db, bt.rows); err != nil {
			return err
		}
		if committed != nil {
			committed(bt.rows)
		}
		pipe := rdb.Pipeline()
		pipe.XAck(ctx, stream, group, bt.ids...)
		pipe.XDel(ctx, stream, bt.ids...)
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("bench: minimal drain: acknowledge: %w", err)
		}
		return nil
	})
	switch {
	case n == 0 && ctx.Err() != nil:
		return nil // stopped
	case err != nil:
		return err
	case n == 0:
		return nil
	}
	return ctx.Err()
}

// readAhead reads batches with read in a goroutine of its own and hands
// each to write, the next batch read while one is written, as the applier
// claims ahead; read says ok false when there is nothing more, or once
// its ctx ends. It returns write's error, else read's.
func readAhead[B any](ctx context.Context, read func(context.Context) (b B, ok bool, err error), write func(B) error) error {
	ahead := make(chan B, 1) // one batch read ahead
	readErr := make(chan error, 1)
	readCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(ahead)
		for {
			b, ok, err := read(readCtx)
			if err != nil {
				readErr <- err
				return
			}
			if !ok {
				return
			}
			select {
			case ahead <- b:
			case <-readCtx.Done():
				return
			}
		}
	}()
	for b := range ahead {
		if err := write(b); err != nil {
			return err
		}
	}
	select {
	case err := <-readErr:
		return err
	default:
		return nil
	}
}

// fillStream appends n transactions of the shape spool's log holds for the
// bench's writes, their targets tagged, to stream.
func fillStream(ctx context.Context, rdb *redis.Client, stream, tag string, n int) error {
	created := time.Now().UTC()
	for i := 0; i < n; i += applier.DefaultBatchSize {
		pipe := rdb.Pipeline()
		for j := i; j < min(n, i+applier.DefaultBatchSize); j++ {
			payload, err := minimalTx(tag, int64(j), created)
			if err != nil {
				return err
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"tx", payload}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("bench: minimal drain: fill: %w", err)
		}
	}
	return nil
}

// minimalTx is the JSON of the i-th of the minimal drain's transactions,
// tagged tag, as spool's log holds it.
func minimalTx(tag string, i int64, created time.Time) ([]byte, error) {
	r := obsRowFor(tag, i)
	tx := obsInsert(r.id, created, map[string]any{"target": r.target, "exposure_s": r.exposure, "meta": json.RawMessage(r.meta)})
	payload, err := json.Marshal(tx)
	if err != nil {
		return nil, fmt.Errorf("bench: minimal drain: %w", err)
	}
	return payload, nil
}

// obsInsert is a transaction of the shape spool's log holds for one of
// the bench's writes: the insert of values into observations, under the
// generated key id (which it adds to values).
func obsInsert(id string, created time.Time, values map[string]any) *txn.Transaction {
	values["id"] = id
	return &txn.Transaction{ID: txn.NewID(), CreatedAt: created, Operations: []txn.Operation{{
		Op: txn.Insert, Table: "observations", ID: id, Generated: true, Values: values,
	}}}
}

// minimalRow decodes a stream entry's transaction as the logs do
// (txn.Decode) and returns its row.
func minimalRow(m redis.XMessage) (obsRow, error) {
	payload, _ := m.Values["tx"].(string)
	return txRowOf(m.ID, []byte(payload))
}

// txRowOf decodes the transaction of entry id as the logs do (txn.Decode)
// and returns its row.
func txRowOf(id string, payload []byte) (obsRow, error) {
	tx, err := txn.Decode(payload)
	if err != nil {
		return obsRow{}, fmt.Errorf("bench: minimal drain: entry %s: %w", id, err)
	}
	if len(tx.Operations) != 1 {
		return obsRow{}, fmt.Errorf("bench: minimal drain: entry %s: %d operations, want 1", id, len(tx.Operations))
	}
	v := tx.Operations[0].Values
	target, _ := v["target"].(string)
	num, _ := v["exposure_s"].(json.Number)
	exposure, err := num.Float64()
	if err != nil {
		return obsRow{}, fmt.Errorf("bench: minimal drain: entry %s: exposure_s: %w", id, err)
	}
	meta, err := json.Marshal(v["meta"])
	if err != nil {
		return obsRow{}, fmt.Errorf("bench: minimal drain: entry %s: meta: %w", id, err)
	}
	return obsRow{id: tx.Operations[0].ID, target: target, exposure: exposure, meta: string(meta)}, nil
}

// minimalPipeline is the least a gateway that buffers writes in a durable
// log and drains them into the database does between a write's
// acknowledgement and its row in the database. Each POSTed body is made a
// transaction of the shape spool's log holds and made durable before the
// 201: with --servers appended to a stream of the bench's Redis (XADD;
// appendfsync always), and copyStream drains the stream into a database
// of the bench's meanwhile; on the embedded default appended to a file
// under group-committed fsync, as the durable no-op does, and its row
// handed in memory to a drain that writes up to 500 rows at a time with
// one multi-row INSERT into a SQLite file of the bench's. No validation,
// overlay, status, exactly-once record or fencing: the floor under the
// time from acknowledged to applied, and under the writes a second of a
// gateway that drains as fast as it takes writes, on this machine.
type minimalPipeline struct {
	url  string
	stop func() error // stops serving and draining

	acked, drained atomic.Int64 // rows acknowledged, and in the database

	mu        sync.Mutex
	committed map[string]time.Time // row id → when its batch committed
}

// startMinimalPipeline serves the minimal pipeline, draining into db.
// With track, it records when each row committed (appliedAt).
func (e *benchEnv) startMinimalPipeline(ctx context.Context, db benchDB, track bool) (*minimalPipeline, error) {
	p := &minimalPipeline{committed: make(map[string]time.Time)}
	committed := func(rows []obsRow) {
		p.drained.Add(int64(len(rows)))
		if !track {
			return
		}
		now := time.Now()
		p.mu.Lock()
		for _, row := range rows {
			p.committed[row.id] = now
		}
		p.mu.Unlock()
	}
	var (
		appendTx func(ctx context.Context, tx *txn.Transaction, payload []byte) error
		drain    func(ctx context.Context) error
		closeLog func()
	)
	if e.servers() {
		rdb, err := e.redisClient("minimal pipeline")
		if err != nil {
			return nil, err
		}
		const stream, group = "bench:pipeline", "drain"
		if err := rdb.XGroupCreateMkStream(ctx, stream, group, "$").Err(); err != nil {
			rdb.Close()
			return nil, fmt.Errorf("bench: minimal pipeline: %w", err)
		}
		appendTx = func(ctx context.Context, _ *txn.Transaction, payload []byte) error {
			return rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"tx", payload}}).Err()
		}
		drain = func(ctx context.Context) error { return copyStream(ctx, rdb, stream, group, db, 0, committed) }
		closeLog = func() {
			rdb.Del(context.WithoutCancel(ctx), stream)
			rdb.Close()
		}
	} else {
		f, err := os.OpenFile(filepath.Join(e.dir, fmt.Sprintf("minimal-pipeline-%d.log", time.Now().UnixNano())), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("bench: minimal pipeline: %w", err)
		}
		g := newGroupCommit(f)
		rows := newRowQueue()
		appendTx = func(ctx context.Context, tx *txn.Transaction, payload []byte) error {
			if err := g.append(ctx, append(payload, '\n')); err != nil {
				return err
			}
			row, err := txRow(tx)
			if err != nil {
				return err
			}
			rows.push(row)
			return nil
		}
		drain = func(ctx context.Context) error {
			for {
				batch := rows.take(ctx, applier.DefaultBatchSize)
				if batch == nil {
					return nil // stopped
				}
				if err := bulk(ctx, db, batch); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				committed(batch)
			}
		}
		closeLog = func() { g.close(); f.Close() }
	}
	url, stopServing, err := serveLocal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := decodeBody(w, r)
		if !ok {
			return
		}
		tx := obsInsert(txn.NewID(), time.Now().UTC(), v)
		payload, err := json.Marshal(tx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := appendTx(r.Context(), tx, payload); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		p.acked.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(benchAck{ID: tx.Operations[0].ID, TransactionID: tx.ID})
	}))
	if err != nil {
		closeLog()
		return nil, err
	}
	drainCtx, stopDrain := context.WithCancel(context.WithoutCancel(ctx))
	drained := make(chan error, 1)
	go func() { drained <- drain(drainCtx) }()
	p.url = url
	p.stop = func() error {
		stopServing()
		stopDrain()
		err := <-drained
		closeLog()
		return err
	}
	return p, nil
}

// caughtUp waits up to timeout for every acknowledged row to be in the
// database.
func (p *minimalPipeline) caughtUp(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for p.drained.Load() < p.acked.Load() {
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: minimal pipeline: %d of %d acknowledged rows in the database after %v", p.drained.Load(), p.acked.Load(), timeout)
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// txRow is the row of one of the bench's transactions (obsInsert) as a
// drain writes it.
func txRow(tx *txn.Transaction) (obsRow, error) {
	row, err := obsRowFromBody(tx.Operations[0].Values)
	row.id = tx.Operations[0].ID
	return row, err
}

// rowQueue hands rows from the embedded minimal pipeline's handlers to
// its drain.
type rowQueue struct {
	mu   sync.Mutex
	rows []obsRow
	wake chan struct{}
}

func newRowQueue() *rowQueue { return &rowQueue{wake: make(chan struct{}, 1)} }

func (q *rowQueue) push(r obsRow) {
	q.mu.Lock()
	q.rows = append(q.rows, r)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns up to n rows, waiting for one; nil once ctx ends.
func (q *rowQueue) take(ctx context.Context, n int) []obsRow {
	for {
		q.mu.Lock()
		if len(q.rows) > 0 {
			k := min(n, len(q.rows))
			out := append([]obsRow(nil), q.rows[:k]...)
			q.rows = append(q.rows[:0], q.rows[k:]...)
			q.mu.Unlock()
			return out
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-q.wake:
		}
	}
}

// appliedAt returns when the row of each ack committed, waiting up to
// timeout for the drain to reach the last of them.
func (p *minimalPipeline) appliedAt(ctx context.Context, acks []benchAck, timeout time.Duration) ([]time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		at := make([]time.Time, 0, len(acks))
		for _, a := range acks {
			t, ok := p.committed[a.ID]
			if !ok {
				break
			}
			at = append(at, t)
		}
		p.mu.Unlock()
		if len(at) == len(acks) {
			return at, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bench: minimal pipeline: %d of %d acknowledged rows committed after %v", len(at), len(acks), timeout)
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}
}
