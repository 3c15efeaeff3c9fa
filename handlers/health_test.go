package handlers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/storage"
)

// Agents around the default stale threshold (2 minutes) of testNow.
var (
	freshAgent    = agent{"PC-FRESH", testNow.Add(-10 * time.Second)}
	boundaryAgent = agent{"PC-BOUNDARY", testNow.Add(-kanade.DefaultStaleThreshold)} // exactly at the cutoff: active
	aheadAgent    = agent{"PC-AHEAD", testNow.Add(30 * time.Second)}                 // clock ahead: active
	justStale     = agent{"PC-JUST-STALE", testNow.Add(-kanade.DefaultStaleThreshold - time.Nanosecond)}
	longStale     = agent{"PC-OFF", testNow.Add(-3 * time.Hour)}
)

// sampleRuns: 5 runs in the 24 h window, 2 of them failures.
var sampleRuns = []run{
	{"ok", 0, false, testNow.Add(-time.Hour)},
	{"failed-at-window-edge", 1, false, testNow.Add(-24 * time.Hour)},
	{"running", nil, false, testNow.Add(-time.Minute)},
	{"reaped", -1, false, testNow.Add(-2 * time.Hour)},
	{"skipped", 126, true, testNow.Add(-3 * time.Hour)},
	{"failed-just-outside", 2, false, testNow.Add(-24*time.Hour - time.Nanosecond)},
	{"old", 0, false, testNow.Add(-48 * time.Hour)},
}

// allResources lists the bootstrap contract's names, in its order.
func allResources() []any {
	var out []any
	for _, r := range kanade.Resources(1) {
		out = append(out, r.Name)
	}
	return out
}

// fleetWant builds an expected /api/health/fleet body. agents and results
// are nil when the part is expected unreadable (null numbers).
func fleetWant(status string, agents *[3]float64, missing []any, results *[2]float64) map[string]any {
	total := float64(len(kanade.Resources(1)))
	if missing == nil {
		missing = []any{}
	}
	body := map[string]any{
		"status":      status,
		"agents":      map[string]any{"known": nil, "active": nil, "stale": nil},
		"jetstream":   map[string]any{"all_ok": len(missing) == 0, "healthy": total - float64(len(missing)), "total": total, "missing": missing},
		"observed_at": "2026-06-20T01:02:03.456Z",
		"recent_results": map[string]any{
			"window_hours": 24.0, "total": nil, "failed": nil,
		},
	}
	body["projection"] = projectionWant(true, true)
	if agents != nil {
		body["agents"] = map[string]any{"known": agents[0], "active": agents[1], "stale": agents[2]}
	}
	if results != nil {
		body["recent_results"].(map[string]any)["total"] = results[0]
		body["recent_results"].(map[string]any)["failed"] = results[1]
	}
	return body
}

// projectionWant is the projection part of an idle fleet: nothing applied,
// nothing waiting. applied says the database could be read, pending that
// JetStream could be asked, except about the streams in noPending.
func projectionWant(applied, pending bool, noPending ...string) map[string]any {
	var consumers []any
	for _, p := range kanade.Projections() {
		c := map[string]any{"name": p.Name, "stream": p.Stream, "applied_seq": nil, "pending": nil,
			"oldest_unapplied_age_seconds": nil, "last_progress_at": nil, "last_error": nil, "last_error_at": nil, "stalled": false}
		if applied {
			c["applied_seq"] = 0.0
		}
		if pending && !slices.Contains(noPending, p.Stream) {
			c["pending"] = 0.0
		}
		consumers = append(consumers, c)
	}
	return map[string]any{"all_ok": true, "stall_after_seconds": 120.0, "consumers": consumers}
}

// check is the expected summary of one IETF check: its status and
// observedValue (nil: absent).
type check struct {
	Status string
	Value  any
	Output bool // output present
}

