package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
)

// fakeAgent answers requests on one subject from a connection of its own,
// as an agent does, and keeps every request's payload. A nil answer leaves
// the request unanswered (a connected but silent agent).
type fakeAgent struct {
	mu       sync.Mutex
	requests []string
}

func (e *manageEnv) fakeAgent(subject string, answer func(req []byte) []byte) *fakeAgent {
	e.t.Helper()
	nc, err := nats.Connect(e.nats.URL)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	a := &fakeAgent{}
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) {
		a.mu.Lock()
		a.requests = append(a.requests, string(m.Data))
		a.mu.Unlock()
		if reply := answer(m.Data); reply != nil {
			_ = m.Respond(reply)
		}
	}); err != nil {
		e.t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (a *fakeAgent) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string{}, a.requests...)
}

func silent([]byte) []byte { return nil }

// pingReply is what an agent answers a ping with: no logon, key or perf
// fields; an unknown field a newer agent might add.
const pingReply = `{"pc_id":"PC-1","at":"2026-06-22T08:29:59.5+00:00","agent_version":"0.45.3","hostname":"pc-1",` +
	`"os_family":"windows","future_field":[1,2]}`

func TestPingAnswersTheAgentsHeartbeat(t *testing.T) {
	e := newManageEnv(t, nil)
	a := e.fakeAgent("agents.PC-1.ping", func([]byte) []byte { return []byte(pingReply) })
	rec := e.must(http.StatusOK, http.MethodPost, "/api/agents/PC-1/ping", "")
	want := `{"heartbeat":{"pc_id":"PC-1","at":"2026-06-22T08:29:59.5Z","agent_version":"0.45.3","hostname":"pc-1","os_family":"windows"}}`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if diff := cmp.Diff([]string{""}, a.got()); diff != "" {
		t.Errorf("request payloads (-want +got):\n%s", diff)
	}
	// The reply travelled on an inbox: the agents table never saw it.
	if _, err := e.db.GetAgent(t.Context(), "PC-1", manageNow); err == nil {
		t.Error("the ping reply reached the agents table")
	}
}

func TestPingWithoutAConnectedAgentIs408AtOnce(t *testing.T) {
	e := newManageEnv(t, nil)
	start := time.Now()
	rec := e.must(http.StatusRequestTimeout, http.MethodPost, "/api/agents/PC-1/ping?wait_secs=60", "")
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("no responders took %v: it waited the timeout", d)
	}
	if p := problemOf(t, rec); !strings.Contains(p.Detail, "no agent is listening on agents.PC-1.ping") {
		t.Errorf("detail %q", p.Detail)
	}
}

func TestPingOfASilentAgentIs408AfterWaitSecs(t *testing.T) {
	e := newManageEnv(t, nil)
	a := e.fakeAgent("agents.PC-1.ping", silent)
	for query, wait := range map[string]string{"?wait_secs=1": "1s", "?wait_secs=0": "1s"} {
		rec := e.must(http.StatusRequestTimeout, http.MethodPost, "/api/agents/PC-1/ping"+query, "")
		if p := problemOf(t, rec); !strings.Contains(p.Detail, "did not answer within "+wait) {
			t.Errorf("%s: detail %q", query, p.Detail)
		}
	}
	if n := len(a.got()); n != 2 {
		t.Errorf("the agent got %d requests, want 2", n)
	}
}

func TestPingWaitIsOneToSixtySeconds(t *testing.T) {
	for secs, want := range map[uint64]time.Duration{0: time.Second, 1: time.Second, 5: 5 * time.Second, 60: time.Minute, 61: time.Minute, 1 << 62: time.Minute} {
		if got := handlers.PingWaitForTest(secs); got != want {
			t.Errorf("wait_secs=%d: %v, want %v", secs, got, want)
		}
	}
}

