package main

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/spoolgw/spool/internal/applier"
)

// drainMinRows is the least the drain scenario fills the log with.
const drainMinRows = 4 * applier.DefaultBatchSize

// drain pre-fills the log with the drain held, releases it and measures
// rows/s into the database, beside the same number of rows written raw.
func (b *bench) drain(ctx context.Context) error {
	d, err := b.env.deploy(ctx, "drain", true)
	if err != nil {
		return err
	}
	defer d.stop()
	if err := d.hold(ctx); err != nil {
		return err
	}
	lg := newLoadgen("drain")
	var seq atomic.Int64
	// The rate is read from the depth between polls, so the fill must span
	// a few of the applier's batches: one batch drains in one step. A short
	// --duration on a slow machine fills for longer.
	for seq.Load() < drainMinRows {
		fill := lg.closed(ctx, d.url()+"/v1/tables/observations", 64, b.cfg.duration, http.StatusCreated, &seq)
		if err := fill.failed("fill the log"); err != nil {
			return err
		}
	}
	n := int(seq.Load())
	var rate float64
	proc := d.api // embedded: one process, which only drains from here on
	// The CPU time: embedded, from the first row gone (the batch under way
	// when the drain was released waited for the bench's lock, and the
	// applier may sleep in its backoff a while after). Split, the applier
	// is a new process that drains before it answers its first poll, the
	// more so on a loaded machine: from before it starts, over every row.
	var cpu cpuMeter
	drained := int64(n)
	if d.split {
		cpu.begin()
	}
	if b.env.servers() {
		if err := b.env.resetRedisStats(ctx); err != nil {
			return err
		}
	}
	if err := d.release(ctx); err != nil {
		return err
	}
	if d.split {
		proc = d.applier
	}
	// The stages are counted from the first row gone: embedded for the
	// same reason; split, the batches the new applier finished before it
	// answered are left out (its histograms are read once it answers).
	var stages batchStages
	began := func(depth int64) {
		stages.start(ctx, proc.url)
		if !d.split {
			cpu.begin()
			drained = depth
		}
	}
	if err := b.prof.around(ctx, proc, "drain", time.Second, func() { rate, err = d.drainRate(ctx, int64(n), began) }); err != nil {
		return err
	}
	if err != nil {
		return err
	}
	groups := d.cpuGroups()
	span, err := cpu.end(groups)
	if err != nil {
		return err
	}
	stages.stop(ctx)
	stages.print(b.out, "drain")
	if b.env.servers() {
		rs, err := b.env.redisStats(ctx)
		if err != nil {
			return err
		}
		b.redisFigures("drain", "drained", n, rs, redisTop)
	}
	if err := d.verify(ctx, lg.tag, n); err != nil {
		return err
	}
	return b.drainBaselines(ctx, d.be, n, rate, drainCPU{groups: groups, span: span, rows: int(drained)})
}

// drainCPU is the CPU time the deployment's processes used while the log
// drained, and the rows it drained meanwhile.
type drainCPU struct {
	groups cpuGroups
	span   cpuSpan
	rows   int
}

// drainRate watches the log's depth once the drain is released: rows/s
// from the first row gone (the drain has begun; began is called then,
// with the depth left) until the log is empty.
func (d *deployment) drainRate(ctx context.Context, n int64, began func(depth int64)) (float64, error) {
	deadline := time.Now().Add(5 * time.Minute)
	var t0 time.Time
	var d0 int64
	for time.Now().Before(deadline) {
		st, err := d.stats(ctx)
		if err != nil {
			return 0, err
		}
		now := time.Now()
		if t0.IsZero() && st.Log.Depth < n {
			t0, d0 = now, st.Log.Depth
			began(d0)
		}
		if st.Log.Depth == 0 {
			if d0 == 0 || now.Sub(t0) <= 0 {
				return 0, fmt.Errorf("the drain of %d rows finished within one poll: fill more (--duration)", n)
			}
			return float64(d0) / now.Sub(t0).Seconds(), nil
		}
		if err := sleepCtx(ctx, 2*time.Millisecond); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("the log did not drain within 5 minutes")
}

// drainBaselines writes n rows of the same shape raw into a database of
// the same kind, in batches of the applier's size, each its own
// transaction; on PostgreSQL once more in one COPY; then runs the minimal
// drain of n transactions from a log of the same kind. Beside the rates
// it prints the CPU time per row that the drain's processes used against
// what the batches' writer and database did, and the minimal drain's.
func (b *bench) drainBaselines(ctx context.Context, be *backend, n int, rate float64, drained drainCPU) error {
	db, err := be.baselineDB(ctx, "raw")
	if err != nil {
		return err
	}
	defer db.Close()
	var cpu cpuMeter
	cpu.begin()
	batched, err := rawRate(ctx, db, n, applier.DefaultBatchSize)
	if err != nil {
		return err
	}
	rawSpan, err := cpu.end(drained.groups)
	if err != nil {
		return err
	}
	raw := "multi-row INSERT per 500"
	if b.env.servers() {
		raw = "COPY per 500"
	}
	b.out.print(figure{Scenario: "drain", Figure: fmt.Sprintf("%d rows drained, rows/s", n), Value: rate, Unit: "1/s", Baseline: raw, BaselineValue: batched})
	// The raw batches' writer is the bench; spool's processes idle.
	writer := []string{cpuBench}
	if b.env.servers() {
		writer = append(writer, cpuPostgres)
	}
	var base float64 // the raw batches' CPU per row
	if rawSpan.used != nil && drained.span.used != nil && drained.rows > 0 {
		base = b.cpuFigures("drain", "written raw", n, rawSpan, writer, "", 0)
		b.cpuFigures("drain", "drained", drained.rows, drained.span, drained.groups.order(), raw, base)
	}
	if b.env.servers() {
		if err := db.exec(ctx, "TRUNCATE observations"); err != nil {
			return err
		}
		whole, err := rawRate(ctx, db, n, n)
		if err != nil {
			return err
		}
		b.out.print(figure{Scenario: "drain", Figure: fmt.Sprintf("%d rows drained, rows/s vs one COPY", n), Value: rate, Unit: "1/s", Baseline: "one COPY of all rows", BaselineValue: whole})
	}
	// The minimal drain writes into the table emptied, as the raw
	// batches did.
	empty := "DELETE FROM observations"
	if b.env.servers() {
		empty = "TRUNCATE observations"
	}
	if err := db.exec(ctx, empty); err != nil {
		return err
	}
	minimal, minSpan, err := b.minimalDrain(ctx, db, n, drained.groups)
	if err != nil {
		return err
	}
	b.out.print(figure{Scenario: "drain", Figure: "minimal drain rows/s", Value: minimal, Unit: "1/s", Baseline: raw, BaselineValue: batched})
	b.out.print(figure{Scenario: "drain", Figure: fmt.Sprintf("%d rows drained, rows/s vs minimal drain", n), Value: rate, Unit: "1/s", Baseline: "minimal drain", BaselineValue: minimal})
	if b.env.servers() {
		writer = append(writer, cpuRedis)
	}
	if minSpan.used != nil && base > 0 {
		b.cpuFigures("drain", "minimal drain", n, minSpan, writer, raw, base)
	}
	return nil
}

// rawRate writes n rows in transactions of size rows and returns rows/s.
func rawRate(ctx context.Context, db benchDB, n, size int) (float64, error) {
	rows := make([]obsRow, n)
	for i := range rows {
		rows[i] = obsRowFor("raw", int64(i))
	}
	start := time.Now()
	for i := 0; i < n; i += size {
		if err := bulk(ctx, db, rows[i:min(n, i+size)]); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
