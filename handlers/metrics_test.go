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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
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
	cfg.Registry = prometheus.NewRegistry()
	h2, err := handlers.New(cfg)
	if err != nil {
		t.Fatalf("second handler, fresh registry: %v", err)
	}
	if rec := serveOpen(h2, "/healthz"); rec.Code != http.StatusOK {
		t.Fatalf("second handler: %d", rec.Code)
	}
	// The same registry twice would hide the second rollup: refused.
	cfg.Registry = e.registry
	if _, err := handlers.New(cfg); err == nil {
		t.Fatal("second handler on the same registry: no error")
	}
}