func TestPingRefusesBadInput(t *testing.T) {
	e := newManageEnv(t, nil)
	a := e.fakeAgent("agents.>", func([]byte) []byte { return []byte(pingReply) })
	for _, c := range []struct{ path, location string }{
		{"/api/agents/a.b/ping", "path.pc_id"},
		{"/api/agents/" + strings.Repeat("x", 129) + "/ping", "path.pc_id"},
		{"/api/agents/PC-1/ping?wait_secs=x", "query.wait_secs"},
		{"/api/agents/PC-1/ping?wait_secs=-1", "query.wait_secs"},
		{"/api/agents/PC-1/ping?wait_secs=1.5", "query.wait_secs"},
	} {
		rec := e.must(http.StatusBadRequest, http.MethodPost, c.path, "")
		if p := problemOf(t, rec); len(p.Errors) != 1 || p.Errors[0].Location != c.location {
			t.Errorf("%s: %s", c.path, rec.Body)
		}
	}
	if got := a.got(); len(got) != 0 {
		t.Errorf("requests sent: %v", got)
	}
}

func TestPingOfAnUndecodableReplyIs500(t *testing.T) {
	e := newManageEnv(t, nil)
	for pc, reply := range map[string]string{"PC-1": "pong", "PC-2": `{"pc_id":"PC-2"}`, "PC-3": `[1]`} {
		e.fakeAgent("agents."+pc+".ping", func([]byte) []byte { return []byte(reply) })
		e.must(http.StatusInternalServerError, http.MethodPost, "/api/agents/"+pc+"/ping", "")
	}
}

func TestLiveActionsWithoutNATSAre503(t *testing.T) {
	e := newManageEnv(t, func(c *handlers.Config) { c.Bus = nil })
	e.must(http.StatusServiceUnavailable, http.MethodPost, "/api/agents/PC-1/ping", "")
	e.must(http.StatusServiceUnavailable, http.MethodGet, "/api/agents/PC-1/logs", "")
}

// A ping answered later than the server's write timeout still gets its
// answer: the route lifts the deadline for itself, as POST /api/run does.
func TestPingOutlivesTheServersWriteTimeout(t *testing.T) {
	e := newManageEnv(t, nil)
	e.fakeAgent("agents.PC-1.ping", func([]byte) []byte {
		time.Sleep(1500 * time.Millisecond)
		return []byte(pingReply)
	})
	srv := httptest.NewUnstartedServer(e.h)
	srv.Config.WriteTimeout = 500 * time.Millisecond
	srv.Start()
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/agents/PC-1/ping?wait_secs=5", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("ping past the write timeout: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ Heartbeat kanade.Heartbeat }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.Heartbeat.PcID != "PC-1" {
		t.Errorf("ping past the write timeout: %d %+v %v", resp.StatusCode, body, err)
	}
}

