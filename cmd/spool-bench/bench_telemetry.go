package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// telemetryBatch is how many samples one NDJSON request carries.
const telemetryBatch = 500

// telemetry posts NDJSON batches at --telemetry-rate rows/s into the
// telemetry lane and reports rows/s accepted, dropped and written.
func (b *bench) telemetry(ctx context.Context) error {
	d, err := b.env.deploy(ctx, "telemetry", false, "--telemetry-table", "readings")
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
			rc, err := lg.postSamples(ctx, url, seq.Add(1))
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
	return nil
}

// receipt is the telemetry lane's answer.
type receipt struct {
	Accepted int `json:"accepted"`
	Dropped  int `json:"dropped"`
}

// postSamples posts the n-th batch of samples as NDJSON.
func (l *loadgen) postSamples(ctx context.Context, url string, n int64) (receipt, error) {
	var rc receipt
	var body bytes.Buffer
	now := time.Now().UTC()
	for i := range telemetryBatch {
		fmt.Fprintf(&body, `{"station":"st-%d","taken_at":%q,"temp_c":%.1f,"humidity":%.1f}`+"\n",
			i%20, now.Add(time.Duration(i)*time.Microsecond).Format(time.RFC3339Nano), float64(n%400)/10, float64(i%100))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, &body)
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
