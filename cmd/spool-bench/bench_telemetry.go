package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/spoolgw/spool/internal/txn"
)

// telemetryBatch is how many samples one NDJSON request carries.
const telemetryBatch = 500

// telemetryStep is the factor between the rates the capacity search
// offers, and telemetryMaxRate where it stops.
const (
	telemetryStep    = 1.4
	telemetryMaxRate = 2e6
)

// telemetry posts NDJSON batches at --telemetry-rate rows/s into the
// telemetry lane and reports rows/s accepted, dropped and written. Then
// its capacity (telemetryCapacity).
func (b *bench) telemetry(ctx context.Context) error {
	lane := "readings"
	if b.cfg.telemetryRing > 0 {
		lane = fmt.Sprintf("readings:%d", b.cfg.telemetryRing)
	}
	d, err := b.env.deploy(ctx, "telemetry", false, "--telemetry-table", lane)
	if err != nil {
		return err
	}
	defer d.stop()
	lg := newLoadgen("telemetry")
	var accepted, dropped, seq atomic.Int64
	url := d.url() + "/v1/ingest/readings"
	var got *result
	err = b.prof.around(ctx, d.api, "telemetry", b.cfg.duration, func() {
		got = openFn(ctx, b.cfg.telemetryRate/telemetryBatch, b.cfg.duration, func(ctx context.Context) error {
			rc, err := lg.postSamples(ctx, url, sampleBody(samples(seq.Add(1), time.Now())))
			accepted.Add(int64(rc.Accepted))
			dropped.Add(int64(rc.Dropped))
			return err
		})
	})
	if err != nil {
		return err
	}
	if err := got.failed("telemetry batches"); err != nil {
		return err
	}
	during, err := d.lane(ctx)
	if err != nil {
		return err
	}
	final, err := d.laneSettled(ctx, accepted.Load())
	if err != nil {
		return err
	}
	secs := got.elapsed.Seconds()
	b.out.print(figure{Scenario: "telemetry", Figure: "rows/s accepted", Value: float64(accepted.Load()) / secs, Unit: "1/s", Baseline: "offered", BaselineValue: b.cfg.telemetryRate})
	b.out.print(figure{Scenario: "telemetry", Figure: "rows/s written during the run", Value: float64(during.Writer.RowsWritten) / secs, Unit: "1/s", Baseline: "accepted", BaselineValue: float64(accepted.Load()) / secs})
	b.out.print(figure{Scenario: "telemetry", Figure: "rows dropped", Value: float64(final.RowsDropped), Unit: "rows", Baseline: "accepted", BaselineValue: float64(accepted.Load())})
	b.out.print(figure{Scenario: "telemetry", Figure: "rows written in all", Value: float64(final.Writer.RowsWritten), Unit: "rows", Baseline: "accepted", BaselineValue: float64(accepted.Load())})
	return b.telemetryCapacity(ctx, d, lg, final)
}

// telemetryCapacity searches for the highest rate the lane sustains:
// from --telemetry-rate up by telemetryStep, then closer to the first rate
// that failed; each rate offered for one measurement in an open loop of
// batches (a few bodies built beforehand, so that the load generator
// costs little), until one drops a sample or accepts less than 95% of
// what was offered. A writer that falls behind fills the ring, which then
// drops the oldest. Beside the last rate that held, the rows it took
// written raw from the bench into a database of the same kind in batches
// of the lane's size, each its own transaction (COPY on PostgreSQL, a
// multi-row INSERT on SQLite), and the CPU time per row of each. If not
// even the first rate held (a loaded machine, a short --duration), it
// says so and reports no capacity: the bench fails on errors, not on
// timing.
func (b *bench) telemetryCapacity(ctx context.Context, d *deployment, lg *loadgen, last laneStatus) error {
	url := d.url() + "/v1/ingest/readings"
	bodies := make([][]byte, 16)
	for i := range bodies {
		bodies[i] = sampleBody(samples(int64(i), time.Now()))
	}
	groups := d.cpuGroups()
	type step struct {
		rate, accepted float64 // rows/s
		rows           int
		span           cpuSpan
	}
	// try offers rate for one measurement and says whether the lane
	// sustained it.
	try := func(rate float64) (step, bool, error) {
		var accepted, next atomic.Int64
		var cpu cpuMeter
		cpu.begin()
		var got *result
		err := b.prof.around(ctx, d.api, fmt.Sprintf("telemetry-%.0f", rate), b.cfg.duration, func() {
			got = openFn(ctx, rate/telemetryBatch, b.cfg.duration, func(ctx context.Context) error {
				rc, err := lg.postSamples(ctx, url, bodies[next.Add(1)%int64(len(bodies))])
				accepted.Add(int64(rc.Accepted))
				return err
			})
		})
		if err != nil {
			return step{}, false, err
		}
		span, err := cpu.end(groups)
		if err != nil {
			return step{}, false, err
		}
		if err := got.failed("telemetry batches"); err != nil {
			return step{}, false, err
		}
		settled, err := d.laneSettled(ctx, int64(last.Writer.RowsWritten+last.RowsDropped)+accepted.Load())
		if err != nil {
			return step{}, false, err
		}
		took := float64(accepted.Load()) / got.elapsed.Seconds()
		dropped := settled.RowsDropped - last.RowsDropped
		last = settled
		ok := dropped == 0 && took >= 0.95*rate
		return step{rate: rate, accepted: took, rows: int(accepted.Load()), span: span}, ok, nil
	}
	// Up by telemetryStep until a rate fails, then halve the last gap
	// (geometrically) twice.
	var held step
	failed := telemetryMaxRate * telemetryStep
	for rate := b.cfg.telemetryRate; rate <= telemetryMaxRate; rate *= telemetryStep {
		s, ok, err := try(rate)
		if err != nil {
			return err
		}
		if !ok {
			failed = rate
			break
		}
		held = s
	}
	for range 2 {
		if held.rows == 0 || failed > telemetryMaxRate {
			break
		}
		rate := math.Sqrt(held.rate * failed)
		s, ok, err := try(rate)
		if err != nil {
			return err
		}
		if ok {
			held = s
		} else {
			failed = rate
		}
	}
	if held.rows == 0 {
		fmt.Fprintf(b.stderr, "spool-bench: telemetry: the lane did not sustain %.0f rows/s for %s; no capacity figure\n", b.cfg.telemetryRate, b.cfg.duration)
		return nil
	}
	db, err := d.be.baselineDB(ctx, "telemetry")
	if err != nil {
		return err
	}
	defer db.Close()
	var rows []reading
	for n := int64(0); len(rows) < held.rows; n++ {
		rows = append(rows, samples(n, time.Now())...)
	}
	rows = rows[:held.rows]
	var cpu cpuMeter
	cpu.begin()
	for i := 0; i < len(rows); i += telemetryBatch {
		batch := rows[i:min(len(rows), i+telemetryBatch)]
		err := db.bulkRows(ctx, "readings", []string{"id", "station", "taken_at", "temp_c", "humidity"}, len(batch), func(j int) []any {
			r := batch[j]
			return []any{txn.NewID(), r.station, r.takenAt, r.temp, r.humidity} // a new id each, as the lane gives them
		})
		if err != nil {
			return err
		}
	}
	rawSpan, err := cpu.end(groups)
	if err != nil {
		return err
	}
	name := "multi-row INSERT per 500"
	writer := []string{cpuBench}
	if b.env.servers() {
		name = "COPY per 500"
		writer = append(writer, cpuPostgres)
	}
	raw := float64(len(rows)) / rawSpan.wall.Seconds()
	b.out.print(figure{Scenario: "telemetry", Figure: "highest rate sustained, rows/s", Value: held.accepted, Unit: "1/s", Baseline: name, BaselineValue: raw})
	if held.span.used != nil && rawSpan.used != nil {
		base := b.cpuFigures("telemetry", "written raw", len(rows), rawSpan, writer, "", 0)
		// The lane's figure leaves the bench out: it is the load generator.
		b.cpuFigures("telemetry", fmt.Sprintf("at %.0f/s", held.rate), held.rows, held.span, groups.order(), name, base)
	}
	return nil
}

