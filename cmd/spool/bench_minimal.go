package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/txn"
)

// minimalDrain runs the least a drain from a Redis log into PostgreSQL
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
func (b *bench) minimalDrain(ctx context.Context, db benchDB, n int, groups cpuGroups) (float64, cpuSpan, error) {
	opts, err := redis.ParseURL(b.env.redis.URL)
	if err != nil {
		return 0, cpuSpan{}, fmt.Errorf("bench: minimal drain: %w", err)
	}
	rdb := redis.NewClient(opts)
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

	type batch struct {
		ids  []string
		rows []obsRow
	}
	claimed := make(chan batch, 1) // one batch claimed ahead
	claimErr := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cpu := newCPUMeter(groups)
	cpu.begin()
	start := time.Now()
	go func() {
		defer close(claimed)
		for got := 0; got < n; {
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "bench",
				Streams: []string{stream, ">"}, Count: applier.DefaultBatchSize, Block: time.Second}).Result()
			if err != nil {
				claimErr <- fmt.Errorf("bench: minimal drain: claim: %w", err)
				return
			}
			var bt batch
			for _, m := range res[0].Messages {
				row, err := minimalRow(m)
				if err != nil {
					claimErr <- err
					return
				}
				bt.ids, bt.rows = append(bt.ids, m.ID), append(bt.rows, row)
			}
			got += len(bt.ids)
			select {
			case claimed <- bt:
			case <-ctx.Done():
				return
			}
		}
	}()
	for bt := range claimed {
		if err := db.bulk(ctx, bt.rows); err != nil {
			return 0, cpuSpan{}, err
		}
		pipe := rdb.Pipeline()
		pipe.XAck(ctx, stream, group, bt.ids...)
		pipe.XDel(ctx, stream, bt.ids...)
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, cpuSpan{}, fmt.Errorf("bench: minimal drain: acknowledge: %w", err)
		}
	}
	select {
	case err := <-claimErr:
		return 0, cpuSpan{}, err
	default:
	}
	rate := float64(n) / time.Since(start).Seconds()
	span, err := cpu.end()
	if err != nil {
		return 0, cpuSpan{}, err
	}
	if got, err := db.count(ctx, tag); err != nil || got != int64(n) {
		return 0, cpuSpan{}, fmt.Errorf("bench: minimal drain: %d of %d rows in the database (%v)", got, n, err)
	}
	return rate, span, nil
}

// fillStream appends n transactions of the shape spool's log holds for the
// bench's writes, their targets tagged, to stream.
func fillStream(ctx context.Context, rdb *redis.Client, stream, tag string, n int) error {
	created := time.Now().UTC()
	for i := 0; i < n; i += applier.DefaultBatchSize {
		pipe := rdb.Pipeline()
		for j := i; j < min(n, i+applier.DefaultBatchSize); j++ {
			r := obsRowFor(tag, int64(j))
			tx := txn.Transaction{ID: txn.NewID(), CreatedAt: created, Operations: []txn.Operation{{
				Op: txn.Insert, Table: "observations", ID: r.id, Generated: true,
				Values: map[string]any{"id": r.id, "target": r.target, "exposure_s": r.exposure, "meta": json.RawMessage(r.meta)},
			}}}
			payload, err := json.Marshal(tx)
			if err != nil {
				return fmt.Errorf("bench: minimal drain: %w", err)
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"tx", payload}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("bench: minimal drain: fill: %w", err)
		}
	}
	return nil
}

// minimalRow decodes a stream entry's transaction as the logs do
// (txn.Decode) and returns its row.
func minimalRow(m redis.XMessage) (obsRow, error) {
	payload, _ := m.Values["tx"].(string)
	tx, err := txn.Decode(strings.NewReader(payload))
	if err != nil {
		return obsRow{}, fmt.Errorf("bench: minimal drain: entry %s: %w", m.ID, err)
	}
	if len(tx.Operations) != 1 {
		return obsRow{}, fmt.Errorf("bench: minimal drain: entry %s: %d operations, want 1", m.ID, len(tx.Operations))
	}
	v := tx.Operations[0].Values
	target, _ := v["target"].(string)
	num, _ := v["exposure_s"].(json.Number)
	exposure, err := num.Float64()
	if err != nil {
		return obsRow{}, fmt.Errorf("bench: minimal drain: entry %s: exposure_s: %w", m.ID, err)
	}
	meta, err := json.Marshal(v["meta"])
	if err != nil {
		return obsRow{}, fmt.Errorf("bench: minimal drain: entry %s: meta: %w", m.ID, err)
	}
	return obsRow{id: tx.Operations[0].ID, target: target, exposure: exposure, meta: string(meta)}, nil
}
