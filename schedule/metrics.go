package schedule

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	schedules prometheus.Gauge
	invalid   prometheus.Counter
	firings   *prometheus.CounterVec
	missed    prometheus.Counter
	waves     prometheus.Counter
	errors    *prometheus.CounterVec

	// invalidIDs counts pc_ids and group names read back from storage that
	// were skipped because they cannot go into a subject.
	invalidIDs prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		schedules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kanade_scheduler_schedules", Help: "Schedules registered from KV schedules (valid ones)."}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kanade_scheduler_invalid_schedules_total", Help: "Schedule values skipped because they do not parse."}),
		invalidIDs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kanade_scheduler_invalid_ids_total", Help: "pc_ids (agents table) and group names (KV agent_groups) skipped because they cannot go into a subject."}),
		firings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanade_scheduler_firings_total", Help: "Dispatches this worker performed, by kind (calendar, late, per_pc, per_target)."}, []string{"kind"}),
		missed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kanade_scheduler_missed_firings_total", Help: "Calendar firings missed while no worker ran (recorded by this worker)."}),
		waves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kanade_scheduler_waves_sent_total", Help: "Delayed rollout waves this worker published."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanade_scheduler_errors_total", Help: "Failed scheduler steps, by part (calendar, per_pc, per_target, wave, watch)."}, []string{"part"}),
	}
	// Known label values start at 0, so a dashboard or alert sees the series
	// before the first firing or failure.
	for _, k := range []string{"calendar", "late", "per_pc", "per_target"} {
		m.firings.WithLabelValues(k)
	}
	for _, p := range []string{"calendar", "per_pc", "per_target", "wave", "watch"} {
		m.errors.WithLabelValues(p)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.schedules, m.invalid, m.invalidIDs, m.firings, m.missed, m.waves, m.errors} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return nil, fmt.Errorf("register scheduler metrics: %w", err)
		}
	}
	return m, nil
}
