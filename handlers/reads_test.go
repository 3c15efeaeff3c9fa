package handlers_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

var readsNow = time.Date(2026, 6, 20, 12, 0, 0, 0, time.UTC)

// readsClock is a settable clock.
type readsClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *readsClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *readsClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// readsLogWriter sends the handler's log lines (a 500's cause) to the test log.
type readsLogWriter struct{ t *testing.T }

func (w readsLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type readsEnv struct {
	t     *testing.T
	db    *storage.DB
	clock *readsClock
	h     http.Handler
}

// newReadsEnv builds the whole handler over a real database with auth
// disabled (unless tweak says otherwise) and a stale threshold of 5 minutes.
func newReadsEnv(t *testing.T, tweak func(*handlers.Config)) *readsEnv {
	t.Helper()
	e := &readsEnv{t: t, db: storagetest.Open(t, nil), clock: &readsClock{t: readsNow}}
	cfg := handlers.Config{DB: e.db, Clock: e.clock.now, StaleThreshold: 5 * time.Minute, Auth: auth.Config{Disabled: true},
		Logger: slog.New(slog.NewTextHandler(readsLogWriter{t}, nil))}
	if tweak != nil {
		tweak(&cfg)
	}
	h, err := handlers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	return e
}

func (e *readsEnv) exec(q string, args ...any) {
	e.t.Helper()
	ctx := context.Background()
	err := e.db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, q, args...)
		return err
	})
	if err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
}

