// Package metrics is the handler's metrics on a Prometheus registry: the
// request histogram and the fleet gauges registered beside whatever else the
// process keeps there (the Go runtime, the process, the projector and the
// scheduler), all served on one /metrics.
//
// It is a package of its own so that only the shells that want the
// Prometheus client link it: the Lambda bootstrap serves the fleet gauges as
// plain text without it (see handlers.Metrics). Only a shell that serves the
// API imports it (it imports handlers).
package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/kanade-fleet/backend/handlers"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prometheus implements handlers.Metrics on a registry. Build one per
// registry: it owns the request histogram there, and serves the fleet gauges
// of one handler.
type Prometheus struct {
	reg  *prometheus.Registry
	hist *prometheus.HistogramVec

	mu    sync.Mutex
	fleet bool // Handler was called: the registry holds a fleet collector
}

// New registers the request histogram on reg.
func New(reg *prometheus.Registry) (*Prometheus, error) {
	hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kanade_http_request_duration_seconds",
		Help:    "Time to serve HTTP requests, by method, matched route pattern and status code.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method", "route", "code"})
	if err := reg.Register(hist); err != nil {
		return nil, fmt.Errorf("metrics: register HTTP metrics: %w", err)
	}
	return &Prometheus{reg: reg, hist: hist}, nil
}

// ObserveRequest implements handlers.Metrics.
func (p *Prometheus) ObserveRequest(method, route, code string, d time.Duration) {
	p.hist.WithLabelValues(method, route, code).Observe(d.Seconds())
}

// Handler implements handlers.Metrics: it registers the fleet gauges,
// collected by calling fleet at each scrape, and serves the whole registry.
// A second call is refused: two rollups would collide.
func (p *Prometheus) Handler(fleet func() []handlers.GaugeFamily) (http.Handler, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fleet {
		return nil, errors.New("metrics: this registry already serves a handler's fleet gauges")
	}
	if err := p.reg.Register(fleetCollector(fleet)); err != nil {
		return nil, fmt.Errorf("metrics: register fleet gauges: %w", err)
	}
	p.fleet = true
	return promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}), nil
}

// fleetCollector is an unchecked collector (it describes nothing): the
// families are known only once the rollup ran, and Handler's own check
// keeps one per registry.
type fleetCollector func() []handlers.GaugeFamily

func (fleetCollector) Describe(chan<- *prometheus.Desc) {}

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c() {
		var labels []string
		if f.Label != "" {
			labels = []string{f.Label}
		}
		desc := prometheus.NewDesc(f.Name, f.Help, labels, nil)
		for _, s := range f.Samples {
			var values []string
			if f.Label != "" {
				values = []string{s.LabelValue}
			}
			m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, s.Value, values...)
			if err != nil {
				m = prometheus.NewInvalidMetric(desc, err)
			}
			ch <- m
		}
	}
}