func TestFleetHealth(t *testing.T) {
	resources := float64(len(kanade.Resources(1)))
	tests := []struct {
		name    string
		ratio   float64
		agents  []agent
		runs    []run
		breakIt func(t *testing.T, e *env)
		// wantCode applies to both formats.
		wantCode   int
		wantBody   map[string]any
		wantErrors []string // keys of "errors", which must say why
		wantIETF   string
		wantChecks map[string]check
	}{
		{
			name:     "a fresh install is unknown with 200",
			wantCode: http.StatusOK,
			wantBody: fleetWant("unknown", &[3]float64{0, 0, 0}, nil, &[2]float64{0, 0}),
			wantIETF: "warn",
			wantChecks: map[string]check{
				"agents:freshness":    {"warn", 0.0, true},
				"jetstream:resources": {"pass", resources, false},
				"executions:failures": {"pass", 0.0, false},
				"projection:backlog":  {"pass", 0.0, false},
			},
		},
		{
			name:     "all agents fresh is ok with 200, counting the cutoff instant and clocks ahead as active",
			agents:   []agent{freshAgent, boundaryAgent, aheadAgent},
			runs:     sampleRuns,
			wantCode: http.StatusOK,
			wantBody: fleetWant("ok", &[3]float64{3, 3, 0}, nil, &[2]float64{5, 2}),
			wantIETF: "pass",
			wantChecks: map[string]check{
				"agents:freshness":    {"pass", 0.0, false},
				"jetstream:resources": {"pass", resources, false},
				"executions:failures": {"pass", 2.0, false},
				"projection:backlog":  {"pass", 0.0, false},
			},
		},
		{
			name:     "some stale agents under the default ratio stay ok",
			agents:   []agent{freshAgent, boundaryAgent, justStale, longStale},
			runs:     sampleRuns,
			wantCode: http.StatusOK,
			wantBody: fleetWant("ok", &[3]float64{4, 2, 2}, nil, &[2]float64{5, 2}),
			wantIETF: "pass",
			wantChecks: map[string]check{
				"agents:freshness":    {"pass", 2.0, false},
				"jetstream:resources": {"pass", resources, false},
				"executions:failures": {"pass", 2.0, false},
				"projection:backlog":  {"pass", 0.0, false},
			},
		},
		{
			name:     "a total blackout is degraded with 503",
			agents:   []agent{justStale, longStale},
			wantCode: http.StatusServiceUnavailable,
			wantBody: fleetWant("degraded", &[3]float64{2, 0, 2}, nil, &[2]float64{0, 0}),
			wantIETF: "fail",
			wantChecks: map[string]check{
				"agents:freshness":    {"fail", 2.0, true},
				"jetstream:resources": {"pass", resources, false},
				"executions:failures": {"pass", 0.0, false},
				"projection:backlog":  {"pass", 0.0, false},
			},
		},
		{
			name:     "a strict ratio degrades on one stale agent",
			ratio:    0.000001,
			agents:   []agent{freshAgent, boundaryAgent, aheadAgent, justStale},
			runs:     sampleRuns,
			wantCode: http.StatusServiceUnavailable,
			wantBody: fleetWant("degraded", &[3]float64{4, 3, 1}, nil, &[2]float64{5, 2}),
			wantIETF: "fail",
			wantChecks: map[string]check{
				"agents:freshness":    {"fail", 1.0, true},
				"jetstream:resources": {"pass", resources, false},
				"executions:failures": {"pass", 2.0, false},
				"projection:backlog":  {"pass", 0.0, false},
			},
		},
		{
			name:   "a deleted stream is degraded with 503 and named",
			agents: []agent{freshAgent},
			breakIt: func(t *testing.T, e *env) {
				if err := e.nats.JS.DeleteStream(t.Context(), kanade.StreamResults); err != nil {
					t.Fatal(err)
				}
			},
			wantCode: http.StatusServiceUnavailable,
			wantBody: withProjection(fleetWant("degraded", &[3]float64{1, 1, 0}, []any{kanade.StreamResults}, &[2]float64{0, 0}),
				projectionWant(true, true, kanade.StreamResults)),
			wantIETF: "fail",
			wantChecks: map[string]check{
				"agents:freshness":    {"pass", 0.0, false},
				"jetstream:resources": {"fail", resources - 1, true},
				"executions:failures": {"pass", 0.0, false},
				"projection:backlog":  {"pass", 0.0, false},
			},
		},
		{
			name:   "an unreachable NATS is degraded with 503, every resource missing and the reason given",
			agents: []agent{freshAgent},
			runs:   sampleRuns,
			breakIt: func(t *testing.T, e *env) {
				e.nats.Shutdown()
				e.nats.WaitForShutdown()
			},
			wantCode:   http.StatusServiceUnavailable,
			wantBody:   withProjection(fleetWant("degraded", &[3]float64{1, 1, 0}, allResources(), &[2]float64{5, 2}), projectionWant(true, false)),
			wantErrors: []string{"jetstream"},
			wantIETF:   "fail",
			wantChecks: map[string]check{
				"agents:freshness":    {"pass", 0.0, false},
				"jetstream:resources": {"fail", 0.0, true},
				"executions:failures": {"pass", 2.0, false},
				"projection:backlog":  {"pass", 0.0, false},
			},
		},
		{
			name:   "a closed database is degraded with 503 and null numbers, not an empty fleet",
			agents: []agent{freshAgent},
			runs:   sampleRuns,
			breakIt: func(t *testing.T, e *env) {
				if err := e.db.Close(); err != nil {
					t.Fatal(err)
				}
			},
			wantCode:   http.StatusServiceUnavailable,
			wantBody:   withProjection(fleetWant("degraded", nil, nil, nil), projectionWant(false, false)),
			wantErrors: []string{"agents", "recent_results"},
			wantIETF:   "fail",
			wantChecks: map[string]check{
				"agents:freshness":    {"fail", nil, true},
				"jetstream:resources": {"pass", resources, false},
				"executions:failures": {"fail", nil, true},
				"projection:backlog":  {"pass", 0.0, false},
			},
		},
		{
			name:   "an unreadable agents summary degrades and names only that part",
			agents: []agent{freshAgent},
			runs:   sampleRuns,
			breakIt: func(t *testing.T, e *env) {
				// Through the store's own write connection, so it breaks
				// the same way on SQLite and on sqld.
				ctx := context.Background()
				if err := e.db.Update(ctx, func(tx *storage.Tx) error {
					_, err := tx.Exec(ctx, `DROP TABLE agent_version_minutes`)
					return err
				}); err != nil {
					t.Fatal(err)
				}
			},
			wantCode:   http.StatusServiceUnavailable,
			wantBody:   fleetWant("degraded", nil, nil, &[2]float64{5, 2}),
			wantErrors: []string{"agents"},
			wantIETF:   "fail",
			wantChecks: map[string]check{
				"agents:freshness":    {"fail", nil, true},
				"jetstream:resources": {"pass", resources, false},
				"executions:failures": {"pass", 2.0, false},
				"projection:backlog":  {"pass", 0.0, false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *handlers.Config) { c.StaleDegradedRatio = tt.ratio })
			e.seed(tt.agents, tt.runs)
			if tt.breakIt != nil {
				tt.breakIt(t, e)
			}

			// Both formats answer within the probe deadline (2 s) even when
			// NATS or the database is gone: a bound on the failure path.
			timed := func(accept string) *httptest.ResponseRecorder {
				start := time.Now()
				rec := e.get("/api/health/fleet", "Accept", accept)
				if d := time.Since(start); d >= 3*time.Second {
					t.Errorf("Accept %q: answered after %v", accept, d)
				}
				return rec
			}

			rec := timed("application/json")
			assertHeaders(t, rec, tt.wantCode, "application/json")
			got := decode(t, rec)
			gotErrors, _ := got["errors"].(map[string]any)
			delete(got, "errors")
			if diff := cmp.Diff(tt.wantBody, got); diff != "" {
				t.Errorf("JSON body (-want +got):\n%s\nraw: %s", diff, rec.Body)
			}
			var errKeys []string
			for k, v := range gotErrors {
				errKeys = append(errKeys, k)
				if s, _ := v.(string); s == "" {
					t.Errorf("errors[%q] = %v, want a reason", k, v)
				}
			}
			slices.Sort(errKeys)
			if diff := cmp.Diff(tt.wantErrors, errKeys); diff != "" {
				t.Errorf("errors keys (-want +got):\n%s\nraw: %s", diff, rec.Body)
			}

			rec = timed("application/health+json")
			assertHeaders(t, rec, tt.wantCode, "application/health+json")
			ietf := decode(t, rec)
			if ietf["status"] != tt.wantIETF {
				t.Errorf("health+json status = %v, want %s", ietf["status"], tt.wantIETF)
			}
			if out, _ := ietf["output"].(string); (out != "") != (tt.wantIETF != "pass") {
				t.Errorf("health+json output = %q with status %s", out, tt.wantIETF)
			}
			checks, _ := ietf["checks"].(map[string]any)
			gotChecks := map[string]check{}
			for key, v := range checks {
				entries, _ := v.([]any)
				if len(entries) != 1 {
					t.Fatalf("check %s: %d entries, want 1", key, len(entries))
				}
				entry := entries[0].(map[string]any)
				if unit, _ := entry["observedUnit"].(string); entry["time"] != "2026-06-20T01:02:03.456Z" || unit == "" || entry["componentType"] == nil {
					t.Errorf("check %s: time %v unit %v componentType %v", key, entry["time"], entry["observedUnit"], entry["componentType"])
				}
				out, _ := entry["output"].(string)
				gotChecks[key] = check{Status: entry["status"].(string), Value: entry["observedValue"], Output: out != ""}
			}
			if diff := cmp.Diff(tt.wantChecks, gotChecks); diff != "" {
				t.Errorf("health+json checks (-want +got):\n%s\nraw: %s", diff, rec.Body)
			}
		})
	}
}

