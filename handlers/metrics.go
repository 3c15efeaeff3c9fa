package handlers

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Metrics is what the handler needs of a metrics system: somewhere to
// record how long each request took, and the /metrics endpoint serving those
// durations beside the fleet gauges. The on-prem shells pass a Prometheus
// registry (package metrics), which also carries the process and worker
// metrics. Nil serves the fleet gauges alone, in Prometheus' text format:
// that is the Lambda shell, where a request histogram of one sandbox among
// many says nothing and leaving the client library out keeps the bootstrap
// small (2.3 MB of its 17.6 MB was client_golang and protobuf).
type Metrics interface {
	// ObserveRequest records one request: method, route and code are
	// bounded labels (methodLabel, routeLabel, the status code).
	ObserveRequest(method, route, code string, d time.Duration)
	// Handler serves /metrics; fleet is called once per scrape for the
	// fleet gauges. A Metrics that already serves another handler's fleet
	// gauges refuses: the second rollup would be hidden or duplicated.
	Handler(fleet func() []GaugeFamily) (http.Handler, error)
}

// GaugeFamily is one gauge with its samples. Label names the one label
// its samples carry ("" for none). A family without samples is absent from
// the scrape (Prometheus' "no data", not a false 0).
type GaugeFamily struct {
	Name, Help, Label string
	Samples           []GaugeSample
}

// GaugeSample is one value of a GaugeFamily, with its label's value.
type GaugeSample struct {
	LabelValue string
	Value      float64
}

// registerMetrics serves /metrics: the fleet rollup as gauges, computed at
// scrape time by the same function as /api/health/fleet so the gauges and
// the endpoint cannot disagree, through Config.Metrics or, without one, as
// plain text.
func (srv *Server) registerMetrics(mux *routes) error {
	// A scrape carries no context; fleetHealth bounds itself by ProbeTimeout.
	fleet := func() []GaugeFamily { return fleetGauges(srv.fleetHealth(context.Background())) }
	if srv.cfg.Metrics == nil {
		mux.Handle("GET /metrics", textMetrics(fleet))
		return nil
	}
	h, err := srv.cfg.Metrics.Handler(fleet)
	if err != nil {
		return fmt.Errorf("handlers: fleet metrics: %w", err)
	}
	mux.Handle("GET /metrics", h)
	return nil
}

// fleetGauges turns one fleet rollup into gauges. A part that could not be
// read exports no samples and sets kanade_fleet_check_failed for that part.
func fleetGauges(h FleetHealth) []GaugeFamily {
	agents := GaugeFamily{Name: "kanade_fleet_agents", Label: "state",
		Help: "Agents by freshness: known, active (heartbeat within the stale threshold), stale."}
	if a := h.Agents; a.Known != nil {
		agents.Samples = []GaugeSample{{"active", float64(*a.Active)}, {"known", float64(*a.Known)}, {"stale", float64(*a.Stale)}}
	}
	results := GaugeFamily{Name: "kanade_fleet_recent_results", Label: "kind",
		Help: "Runs recorded in the last 24 h: total, and failed (finished, not skipped, non-zero exit)."}
	if r := h.RecentResults; r.Total != nil {
		results.Samples = []GaugeSample{{"failed", float64(*r.Failed)}, {"total", float64(*r.Total)}}
	}
	up := 1.0
	if h.Status == fleetDegraded {
		up = 0
	}
	failures := GaugeFamily{Name: "kanade_fleet_check_failed", Label: "check",
		Help: "1 when a part of the fleet rollup could not be read (agents, recent_results, jetstream), else 0."}
	for _, part := range []string{partAgents, partJetStream, partRecentResults} {
		failed := 0.0
		if h.Errors[part] != "" {
			failed = 1
		}
		failures.Samples = append(failures.Samples, GaugeSample{part, failed})
	}
	return []GaugeFamily{
		agents,
		failures,
		{Name: "kanade_fleet_jetstream_resources", Label: "state",
			Help:    "JetStream resources of the bootstrap contract: healthy, and missing (absent or not checkable).",
			Samples: []GaugeSample{{"healthy", float64(h.JetStream.Healthy)}, {"missing", float64(len(h.JetStream.Missing))}}},
		results,
		{Name: "kanade_fleet_status", Help: "1 when /api/health/fleet would answer ok or unknown, 0 when degraded.",
			Samples: []GaugeSample{{Value: up}}},
	}
}

// textMetrics serves the families of fleet in the Prometheus text format
// (0.0.4), which every scraper reads, in the order given, with the
// Content-Type the Prometheus client sends for it (the names here need no
// escaping), so a scraper sees one kind of answer from every shell.
func textMetrics(fleet func() []GaugeFamily) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var b strings.Builder
		for _, f := range fleet() {
			if len(f.Samples) == 0 {
				continue
			}
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", f.Name, helpEscaper.Replace(f.Help), f.Name)
			for _, s := range f.Samples {
				b.WriteString(f.Name)
				if f.Label != "" {
					fmt.Fprintf(&b, "{%s=\"%s\"}", f.Label, labelEscaper.Replace(s.LabelValue))
				}
				b.WriteByte(' ')
				b.WriteString(strconv.FormatFloat(s.Value, 'g', -1, 64))
				b.WriteByte('\n')
			}
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores")
		io.WriteString(w, b.String())
	})
}

var (
	// The escapes of the text format: help text escapes \\ and newlines,
	// label values also double quotes.
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// instrument hands the duration of every request next serves to m. next
// must be the ServeMux itself: the route label is the pattern the mux
// matched (r.Pattern, set on the request it was handed), so its cardinality
// is bounded by the routes registered; anything unmatched, redirected or
// refused before routing is "other". A nil m measures nothing.
func instrument(m Metrics, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		m.ObserveRequest(methodLabel(r.Method), routeLabel(r.Pattern), strconv.Itoa(code), time.Since(start))
	})
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
