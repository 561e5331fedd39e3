package main

import (
	"context"
	"fmt"
	"math"
	"net/http"

	"github.com/spoolgw/spool/internal/applier"

	"github.com/prometheus/common/expfmt"
)

// The routes the scenarios use, as spool's request histogram names them.
const (
	writeRoute = "POST /v1/tables/{table}"
	getRoute   = "GET /v1/tables/{table}/{id}"
	listRoute  = "GET /v1/tables/{table}"
)

// buckets is a snapshot of a cumulative histogram: upper bounds in seconds
// and the count at or below each.
type buckets struct {
	le    []float64
	count []uint64
}

// histogram reads one histogram of a spool's GET /metrics.
type histogram func(ctx context.Context) (buckets, error)

// requests is the request histogram of route's answers with status code.
func requests(base, route, code string) histogram {
	return func(ctx context.Context) (buckets, error) {
		return serverHistogram(ctx, base, "spool_http_request_duration_seconds", map[string]string{"route": route, "code": code})
	}
}

// logSyncs is the histogram of the local log's fdatasyncs; empty for a
// shared log.
func logSyncs(base string) histogram {
	return func(ctx context.Context) (buckets, error) {
		return serverHistogram(ctx, base, "spool_log_sync_duration_seconds", nil)
	}
}

// applierStage is the histogram of the applier's batches' times in stage.
func applierStage(base, stage string) histogram {
	return func(ctx context.Context) (buckets, error) {
		return serverHistogram(ctx, base, "spool_applier_stage_duration_seconds", map[string]string{"stage": stage})
	}
}

// serverHistogram reads the histogram family of GET /metrics whose labels
// hold every one of labels.
func serverHistogram(ctx context.Context, base, family string, labels map[string]string) (buckets, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return buckets{}, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return buckets{}, fmt.Errorf("bench: GET /metrics: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return buckets{}, fmt.Errorf("bench: GET /metrics: %s", res.Status)
	}
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		return buckets{}, fmt.Errorf("bench: parse /metrics: %w", err)
	}
	var b buckets
	for _, m := range families[family].GetMetric() {
		has := map[string]string{}
		for _, l := range m.GetLabel() {
			has[l.GetName()] = l.GetValue()
		}
		matches := true
		for k, v := range labels {
			matches = matches && has[k] == v
		}
		if !matches {
			continue
		}
		for _, bk := range m.GetHistogram().GetBucket() {
			b.le = append(b.le, bk.GetUpperBound())
			b.count = append(b.count, bk.GetCumulativeCount())
		}
	}
	return b, nil
}

// quantile is the upper bound of the bucket that holds quantile q of the
// writes between before and b, in milliseconds: the server's own latency,
// to the resolution of its buckets. NaN if no write was counted.
func (b buckets) quantile(before buckets, q float64) float64 {
	delta := func(i int) uint64 {
		if i < len(before.count) {
			return b.count[i] - before.count[i]
		}
		return b.count[i]
	}
	if len(b.count) == 0 || delta(len(b.count)-1) == 0 {
		return math.NaN()
	}
	total := delta(len(b.count) - 1)
	want := uint64(math.Ceil(q * float64(total)))
	for i := range b.count {
		if delta(i) >= want {
			return b.le[i] * 1000
		}
	}
	return math.Inf(1)
}

// serverSide measures a server-side histogram across a measurement:
// start and stop read it; a spool without it (an older one, with --url)
// leaves the figures out.
type serverSide struct {
	read          histogram
	before, after buckets
	ok            bool
}

// start reads the histogram before the measurement.
func (s *serverSide) start(ctx context.Context, read histogram) error {
	s.read = read
	var err error
	s.before, err = read(ctx)
	s.ok = err == nil
	return err
}

func (s *serverSide) stop(ctx context.Context) {
	if !s.ok {
		return
	}
	var err error
	s.after, err = s.read(ctx)
	s.ok = err == nil
}

// print reports p50 and p99 of what was counted between start and stop,
// as the bounds of the buckets they fall in; nothing if none was (or one
// took longer than the last bucket).
func (s *serverSide) print(out *reporter, scenario, what string) {
	if !s.ok {
		return
	}
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", .5}, {"p99", .99}} {
		v := s.after.quantile(s.before, q.q)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		out.print(figure{Scenario: scenario, Figure: fmt.Sprintf("%s %s, server-side (bucket bound)", what, q.name), Value: v, Unit: "ms"})
	}
}

// batchStages measures the applier's stage histogram across a
// measurement: where its batches' time goes. A spool without it (an
// older one) leaves the figures out.
type batchStages [len(stageNames)]serverSide

// stageNames are the stages of the applier's batches, in their order.
var stageNames = [...]string{applier.StageClaimWait, applier.StageApply, applier.StageFinishWait, applier.StageReport, applier.StageAck}

// start reads the histograms of the applier serving base.
func (s *batchStages) start(ctx context.Context, base string) {
	for i, stage := range stageNames {
		_ = s[i].start(ctx, applierStage(base, stage)) // left out if missing
	}
}

func (s *batchStages) stop(ctx context.Context) {
	for i := range s {
		s[i].stop(ctx)
	}
}

// print reports p50 and p99 of each stage.
func (s *batchStages) print(out *reporter, scenario string) {
	for i, stage := range stageNames {
		s[i].print(out, scenario, "batch stage "+stage)
	}
}