func withProjection(body, projection map[string]any) map[string]any {
	body["projection"] = projection
	return body
}

func assertHeaders(t *testing.T, rec *httptest.ResponseRecorder, code int, contentType string) {
	t.Helper()
	if rec.Code != code {
		t.Errorf("%s: code %d, want %d; body %s", contentType, rec.Code, code, rec.Body)
	}
	if got := rec.Header().Get("Content-Type"); got != contentType {
		t.Errorf("Content-Type %q, want %q", got, contentType)
	}
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", contentType, got)
	}
}

func TestFleetHealthNegotiation(t *testing.T) {
	e := newEnv(t, nil)
	for accept, want := range map[string]string{
		"":                        "application/json",
		"*/*":                     "application/json",
		"text/html":               "application/json",
		"application/health+json": "application/health+json",
		"application/json;q=0.5, application/health+json": "application/health+json",
		"application/json, application/health+json;q=0.1": "application/json",
	} {
		rec := e.get("/api/health/fleet", "Accept", accept)
		if got := rec.Header().Get("Content-Type"); got != want {
			t.Errorf("Accept %q: Content-Type %q, want %q", accept, got, want)
		}
	}
}

func TestFleetHealthFollowsTheClock(t *testing.T) {
	// The stale rule is judged on the injected clock, not the wall clock.
	e := newEnv(t, nil)
	e.seed([]agent{freshAgent}, nil)
	e.clock.mu.Lock()
	e.clock.t = freshAgent.beat.Add(2*time.Minute + time.Nanosecond)
	e.clock.mu.Unlock()
	rec := e.get("/api/health/fleet")
	got := decode(t, rec)
	if rec.Code != http.StatusServiceUnavailable || got["status"] != "degraded" {
		t.Fatalf("code %d status %v, want 503 degraded; body %s", rec.Code, got["status"], rec.Body)
	}
	want := kanade.Timestamp{Time: e.clock.Now()}
	if got["observed_at"] != strings.Trim(mustJSON(t, want), `"`) {
		t.Errorf("observed_at = %v, want %v", got["observed_at"], want)
	}
}