func TestLogsAnswersTheAgentsTextVerbatim(t *testing.T) {
	e := newManageEnv(t, nil)
	text := "2026-06-22 line one\n\xffnot utf-8 either\nlast line without newline"
	a := e.fakeAgent("logs.fetch.PC-1", func([]byte) []byte { return []byte(text) })
	for _, q := range []string{"", "?tail=20", "?tail=0", "?tail=10000", "?tail=10001", "?tail=99999999999"} {
		rec := e.must(http.StatusOK, http.MethodGet, "/api/agents/PC-1/logs"+q, "")
		if ct := rec.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", q, ct)
		}
		if rec.Body.String() != text {
			t.Errorf("%s: body %q", q, rec.Body)
		}
	}
	want := []string{`{"tail_lines":500}`, `{"tail_lines":20}`, `{"tail_lines":0}`, `{"tail_lines":10000}`, `{"tail_lines":10000}`, `{"tail_lines":10000}`}
	if diff := cmp.Diff(want, a.got()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestLogsErrors(t *testing.T) {
	handlers.ShortenLiveTimeoutsForTest(t, 300*time.Millisecond, 300*time.Millisecond)
	e := newManageEnv(t, nil)
	a := e.fakeAgent("logs.fetch.SILENT", silent)
	// No agent: 502, at once.
	start := time.Now()
	rec := e.must(http.StatusBadGateway, http.MethodGet, "/api/agents/PC-1/logs", "")
	if p := problemOf(t, rec); !strings.Contains(p.Detail, "no agent is listening on logs.fetch.PC-1") {
		t.Errorf("detail %q", p.Detail)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("no responders took %v", d)
	}
	// A silent agent: 504 after the timeout.
	rec = e.must(http.StatusGatewayTimeout, http.MethodGet, "/api/agents/SILENT/logs?tail=3", "")
	if p := problemOf(t, rec); !strings.Contains(p.Detail, "did not send its log within 300ms") {
		t.Errorf("detail %q", p.Detail)
	}
	if diff := cmp.Diff([]string{`{"tail_lines":3}`}, a.got()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	for _, c := range []struct{ path, location string }{
		{"/api/agents/a.b/logs", "path.pc_id"},
		{"/api/agents/SILENT/logs?tail=x", "query.tail"},
		{"/api/agents/SILENT/logs?tail=-5", "query.tail"},
		{"/api/agents/SILENT/logs?tail=1e3", "query.tail"},
	} {
		rec := e.must(http.StatusBadRequest, http.MethodGet, c.path, "")
		if p := problemOf(t, rec); len(p.Errors) != 1 || p.Errors[0].Location != c.location {
			t.Errorf("%s: %s", c.path, rec.Body)
		}
	}
	if n := len(a.got()); n != 1 {
		t.Errorf("a bad request reached the agent: %v", a.got())
	}
}

// runRow writes an execution_results row: running when exit is nil.
func (e *manageEnv) runRow(id string, pc any, exit *int64, stdout, stderr any) {
	e.t.Helper()
	ctx := context.Background()
	var finished any
	if exit != nil {
		finished = kanade.FormatTime(manageNow)
	}
	err := e.db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO execution_results (result_id, pc_id, exit_code, stdout, stderr, started_at, finished_at, recorded_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, id, pc, exit, stdout, stderr, kanade.FormatTime(manageNow.Add(-time.Minute)), finished,
			kanade.FormatTime(manageNow.Add(-time.Minute)))
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

const waitingTail = `{"running":true,"live":false,"stdout":"","stderr":"","stdout_truncated":false,"stderr_truncated":false,"exit_code":null}`

func TestTailOfAFinishedRunIsTheStoredOutputWithoutNATS(t *testing.T) {
	e := newManageEnv(t, func(c *handlers.Config) { c.Bus = nil })
	exit, reaped := int64(3), int64(-1)
	e.runRow("done", "PC-1", &exit, "out\n", "err\n")
	e.runRow("reaped", "PC-1", &reaped, nil, nil)
	for id, want := range map[string]string{
		"done":   `{"running":false,"live":false,"stdout":"out\n","stderr":"err\n","stdout_truncated":false,"stderr_truncated":false,"exit_code":3}`,
		"reaped": `{"running":false,"live":false,"stdout":"","stderr":"","stdout_truncated":false,"stderr_truncated":false,"exit_code":-1}`,
	} {
		if got := strings.TrimSpace(e.must(http.StatusOK, http.MethodGet, "/api/results/"+id+"/tail", "").Body.String()); got != want {
			t.Errorf("%s:\ngot  %s\nwant %s", id, got, want)
		}
	}
	e.must(http.StatusNotFound, http.MethodGet, "/api/results/nope/tail", "")
}

func TestTailOfARunningRunAsksItsAgent(t *testing.T) {
	e := newManageEnv(t, nil)
	e.runRow("r-1", "PC-1", nil, "", "")
	a := e.fakeAgent("job.tail.PC-1", func([]byte) []byte {
		return []byte(`{"found":true,"running":true,"stdout":"…50%\n","stderr":"warn\n","stdout_truncated":true,"extra":1}`)
	})
	got := strings.TrimSpace(e.must(http.StatusOK, http.MethodGet, "/api/results/r-1/tail", "").Body.String())
	want := `{"running":true,"live":true,"stdout":"…50%\n","stderr":"warn\n","stdout_truncated":true,"stderr_truncated":false,"exit_code":null}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if diff := cmp.Diff([]string{`{"result_id":"r-1"}`}, a.got()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	// The agent finished it meanwhile and says so.
	e.runRow("r-2", "PC-2", nil, "", "")
	e.fakeAgent("job.tail.PC-2", func([]byte) []byte { return []byte(`{"found":true,"running":false,"stdout":"done\n"}`) })
	got = strings.TrimSpace(e.must(http.StatusOK, http.MethodGet, "/api/results/r-2/tail", "").Body.String())
	want = `{"running":false,"live":true,"stdout":"done\n","stderr":"","stdout_truncated":false,"stderr_truncated":false,"exit_code":null}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestTailOfARunningRunIsWaitingWhenTheAgentCannotTell(t *testing.T) {
	handlers.ShortenLiveTimeoutsForTest(t, time.Second, 300*time.Millisecond)
	e := newManageEnv(t, nil)
	for pc, answer := range map[string]func([]byte) []byte{
		"NOTFOUND": func([]byte) []byte { return []byte(`{"found":false,"running":true,"stdout":"x"}`) },
		"GARBAGE":  func([]byte) []byte { return []byte(`not json`) },
		"SILENT":   silent,
	} {
		e.fakeAgent("job.tail."+pc, answer)
	}
	for _, pc := range []any{"NOTFOUND", "GARBAGE", "SILENT", "NOBODY", nil, "bad.pc"} {
		id := "r-" + strings.ToLower(strings.TrimSpace(strings.ReplaceAll(jsonString(pc), `"`, "")))
		e.runRow(id, pc, nil, "partial", "")
		if got := strings.TrimSpace(e.must(http.StatusOK, http.MethodGet, "/api/results/"+id+"/tail", "").Body.String()); got != waitingTail {
			t.Errorf("%v: %s", pc, got)
		}
	}
	// Without NATS at all, too.
	e2 := newManageEnv(t, func(c *handlers.Config) { c.Bus = nil })
	e2.runRow("r-1", "PC-1", nil, "", "")
	if got := strings.TrimSpace(e2.must(http.StatusOK, http.MethodGet, "/api/results/r-1/tail", "").Body.String()); got != waitingTail {
		t.Errorf("without NATS: %s", got)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// A connection that drops while a ping or a log request waits: 500 for the
// ping ("another NATS error"), 502 for the logs ("any request error").
func TestLiveRequestsWhoseConnectionDrops(t *testing.T) {
	for _, c := range []struct {
		method, path, subject string
		want                  int
	}{
		{http.MethodPost, "/api/agents/PC-1/ping?wait_secs=30", "agents.PC-1.ping", http.StatusInternalServerError},
		{http.MethodGet, "/api/agents/PC-1/logs", "logs.fetch.PC-1", http.StatusBadGateway},
	} {
		t.Run(c.path, func(t *testing.T) {
			e := newManageEnv(t, nil)
			e.fakeAgent(c.subject, silent)
			time.AfterFunc(300*time.Millisecond, func() { e.nats.Shutdown() })
			rec := e.do(c.method, c.path, "")
			if rec.Code != c.want {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, c.want)
			}
			if p := problemOf(t, rec); !strings.Contains(p.Detail, "dropped") {
				t.Errorf("detail %q", p.Detail)
			}
		})
	}
}

// A database that fails answers 500 on the routes that read or write it.
func TestAgentRoutesWithAFailingDatabaseAre500(t *testing.T) {
	e := newManageEnv(t, nil)
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusInternalServerError, http.MethodGet, "/api/agents/versions", "")
	e.must(http.StatusInternalServerError, http.MethodDelete, "/api/agents/PC-1", "")
	e.must(http.StatusInternalServerError, http.MethodGet, "/api/results/r-1/tail", "")
}
