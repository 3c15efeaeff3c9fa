package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
)

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }
func str(v string) *string   { return &v }

func (e *env) seedPerf(hosts []kanade.HostPerf, procs []kanade.ProcessPerf, obs []storage.Obs) {
	e.t.Helper()
	ctx := context.Background()
	err := e.db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.InsertHostPerf(ctx, hosts); err != nil {
			return err
		}
		if _, err := tx.InsertProcessPerf(ctx, procs); err != nil {
			return err
		}
		_, err := tx.InsertObsEvents(ctx, obs)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func ts(t time.Time) kanade.Timestamp { return kanade.Timestamp{Time: t} }

// TestPerfRoutesStatusCodes walks every 400 of observe.md §1.6–§1.11 and
// §2.4–§2.5 and a 200 of each route, and the 500 of a database that fails.
func TestPerfRoutesStatusCodes(t *testing.T) {
	e := newEnv(t, nil)
	long := strings.Repeat("x", 129)
	cases := []struct {
		path string
		want int
	}{
		{"/api/agents/PC-1/perf", 200},
		{"/api/agents/PC-1/perf?step=30s&from=2026-06-20T00:00:00Z&to=2026-06-20T01:00:00%2B09:00", 400}, // from >= to
		{"/api/agents/PC-1/perf?step=300", 400},                                                          // bare number
		{"/api/agents/PC-1/perf?step=5parsecs", 400},                                                     // unknown unit
		{"/api/agents/PC-1/perf?step=500ms", 400},                                                        // truncates to 0
		{"/api/agents/PC-1/perf?from=2026-06-20", 400},                                                   // bare date
		{"/api/agents/PC-1/perf?from=10000-01-01T00:00:00Z", 400},
		{"/api/agents/PC-1/perf?from=0000-01-01T00:00:00Z&step=1h", 400},                         // > 10 000 buckets
		{"/api/agents/PC-1/perf?from=2026-06-19T00:00:00Z&to=2026-06-19T02:46:40Z&step=1s", 200}, // exactly 10 000
		{"/api/agents/PC-1/perf?from=2026-06-19T00:00:00Z&to=2026-06-19T02:46:41Z&step=1s", 400}, // 10 001
		{"/api/agents/" + long + "/perf", 400},
		{"/api/agents/%01x/perf", 400},
		{"/api/agents/PC%20with%20space/perf", 200}, // only reaches SQL: any UTF-8 without control characters
		{"/api/perf/fleet", 200},
		{"/api/perf/fleet?metric=memory&agg=mean&step=15m", 200},
		{"/api/perf/fleet?metric=swap_used_bytes", 400},
		{"/api/perf/fleet?agg=min", 400},
		{"/api/perf/fleet?step=1h%2030m", 200},
		{"/api/perf/fleet?step=90s&from=2026-06-19T00:00:00Z&to=2026-06-20T00:00:00Z", 400}, // raw scan over 6 h
		{"/api/perf/fleet?step=90s", 200},
		{"/api/perf/top", 200},
		{"/api/perf/top?window=0s", 400},
		{"/api/perf/top?window=32d", 400},
		{"/api/perf/top?window=31d&limit=0", 200},
		{"/api/perf/top?limit=x", 400},
		{"/api/perf/top?metric=bogus", 400},
		{"/api/perf/active-investigations", 200},
		{"/api/agents/PC-1/processes", 200},
		{"/api/agents/" + long + "/processes", 400},
		{"/api/agents/PC-1/processes/timeline", 200},
		{"/api/agents/PC-1/processes/timeline?metric=mem&top=100", 200},
		{"/api/agents/PC-1/processes/timeline?metric=net_rx", 400},
		{"/api/agents/PC-1/processes/timeline?top=1.5", 400},
		{"/api/agents/PC-1/processes/timeline?step=0s", 400},
		{"/api/obs_events", 200},
		{"/api/obs_events?limit=0", 400},
		{"/api/obs_events?limit=5001", 400},
		{"/api/obs_events?limit=-1", 400},
		{"/api/obs_events?limit=5000", 200},
		{"/api/obs_events?logon_type=two", 400},
		{"/api/obs_events?payload_key=a.b&payload_value=1", 400},
		{"/api/obs_events?payload_key=%20&payload_value=1", 200}, // blank key = absent
		{"/api/obs_events?payload_key=user&payload_value=" + strings.Repeat("v", 1025), 400},
		{"/api/obs_events?kinds=" + strings.Repeat("k,", 101), 400},
		{"/api/obs_events?kinds=" + long, 400},
		{"/api/obs_events?from=yesterday", 400},
		{"/api/obs_events?from=2026-06-20T00:00:00Z&to=2026-06-19T00:00:00Z", 200}, // matches nothing
		{"/api/obs_events?cursor=nope", 400},
		{"/api/obs_events?pc_id=%01", 400},
		{"/api/obs_events/recent", 200},
		{"/api/obs_events/recent?limit=5001", 400},
		{"/api/obs_events/kinds", 200},
		{"/api/obs_events/sources", 200},
	}
	for _, c := range cases {
		rec := e.get(c.path)
		if rec.Code != c.want {
			t.Errorf("GET %s: %d %s, want %d", c.path, rec.Code, rec.Body.String(), c.want)
		}
		if c.want == 400 && !strings.Contains(rec.Header().Get("Content-Type"), "problem+json") {
			t.Errorf("GET %s: content type %q, want a problem", c.path, rec.Header().Get("Content-Type"))
		}
	}
	// A viewer may read every route; without a token nothing is served.
	req, _ := http.NewRequest(http.MethodGet, "/api/perf/fleet", nil)
	if rec := serve(e, req); rec.Code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", rec.Code)
	}
	// A database that fails answers 500 on every route.
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/api/agents/PC-1/perf", "/api/perf/fleet", "/api/perf/top", "/api/perf/active-investigations",
		"/api/agents/PC-1/processes", "/api/agents/PC-1/processes/timeline", "/api/obs_events", "/api/obs_events/recent",
		"/api/obs_events/kinds", "/api/obs_events/sources"} {
		if rec := e.get(p); rec.Code != http.StatusInternalServerError {
			t.Errorf("closed database, GET %s: %d %s, want 500", p, rec.Code, rec.Body.String())
		}
	}
}

