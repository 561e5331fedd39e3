package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spoolgw/spool/internal/testservers"
)

// replicated measures the write path's cost of waiting for a Redis
// replica (--log-min-replicas 1: WAIT after each append) beside the
// single-server shape (no WAIT), on the same master with one replica
// attached to it, in the same run; and beside them the durable no-op with
// and without the same WAIT, the floor of each.
func (b *bench) replicated(ctx context.Context) error {
	if !b.env.servers() {
		return errors.New("the replicated scenario needs --servers (a Redis master and its replica)")
	}
	replica, err := testservers.StartReplica(filepath.Join(b.env.dir, "redis-replica"), b.env.redis)
	if err != nil {
		return fmt.Errorf("bench: start a replica: %w", err)
	}
	defer replica.Stop()
	if err := b.env.redis.WaitReplicas(ctx, 1, 30*time.Second); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	single, err := b.env.deploy(ctx, "replicated", false, "--log-min-replicas", "0")
	if err != nil {
		return err
	}
	defer single.stop()
	waited, err := b.env.deploy(ctx, "replicated", false, "--log-min-replicas", "1")
	if err != nil {
		return err
	}
	defer waited.stop()
	durable, stopDurable, err := b.env.startDurableWait(0)
	if err != nil {
		return err
	}
	defer stopDurable()
	durableWait, stopDurableWait, err := b.env.startDurableWait(1)
	if err != nil {
		return err
	}
	defer stopDurableWait()

	lgSingle, lgWaited, base := newLoadgen("single"), newLoadgen("waited"), newLoadgen("durable")
	var seqSingle, seqWaited, seqBase atomic.Int64
	target := func(d *deployment) string { return d.url() + "/v1/tables/observations" }
	for _, c := range b.cfg.levels {
		// Alternated, so that a slow spell of the disk falls on both.
		s := lgSingle.closed(ctx, target(single), c, b.cfg.duration, http.StatusCreated, &seqSingle)
		w := lgWaited.closed(ctx, target(waited), c, b.cfg.duration, http.StatusCreated, &seqWaited)
		d := base.closed(ctx, durable, c, b.cfg.duration, http.StatusAccepted, &seqBase)
		dw := base.closed(ctx, durableWait, c, b.cfg.duration, http.StatusAccepted, &seqBase)
		for what, r := range map[string]*result{"single": s, "WAIT 1": w, "durable no-op": d, "durable no-op + WAIT 1": dw} {
			if err := r.failed(fmt.Sprintf("%s c=%d", what, c)); err != nil {
				return err
			}
		}
		b.out.print(figure{Scenario: "replicated", Figure: fmt.Sprintf("c=%d writes/s, WAIT 1", c), Value: w.perSecond(), Unit: "1/s", Baseline: "spool, no WAIT", BaselineValue: s.perSecond()})
		b.out.print(figure{Scenario: "replicated", Figure: fmt.Sprintf("c=%d writes/s, WAIT 1 vs its floor", c), Value: w.perSecond(), Unit: "1/s", Baseline: "durable no-op + WAIT 1", BaselineValue: dw.perSecond()})
		b.out.print(figure{Scenario: "replicated", Figure: fmt.Sprintf("c=%d writes/s, no WAIT vs its floor", c), Value: s.perSecond(), Unit: "1/s", Baseline: "durable no-op", BaselineValue: d.perSecond()})
		b.out.print(figure{Scenario: "replicated", Figure: fmt.Sprintf("c=%d durable no-op + WAIT 1 writes/s", c), Value: dw.perSecond(), Unit: "1/s", Baseline: "durable no-op", BaselineValue: d.perSecond()})
		b.out.percentiles("replicated", fmt.Sprintf("c=%d latency, WAIT 1", c), []int{50, 99}, w, "spool, no WAIT", s)
	}
	if err := single.verify(ctx, lgSingle.tag, int(seqSingle.Load())); err != nil {
		return err
	}
	return waited.verify(ctx, lgWaited.tag, int(seqWaited.Load()))
}
