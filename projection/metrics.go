package projection

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the projector's Prometheus series. They are created per Worker
// (no global registry) so tests can read them and two workers never collide.
type metrics struct {
	lastSeq        *prometheus.GaugeVec
	pending        *prometheus.GaugeVec
	ackPending     *prometheus.GaugeVec
	batchSize      *prometheus.HistogramVec
	decodeFailures *prometheus.CounterVec
	redeliveries   *prometheus.CounterVec
	applied        *prometheus.CounterVec
	applyErrors    *prometheus.CounterVec
	restarts       *prometheus.CounterVec
	recreated      *prometheus.CounterVec
	missingOutput  prometheus.Counter
	hbReceived     prometheus.Counter
	hbDropped      prometheus.Counter
	hbFlushed      prometheus.Counter
	hbFlushSeconds prometheus.Histogram
	housekeeping   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		lastSeq: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kanade_projector_last_applied_stream_seq",
			Help: "Last stream sequence committed to SQL, per durable consumer.",
		}, []string{"consumer"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kanade_projector_consumer_pending",
			Help: "Messages in the stream not yet delivered to the consumer (lag), sampled from consumer info.",
		}, []string{"consumer"}),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kanade_projector_consumer_ack_pending",
			Help: "Messages delivered but not yet acknowledged, sampled from consumer info.",
		}, []string{"consumer"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kanade_projector_batch_size",
			Help:    "Messages per applied batch (one transaction each).",
			Buckets: []float64{1, 10, 50, 100, 250, 500, 1000, 2000, 5000},
		}, []string{"consumer"}),
		decodeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanade_projector_decode_failures_total",
			Help: "Messages acknowledged without effect because they could not be decoded or validated.",
		}, []string{"stream"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanade_projector_redeliveries_total",
			Help: "Messages delivered more than once (NumDelivered > 1).",
		}, []string{"consumer"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanade_projector_messages_applied_total",
			Help: "Messages committed (including skipped redeliveries and malformed ones).",
		}, []string{"consumer"}),
		applyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanade_projector_apply_errors_total",
			Help: "Batches that failed (database, object store or KV error) and will be redelivered.",
		}, []string{"consumer"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanade_projector_loop_restarts_total",
			Help: "Times a projector loop failed and was restarted with backoff.",
		}, []string{"loop"}),
		recreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanade_projector_consumer_recreated_total",
			Help: "Times a durable consumer was recreated from the database offset (replay or recovery).",
		}, []string{"consumer"}),
		missingOutput: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kanade_projector_missing_output_objects_total",
			Help: "Result outputs named by stdout_object/stderr_object but absent from the object store.",
		}),
		hbReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kanade_projector_heartbeats_received_total",
			Help: "Heartbeat messages received on the core subscription.",
		}),
		hbDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kanade_projector_heartbeats_dropped_total",
			Help: "Heartbeats dropped by the client library because the subscription fell behind.",
		}),
		hbFlushed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kanade_projector_heartbeats_flushed_total",
			Help: "Agent rows upserted by heartbeat flushes.",
		}),
		hbFlushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kanade_projector_heartbeat_flush_seconds",
			Help:    "Duration of one heartbeat flush transaction.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		housekeeping: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanade_housekeeping_rows_total",
			Help: "Rows changed by housekeeping, by action.",
		}, []string{"action"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.lastSeq, m.pending, m.ackPending, m.batchSize, m.decodeFailures,
		m.redeliveries, m.applied, m.applyErrors, m.restarts, m.recreated, m.missingOutput, m.hbReceived,
		m.hbDropped, m.hbFlushed, m.hbFlushSeconds, m.housekeeping} {
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
