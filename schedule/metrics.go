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
	frozen    prometheus.Counter
	waves     prometheus.Counter
	resumed   prometheus.Counter
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
		frozen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kanade_scheduler_frozen_skips_total", Help: "Calendar firings and per_pc / per_target reconciles skipped because the fleet was frozen."}),
		waves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kanade_scheduler_waves_sent_total", Help: "Delayed rollout waves this worker published."}),
		resumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kanade_scheduler_firings_resumed_total", Help: "per_pc firings this worker took over after their worker stopped half way."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanade_scheduler_errors_total", Help: "Failed scheduler steps, by part (calendar, per_pc, per_target, wave, watch, resume)."}, []string{"part"}),
	}
	// Known label values start at 0, so a dashboard or alert sees the series
	// before the first firing or failure.
	for _, k := range []string{"calendar", "late", "per_pc", "per_target"} {
		m.firings.WithLabelValues(k)
	}
	for _, p := range []string{"calendar", "per_pc", "per_target", "wave", "watch", "resume"} {
		m.errors.WithLabelValues(p)
	}
	if reg == nil {
		return m, nil
	}
	// A shell makes a new Scheduler for each NATS connection it gets (the
	// old one went with its connection); the series carry on in the
	// collectors registered by the first.
	var err error
	m.schedules, err = register(reg, m.schedules)
	if err == nil {
		m.invalid, err = register(reg, m.invalid)
	}
	if err == nil {
		m.invalidIDs, err = register(reg, m.invalidIDs)
	}
	if err == nil {
		m.firings, err = register(reg, m.firings)
	}
	if err == nil {
		m.missed, err = register(reg, m.missed)
	}
	if err == nil {
		m.frozen, err = register(reg, m.frozen)
	}
	if err == nil {
		m.waves, err = register(reg, m.waves)
	}
	if err == nil {
		m.resumed, err = register(reg, m.resumed)
	}
	if err == nil {
		m.errors, err = register(reg, m.errors)
	}
	if err != nil {
		return nil, fmt.Errorf("register scheduler metrics: %w", err)
	}
	return m, nil
}

// register registers c, or returns the collector registered before it
// under the same name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
