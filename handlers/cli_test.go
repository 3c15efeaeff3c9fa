package handlers_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// cliCall is one request exactly as the upstream kanade CLI (0.43.x) makes
// it (control.md §8.2): the bearer token, the body and its content type,
// nothing else (no X-Kanade-Source: that came later).
func (e *manageEnv) cliCall(method, path, contentType, body string) *httptest.ResponseRecorder {
	e.t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	r.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	if rec.Code < 200 || rec.Code > 299 {
		// The CLI prints status and body and exits non-zero.
		e.t.Fatalf("kanade CLI: %s %s: %d %s", method, path, rec.Code, rec.Body)
	}
	return rec
}

// anyJSON is how the CLI handles most answers: pretty-print whatever JSON
// came (an empty 204 body is fine for the 2xx-only commands).
func anyJSON(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code == http.StatusNoContent {
		return
	}
	var v any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Errorf("answer is not JSON: %s", rec.Body)
	}
}

// freezeStatus decodes GET /api/freeze as `kanade freeze status` does:
// null or a Freeze with exactly the known members.
type cliFreeze struct {
	From   *string `json:"from"`
	Until  *string `json:"until"`
	Reason *string `json:"reason"`
	TZ     string  `json:"tz"`
}

func freezeStatus(t *testing.T, rec *httptest.ResponseRecorder) *cliFreeze {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	var f *cliFreeze
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("freeze status %s: %v", rec.Body, err)
	}
	return f
}

func TestUpstreamCLICalls(t *testing.T) {
	e := newManageEnv(t, nil)
	e.fleet([]string{"PC-1", "PC-2"}, map[string][]string{"PC-1": {"canary"}, "PC-2": {"wave1"}})

	// kanade job create inventory-hw.yaml
	anyJSON(t, e.cliCall(http.MethodPost, "/api/jobs", "application/yaml", jobYAML))
	// kanade job list
	anyJSON(t, e.cliCall(http.MethodGet, "/api/jobs", "", ""))
	// kanade schedule create inv-hw.yaml
	anyJSON(t, e.cliCall(http.MethodPost, "/api/schedules", "application/yaml", scheduleYAML))
	// kanade schedule list
	anyJSON(t, e.cliCall(http.MethodGet, "/api/schedules", "", ""))
	// kanade schedule disable inv-hw (the CLI sends both flags explicitly)
	e.cliCall(http.MethodPost, "/api/schedules/inv-hw/disable?cascade=false&cascade_kill=false", "", "")
	// older CLIs: cascade only
	e.cliCall(http.MethodPost, "/api/schedules/inv-hw/disable?cascade=true", "", "")
	e.cliCall(http.MethodPost, "/api/schedules/inv-hw/enable", "", "")

	// kanade exec inventory-hw --groups canary,wave1 --jitter 5m
	a := decodeExec(t, e.cliCall(http.MethodPost, "/api/exec/inventory-hw", "application/json",
		`{"target":{"groups":["canary","wave1"],"pcs":[],"all":false},"jitter":"5m"}`).Body.Bytes())
	if a.TargetCount != 2 || a.JobID != "inventory-hw" || a.Version != "1.10" {
		t.Errorf("exec --groups: %+v", a)
	}
	// kanade exec inventory-hw --all
	a = decodeExec(t, e.cliCall(http.MethodPost, "/api/exec/inventory-hw", "application/json",
		`{"target":{"groups":[],"pcs":[],"all":true}}`).Body.Bytes())
	if a.TargetCount != 2 || len(a.Subjects) != 1 || a.Subjects[0] != "commands.all" {
		t.Errorf("exec --all: %+v", a)
	}
	// kanade exec inventory-hw --pcs PC-1,PC-7
	a = decodeExec(t, e.cliCall(http.MethodPost, "/api/exec/inventory-hw", "application/json",
		`{"target":{"groups":[],"pcs":["PC-1","PC-7"],"all":false}}`).Body.Bytes())
	if a.TargetCount != 2 {
		t.Errorf("exec --pcs: %+v", a)
	}

	// kanade freeze status / set --from --until --reason --utc / status / clear
	if f := freezeStatus(t, e.cliCall(http.MethodGet, "/api/freeze", "", "")); f != nil {
		t.Errorf("status before set: %+v", f)
	}
	e.cliCall(http.MethodPut, "/api/freeze", "application/json", `{"from":"2026-12-20","until":"2027-01-05","reason":"year-end","tz":"utc"}`)
	f := freezeStatus(t, e.cliCall(http.MethodGet, "/api/freeze", "", ""))
	if f == nil || *f.From != "2026-12-20" || *f.Until != "2027-01-05" || *f.Reason != "year-end" || f.TZ != "utc" {
		t.Errorf("status after set: %+v", f)
	}
	e.cliCall(http.MethodDelete, "/api/freeze", "", "")
	if f := freezeStatus(t, e.cliCall(http.MethodGet, "/api/freeze", "", "")); f != nil {
		t.Errorf("status after clear: %+v", f)
	}

	// kanade schedule delete inv-hw; kanade job delete inventory-hw
	e.cliCall(http.MethodDelete, "/api/schedules/inv-hw", "", "")
	e.cliCall(http.MethodDelete, "/api/jobs/inventory-hw", "", "")

	// Every mutation above is in the audit trail as operator, the static
	// token's subject in the payload and no source (the CLI did not send one).
	want := []string{"job_upsert", "schedule_upsert", "schedule_disable", "schedule_disable", "schedule_enable",
		"exec", "exec", "exec", "freeze_set", "freeze_clear", "schedule_delete", "job_delete"}
	var got []string
	for _, a := range e.audits() {
		if a.Event["actor"] != "operator" {
			t.Errorf("actor %v on %s", a.Event["actor"], a.Subject)
		}
		p, _ := a.Event["payload"].(map[string]any)
		if p["sub"] != "service-token" || p["source"] != nil {
			t.Errorf("%s payload sub %v source %v", a.Subject, p["sub"], p["source"])
		}
		got = append(got, a.Event["action"].(string))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("audit actions %v, want %v", got, want)
	}
}
