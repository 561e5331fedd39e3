package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// visibilitySample bounds how many acknowledged writes of each part of
// the run (the warm-up, the measurement) have their status read back.
const visibilitySample = 2000

// visibilityWarmup is how long writes flow before the measurement: a
// spool just started applies its first batches several times slower than
// later ones (at 3,000 writes/s on the servers shape, 11 to 69 rows in 17
// to 33 ms, against 2 to 5 ms a second later; letting the new database
// settle for 5 s first did not change it), and the writes queued behind
// them wait up to a few hundred milliseconds. Those writes are reported
// apart.
const visibilityWarmup = time.Second

// visibility writes at half the highest ingest rate and measures, for a
// sample of the writes, the time from the acknowledgement to applied and
// to replicated, beside the raw replica lag measured meanwhile. The first
// second of writes (less in a shorter run) is a warm-up, whose time to
// applied is reported apart; the applier's stages and the processes' CPU
// are measured after it. With --servers the minimal pipeline then runs at
// the same rate (visibilityFloor).
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
	warmup := min(visibilityWarmup, b.cfg.duration)
	var stages batchStages
	groups := d.cpuGroups()
	var cpu cpuMeter
	var got *result
	var measured time.Time // when the warm-up ended
	err = b.prof.around(ctx, d.api, "visibility", warmup+b.cfg.duration, func() {
		loaded := make(chan *result, 1)
		go func() { loaded <- lg.open(ctx, target, rate, warmup+b.cfg.duration, http.StatusCreated, &seq) }()
		sleepCtx(ctx, warmup) // an early end shows in the load's result
		measured = time.Now()
		stages.start(ctx, applierProc.url)
		cpu.begin()
		got = <-loaded
		stages.stop(ctx)
	})
	span, cpuErr := cpu.end(groups)
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
	warm, steady := splitAcks(acks, measured)
	applied, err := b.visibilityReport(ctx, lg, d.url(), rate, warm, steady, lags)
	if err != nil {
		return err
	}
	stages.print(b.out, "visibility")
	if cpuErr != nil {
		return cpuErr
	}
	if span.used != nil {
		// How busy the machine was at this rate, the load generator
		// (the bench) counted in: what room a stall has to be absorbed.
		b.cpuFigures("visibility", fmt.Sprintf("at %.0f/s", rate), len(steady), span, append(groups.order(), cpuBench), "", 0)
	}
	if b.env.servers() {
		return b.visibilityFloor(ctx, d.be, rate, warmup, applied)
	}
	return nil
}