// reading is one telemetry sample of the readings table.
type reading struct {
	station        string
	takenAt        time.Time
	temp, humidity float64
}

// samples is the n-th batch of samples, taken from now on.
func samples(n int64, now time.Time) []reading {
	out := make([]reading, telemetryBatch)
	for i := range out {
		out[i] = reading{station: fmt.Sprintf("st-%d", i%20), takenAt: now.UTC().Add(time.Duration(i) * time.Microsecond), temp: float64(n%400) / 10, humidity: float64(i % 100)}
	}
	return out
}

// sampleBody is a batch of samples as an NDJSON request body.
func sampleBody(rs []reading) []byte {
	var body bytes.Buffer
	for _, r := range rs {
		fmt.Fprintf(&body, `{"station":%q,"taken_at":%q,"temp_c":%.1f,"humidity":%.1f}`+"\n",
			r.station, r.takenAt.Format(time.RFC3339Nano), r.temp, r.humidity)
	}
	return body.Bytes()
}

// receipt is the telemetry lane's answer.
type receipt struct {
	Accepted int `json:"accepted"`
	Dropped  int `json:"dropped"`
}

// postSamples posts a batch of samples as NDJSON.
func (l *loadgen) postSamples(ctx context.Context, url string, body []byte) (receipt, error) {
	var rc receipt
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return rc, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	res, err := l.client.Do(req)
	if err != nil {
		return rc, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		return rc, fmt.Errorf("POST %s: %s", url, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(&rc); err != nil {
		return rc, fmt.Errorf("POST %s: answer: %w", url, err)
	}
	return rc, nil
}

// laneStatus is the part of a lane's status the bench reads.
type laneStatus struct {
	CurrentSize int    `json:"current_size"`
	RowsDropped uint64 `json:"rows_dropped"`
	Writer      struct {
		RowsWritten  uint64 `json:"rows_written"`
		RowsRejected uint64 `json:"rows_rejected"`
	} `json:"writer"`
}

func (d *deployment) lane(ctx context.Context) (laneStatus, error) {
	var body struct {
		Lanes []laneStatus `json:"lanes"`
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url()+"/v1/ingest/status", nil)
	if err != nil {
		return laneStatus{}, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return laneStatus{}, fmt.Errorf("telemetry status: %w", err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || len(body.Lanes) != 1 {
		return laneStatus{}, fmt.Errorf("telemetry status: %d lanes, %v", len(body.Lanes), err)
	}
	return body.Lanes[0], nil
}

// laneSettled waits until every accepted row is written or dropped; a row
// that is neither after 30 s is lost, an impossible result.
func (d *deployment) laneSettled(ctx context.Context, accepted int64) (laneStatus, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ls, err := d.lane(ctx)
		if err != nil {
			return ls, err
		}
		done := int64(ls.Writer.RowsWritten + ls.RowsDropped + ls.Writer.RowsRejected)
		if done >= accepted && ls.CurrentSize == 0 {
			if ls.Writer.RowsRejected > 0 {
				return ls, fmt.Errorf("telemetry: the database rejected %d rows", ls.Writer.RowsRejected)
			}
			return ls, nil
		}
		if time.Now().After(deadline) {
			return ls, fmt.Errorf("telemetry: %d rows accepted, only %d written, dropped or rejected after 30s", accepted, done)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return ls, err
		}
	}
}
