package projection

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the projector's Prometheus series. They are created per Worker
// (no global registry) so tests can read them and two workers never collide.
type metrics struct {
	batchSize      *prometheus.HistogramVec
	batchBytes     *prometheus.HistogramVec
	decodeFailures *prometheus.CounterVec
	applied        *prometheus.CounterVec
	behind         *prometheus.CounterVec
	applyErrors    *prometheus.CounterVec
	restarts       *prometheus.CounterVec
	resets         *prometheus.CounterVec
	implausible    prometheus.Counter
	missingOutput  prometheus.Counter
	cutOutput      prometheus.Counter
	hbReceived     prometheus.Counter
	hbDropped      prometheus.Counter
	hbClamped      prometheus.Counter
	hbFlushed      prometheus.Counter
	hbFlushSeconds prometheus.Histogram
	housekeeping   *prometheus.CounterVec
	inventory      *prometheus.CounterVec
	invFailures    prometheus.Counter
	invEvents      prometheus.Counter
	invSkipped     prometheus.Counter
	obsMismatch    prometheus.Counter
	perfReceived   *prometheus.CounterVec
	perfDropped    *prometheus.CounterVec
	perfStored     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, w *Worker) (*metrics, error) {
	m := &metrics{
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kanade_projector_batch_size",
			Help:    "Messages per applied batch (one transaction each).",
			Buckets: []float64{1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000},
		}, []string{"consumer"}),
		batchBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kanade_projector_batch_bytes",
			Help:    "Message bytes (payloads and fetched outputs) per applied batch.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10),
		}, []string{"consumer"}),
		decodeFailures: counterVec("kanade_projector_decode_failures_total",
			"Messages passed over without effect because they could not be decoded or validated.", "stream"),
		applied: counterVec("kanade_projector_messages_applied_total",
			"Messages whose batch this worker committed (malformed ones included).", "consumer"),
		behind: counterVec("kanade_projector_messages_already_applied_total",
			"Messages this worker received that were already behind the database offset (another worker applied them).", "consumer"),
		applyErrors: counterVec("kanade_projector_apply_errors_total",
			"Batches that failed (database, object store or KV error) and will be read again from the offset.", "consumer"),
		restarts: counterVec("kanade_projector_loop_restarts_total",
			"Times a projector loop failed and was restarted with backoff.", "loop"),
		resets: counterVec("kanade_projector_offset_resets_total",
			"Times a stream's offset started over because the stream was deleted and created again.", "consumer"),
		implausible: counter("kanade_projector_implausible_durations_total",
			"Runs stored without a duration because started_at and finished_at are too far apart to believe."),
		missingOutput: counter("kanade_projector_missing_output_objects_total",
			"Result outputs named by stdout_object/stderr_object but absent from the object store."),
		obsMismatch: counter("kanade_projector_obs_pc_id_mismatch_total",
			"Obs events whose body pc_id differs from their subject (stored under the body's)."),
		perfReceived: counterVec("kanade_projector_perf_samples_received_total",
			"Performance sample messages received, by kind (host, process).", "kind"),
		perfDropped: counterVec("kanade_projector_perf_samples_dropped_total",
			"Performance sample messages dropped, by reason (invalid, slow: the subscription overflowed, write: a failed flush).", "reason"),
		perfStored: counterVec("kanade_projector_perf_rows_stored_total",
			"Performance rows inserted (duplicates not counted), by kind (host, process).", "kind"),
		cutOutput: counter("kanade_projector_cut_output_objects_total",
			"Result outputs longer than the configured maximum, stored cut with a note."),
		hbReceived: counter("kanade_projector_heartbeats_received_total",
			"Heartbeat messages received on the core subscription."),
		hbDropped: counter("kanade_projector_heartbeats_dropped_total",
			"Heartbeats dropped by the client library because the subscription fell behind."),
		hbClamped: counter("kanade_projector_heartbeats_from_the_future_total",
			"Heartbeats whose `at` was over 10 minutes ahead of the worker's clock, stored as sent when received."),
		hbFlushed: counter("kanade_projector_heartbeats_flushed_total",
			"Agent rows upserted by heartbeat flushes."),
		hbFlushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kanade_projector_heartbeat_flush_seconds",
			Help:    "Duration of one heartbeat flush transaction.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		housekeeping: counterVec("kanade_housekeeping_rows_total",
			"Rows changed by housekeeping, by action.", "action"),
		inventory: counterVec("kanade_projector_inventory_reports_total",
			"Inventory reports by outcome: projected (facts replaced), unchanged (projected; the derived rows were those stored), "+
				"stale (older than the stored report: nothing written), invalid (stdout not one JSON object).", "outcome"),
		invFailures: counter("kanade_projector_inventory_step_failures_total",
			"Inventory projection steps that failed and were undone while their run row was stored (logged)."),
		invEvents: counter("kanade_projector_inventory_history_events_total",
			"Rows written to inventory_history."),
		invSkipped: counter("kanade_projector_inventory_skipped_elements_total",
			"Inventory array elements left out: not an object, without a primary-key value, or a duplicate key."),
	}
	// Known label values start at 0, so an alert on a rate sees the series
	// before the first failure.
	for _, c := range w.consumers {
		for _, v := range []*prometheus.CounterVec{m.applied, m.behind, m.applyErrors, m.resets} {
			v.WithLabelValues(c.Name)
		}
		m.decodeFailures.WithLabelValues(c.Stream)
	}
	m.decodeFailures.WithLabelValues("heartbeat")
	for _, o := range []string{"projected", "unchanged", "stale", "invalid"} {
		m.inventory.WithLabelValues(o)
	}
	for _, k := range []string{"host", "process"} {
		m.perfReceived.WithLabelValues(k)
		m.perfStored.WithLabelValues(k)
	}
	for _, r := range []string{"invalid", "slow", "write"} {
		m.perfDropped.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.batchSize, m.batchBytes, m.decodeFailures, m.applied, m.behind,
		m.applyErrors, m.restarts, m.resets, m.implausible, m.missingOutput, m.cutOutput, m.hbReceived,
		m.hbDropped, m.hbClamped, m.hbFlushed, m.hbFlushSeconds, m.housekeeping, m.inventory, m.invFailures, m.invEvents,
		m.invSkipped, m.obsMismatch, m.perfReceived, m.perfDropped, m.perfStored, progressCollector{w}} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("projection metrics: %w (one worker per registry)", err)
			}
			return nil, fmt.Errorf("projection metrics: %w", err)
		}
	}
	return m, nil
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

