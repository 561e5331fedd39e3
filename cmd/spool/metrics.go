package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoolgw/spool/internal/applier"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/replication"
	"github.com/spoolgw/spool/internal/telemetry"
	"github.com/spoolgw/spool/internal/txlog/filelog"
)

// scrapeTimeout bounds the reads of one scrape (the Redis log's size).
const scrapeTimeout = 2 * time.Second

// collector turns spool's figures into Prometheus metrics at each scrape:
// the same numbers as GET /v1/stats, read when asked, so that nothing on
// the write path counts twice. Parts a process does not run are nil.
type collector struct {
	gw          *gateway.Gateway
	syncs       func() filelog.SyncHistogram // the local log's, nil for a shared one
	applier     *applier.Applier
	replication *replication.Watcher
	telemetry   *telemetry.Service
	logger      *slog.Logger
}

var (
	descLogDepth     = prometheus.NewDesc("spool_log_depth", "Transactions in the log not yet applied.", nil, nil)
	descLogBytes     = prometheus.NewDesc("spool_log_bytes", "Bytes the log takes, where the backend knows it.", nil, nil)
	descOverlayRows  = prometheus.NewDesc("spool_overlay_rows", "Rows with pending changes in the overlay.", nil, nil)
	descOverlayTxns  = prometheus.NewDesc("spool_overlay_transactions", "Transactions whose changes the overlay holds.", nil, nil)
	descLogSync      = prometheus.NewDesc("spool_log_sync_duration_seconds", "How long each fdatasync of the local log took; every acknowledged write waited for one.", nil, nil)
	descOverlaySpill = prometheus.NewDesc("spool_overlay_spilled_operations", "Pending changes the overlay of a local log holds on disk, past --overlay-memory.", nil, nil)
	descAccepted     = prometheus.NewDesc("spool_transactions_accepted_total", "Transactions acknowledged by this process since it started.", nil, nil)
	descApplied      = prometheus.NewDesc("spool_transactions_applied_total", "Transactions this process saw applied since it started.", nil, nil)
	descFailed       = prometheus.NewDesc("spool_transactions_dead_lettered_total", "Transactions this process saw dead-lettered since it started.", nil, nil)
	descBackoff      = prometheus.NewDesc("spool_applier_failed_attempts", "Failed attempts in a row of the applier (0: applying normally).", nil, nil)
	descPruned       = prometheus.NewDesc("spool_applied_records_pruned_total", "Records of applied transactions this process's applier deleted from spool_applied (older than --applied-retention).", nil, nil)
	descReplicaUp    = prometheus.NewDesc("spool_replica_up", "Whether the replica answered its last poll.", []string{"replica"}, nil)
	descReplicaLag   = prometheus.NewDesc("spool_replica_lag_bytes", "WAL bytes the replica has yet to replay.", []string{"replica"}, nil)
	descReplWaiting  = prometheus.NewDesc("spool_replication_waiting_transactions", "Applied transactions not yet on every replica.", nil, nil)
	descReplLag      = prometheus.NewDesc("spool_replication_lag_seconds", "How long the oldest applied transaction not yet on every replica has waited.", nil, nil)
	descRingSize     = prometheus.NewDesc("spool_telemetry_ring_items", "Samples held in the lane's ring.", []string{"table"}, nil)
	descRingCap      = prometheus.NewDesc("spool_telemetry_ring_capacity", "The lane's ring capacity.", []string{"table"}, nil)
	descRingAdded    = prometheus.NewDesc("spool_telemetry_samples_total", "Samples put into the lane's ring.", []string{"table"}, nil)
	descDropped      = prometheus.NewDesc("spool_telemetry_dropped_total", "Samples lost: pushed out of the full ring or dropped at the spill.", []string{"table"}, nil)
	descWritten      = prometheus.NewDesc("spool_telemetry_written_total", "Samples written to the database, replayed spill included.", []string{"table"}, nil)
	descRejected     = prometheus.NewDesc("spool_telemetry_rejected_total", "Samples the database refused.", []string{"table"}, nil)
	descSpilled      = prometheus.NewDesc("spool_telemetry_spill_pending", "Samples in spill files waiting for the database.", []string{"table"}, nil)
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

// Collect implements prometheus.Collector. A figure that cannot be read
// (the log unreachable) is left out of the scrape, and logged.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if ls, err := c.gw.LogStats(ctx); err == nil {
		gauge(descLogDepth, float64(ls.Depth))
		gauge(descLogBytes, float64(ls.Bytes))
	} else {
		c.logger.Debug("metrics: log stats", "err", err)
	}
	if c.syncs != nil {
		h := c.syncs()
		b := make(map[float64]uint64, len(h.Cumulative))
		for i, n := range h.Cumulative {
			b[filelog.SyncBounds[i].Seconds()] = n
		}
		ch <- prometheus.MustNewConstHistogram(descLogSync, h.Count, h.Sum.Seconds(), b)
	}
	if ov, err := c.gw.Overlay().Stats(ctx); err == nil {
		gauge(descOverlayRows, float64(ov.Rows))
		gauge(descOverlayTxns, float64(ov.Transactions))
		gauge(descOverlaySpill, float64(ov.SpilledOps))
	} else {
		c.logger.Debug("metrics: overlay stats", "err", err)
	}
	n := c.gw.Tracker().Counters()
	counter(descAccepted, float64(n.Queued))
	counter(descApplied, float64(n.Processed))
	counter(descFailed, float64(n.Failed))
	if c.applier != nil {
		gauge(descBackoff, float64(c.applier.Backoff().Attempt))
		counter(descPruned, float64(c.applier.Pruned()))
	}
	if c.replication != nil {
		s := c.replication.Status()
		for _, r := range s.Replicas {
			up := 0.0
			if r.Up {
				up = 1
			}
			gauge(descReplicaUp, up, r.Name)
			gauge(descReplicaLag, float64(r.LagBytes), r.Name)
		}
		gauge(descReplWaiting, float64(s.Waiting))
		gauge(descReplLag, s.LagSeconds)
	}
	if c.telemetry != nil {
		for _, l := range c.telemetry.Status() {
			gauge(descRingSize, float64(l.CurrentSize), l.Table)
			gauge(descRingCap, float64(l.MaxSize), l.Table)
			counter(descRingAdded, float64(l.TotalAdded), l.Table)
			counter(descDropped, float64(l.RowsDropped), l.Table)
			counter(descWritten, float64(l.Writer.RowsWritten+l.Writer.RowsReplayed), l.Table)
			counter(descRejected, float64(l.Writer.RowsRejected), l.Table)
			gauge(descSpilled, float64(l.Writer.SpillRowsPending), l.Table)
		}
	}
}

// stageBuckets bound the time of a stage of an applier batch, in seconds:
// from well under a millisecond (a report) to the seconds a database under
// strain takes.
var stageBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// applierMetrics times the stages of the applier's batches and counts
// their sizes (applier.Observer).
type applierMetrics struct {
	stages *prometheus.HistogramVec
	size   prometheus.Histogram
}

func newApplierMetrics(reg prometheus.Registerer) *applierMetrics {
	m := &applierMetrics{
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "spool_applier_stage_duration_seconds",
			Help: "Time of each stage of a committed batch: claim_wait (waiting for the log), apply (the database transaction), " +
				"finish_wait (waiting for the batch before to be reported and acknowledged), report, ack (in the log).",
			Buckets: stageBuckets,
		}, []string{"stage"}),
		size: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spool_applier_batch_transactions",
			Help:    "Transactions per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
	}
	reg.MustRegister(m.stages, m.size)
	return m
}

func (m *applierMetrics) ObserveBatch(n int) { m.size.Observe(float64(n)) }

func (m *applierMetrics) ObserveStage(stage string, d time.Duration) {
	m.stages.WithLabelValues(stage).Observe(d.Seconds())
}