func TestFleetHealthRequiresAToken(t *testing.T) {
	e := newEnv(t, nil)
	req := httptest.NewRequest(http.MethodGet, "/api/health/fleet", nil)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("code %d without a token, want 401", rec.Code)
	}
}

func TestScanDurations(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		query    string
		wantCode int
		wantBody string // exact, for 200
	}{
		{"", http.StatusOK, "[]\n"},
		{"?since=2026-06-20T10:00:00%2B09:00", http.StatusOK, "[]\n"},
		{"?since=2026-06-19T01:02:03.5Z", http.StatusOK, "[]\n"},
		{"?since=yesterday", http.StatusUnprocessableEntity, ""},
		{"?since=2026-06-20", http.StatusUnprocessableEntity, ""},
		{"?since=2026-06-20T10:00:00", http.StatusUnprocessableEntity, ""},
	}
	for _, tt := range tests {
		rec := e.get("/api/health/scan_durations" + tt.query)
		if rec.Code != tt.wantCode {
			t.Errorf("%q: code %d, want %d; body %s", tt.query, rec.Code, tt.wantCode, rec.Body)
			continue
		}
		if tt.wantCode == http.StatusOK {
			if rec.Body.String() != tt.wantBody {
				t.Errorf("%q: body %q, want %q", tt.query, rec.Body, tt.wantBody)
			}
			continue
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%q: Content-Type %q, want a problem", tt.query, ct)
		}
		if !strings.Contains(rec.Body.String(), `"query.since"`) {
			t.Errorf("%q: problem does not name the parameter: %s", tt.query, rec.Body)
		}
	}
}