func counterVec(name, help, label string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
}

var (
	descApplied = prometheus.NewDesc("kanade_projector_last_applied_stream_seq",
		"The stream sequence up to which every message is applied (the database offset this worker last read or wrote).",
		[]string{"consumer"}, nil)
	descPending = prometheus.NewDesc("kanade_projector_consumer_pending",
		"Messages waiting for this worker: held in batches not yet committed plus what the server still has.",
		[]string{"consumer"}, nil)
	descOldest = prometheus.NewDesc("kanade_projector_oldest_unapplied_age_seconds",
		"Age of the oldest message this worker holds or failed to apply (0 when none waits).",
		[]string{"consumer"}, nil)
	descStalled = prometheus.NewDesc("kanade_projector_stalled",
		"1 when the offset has not moved for the stall threshold while a message waited as long.",
		[]string{"consumer"}, nil)
	descLastError = prometheus.NewDesc("kanade_projector_last_error_timestamp_seconds",
		"When the last batch of this consumer failed (Unix time; 0 if never).",
		[]string{"consumer"}, nil)
)

// progressCollector reads each loop's progress at scrape time, so ages are
// current however long ago the loop last changed anything.
type progressCollector struct{ w *Worker }

func (c progressCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descApplied, descPending, descOldest, descStalled, descLastError} {
		ch <- d
	}
}

func (c progressCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.w.cfg.Clock()
	for _, spec := range c.w.consumers {
		p := c.w.progress[spec.Name]
		s := p.snapshot()
		age, stalled, lastErr := 0.0, 0.0, 0.0
		if !s.OldestUnapplied.IsZero() {
			age = max(now.Sub(s.OldestUnapplied).Seconds(), 0)
		}
		if s.Stalled(now, c.w.cfg.StallAfter) {
			stalled = 1
		}
		if !s.LastErrorAt.IsZero() {
			lastErr = float64(s.LastErrorAt.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(s.AppliedSeq), spec.Name)
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(p.pending()), spec.Name)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age, spec.Name)
		ch <- prometheus.MustNewConstMetric(descStalled, prometheus.GaugeValue, stalled, spec.Name)
		ch <- prometheus.MustNewConstMetric(descLastError, prometheus.GaugeValue, lastErr, spec.Name)
	}
}
