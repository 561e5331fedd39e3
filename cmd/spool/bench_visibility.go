package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// visibilitySample bounds how many acknowledged writes have their status
// read back after the run.
const visibilitySample = 2000

// visibility writes at half the highest ingest rate and measures, for a
// sample of the writes, the time from the acknowledgement to applied and
// to replicated, beside the raw replica lag measured meanwhile.
func (b *bench) visibility(ctx context.Context) error {
	d, err := b.env.deploy(ctx, "visibility", false)
	if err != nil {
		return err
	}
	defer d.stop()
	target := d.url() + "/v1/tables/observations"
	lg := newLoadgen("visibility")
	var seq atomic.Int64
	rate, err := b.visibilityRate(ctx, lg, target, &seq)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var acks []benchAck
	lg.onAck = func(a benchAck) { mu.Lock(); acks = append(acks, a); mu.Unlock() }

	lagCtx, stopLag := context.WithCancel(ctx)
	lagDone := make(chan []time.Duration, 1)
	var lagErr error
	if b.env.servers() {
		go func() {
			var lags []time.Duration
			lags, lagErr = b.env.replicaLag(lagCtx)
			lagDone <- lags
		}()
	} else {
		lagDone <- nil
	}
	// The applier's stages meanwhile: where the time to applied goes.
	applierProc := d.api
	if d.split {
		applierProc = d.applier
	}
	var stages batchStages
	stages.start(ctx, applierProc.url)
	var got *result
	err = b.prof.around(ctx, d.api, "visibility", b.cfg.duration, func() {
		got = lg.open(ctx, target, rate, b.cfg.duration, http.StatusCreated, &seq)
		stages.stop(ctx)
	})
	stopLag()
	lags := <-lagDone
	if err != nil {
		return err
	}
	if err := got.failed(fmt.Sprintf("open loop at %.0f/s", rate)); err != nil {
		return err
	}
	if lagErr != nil {
		return lagErr
	}
	if err := d.verify(ctx, lg.tag, int(seq.Load())); err != nil {
		return err
	}
	if err := b.visibilityReport(ctx, lg, d.url(), rate, acks, lags); err != nil {
		return err
	}
	stages.print(b.out, "visibility")
	return nil
}

// visibilityRate is --rate, or half the highest ingest rate (measured here
// at 64 writers when ingest did not run).
func (b *bench) visibilityRate(ctx context.Context, lg *loadgen, target string, seq *atomic.Int64) (float64, error) {
	if b.cfg.rate > 0 {
		return b.cfg.rate, nil
	}
	if b.maxRate == 0 {
		r := lg.closed(ctx, target, 64, b.cfg.duration, http.StatusCreated, seq)
		if err := r.failed("highest rate at c=64"); err != nil {
			return 0, err
		}
		b.maxRate = r.perSecond()
		b.out.print(figure{Scenario: "visibility", Figure: "highest rate, c=64 writes/s", Value: b.maxRate, Unit: "1/s"})
	}
	return b.maxRate / 2, nil
}

// visibilityReport reads back the status of a sample of acks and prints
// the latencies.
func (b *bench) visibilityReport(ctx context.Context, lg *loadgen, url string, rate float64, acks []benchAck, lags []time.Duration) error {
	last := acks[len(acks)-1].TransactionID
	if err := lg.get(ctx, url+"/v1/transactions/"+last+"?wait=replicated&timeout=30s"); err != nil {
		return fmt.Errorf("wait for the last write to be replicated: %w", err)
	}
	step := max(1, len(acks)/visibilitySample)
	var applied, replicated, behind []time.Duration
	for i := 0; i < len(acks); i += step {
		st, err := txStatus(ctx, lg.client, url, acks[i].TransactionID)
		if err != nil {
			return err
		}
		if st.AppliedAt.IsZero() || st.ReplicatedAt.IsZero() {
			return fmt.Errorf("transaction %s is %s, not replicated, after the last write was", acks[i].TransactionID, st.State)
		}
		applied = append(applied, max(0, st.AppliedAt.Sub(acks[i].at)))
		replicated = append(replicated, max(0, st.ReplicatedAt.Sub(acks[i].at)))
		behind = append(behind, st.ReplicatedAt.Sub(st.AppliedAt))
	}
	at := fmt.Sprintf("at %.0f/s", rate)
	b.out.percentiles("visibility", "ack → applied "+at, []int{50, 99}, &result{lat: applied}, "", nil)
	if !b.env.servers() {
		return nil
	}
	raw := &result{lat: lags}
	b.out.percentiles("visibility", "ack → replicated "+at, []int{50, 99}, &result{lat: replicated}, "", nil)
	b.out.percentiles("visibility", "applied → replicated "+at, []int{50, 99}, &result{lat: behind}, "raw replica lag", raw)
	return nil
}

// txState is the part of GET /v1/transactions/{id} the bench reads.
type txState struct {
	State        string    `json:"state"`
	AppliedAt    time.Time `json:"applied_at"`
	ReplicatedAt time.Time `json:"replicated_at"`
}

func txStatus(ctx context.Context, c *http.Client, url, id string) (txState, error) {
	var st txState
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/transactions/"+id, nil)
	if err != nil {
		return st, err
	}
	res, err := c.Do(req)
	if err != nil {
		return st, fmt.Errorf("status of %s: %w", id, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status of %s: %s", id, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("status of %s: %w", id, err)
	}
	return st, nil
}

// replicaLag commits a row on the primary every 10 ms until ctx ends and
// times each until the replica's replay position passes the primary's WAL
// position after the commit. It takes one sample at least, however short
// the measurement (connecting can outlast a smoke run's).
func (e *benchEnv) replicaLag(ctx context.Context) ([]time.Duration, error) {
	bg := context.WithoutCancel(ctx)
	primary, err := pgx.Connect(bg, e.pg.PrimaryURL)
	if err != nil {
		return nil, fmt.Errorf("replica lag: %w", err)
	}
	defer primary.Close(bg)
	replica, err := pgx.Connect(bg, e.pg.ReplicaURL)
	if err != nil {
		return nil, fmt.Errorf("replica lag: %w", err)
	}
	defer replica.Close(bg)
	if _, err := primary.Exec(bg, "CREATE TABLE IF NOT EXISTS bench_lag (n bigint, at timestamptz DEFAULT now())"); err != nil {
		return nil, fmt.Errorf("replica lag: %w", err)
	}
	var lags []time.Duration
	for i := 0; i == 0 || ctx.Err() == nil; i++ {
		var lsn string
		if _, err := primary.Exec(bg, "INSERT INTO bench_lag (n) VALUES ($1)", i); err != nil {
			return nil, fmt.Errorf("replica lag: insert: %w", err)
		}
		t0 := time.Now()
		if err := primary.QueryRow(bg, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
			return nil, fmt.Errorf("replica lag: %w", err)
		}
		for {
			var done bool
			if err := replica.QueryRow(bg, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&done); err != nil {
				return nil, fmt.Errorf("replica lag: %w", err)
			}
			if done {
				break
			}
			if time.Since(t0) > 30*time.Second {
				return nil, fmt.Errorf("replica lag: the replica did not replay %s within 30s", lsn)
			}
			time.Sleep(200 * time.Microsecond) // bounded by the 30 s above
		}
		lags = append(lags, time.Since(t0))
		sleepCtx(ctx, 10*time.Millisecond)
	}
	return lags, nil
}