func serve(e *env, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

func TestPerfSeriesAnswers(t *testing.T) {
	e := newEnv(t, nil)
	now := testNow // 01:02:03.456
	base := time.Date(2026, 6, 20, 0, 0, 0, 0, time.UTC)
	var hosts []kanade.HostPerf
	for m := range 60 {
		at := base.Add(time.Duration(m) * time.Minute)
		hosts = append(hosts,
			kanade.HostPerf{PcID: "PC-1", At: ts(at), CPUPct: f64(float64(m)), MemUsedBytes: i64(1000), MemTotalBytes: i64(2000)},
			kanade.HostPerf{PcID: "PC-2", At: ts(at), CPUPct: f64(50)})
	}
	hosts = append(hosts, kanade.HostPerf{PcID: "PC-3", At: ts(now.Add(-time.Minute))}) // all NULL
	e.seed([]agent{{pc: "PC-1", beat: now}}, nil)
	e.seedPerf(hosts, nil, nil)

	rec := e.get("/api/agents/PC-1/perf?from=2026-06-20T00:00:00Z&to=2026-06-20T01:00:00Z&step=15m")
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	body := decode(t, rec)
	pts := body["points"].([]any)
	if len(pts) != 4 || body["step_seconds"].(float64) != 900 || body["pc_id"] != "PC-1" || body["from"] != "2026-06-20T00:00:00Z" {
		t.Fatalf("series %v", body)
	}
	p0 := pts[0].(map[string]any)
	if p0["at"] != "2026-06-20T00:00:00Z" || p0["cpu_pct"].(float64) != 7 || p0["mem_used_bytes"].(float64) != 1000 ||
		p0["swap_used_bytes"] != nil || len(p0) != 10 {
		t.Fatalf("first point %v", p0)
	}
	// Epoch-aligned buckets: from 00:10 with 15m puts the first at 00:00.
	body = decode(t, e.get("/api/agents/PC-1/perf?from=2026-06-20T00:10:00Z&to=2026-06-20T00:20:00Z&step=15m"))
	pts = body["points"].([]any)
	if len(pts) != 2 || pts[0].(map[string]any)["at"] != "2026-06-20T00:00:00Z" || pts[0].(map[string]any)["cpu_pct"].(float64) != 12 {
		t.Fatalf("aligned %v", pts)
	}
	if body := decode(t, e.get("/api/agents/nobody/perf")); len(body["points"].([]any)) != 0 {
		t.Fatalf("unknown PC: %v", body)
	}

	body = decode(t, e.get("/api/perf/fleet?metric=cpu&agg=max&from=2026-06-20T00:00:00Z&to=2026-06-20T01:00:00Z&step=30m"))
	pts = body["points"].([]any)
	if body["metric"] != "cpu_pct" || body["agg"] != "max" || len(pts) != 2 || pts[1].(map[string]any)["value"].(float64) != 59 {
		t.Fatalf("fleet %v", body)
	}
	body = decode(t, e.get("/api/perf/fleet?metric=cpu&from=2026-06-20T00:00:00Z&to=2026-06-20T00:30:00Z&step=30m"))
	if v := body["points"].([]any)[0].(map[string]any)["value"].(float64); v != (14.5+50)/2 {
		t.Fatalf("fleet avg %v, want %v", v, (14.5+50)/2)
	}

	// Top over the last 10 minutes: PC-1's samples 53..59 (at > 00:52:03.456), PC-2 50; PC-3 has no value.
	body = decode(t, e.get("/api/perf/top?window=10m&limit=5"))
	rows := body["rows"].([]any)
	if body["window_seconds"].(float64) != 600 || len(rows) != 2 {
		t.Fatalf("top %v", body)
	}
	r0 := rows[0].(map[string]any)
	if r0["pc_id"] != "PC-1" || r0["value"].(float64) != 56 || r0["hostname"] != nil {
		t.Fatalf("top row %v", r0)
	}
	if r1 := rows[1].(map[string]any); r1["pc_id"] != "PC-2" || r1["value"].(float64) != 50 {
		t.Fatalf("top row %v", r1)
	}
}

func TestProcessRoutes(t *testing.T) {
	e := newEnv(t, nil)
	now := testNow
	proc := func(pid int64, name string, cpu float64) kanade.ProcessSample {
		return kanade.ProcessSample{PID: i64(pid), Name: str(name), CPUPct: f64(cpu), RSSBytes: i64(pid * 10)}
	}
	t1 := now.Add(-10 * time.Minute).Truncate(time.Minute)
	t2 := now.Add(-2 * time.Minute).Truncate(time.Minute)
	e.seedPerf(nil, []kanade.ProcessPerf{
		{PcID: "PC-1", At: ts(t1), Processes: []kanade.ProcessSample{proc(1, "chrome.exe", 80), proc(2, "defender.exe", 40), proc(3, "x.exe", 2), proc(4, "y.exe", 4)}},
		{PcID: "PC-1", At: ts(t2), Processes: []kanade.ProcessSample{proc(2, "defender.exe", 40), proc(1, "chrome.exe", 60), proc(5, "chrome.exe", 20)}},
		{PcID: "PC-2", At: ts(now.Add(-6 * time.Minute)), Processes: []kanade.ProcessSample{proc(9, "a", 1)}},
	}, nil)
	body := decode(t, e.get("/api/agents/PC-1/processes"))
	ps := body["processes"].([]any)
	if body["latest_at"] != t2.UTC().Format(time.RFC3339Nano) || len(ps) != 3 {
		t.Fatalf("processes %v", body)
	}
	if p := ps[0].(map[string]any); p["pid"].(float64) != 1 || p["disk_read_bytes_per_sec"] != nil {
		t.Fatalf("first process %v", p)
	}
	if body := decode(t, e.get("/api/agents/PC-9/processes")); body["latest_at"] != nil || len(body["processes"].([]any)) != 0 {
		t.Fatalf("no samples: %v", body)
	}
	body = decode(t, e.get("/api/perf/active-investigations"))
	rows := body["rows"].([]any)
	if len(rows) != 1 || rows[0].(map[string]any)["pc_id"] != "PC-1" || body["window_seconds"].(float64) != 300 {
		t.Fatalf("active %v", body)
	}
	body = decode(t, e.get("/api/agents/PC-1/processes/timeline?top=2&step=1m"))
	names := body["names"].([]any)
	if fmt.Sprint(names) != "[chrome.exe defender.exe other]" {
		t.Fatalf("names %v", names)
	}
	pts := body["points"].([]any)
	if len(pts) != 2 {
		t.Fatalf("points %v", pts)
	}
	v0 := pts[0].(map[string]any)["values"].(map[string]any)
	v1 := pts[1].(map[string]any)["values"].(map[string]any)
	if v0["chrome.exe"].(float64) != 80 || v0["other"].(float64) != 3 || v1["chrome.exe"].(float64) != 40 || v1["other"] != nil {
		t.Fatalf("values %v %v", v0, v1)
	}
}

func TestObsEventsRoute(t *testing.T) {
	e := newEnv(t, nil)
	base := time.Date(2026, 6, 20, 0, 0, 0, 0, time.UTC)
	var obs []storage.Obs
	for i := range 7 {
		p := json.RawMessage(fmt.Sprintf(`{"user":"CORP\\u%d","logon_type":%d,"ok":true}`, i, i%3))
		obs = append(obs, storage.Obs{StreamSeq: uint64(i + 1), ObsEvent: kanade.ObsEvent{PcID: []string{"PC-1", "PC-2"}[i%2],
			At: ts(base.Add(time.Duration(i/2) * time.Minute)), Kind: []string{"logon", "logoff", "boot"}[i%3],
			Source: []string{"winlog:Security", "agent:internal"}[i%2], EventRecordID: str(fmt.Sprint(i)), Payload: p}})
	}
	obs = append(obs, storage.Obs{StreamSeq: 100, ObsEvent: kanade.ObsEvent{PcID: "PC-3", At: ts(base), Kind: "agent_started", Source: "agent:internal"}})
	e.seedPerf(nil, nil, obs)

	ids := func(path string) (string, string) {
		t.Helper()
		rec := e.get(path)
		if rec.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		body := decode(t, rec)
		var out []string
		for _, ev := range body["events"].([]any) {
			out = append(out, fmt.Sprint(ev.(map[string]any)["id"]))
		}
		next, _ := body["next_cursor"].(string)
		return strings.Join(out, ","), next
	}
	cases := []struct{ path, want string }{
		{"/api/obs_events", "7,6,5,4,3,8,2,1"},
		{"/api/obs_events?pc_id=PC-1", "7,5,3,1"},
		{"/api/obs_events?kind=logon", "7,4,1"},
		{"/api/obs_events?kinds=logon,%20boot,&kinds_ex=boot", "7,4,1"},
		{"/api/obs_events?kinds=,", "7,6,5,4,3,8,2,1"},
		{"/api/obs_events?sources_ex=agent:internal", "7,5,3,1"},
		{"/api/obs_events?sources=agent:internal&kind=logoff", "2"},
		{"/api/obs_events?logon_type=2", "6,3"},
		{"/api/obs_events?payload_key=logon_type&payload_value=1", "5,2"},
		{"/api/obs_events?payload_key=ok&payload_value=1", "7,6,5,4,3,2,1"},
		{"/api/obs_events?payload_key=user&payload_value=CORP%5Cu4", "5"},
		{"/api/obs_events?payload_key=user", "7,6,5,4,3,8,2,1"}, // alone: ignored
		{"/api/obs_events?from=2026-06-20T00:01:00Z&to=2026-06-20T00:03:00Z", "6,5,4,3"},
		{"/api/obs_events?from=2026-06-20T09:01:00%2B09:00", "7,6,5,4,3"},
	}
	for _, c := range cases {
		if got, _ := ids(c.path); got != c.want {
			t.Errorf("GET %s: ids %s, want %s", c.path, got, c.want)
		}
	}
	// Keyset paging walks every row once, in order, keeping the filter.
	var all []string
	cursor := ""
	for range 10 {
		got, next := ids("/api/obs_events?limit=3&pc_id=PC-1&cursor=" + url.QueryEscape(cursor))
		if got != "" {
			all = append(all, got)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if strings.Join(all, ",") != "7,5,3,1" {
		t.Fatalf("pages %v", all)
	}
	if got, next := ids("/api/obs_events/recent?limit=2"); got != "7,6" || next != "" {
		t.Fatalf("recent %s %q", got, next)
	}
	body := decode(t, e.get("/api/obs_events/kinds"))
	if fmt.Sprint(body["kinds"]) != "[agent_started boot logoff logon]" {
		t.Fatalf("kinds %v", body)
	}
	body = decode(t, e.get("/api/obs_events/sources"))
	if fmt.Sprint(body["sources"]) != "[agent:internal winlog:Security]" {
		t.Fatalf("sources %v", body)
	}
	ev := decode(t, e.get("/api/obs_events?pc_id=PC-3"))["events"].([]any)[0].(map[string]any)
	if ev["payload"] != nil || ev["event_record_id"] != nil || ev["at"] != "2026-06-20T00:00:00Z" || len(ev) != 7 {
		t.Fatalf("event %v", ev)
	}
}
