package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// registerMetrics serves Config.Registry on /metrics and registers on it the
// fleet rollup, computed at scrape time by the same function as
// /api/health/fleet so the gauges and the endpoint cannot disagree.
//
// Registering on a registry that already holds them (New called twice with
// one registry) is an error: the second handler's rollup would silently be
// ignored.
func (srv *Server) registerMetrics(mux *routes) error {
	if err := srv.cfg.Registry.Register(newFleetCollector(srv)); err != nil {
		return fmt.Errorf("handlers: register fleet metrics: %w", err)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(srv.cfg.Registry, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	}))
	return nil
}

// fleetCollector turns one fleet rollup per scrape into gauges. A part that
// could not be read exports no samples (Prometheus' "absent", not a false
// 0) and sets kanade_fleet_check_failed for that part.
type fleetCollector struct {
	srv                                          *Server
	agents, results, resources, status, failures *prometheus.Desc
}

func newFleetCollector(srv *Server) *fleetCollector {
	return &fleetCollector{
		srv: srv,
		agents: prometheus.NewDesc("kanade_fleet_agents",
			"Agents by freshness: known, active (heartbeat within the stale threshold), stale.", []string{"state"}, nil),
		results: prometheus.NewDesc("kanade_fleet_recent_results",
			"Runs recorded in the last 24 h: total, and failed (finished, not skipped, non-zero exit).", []string{"kind"}, nil),
		resources: prometheus.NewDesc("kanade_fleet_jetstream_resources",
			"JetStream resources of the bootstrap contract: healthy, and missing (absent or not checkable).", []string{"state"}, nil),
		status: prometheus.NewDesc("kanade_fleet_status",
			"1 when /api/health/fleet would answer ok or unknown, 0 when degraded.", nil, nil),
		failures: prometheus.NewDesc("kanade_fleet_check_failed",
			"1 when a part of the fleet rollup could not be read (agents, recent_results, jetstream), else 0.", []string{"check"}, nil),
	}
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.agents, c.results, c.resources, c.status, c.failures} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	// A scrape carries no context; fleetHealth bounds itself by ProbeTimeout.
	h := c.srv.fleetHealth(context.Background())
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if a := h.Agents; a.Known != nil {
		gauge(c.agents, float64(*a.Known), "known")
		gauge(c.agents, float64(*a.Active), "active")
		gauge(c.agents, float64(*a.Stale), "stale")
	}
	if r := h.RecentResults; r.Total != nil {
		gauge(c.results, float64(*r.Total), "total")
		gauge(c.results, float64(*r.Failed), "failed")
	}
	gauge(c.resources, float64(h.JetStream.Healthy), "healthy")
	gauge(c.resources, float64(len(h.JetStream.Missing)), "missing")
	up := 1.0
	if h.Status == fleetDegraded {
		up = 0
	}
	gauge(c.status, up)
	for _, part := range []string{partAgents, partRecentResults, partJetStream} {
		failed := 0.0
		if h.Errors[part] != "" {
			failed = 1
		}
		gauge(c.failures, failed, part)
	}
}

// instrument records kanade_http_request_duration_seconds for every request
// next serves. next must be the ServeMux itself: the route label is the
// pattern the mux matched (r.Pattern, set on the request it was handed), so
// its cardinality is bounded by the routes registered; anything unmatched,
// redirected or refused before routing is "other".
//
// A registry that already holds the histogram (New called twice with one
// registry) shares it, which is what two handlers feeding one /metrics want.
func instrument(reg prometheus.Registerer, next http.Handler) (http.Handler, error) {
	hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kanade_http_request_duration_seconds",
		Help:    "Time to serve HTTP requests, by method, matched route pattern and status code.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method", "route", "code"})
	if err := reg.Register(hist); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("handlers: register HTTP metrics: %w", err)
		}
		existing, ok := are.ExistingCollector.(*prometheus.HistogramVec)
		if !ok {
			return nil, fmt.Errorf("handlers: register HTTP metrics: %w", err)
		}
		hist = existing
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		hist.WithLabelValues(methodLabel(r.Method), routeLabel(r.Pattern), strconv.Itoa(code)).
			Observe(time.Since(start).Seconds())
	}), nil
}

// routeLabel strips the method from a ServeMux pattern ("GET /api/x" →
// "/api/x").
func routeLabel(pattern string) string {
	if pattern == "" {
		return "other"
	}
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		return strings.TrimLeft(pattern[i:], " \t")
	}
	return pattern
}

// methodLabel keeps the label bounded: a client can send any method token.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// statusRecorder remembers the status code and forwards at most one final
// WriteHeader. A second one reaches net/http, which logs "superfluous
// response.WriteHeader call" for each: huma sets 499 after the body it was
// marshaling could not be written to a client that left, and a handler may
// write a body before calling WriteHeader. Under abuse (clients that hang
// up mid-response) that is a log line per request, so later calls are
// dropped here: the first status is the one the client got and the one the
// metric records. Informational 1xx statuses (except 101, which ends the
// HTTP exchange) pass through, as net/http allows several before the final one.
//
// Unwrap lets http.ResponseController reach the real writer's Flush,
// deadlines and hijack.
type statusRecorder struct {
	http.ResponseWriter
	code int // the final status, 0 until one was written
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code != 0 {
		return
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush passes through for streaming handlers that assert http.Flusher. It
// sends the header (200 unless one was written), so it counts as the final
// status.
func (s *statusRecorder) Flush() {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	http.NewResponseController(s.ResponseWriter).Flush()
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