// visibilityFloor runs the minimal pipeline at rate, with the same warm-up
// and measurement, and prints spool's time from acknowledged to applied
// (applied, a sample) against the pipeline's from acknowledged to
// committed.
func (b *bench) visibilityFloor(ctx context.Context, be *backend, rate float64, warmup time.Duration, applied []time.Duration) error {
	db, err := be.baselineDB(ctx, "pipeline")
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := b.env.startMinimalPipeline(ctx, db, true)
	if err != nil {
		return err
	}
	lg := newLoadgen("pipeline")
	var mu sync.Mutex
	var acks []benchAck
	lg.onAck = func(a benchAck) { mu.Lock(); acks = append(acks, a); mu.Unlock() }
	var seq atomic.Int64
	measured := time.Now().Add(warmup)
	got := lg.open(ctx, p.url, rate, warmup+b.cfg.duration, http.StatusCreated, &seq)
	if err := got.failed(fmt.Sprintf("the minimal pipeline at %.0f/s", rate)); err != nil {
		p.stop()
		return err
	}
	_, steady := splitAcks(acks, measured)
	sample := spread(steady)
	at, err := p.appliedAt(ctx, sample, 30*time.Second)
	if err == nil {
		err = p.caughtUp(ctx, 30*time.Second) // the rows after the sample too
	}
	if stopErr := p.stop(); err == nil {
		err = stopErr
	}
	if err != nil {
		return err
	}
	if n, err := db.count(ctx, lg.tag+"-"); err != nil || n != seq.Load() {
		return fmt.Errorf("bench: minimal pipeline: %d writes acknowledged, %d rows in the database (%v)", seq.Load(), n, err)
	}
	floor := make([]time.Duration, len(sample))
	for i, a := range sample {
		floor[i] = max(0, at[i].Sub(a.at))
	}
	b.out.percentiles("visibility", fmt.Sprintf("ack → applied at %.0f/s, vs minimal pipeline", rate), []int{50, 99},
		&result{lat: applied}, "minimal pipeline", &result{lat: floor})
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

// splitAcks sorts acks by the time each was acknowledged (they arrive out
// of order: each write has its own goroutine) and splits them at
// measured: the warm-up's, then the measurement's.
func splitAcks(acks []benchAck, measured time.Time) (warm, steady []benchAck) {
	slices.SortFunc(acks, func(x, y benchAck) int { return x.at.Compare(y.at) })
	cut, _ := slices.BinarySearchFunc(acks, measured, func(a benchAck, t time.Time) int { return a.at.Compare(t) })
	return acks[:cut], acks[cut:]
}

// spread returns up to visibilitySample of acks, evenly spread.
func spread(acks []benchAck) []benchAck {
	step := max(1, len(acks)/visibilitySample)
	out := make([]benchAck, 0, len(acks)/step+1)
	for i := 0; i < len(acks); i += step {
		out = append(out, acks[i])
	}
	return out
}

// visibilityReport reads back the status of a sample of the writes
// acknowledged during the warm-up (warm) and after it (steady), both in
// the order they were acknowledged, and prints the latencies of steady's,
// and apart the time to applied of warm's. It returns the times to
// applied of steady's sample.
func (b *bench) visibilityReport(ctx context.Context, lg *loadgen, url string, rate float64, warm, steady []benchAck, lags []time.Duration) ([]time.Duration, error) {
	if len(steady) == 0 {
		return nil, fmt.Errorf("no write was acknowledged after the warm-up (%d during it)", len(warm))
	}
	last := steady[len(steady)-1].TransactionID
	if err := lg.get(ctx, url+"/v1/transactions/"+last+"?wait=replicated&timeout=30s"); err != nil {
		return nil, fmt.Errorf("wait for the last write to be replicated: %w", err)
	}
	at := fmt.Sprintf("at %.0f/s", rate)
	cold, err := visibilitySampled(ctx, lg.client, url, warm)
	if err != nil {
		return nil, err
	}
	s, err := visibilitySampled(ctx, lg.client, url, steady)
	if err != nil {
		return nil, err
	}
	b.out.percentiles("visibility", "ack → applied "+at, []int{50, 99}, &result{lat: s.applied}, "", nil)
	if len(cold.applied) > 0 {
		b.out.percentiles("visibility", "ack → applied "+at+" in the warm-up", []int{99}, &result{lat: cold.applied}, "", nil)
	}
	if !b.env.servers() {
		return s.applied, nil
	}
	raw := &result{lat: lags}
	b.out.percentiles("visibility", "ack → replicated "+at, []int{50, 99}, &result{lat: s.replicated}, "", nil)
	b.out.percentiles("visibility", "applied → replicated "+at, []int{50, 99}, &result{lat: s.behind}, "raw replica lag", raw)
	return s.applied, nil
}

// visibilityTimes are the latencies of a sample of acknowledged writes.
type visibilityTimes struct {
	applied, replicated, behind []time.Duration
}

// visibilitySampled reads the status of a spread of acks, every one of
// which must be replicated.
func visibilitySampled(ctx context.Context, c *http.Client, url string, acks []benchAck) (visibilityTimes, error) {
	var v visibilityTimes
	for _, a := range spread(acks) {
		st, err := txStatus(ctx, c, url, a.TransactionID)
		if err != nil {
			return v, err
		}
		if st.AppliedAt.IsZero() || st.ReplicatedAt.IsZero() {
			return v, fmt.Errorf("transaction %s is %s, not replicated, after the last write was", a.TransactionID, st.State)
		}
		v.applied = append(v.applied, max(0, st.AppliedAt.Sub(a.at)))
		v.replicated = append(v.replicated, max(0, st.ReplicatedAt.Sub(a.at)))
		v.behind = append(v.behind, st.ReplicatedAt.Sub(st.AppliedAt))
	}
	return v, nil
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