func TestJetStreamStatus(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.nats.JS.DeleteKeyValue(t.Context(), kanade.BucketSchedules); err != nil {
		t.Fatal(err)
	}
	rec := e.get("/api/jetstream/status")
	if rec.Code != http.StatusOK {
		t.Fatalf("code %d: %s", rec.Code, rec.Body)
	}
	want := map[string]any{"streams": []any{}, "kv_buckets": []any{}, "object_stores": []any{}}
	key := map[kanade.ResourceKind]string{kanade.KindStream: "streams", kanade.KindKeyValue: "kv_buckets", kanade.KindObjectStore: "object_stores"}
	for _, r := range kanade.Resources(1) {
		want[key[r.Kind]] = append(want[key[r.Kind]].([]any), map[string]any{"name": r.Name, "exists": r.Name != kanade.BucketSchedules})
	}
	if diff := cmp.Diff(want, decode(t, rec)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestFleetHealthOpenAPIDocumentsBothFormats(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.get("/api/openapi.json")
	if rec.Code != http.StatusOK {
		t.Fatalf("openapi: %d", rec.Code)
	}
	doc := decode(t, rec)
	op := dig(t, doc, "paths", "/api/health/fleet", "get", "responses").(map[string]any)
	for _, code := range []string{"200", "503"} {
		content := dig(t, op, code, "content").(map[string]any)
		for media, schema := range map[string]string{"application/json": "FleetHealth", "application/health+json": "HealthCheck"} {
			if ref := dig(t, content, media, "schema", "$ref"); ref != "#/components/schemas/"+schema {
				t.Errorf("%s %s: schema %v, want %s", code, media, ref, schema)
			}
		}
	}
	if got := dig(t, doc, "components", "schemas", "FleetAgents", "properties", "known", "type"); !slices.Contains(asStrings(got), "null") {
		t.Errorf("agents.known type %v, want nullable", got)
	}
}

func dig(t *testing.T, v any, path ...string) any {
	t.Helper()
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("at %q: not an object", p)
		}
		v = m[p]
	}
	return v
}

func asStrings(v any) []string {
	var out []string
	switch v := v.(type) {
	case string:
		out = append(out, v)
	case []any:
		for _, x := range v {
			s, _ := x.(string)
			out = append(out, s)
		}
	}
	return out
}

func mustJSON(t *testing.T, v interface{ MarshalJSON() ([]byte, error) }) string {
	t.Helper()
	b, err := v.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
