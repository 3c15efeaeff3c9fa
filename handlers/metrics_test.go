package handlers_test

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

func TestFleetMetrics(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(e *env)
		want    string
	}{
		{
			name: "a readable fleet exports every gauge",
			want: `
kanade_fleet_agents{state="active"} 1
kanade_fleet_agents{state="known"} 2
kanade_fleet_agents{state="stale"} 1
kanade_fleet_check_failed{check="agents"} 0
kanade_fleet_check_failed{check="jetstream"} 0
kanade_fleet_check_failed{check="recent_results"} 0
kanade_fleet_jetstream_resources{state="healthy"} RESOURCES
kanade_fleet_jetstream_resources{state="missing"} 0
kanade_fleet_recent_results{kind="failed"} 2
kanade_fleet_recent_results{kind="total"} 5
kanade_fleet_status 1
`,
		},
		{
			name:    "an unreadable database exports no counts, only the failure",
			breakIt: func(e *env) { e.db.Close() },
			want: `
kanade_fleet_check_failed{check="agents"} 1
kanade_fleet_check_failed{check="jetstream"} 0
kanade_fleet_check_failed{check="recent_results"} 1
kanade_fleet_jetstream_resources{state="healthy"} RESOURCES
kanade_fleet_jetstream_resources{state="missing"} 0
kanade_fleet_status 0
`,
		},
	}
	// The same lines through a Prometheus registry (the on-prem shells) and
	// as plain text without one (the Lambda shell).
	for _, via := range []string{"prometheus", "text"} {
		for _, tt := range tests {
			t.Run(via+"/"+tt.name, func(t *testing.T) {
				e := newEnv(t, func(c *handlers.Config) {
					if via == "text" {
						c.Metrics = nil
					}
				})
				e.seed([]agent{freshAgent, longStale}, sampleRuns)
				if tt.breakIt != nil {
					tt.breakIt(e)
				}
				all := strconv.Itoa(len(kanade.Resources(1)))
				want := strings.Split(strings.TrimSpace(strings.ReplaceAll(tt.want, "RESOURCES", all)), "\n")
				if diff := cmp.Diff(want, scrape(t, e, "kanade_fleet_")); diff != "" {
					t.Fatalf("/metrics (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// scrape reads /metrics through the handler (with the token) and returns
// the sample lines of the named metric.
func scrape(t *testing.T, e *env, prefix string) []string {
	t.Helper()
	rec := e.get("/metrics")
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	var out []string
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) && !strings.HasPrefix(sc.Text(), "#") {
			out = append(out, sc.Text())
		}
	}
	return out
}

func TestRequestDurations(t *testing.T) {
	e := newEnv(t, nil)
	e.get("/api/health/fleet")
	e.get("/api/health/fleet")
	e.get("/healthz")
	e.get("/api/version")
	e.get("/no/such/route")
	e.get("/api/no/such/route")
	// Refused by auth before routing: not measured, so an unauthenticated
	// caller cannot grow the series.
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/health/fleet", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("without token: %d", rec.Code)
	}
	// The dashboard and the CLI send X-Kanade-Source: still the route's label.
	src := httptest.NewRequest(http.MethodGet, "/api/version", nil)
	src.Header.Set("Authorization", "Bearer "+testToken)
	src.Header.Set("X-Kanade-Source", "spa")
	e.h.ServeHTTP(httptest.NewRecorder(), src)
	req := httptest.NewRequest("BREW", "/healthz", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	e.h.ServeHTTP(httptest.NewRecorder(), req)

	got := scrape(t, e, "kanade_http_request_duration_seconds_count")
	want := []string{
		`kanade_http_request_duration_seconds_count{code="200",method="GET",route="/api/health/fleet"} 2`,
		`kanade_http_request_duration_seconds_count{code="200",method="GET",route="/api/version"} 2`,
		`kanade_http_request_duration_seconds_count{code="200",method="GET",route="/healthz"} 1`,
		`kanade_http_request_duration_seconds_count{code="404",method="GET",route="other"} 2`,
		`kanade_http_request_duration_seconds_count{code="405",method="OTHER",route="other"} 1`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestNewTwice(t *testing.T) {
	e := newEnv(t, nil)
	// Each handler with its own registry: no panic, both serve.
	cfg := e.cfg
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Metrics = m
	h2, err := handlers.New(cfg)
	if err != nil {
		t.Fatalf("second handler, fresh registry: %v", err)
	}
	if rec := serveOpen(h2, "/healthz"); rec.Code != http.StatusOK {
		t.Fatalf("second handler: %d", rec.Code)
	}
	// The same registry twice would hide the second rollup: refused.
	cfg.Metrics = e.metrics
	if _, err := handlers.New(cfg); err == nil {
		t.Fatal("second handler on the same registry: no error")
	}
	// Without Metrics (the Lambda shell): the fleet gauges alone.
	cfg.Metrics = nil
	h3, err := handlers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	h3.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "\nkanade_fleet_status 1\n") ||
		strings.Contains(rec.Body.String(), "kanade_http_request") || strings.Contains(rec.Body.String(), "go_goroutines") {
		t.Fatalf("/metrics without Metrics: %d\n%s", rec.Code, rec.Body)
	}
}