func (e *readsEnv) get(path string) *httptest.ResponseRecorder {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

// getJSON serves path, checks the status and returns the body as generic
// JSON, so tests see the wire exactly.
func (e *readsEnv) getJSON(path string, wantStatus int) map[string]any {
	e.t.Helper()
	rec := e.get(path)
	if rec.Code != wantStatus {
		e.t.Fatalf("GET %s: status %d, want %d; body %s", path, rec.Code, wantStatus, rec.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		e.t.Fatalf("GET %s: body %q: %v", path, rec.Body, err)
	}
	return m
}

func readsTime(d time.Duration) string { return kanade.FormatTime(readsNow.Add(d)) }

// readsItemIDs returns the given field of every item of a page.
func readsItemIDs(t *testing.T, page map[string]any, field string) []string {
	t.Helper()
	items, ok := page["items"].([]any)
	if !ok {
		t.Fatalf("items is %T, want an array: %v", page["items"], page)
	}
	ids := []string{}
	for _, it := range items {
		ids = append(ids, fmt.Sprint(it.(map[string]any)[field]))
	}
	return ids
}

func TestReadsHTTPBodiesHaveTheDocumentedShape(t *testing.T) {
	e := newReadsEnv(t, nil)
	e.exec(`INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, agent_cpu_pct,
		agent_rss_bytes, agent_disk_read_bytes, agent_disk_written_bytes, quarantined_versions, last_logon_user,
		last_logon_display_name, command_keys, command_protocols, enforcing, updated_at)
		VALUES ('PC-1', 'host-1', 'windows', '1.2.3', ?, 12.5, 1000, 2000, 3000, '["1.2.2"]', 'u', 'User', '["k1"]', NULL, 1, ?)`,
		readsTime(-time.Minute), readsTime(-time.Minute))
	e.exec(`INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, job_id, version, exit_code, skipped,
		stdout, stderr, started_at, finished_at, recorded_at, expires_at, reaped, parent_result_id, duration_ms)
		VALUES ('r1', 'q1', 'e1', 'PC-1', 'job-1', 'v1', 0, 0, 'hello', '', ?, ?, ?, NULL, 0, NULL, 1500)`,
		readsTime(-time.Hour), readsTime(-time.Hour+1500*time.Millisecond), readsTime(-time.Hour))
	e.exec(`INSERT INTO executions (exec_id, job_id, version, initiated_by, initiated_at, target_count,
		success_count, failure_count, status) VALUES ('e1', 'job-1', 'v1', 'alice', ?, 2, 1, 0, 'running')`, readsTime(-time.Hour))
	e.exec(`INSERT INTO audit_log (actor, action, target, payload, occurred_at, stream_seq)
		VALUES ('alice', 'job_upsert', 'job-1', '{"timeout":"5m"}', ?, 9)`, readsTime(-2*time.Hour))

	agent := map[string]any{
		"pc_id": "PC-1", "hostname": "host-1", "os_family": "windows", "agent_version": "1.2.3",
		"last_heartbeat": readsTime(-time.Minute), "online": true, "agent_cpu_pct": 12.5,
		"agent_rss_bytes": 1000.0, "agent_disk_read_bytes": 2000.0, "agent_disk_written_bytes": 3000.0,
		"quarantined_versions": []any{"1.2.2"}, "last_logon_user": "u", "last_logon_display_name": "User",
		"command_keys": []any{"k1"}, "command_protocols": nil, "enforcing": true, "updated_at": readsTime(-time.Minute),
	}
	run := map[string]any{
		"result_id": "r1", "request_id": "q1", "exec_id": "e1", "pc_id": "PC-1", "job_id": "job-1", "version": "v1",
		"exit_code": 0.0, "skipped": false, "started_at": readsTime(-time.Hour),
		"finished_at": readsTime(-time.Hour + 1500*time.Millisecond), "recorded_at": readsTime(-time.Hour),
		"expires_at": nil, "reaped": false, "parent_result_id": nil, "duration_ms": 1500.0,
	}
	runDetail := map[string]any{"stdout": "hello", "stderr": ""}
	for k, v := range run {
		runDetail[k] = v
	}
	execution := map[string]any{
		"exec_id": "e1", "job_id": "job-1", "version": "v1", "initiated_by": "alice", "initiated_at": readsTime(-time.Hour),
		"target_count": 2.0, "success_count": 1.0, "failure_count": 0.0, "skipped_count": 0.0, "status": "running",
	}
	audit := map[string]any{
		"id": 1.0, "actor": "alice", "action": "job_upsert", "target": "job-1",
		"payload": map[string]any{"timeout": "5m"}, "occurred_at": readsTime(-2 * time.Hour), "stream_seq": 9.0,
	}
	page := func(item map[string]any) map[string]any {
		return map[string]any{"items": []any{item}, "next_cursor": nil}
	}
	for _, c := range []struct {
		path string
		want map[string]any
	}{
		{"/api/agents", page(agent)},
		{"/api/agents/PC-1", agent},
		{"/api/results", page(run)},
		{"/api/results/r1", runDetail},
		{"/api/executions", page(execution)},
		{"/api/executions/e1", execution},
		{"/api/audit", page(audit)},
	} {
		if diff := cmp.Diff(c.want, e.getJSON(c.path, http.StatusOK)); diff != "" {
			t.Errorf("GET %s (-want +got):\n%s", c.path, diff)
		}
	}
}

func TestReadsHTTPEmptyListsAreEmptyArrays(t *testing.T) {
	e := newReadsEnv(t, nil)
	for _, path := range []string{"/api/agents", "/api/results", "/api/executions", "/api/audit"} {
		want := map[string]any{"items": []any{}, "next_cursor": nil}
		if diff := cmp.Diff(want, e.getJSON(path, http.StatusOK)); diff != "" {
			t.Errorf("GET %s (-want +got):\n%s", path, diff)
		}
	}
}

func TestReadsHTTPOnlineFollowsTheClockAndThreshold(t *testing.T) {
	e := newReadsEnv(t, nil) // threshold 5 minutes
	cutoff := readsNow.Add(-5 * time.Minute)
	for pc, beat := range map[string]time.Time{
		"PC-at-threshold": cutoff,
		"PC-1ns-older":    cutoff.Add(-time.Nanosecond),
		"PC-fresh":        readsNow,
	} {
		e.exec(`INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES (?, ?, ?)`,
			pc, kanade.FormatTime(beat), kanade.FormatTime(beat))
	}
	check := func(when string, online, offline []string) {
		t.Helper()
		got := map[string][]string{
			"online":  readsItemIDs(t, e.getJSON("/api/agents?status=online", http.StatusOK), "pc_id"),
			"offline": readsItemIDs(t, e.getJSON("/api/agents?status=offline", http.StatusOK), "pc_id"),
		}
		if diff := cmp.Diff(map[string][]string{"online": online, "offline": offline}, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", when, diff)
		}
		a := e.getJSON("/api/agents/PC-at-threshold", http.StatusOK)
		if a["online"] != (len(online) == 2) {
			t.Errorf("%s: PC-at-threshold online = %v", when, a["online"])
		}
	}
	check("at now", []string{"PC-at-threshold", "PC-fresh"}, []string{"PC-1ns-older"})
	e.clock.set(readsNow.Add(time.Nanosecond))
	check("1ns later", []string{"PC-fresh"}, []string{"PC-1ns-older", "PC-at-threshold"})
}

func TestReadsHTTPPagesFollowNextCursor(t *testing.T) {
	e := newReadsEnv(t, nil)
	// Five runs, two pairs tied on started_at.
	for i, at := range []time.Duration{0, 0, -time.Second, -time.Second, -2 * time.Second} {
		e.exec(`INSERT INTO execution_results (result_id, pc_id, started_at, recorded_at) VALUES (?, 'PC-1', ?, ?)`,
			fmt.Sprintf("r%d", i), readsTime(at), readsTime(at))
	}
	var got []string
	path := "/api/results?limit=2"
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		page := e.getJSON(path, http.StatusOK)
		got = append(got, readsItemIDs(t, page, "result_id")...)
		next, ok := page["next_cursor"].(string)
		if !ok {
			if page["next_cursor"] != nil {
				t.Fatalf("next_cursor %v", page["next_cursor"])
			}
			break
		}
		// The cursor is base64url: it needs no escaping in a query string.
		if url.QueryEscape(next) != next {
			t.Errorf("cursor %q needs escaping", next)
		}
		path = "/api/results?limit=2&cursor=" + next
	}
	if diff := cmp.Diff([]string{"r1", "r0", "r3", "r2", "r4"}, got); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
}

func TestReadsHTTPFilters(t *testing.T) {
	e := newReadsEnv(t, nil)
	for _, r := range []struct {
		id, pc, job string
		exit        any
		skipped     int
		finished    bool
	}{
		{"ok", "PC-1", "job-a", 0, 0, true},
		{"bad", "PC-2", "job-a", 3, 0, true},
		{"reaped", "PC-1", "job-b", -1, 0, true},
		{"skip", "PC-2", "job-b", 0, 1, true},
		{"run", "PC-1", "job-a", nil, 0, false},
	} {
		var finished any
		if r.finished {
			finished = readsTime(0)
		}
		e.exec(`INSERT INTO execution_results (result_id, pc_id, job_id, exit_code, skipped, started_at, finished_at, recorded_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, r.id, r.pc, r.job, r.exit, r.skipped, readsTime(0), finished, readsTime(0))
	}
	for query, want := range map[string][]string{
		"status=success":                         {"ok"},
		"status=failure":                         {"reaped", "bad"},
		"status=running":                         {"run"},
		"status=skipped":                         {"skip"},
		"pc_id=PC-1":                             {"run", "reaped", "ok"},
		"job_id=job-b":                           {"skip", "reaped"},
		"job_id=job-a&pc_id=PC-1&status=running": {"run"},
		"job_id=job-a&status=skipped":            {},
	} {
		got := readsItemIDs(t, e.getJSON("/api/results?"+query, http.StatusOK), "result_id")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", query, diff)
		}
	}
	// Issue 13: exec_id, a started_at window (any offset), partial and
	// case-insensitive job and pc.
	e.exec(`UPDATE execution_results SET exec_id = 'x1' WHERE result_id IN ('bad', 'skip')`)
	e.exec(`UPDATE execution_results SET started_at = ? WHERE result_id = 'ok'`, readsTime(-time.Hour))
	e.exec(`INSERT INTO agents (pc_id, hostname, last_heartbeat, updated_at) VALUES ('PC-1', 'Kiosk-A', ?, ?), ('PC-2', 'lab-b', ?, ?)`,
		readsTime(0), readsTime(0), readsTime(0), readsTime(0))
	plus9 := readsNow.Add(-30 * time.Minute).In(time.FixedZone("", 9*3600)).Format(time.RFC3339)
	for query, want := range map[string][]string{
		"exec_id=x1":                      {"skip", "bad"},
		"exec_id=x1&status=failure":       {"bad"},
		"job=JOB-":                        {"skip", "run", "reaped", "bad", "ok"},
		"job=-B":                          {"skip", "reaped"},
		"pc=pc-2":                         {"skip", "bad"},
		"pc=kiosk":                        {"run", "reaped", "ok"},
		"pc=kiosk&job=A&status=success":   {"ok"},
		"since=" + url.QueryEscape(plus9): {"skip", "run", "reaped", "bad"},
		"until=" + url.QueryEscape(plus9): {"ok"},
		"job=nothing":                     {},
		"since=" + readsTime(time.Hour):   {},
	} {
		got := readsItemIDs(t, e.getJSON("/api/results?"+query, http.StatusOK), "result_id")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", query, diff)
		}
	}
	e.exec(`DELETE FROM agents`)
	for _, pc := range []string{"PC_1", "PC%1", "lab-pc"} {
		e.exec(`INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES (?, ?, ?)`, pc, readsTime(0), readsTime(0))
	}
	for q, want := range map[string][]string{
		"_":   {"PC_1"},
		"%":   {"PC%1"},
		"Pc":  {"PC%1", "PC_1", "lab-pc"},
		"C_1": {"PC_1"},
	} {
		got := readsItemIDs(t, e.getJSON("/api/agents?q="+url.QueryEscape(q), http.StatusOK), "pc_id")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("q=%q (-want +got):\n%s", q, diff)
		}
	}
}

func TestReadsHTTPLimits(t *testing.T) {
	e := newReadsEnv(t, nil)
	for i := range 501 {
		e.exec(`INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES (?, ?, ?)`,
			fmt.Sprintf("PC-%03d", i), readsTime(0), readsTime(0))
	}
	for _, c := range []struct {
		query     string
		items     int
		hasCursor bool
	}{
		{"", 50, true}, // the default
		{"?limit=1", 1, true},
		{"?limit=500", 500, true},
		{"?limit=500&cursor=" + cursorAfter(t, e, 500), 1, false},
	} {
		page := e.getJSON("/api/agents"+c.query, http.StatusOK)
		if n := len(page["items"].([]any)); n != c.items || (page["next_cursor"] != nil) != c.hasCursor {
			t.Errorf("%q: %d items, next_cursor %v; want %d items, cursor %v", c.query, n, page["next_cursor"], c.items, c.hasCursor)
		}
	}
}

// cursorAfter returns the next_cursor of the first page of agents of size n.
func cursorAfter(t *testing.T, e *readsEnv, n int) string {
	t.Helper()
	c, ok := e.getJSON(fmt.Sprintf("/api/agents?limit=%d", n), http.StatusOK)["next_cursor"].(string)
	if !ok {
		t.Fatal("no next_cursor")
	}
	return c
}

func TestReadsHTTPRefusesBadInputWithProblems(t *testing.T) {
	e := newReadsEnv(t, nil)
	e.exec(`INSERT INTO execution_results (result_id, started_at, recorded_at) VALUES ('r1', ?, ?), ('r2', ?, ?)`,
		readsTime(0), readsTime(0), readsTime(0), readsTime(0))
	resultsCursor := e.getJSON("/api/results?limit=1", http.StatusOK)["next_cursor"].(string)
	e.exec(`INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES ('a', ?, ?), ('b', ?, ?)`,
		readsTime(0), readsTime(0), readsTime(0), readsTime(0))
	agentsCursor := e.getJSON("/api/agents?limit=1", http.StatusOK)["next_cursor"].(string)
	for _, c := range []struct {
		path     string
		status   int
		location string
	}{
		{"/api/agents?limit=0", http.StatusUnprocessableEntity, "query.limit"},
		{"/api/agents?limit=501", http.StatusUnprocessableEntity, "query.limit"},
		{"/api/results?limit=0", http.StatusUnprocessableEntity, "query.limit"},
		{"/api/results?limit=501", http.StatusUnprocessableEntity, "query.limit"},
		{"/api/executions?limit=501", http.StatusUnprocessableEntity, "query.limit"},
		{"/api/audit?limit=-1", http.StatusUnprocessableEntity, "query.limit"},
		{"/api/audit?limit=ten", http.StatusUnprocessableEntity, "query.limit"},
		{"/api/agents?status=asleep", http.StatusBadRequest, "query.status"},
		{"/api/agents?sort=uptime", http.StatusBadRequest, "query.sort"},
		{"/api/agents?sort=hostname&order=up", http.StatusBadRequest, "query.order"},
		{"/api/agents?sort=hostname&cursor=" + agentsCursor, http.StatusBadRequest, "query.cursor"},
		{"/api/agents?total=maybe", http.StatusUnprocessableEntity, "query.total"},
		{"/api/results?status=failed", http.StatusUnprocessableEntity, "query.status"},
		{"/api/agents?cursor=%21%21%21", http.StatusBadRequest, "query.cursor"},
		{"/api/results?cursor=bm90IGEgY3Vyc29y", http.StatusBadRequest, "query.cursor"},
		{"/api/executions?cursor=" + resultsCursor, http.StatusBadRequest, "query.cursor"},
		{"/api/audit?cursor=" + resultsCursor, http.StatusBadRequest, "query.cursor"},
		{"/api/results?since=yesterday", http.StatusBadRequest, "query.since"},
		{"/api/results?since=2026-06-20", http.StatusBadRequest, "query.since"},
		{"/api/results?since=2026-06-20T10:00:00", http.StatusBadRequest, "query.since"}, // no offset
		{"/api/results?until=2026-13-01T00:00:00Z", http.StatusBadRequest, "query.until"},
		{"/api/results?since=2026-06-20T10:00:00Z&until=2026-06-20T10:00:00Z", http.StatusBadRequest, "query.until"},
		{"/api/results?job=" + strings.Repeat("j", 257), http.StatusUnprocessableEntity, "query.job"},
		{"/api/results?pc=" + strings.Repeat("p", 257), http.StatusUnprocessableEntity, "query.pc"},
		{"/api/results?job=x&cursor=bm90IGEgY3Vyc29y", http.StatusBadRequest, "query.cursor"},
		{"/api/agents/PC-nobody", http.StatusNotFound, ""},
		{"/api/results/nothing", http.StatusNotFound, ""},
		{"/api/executions/nothing", http.StatusNotFound, ""},
	} {
		rec := e.get(c.path)
		if rec.Code != c.status {
			t.Errorf("GET %s: status %d, want %d; body %s", c.path, rec.Code, c.status, rec.Body)
			continue
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("GET %s: Content-Type %q", c.path, ct)
		}
		var problem struct {
			Status int `json:"status"`
			Errors []struct {
				Location string `json:"location"`
			} `json:"errors"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &problem); err != nil {
			t.Fatalf("GET %s: %v", c.path, err)
		}
		var locations []string
		for _, d := range problem.Errors {
			locations = append(locations, d.Location)
		}
		if problem.Status != c.status || (c.location != "" && !strings.Contains(strings.Join(locations, " "), c.location)) {
			t.Errorf("GET %s: problem status %d, locations %v; want %d naming %q", c.path, problem.Status, locations, c.status, c.location)
		}
	}
}

func TestReadsHTTPNeedAuthentication(t *testing.T) {
	e := newReadsEnv(t, func(c *handlers.Config) { c.Auth = auth.Config{StaticToken: "reads-test-token-0123456789"} })
	for _, path := range []string{"/api/agents", "/api/agents/PC-1", "/api/results", "/api/results/r1",
		"/api/executions", "/api/executions/e1", "/api/audit"} {
		if rec := e.get(path); rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d, want 401", path, rec.Code)
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/api/agents", nil)
	req.Header.Set("Authorization", "Bearer reads-test-token-0123456789")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("GET /api/agents with the token: %d %s", rec.Code, rec.Body)
	}
}

// TestReadsHTTPAgentsSortFilterTotal: the roster's sort, order, filters and
// X-Total-Count over HTTP, and paging that follows the sort.
func TestReadsHTTPAgentsSortFilterTotal(t *testing.T) {
	e := newReadsEnv(t, nil)
	for _, a := range []struct {
		pc, host, os, version string
		beat                  time.Duration
	}{
		{"PC-1", "zeta", "windows", "0.43.56", -time.Minute},
		{"PC-2", "alpha", "linux", "0.43.55", -time.Hour},
		{"PC-3", "mike", "windows", "0.43.55", -10 * time.Minute},
		{"PC-4", "bravo", "darwin", "0.43.56", -2 * time.Minute},
	} {
		e.exec(`INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
			a.pc, a.host, a.os, a.version, readsTime(a.beat), readsTime(0))
	}
	e.exec(`INSERT INTO agent_group_members (group_name, pc_id) VALUES ('lab', 'PC-2'), ('lab', 'PC-3')`)
	for query, want := range map[string][]string{
		"sort=last_heartbeat":            {"PC-2", "PC-3", "PC-4", "PC-1"},
		"sort=last_heartbeat&order=desc": {"PC-1", "PC-4", "PC-3", "PC-2"},
		"sort=hostname":                  {"PC-2", "PC-4", "PC-3", "PC-1"},
		"sort=os&order=desc":             {"PC-3", "PC-1", "PC-2", "PC-4"},
		"sort=agent_version":             {"PC-2", "PC-3", "PC-1", "PC-4"},
		"sort=status":                    {"PC-2", "PC-3", "PC-4", "PC-1"},
		"order=desc":                     {"PC-4", "PC-3", "PC-2", "PC-1"},
		"status=offline":                 {"PC-2", "PC-3"},
		"status=stale&sort=hostname":     {"PC-2", "PC-3"},
		"status=online":                  {"PC-1", "PC-4"},
		"os=windows":                     {"PC-1", "PC-3"},
		"version=0.43.55&sort=hostname":  {"PC-2", "PC-3"},
		"group=lab&sort=last_heartbeat":  {"PC-2", "PC-3"},
		"group=lab&os=windows":           {"PC-3"},
		"group=nobody":                   {},
		"q=A&sort=hostname&order=desc":   {"PC-1", "PC-4", "PC-2"},
	} {
		rec := e.get("/api/agents?total=true&" + query)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", query, rec.Code, rec.Body)
		}
		var page map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
			t.Fatal(err)
		}
		if got := readsItemIDs(t, page, "pc_id"); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", query, got, want)
		}
		if got := rec.Header().Get("X-Total-Count"); got != fmt.Sprint(len(want)) {
			t.Errorf("%s: X-Total-Count %q, want %d", query, got, len(want))
		}
		if _, ok := page["total"]; ok {
			t.Errorf("%s: the page grew a total field: %v", query, page)
		}
	}
	if got := e.get("/api/agents").Header().Get("X-Total-Count"); got != "" {
		t.Errorf("X-Total-Count %q without total=true", got)
	}
	// Paging in a sort: one row a page, the cursor carried over.
	var got []string
	cursor := ""
	for range 10 {
		page := e.getJSON("/api/agents?sort=hostname&order=desc&limit=1&cursor="+url.QueryEscape(cursor), http.StatusOK)
		got = append(got, readsItemIDs(t, page, "pc_id")...)
		c, ok := page["next_cursor"].(string)
		if !ok {
			break
		}
		cursor = c
	}
	if want := []string{"PC-1", "PC-3", "PC-4", "PC-2"}; !slices.Equal(got, want) {
		t.Errorf("paged by hostname desc: %v, want %v", got, want)
	}
}

// TestAgentsPagesServedAtOnceKeepTheirOwnBytes: the roster's pages are
// encoded into pooled buffers (agentsPage, bufferPool), each returned once its
// page is written. Pages of different sizes served at once, gzipped or
// not, must each be exactly the page served alone: a buffer handed back
// before its page was written would show here as another page's bytes
// (and to the race detector).
func TestAgentsPagesServedAtOnceKeepTheirOwnBytes(t *testing.T) {
	e := newReadsEnv(t, nil)
	for i := range 300 {
		e.exec(`INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, agent_cpu_pct, last_logon_user, command_keys, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, fmt.Sprintf("PC-%03d", i), fmt.Sprintf("host-%d", i*7%300),
			[]string{"windows", "linux"}[i%2], "0.43.56", readsTime(-time.Duration(i)*time.Second), float64(i)/3,
			fmt.Sprintf(`CORP\user%d`, i), `["k1"]`, readsTime(0))
	}
	queries := []string{"limit=500", "limit=3", "sort=hostname&limit=200", "os=linux&limit=77", "q=host-1&sort=last_heartbeat&order=desc"}
	alone := map[string][]byte{}
	for _, q := range queries {
		rec := e.get("/api/agents?" + q)
		if rec.Code != http.StatusOK || !strings.HasSuffix(rec.Body.String(), "}\n") {
			t.Fatalf("%s: %d %.200s", q, rec.Code, rec.Body)
		}
		alone[q] = rec.Body.Bytes()
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				q := queries[(g+i)%len(queries)]
				req := httptest.NewRequest(http.MethodGet, "/api/agents?"+q, nil)
				if i%2 == 0 {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				rec := httptest.NewRecorder()
				e.h.ServeHTTP(rec, req)
				body := rec.Body.Bytes()
				if rec.Header().Get("Content-Encoding") == "gzip" {
					zr, err := gzip.NewReader(rec.Body)
					if err != nil {
						t.Error(err)
						return
					}
					if body, err = io.ReadAll(zr); err != nil {
						t.Error(err)
						return
					}
				}
				if !bytes.Equal(body, alone[q]) {
					t.Errorf("%s (goroutine %d, request %d): %d bytes differ from the page served alone (%d bytes)", q, g, i, len(body), len(alone[q]))
					return
				}
			}
		})
	}
	wg.Wait()
}
