package handlers_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
	"github.com/nats-io/nats.go"
)

// manageNow is a Monday, 08:30 UTC: the upcoming test's firings are read
// from it.
var manageNow = time.Date(2026, 6, 22, 8, 30, 0, 0, time.UTC)

// manageSecret signs the JWTs of the audit-actor test.
var manageSecret = []byte("manage-test-jwt-secret-0123456789abcdef")

// manageEnv is the whole handler over a real SQLite file and a real,
// bootstrapped embedded NATS whose JetStream the manage endpoints use.
type manageEnv struct {
	t     *testing.T
	nats  *bustest.Server
	clock *fakeClock
	logs  *testkit.SyncBuffer
	db    *storage.DB
	h     http.Handler
}

func newManageEnv(t *testing.T, tweak func(*handlers.Config)) *manageEnv {
	t.Helper()
	e := &manageEnv{t: t, nats: bustest.StartBootstrapped(t), clock: &fakeClock{t: manageNow}, logs: &testkit.SyncBuffer{}}
	e.db = storagetest.Open(t, e.clock.Now)
	cfg := handlers.Config{
		DB:     e.db,
		Bus:    bus.Static(e.nats.Bus),
		Clock:  e.clock.Now,
		Auth:   auth.Config{StaticToken: testToken, JWTSecret: manageSecret, Clock: e.clock.Now},
		Logger: slog.New(slog.NewTextHandler(e.logs, nil)),

		PasswordCost: testPasswordCost,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	h, err := handlers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("handler log:\n%s", e.logs)
		}
	})
	return e
}

func (e *manageEnv) set(t time.Time) {
	e.clock.mu.Lock()
	defer e.clock.mu.Unlock()
	e.clock.t = t
}

// do serves one request as the static-token caller.
func (e *manageEnv) do(method, path, body string) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.doAs(testToken, method, path, body)
}

func (e *manageEnv) doAs(token, method, path, body string) *httptest.ResponseRecorder {
	e.t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	return rec
}

// must serves a request and fails the test unless it answers want.
func (e *manageEnv) must(want int, method, path, body string) *httptest.ResponseRecorder {
	e.t.Helper()
	rec := e.do(method, path, body)
	if rec.Code != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, rec.Code, want, rec.Body)
	}
	return rec
}

// kvPut writes a value straight into a bucket, as a CLI or an older backend
// could, bypassing the API's validation.
func (e *manageEnv) kvPut(bucket, key, value string) {
	e.t.Helper()
	kv, err := e.nats.JS.KeyValue(e.t.Context(), bucket)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := kv.PutString(e.t.Context(), key, value); err != nil {
		e.t.Fatal(err)
	}
}

// auditMsg is one message of the AUDIT stream.
type auditMsg struct {
	Subject string
	Event   map[string]any
}

// audits reads every message of the AUDIT stream, oldest first.
func (e *manageEnv) audits() []auditMsg {
	e.t.Helper()
	ctx := e.t.Context()
	s, err := e.nats.JS.Stream(ctx, kanade.StreamAudit)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []auditMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			e.t.Fatal(err)
		}
		var ev map[string]any
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			e.t.Fatalf("audit %s: %v", m.Subject, err)
		}
		out = append(out, auditMsg{Subject: m.Subject, Event: ev})
	}
	return out
}

// jsonOf decodes a JSON text into generic values (numbers as json.Number,
// so a large integer is compared exactly).
func jsonOf(t *testing.T, s string) any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return v
}

// problem is the part of an RFC 9457 body the tests read.
type problem struct {
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Location string `json:"location"`
	} `json:"errors"`
}

func problemOf(t *testing.T, rec *httptest.ResponseRecorder) problem {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json (body %s)", ct, rec.Body)
	}
	var p problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", rec.Body, err)
	}
	if p.Status != rec.Code {
		t.Errorf("problem status %d, HTTP status %d", p.Status, rec.Code)
	}
	return p
}

// listBody is the body of GET /api/jobs and /api/schedules.
type listBody struct {
	Items []struct {
		Key       string          `json:"key"`
		Revision  uint64          `json:"revision"`
		UpdatedAt string          `json:"updated_at"`
		Value     json.RawMessage `json:"value"`
		Error     string          `json:"error"`
		Raw       string          `json:"raw"`
	} `json:"items"`
}

func (e *manageEnv) list(path string) listBody {
	e.t.Helper()
	rec := e.must(http.StatusOK, http.MethodGet, path, "")
	var b listBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		e.t.Fatalf("%s: %v", path, err)
	}
	if b.Items == nil {
		e.t.Fatalf("%s: items is %s, want an array", path, rec.Body)
	}
	return b
}

func (b listBody) keys() []string {
	out := []string{}
	for _, it := range b.Items {
		out = append(out, it.Key)
	}
	return out
}

func jobJSON(id, version string) string {
	return fmt.Sprintf(`{"id":%q,"version":%q,"execute":{"shell":"sh","script":"echo hi","timeout":"60s"}}`, id, version)
}

func calendarJSON(id, jobID, at string, extra string) string {
	return fmt.Sprintf(`{"id":%q,"when":{"calendar":{"at":%q}},"job_id":%q,"target":{"all":true},"tz":"utc"%s}`, id, at, jobID, extra)
}

func TestManageJobsRoundTrip(t *testing.T) {
	e := newManageEnv(t, nil)

	if got := e.list("/api/jobs").keys(); len(got) != 0 {
		t.Fatalf("fresh bucket lists %v", got)
	}
	put := e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	if diff := cmp.Diff(jsonOf(t, jobJSON("nightly", "1")), jsonOf(t, put.Body.String())); diff != "" {
		t.Errorf("PUT answer (-want +got):\n%s", diff)
	}
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/backup", jobJSON("backup", "7"))

	get := e.must(http.StatusOK, http.MethodGet, "/api/jobs/nightly", "")
	if get.Body.String() != put.Body.String() {
		t.Errorf("GET %s, PUT answered %s", get.Body, put.Body)
	}

	l := e.list("/api/jobs")
	if diff := cmp.Diff([]string{"backup", "nightly"}, l.keys()); diff != "" {
		t.Errorf("list keys (-want +got):\n%s", diff)
	}
	first := l.Items[1]
	if first.Error != "" || first.Raw != "" || first.Revision == 0 {
		t.Errorf("valid entry listed as %+v", first)
	}
	if diff := cmp.Diff(jsonOf(t, jobJSON("nightly", "1")), jsonOf(t, string(first.Value))); diff != "" {
		t.Errorf("listed value (-want +got):\n%s", diff)
	}
	if _, err := kanade.ParseTime(first.UpdatedAt); err != nil {
		t.Errorf("updated_at: %v", err)
	}

	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "2"))
	l = e.list("/api/jobs")
	if l.Items[1].Revision <= first.Revision {
		t.Errorf("revision after replace %d, before %d", l.Items[1].Revision, first.Revision)
	}
	if got := jsonOf(t, e.must(http.StatusOK, http.MethodGet, "/api/jobs/nightly", "").Body.String()); !cmp.Equal(got, jsonOf(t, jobJSON("nightly", "2"))) {
		t.Errorf("GET after replace %v", got)
	}

	del := e.must(http.StatusNoContent, http.MethodDelete, "/api/jobs/nightly", "")
	if del.Body.Len() != 0 {
		t.Errorf("DELETE body %q", del.Body)
	}
	e.must(http.StatusNotFound, http.MethodGet, "/api/jobs/nightly", "")
	e.must(http.StatusNotFound, http.MethodDelete, "/api/jobs/nightly", "")
	if diff := cmp.Diff([]string{"backup"}, e.list("/api/jobs").keys()); diff != "" {
		t.Errorf("list after delete (-want +got):\n%s", diff)
	}
	// Deleted, then written again: a fresh entry.
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "3"))
	e.must(http.StatusOK, http.MethodGet, "/api/jobs/nightly", "")
}

func TestManageJobRefusesUnknownFieldsButShowsThemWhenStored(t *testing.T) {
	e := newManageEnv(t, nil)
	body := `{"id":"nightly","version":"1","owner":"ops","labels":{"tier":[1,2,{"x":null}]},"big":123456789012345678901234567890,
		"execute":{"shell":"pwsh","script":"Get-Date","timeout":"5m","scirpt":"typo"}}`
	// A write names every unknown key (control.md §5.1), and stores nothing.
	rec := e.do(http.MethodPut, "/api/jobs/nightly", body)
	if p := problemOf(t, rec); rec.Code != http.StatusUnprocessableEntity || !strings.Contains(p.Detail, "big, execute.scirpt, labels, owner") {
		t.Fatalf("PUT with unknown keys = %d %q, want 422 naming big, execute.scirpt, labels, owner", rec.Code, p.Detail)
	}
	e.must(http.StatusNotFound, http.MethodGet, "/api/jobs/nightly", "")
	// A value put behind the API's back (another backend version, the CLI
	// writing KV) is shown byte for byte, unknown members and all.
	kv, err := e.nats.JS.KeyValue(t.Context(), kanade.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	stored := strings.Replace(body, `,"scirpt":"typo"`, "", 1)
	if _, err := kv.Put(t.Context(), "nightly", []byte(stored)); err != nil {
		t.Fatal(err)
	}
	get := e.must(http.StatusOK, http.MethodGet, "/api/jobs/nightly", "")
	for name, got := range map[string]string{"GET": get.Body.String(), "list": string(e.list("/api/jobs").Items[0].Value)} {
		if diff := cmp.Diff(jsonOf(t, stored), jsonOf(t, got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}

func TestManageSchedulesRoundTrip(t *testing.T) {
	e := newManageEnv(t, nil)
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))

	body := `{"id":"daily","when":{"calendar":{"at":"09:00","days":["mon-fri"]}},"job_id":"nightly",
		"target":{"groups":["canary"]},"jitter":"5m","tz":"utc"}`
	put := e.must(http.StatusOK, http.MethodPut, "/api/schedules/daily", body)
	if diff := cmp.Diff(jsonOf(t, body), jsonOf(t, put.Body.String())); diff != "" {
		t.Errorf("PUT answer (-want +got):\n%s", diff)
	}
	e.must(http.StatusOK, http.MethodPut, "/api/schedules/catch-up", `{"id":"catch-up","when":{"per_pc":{"every":"6h"}},"job_id":"nightly","target":{"all":true}}`)

	get := e.must(http.StatusOK, http.MethodGet, "/api/schedules/daily", "")
	if diff := cmp.Diff(jsonOf(t, body), jsonOf(t, get.Body.String())); diff != "" {
		t.Errorf("GET (-want +got):\n%s", diff)
	}
	l := e.list("/api/schedules")
	if diff := cmp.Diff([]string{"catch-up", "daily"}, l.keys()); diff != "" {
		t.Errorf("list keys (-want +got):\n%s", diff)
	}
	for _, it := range l.Items {
		if it.Error != "" {
			t.Errorf("%s listed with error %q", it.Key, it.Error)
		}
		if _, err := kanade.ParseSchedule(it.Key, it.Value); err != nil {
			t.Errorf("%s: listed value does not parse: %v", it.Key, err)
		}
	}

	e.must(http.StatusNoContent, http.MethodDelete, "/api/schedules/daily", "")
	e.must(http.StatusNotFound, http.MethodGet, "/api/schedules/daily", "")
	e.must(http.StatusNotFound, http.MethodDelete, "/api/schedules/daily", "")
	if diff := cmp.Diff([]string{"catch-up"}, e.list("/api/schedules").keys()); diff != "" {
		t.Errorf("list after delete (-want +got):\n%s", diff)
	}
}

func TestManageValidation(t *testing.T) {
	e := newManageEnv(t, nil)
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	badJob := func(edit string) string { return strings.Replace(jobJSON("bad", "1"), `"shell":"sh"`, edit, 1) }

	tests := []struct {
		name     string
		path     string
		body     string
		status   int
		field    string // must appear in the detail
		location string // errors[0].location: body.<field>, or body for the document as a whole
	}{
		{"a job with an unknown shell", "/api/jobs/bad", badJob(`"shell":"bash"`), 422, "execute.shell", "body.execute.shell"},
		{"a job whose id is not the path's", "/api/jobs/other", jobJSON("bad", "1"), 422, "id", "body.id"},
		{"a job without an id", "/api/jobs/bad", `{"version":"1","execute":{"shell":"sh","script":"x","timeout":"1m"}}`, 422, "id", "body.id"},
		{"a job with a timeout that is not a duration", "/api/jobs/bad", strings.Replace(jobJSON("bad", "1"), "60s", "soon", 1), 422, "execute.timeout", "body.execute.timeout"},
		{"a job whose version is a number", "/api/jobs/bad", strings.Replace(jobJSON("bad", "1"), `"1"`, `1`, 1), 422, "version must be a string (got a JSON number)", "body.version"},
		{"a job whose id cannot be a KV key", "/api/jobs/a:b", jobJSON("a:b", "1"), 422, "id", "body.id"},
		{"a job whose execute is a string", "/api/jobs/bad", `{"id":"bad","version":"1","execute":"sh -c x"}`, 422, "execute must be an object (got a JSON string)", "body.execute"},
		{"a job whose script is a list", "/api/jobs/bad", strings.Replace(jobJSON("bad", "1"), `"script":"echo hi"`, `"script":["echo hi"]`, 1), 422,
			"execute.script must be a string", "body.execute.script"},
		{"a job with a bad rollout delay", "/api/jobs/bad",
			strings.Replace(jobJSON("bad", "1"), `"id":"bad"`, `"id":"bad","rollout":{"strategy":"wave","waves":[{"group":"a"},{"group":"b","delay":"later"}]}`, 1), 422,
			`rollout.waves[1].delay "later" must be a duration`, "body.rollout.waves[1].delay"},
		{"a job with a target pc that is not a token", "/api/jobs/bad",
			strings.Replace(jobJSON("bad", "1"), `"id":"bad"`, `"id":"bad","target":{"pcs":["PC-1","PC 2"]}`, 1), 422,
			`target.pcs[1] "PC 2" must be a subject token`, "body.target.pcs[1]"},
		{"a job body that is an array", "/api/jobs/bad", `[1]`, 400, "must be a JSON object", "body"},
		{"a job body that is not JSON", "/api/jobs/bad", `{"id":`, 400, "", ""},
		{"a job without a body", "/api/jobs/bad", ``, 400, "", ""},
		{"a schedule with two when kinds", "/api/schedules/bad",
			`{"id":"bad","when":{"per_pc":"once","calendar":{"at":"09:00"}},"job_id":"nightly","target":{"all":true}}`, 422, "when", "body.when"},
		{"a schedule for a missing job", "/api/schedules/bad", calendarJSON("bad", "ghost", "09:00", ""), 422, "job_id", "body.job_id"},
		{"a schedule whose job_id cannot be a key", "/api/schedules/bad", calendarJSON("bad", "no such job", "09:00", ""), 422, "job_id", "body.job_id"},
		{"a schedule whose id is not the path's", "/api/schedules/other", calendarJSON("bad", "nightly", "09:00", ""), 422, `id "bad" must equal the key "other"`, "body.id"},
		{"a schedule with a calendar at out of range", "/api/schedules/bad", calendarJSON("bad", "nightly", "24:00", ""), 422,
			`when.calendar.at "24:00" must be`, "body.when.calendar.at"},
		{"a schedule whose second day is unknown", "/api/schedules/bad", `{"id":"bad","when":{"calendar":{"at":"09:00","days":["mon","someday"]}},"job_id":"nightly","target":{"all":true}}`,
			422, `when.calendar.days[1] "someday" must be a day`, "body.when.calendar.days[1]"},
		{"a schedule whose days are not a list", "/api/schedules/bad", `{"id":"bad","when":{"calendar":{"at":"09:00","days":"mon"}},"job_id":"nightly","target":{"all":true}}`,
			422, "when.calendar.days must be an array (got a JSON string)", "body.when.calendar.days"},
		{"a schedule with a zero per_pc interval", "/api/schedules/bad", `{"id":"bad","when":{"per_pc":{"every":"0s"}},"job_id":"nightly","target":{"all":true}}`,
			422, `when.per_pc.every "0s" must be greater than zero`, "body.when.per_pc.every"},
		{"a schedule whose active window ends before it starts", "/api/schedules/bad",
			`{"id":"bad","when":{"per_pc":"once"},"job_id":"nightly","target":{"all":true},"active":{"from":"2026-07-01","until":"2026-06-01"}}`,
			422, `active.until "2026-06-01" must be after active.from "2026-07-01"`, "body.active.until"},
		{"a schedule body that is not an object", "/api/schedules/bad", `"daily"`, 400, "must be a JSON object", "body"},
		{"a schedule with an unknown key", "/api/schedules/bad", `{"id":"bad","when":{"per_pc":"once","x":1},"job_id":"nightly","target":{"all":true},"note":"n"}`,
			422, "note, when.x", "body"},
		{"a schedule with an unknown day", "/api/schedules/bad", `{"id":"bad","when":{"calendar":{"at":"09:00","days":["someday"]}},"job_id":"nightly","target":{"all":true}}`,
			422, "when.calendar.days[0]", "body.when.calendar.days[0]"},
		{"a schedule with an empty target", "/api/schedules/bad", `{"id":"bad","when":{"per_target":"once"},"job_id":"nightly","target":{}}`, 422, "target", "body.target"},
		{"a schedule whose when is a string", "/api/schedules/bad", `{"id":"bad","when":"daily","job_id":"nightly","target":{"all":true}}`, 422, "when must be an object", "body.when"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.do(http.MethodPut, tt.path, tt.body)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			p := problemOf(t, rec)
			if !strings.Contains(p.Detail, tt.field) {
				t.Errorf("detail %q does not name %s", p.Detail, tt.field)
			}
			if tt.location != "" && (len(p.Errors) == 0 || p.Errors[0].Location != tt.location) {
				t.Errorf("errors %+v, want location %s", p.Errors, tt.location)
			}
		})
	}
	// Nothing invalid was stored.
	if diff := cmp.Diff([]string{"nightly"}, e.list("/api/jobs").keys()); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
	if got := e.list("/api/schedules").keys(); len(got) != 0 {
		t.Errorf("schedules stored: %v", got)
	}
	if got := e.audits(); len(got) != 1 {
		t.Errorf("%d audit events, want only the seed job's", len(got))
	}
}

func TestManageNotFound(t *testing.T) {
	e := newManageEnv(t, nil)
	for _, path := range []string{"/api/jobs/ghost", "/api/schedules/ghost", "/api/jobs/not%20a%20key", "/api/schedules/.dot"} {
		for _, method := range []string{http.MethodGet, http.MethodDelete} {
			rec := e.do(method, path, "")
			if rec.Code != http.StatusNotFound {
				t.Errorf("%s %s: status %d, want 404; body %s", method, path, rec.Code, rec.Body)
				continue
			}
			if p := problemOf(t, rec); !strings.HasPrefix(p.Detail, "no job ") && !strings.HasPrefix(p.Detail, "no schedule ") {
				t.Errorf("%s %s: detail %q does not name the id", method, path, p.Detail)
			}
		}
	}
}

func TestManageDeleteReferencedJob(t *testing.T) {
	e := newManageEnv(t, nil)
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/other", jobJSON("other", "1"))
	e.must(http.StatusOK, http.MethodPut, "/api/schedules/s1", calendarJSON("s1", "nightly", "09:00", ""))
	e.must(http.StatusOK, http.MethodPut, "/api/schedules/s2", calendarJSON("s2", "nightly", "10:00", ""))
	e.must(http.StatusOK, http.MethodPut, "/api/schedules/s3", calendarJSON("s3", "other", "10:00", ""))
	// A schedule that no longer validates still runs the job as far as an
	// operator is concerned.
	e.kvPut(kanade.BucketSchedules, "s4", `{"id":"s4","when":{},"job_id":"nightly"}`)

	rec := e.do(http.MethodDelete, "/api/jobs/nightly", "")
	if rec.Code != http.StatusConflict {
		t.Fatalf("status %d, want 409; body %s", rec.Code, rec.Body)
	}
	p := problemOf(t, rec)
	for _, s := range []string{"s1", "s2", "s4"} {
		if !strings.Contains(p.Detail, s) {
			t.Errorf("detail %q does not name schedule %s", p.Detail, s)
		}
	}
	if strings.Contains(p.Detail, "s3") {
		t.Errorf("detail %q names s3, which runs another job", p.Detail)
	}
	e.must(http.StatusOK, http.MethodGet, "/api/jobs/nightly", "")

	for _, s := range []string{"s1", "s2", "s4"} {
		e.must(http.StatusNoContent, http.MethodDelete, "/api/schedules/"+s, "")
	}
	e.must(http.StatusNoContent, http.MethodDelete, "/api/jobs/nightly", "")
	e.must(http.StatusNotFound, http.MethodGet, "/api/jobs/nightly", "")
}

// hs256 signs claims with manageSecret.
func hs256(t *testing.T, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(c)
	m := hmac.New(sha256.New, manageSecret)
	m.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(m.Sum(nil))
}

func TestManageAuditEvents(t *testing.T) {
	e := newManageEnv(t, nil)
	at := manageNow.Format(time.RFC3339Nano)
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	// "daily.report" is a fine KV key but not a subject token: the target is
	// left out of the subject and kept in the body.
	sched := calendarJSON("daily.report", "nightly", "09:00", "")
	e.must(http.StatusOK, http.MethodPut, "/api/schedules/daily.report", sched)
	e.set(manageNow.Add(time.Minute))
	e.must(http.StatusNoContent, http.MethodDelete, "/api/schedules/daily.report", "")
	e.must(http.StatusNoContent, http.MethodDelete, "/api/jobs/nightly", "")
	// Every HTTP mutation is audited as operator (control.md §0.2), the
	// caller in sub and X-Kanade-Source in source. A JWT's subject needs
	// an account (control.md §9.1), an operator to PUT a job.
	if _, err := e.db.CreateAccount(context.Background(), storage.NewAccount{Username: "alice@example.com", Hash: "unused", Role: "operator"}); err != nil {
		t.Fatal(err)
	}
	token := hs256(t, map[string]any{"sub": "alice@example.com", "aud": "kanade", "exp": manageNow.Add(time.Hour).Unix()})
	r := httptest.NewRequest(http.MethodPut, "/api/jobs/nightly", strings.NewReader(jobJSON("nightly", "2")))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("X-Kanade-Source", " cli ")
	rec := httptest.NewRecorder()
	if e.h.ServeHTTP(rec, r); rec.Code != http.StatusOK {
		t.Fatalf("PUT as alice: %d %s", rec.Code, rec.Body)
	}

	later := manageNow.Add(time.Minute).Format(time.RFC3339Nano)
	ev := func(actor, action, target, occurred string, payload string) map[string]any {
		return map[string]any{"actor": actor, "action": action, "target": target,
			"payload": jsonOf(t, payload), "occurred_at": occurred}
	}
	want := []auditMsg{
		{"audit.operator.job_upsert.nightly", ev("operator", "job_upsert", "nightly", at,
			`{"sub":"service-token","version":"1","inventory":false,"revision":1}`)},
		{"audit.operator.schedule_upsert", ev("operator", "schedule_upsert", "daily.report", at,
			`{"sub":"service-token","when":"at 09:00","job_id":"nightly","enabled":true,"revision":1}`)},
		{"audit.operator.schedule_delete", ev("operator", "schedule_delete", "daily.report", later,
			`{"sub":"service-token","previous_revision":1}`)},
		{"audit.operator.job_delete.nightly", ev("operator", "job_delete", "nightly", later,
			`{"sub":"service-token","cascade_revoke":true,"previous_revision":1}`)},
		{"audit.operator.job_upsert.nightly", ev("operator", "job_upsert", "nightly", later,
			`{"sub":"alice@example.com","source":"cli","version":"2","inventory":false,"revision":3}`)},
	}
	got := e.audits()
	// Payload numbers decode as float64 on one side and json.Number on the
	// other: compare through one more JSON round trip.
	norm := func(v any) any {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return jsonOf(t, string(b))
	}
	if diff := cmp.Diff(norm(want), norm(got)); diff != "" {
		t.Errorf("audit stream (-want +got):\n%s", diff)
	}
}

func TestManageAuditPublishFailureKeepsTheWrite(t *testing.T) {
	e := newManageEnv(t, nil)
	if err := e.nats.JS.DeleteStream(t.Context(), kanade.StreamAudit); err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	e.must(http.StatusOK, http.MethodGet, "/api/jobs/nightly", "")
	if logs := e.logs.String(); !strings.Contains(logs, "audit event lost") || !strings.Contains(logs, "job_upsert") {
		t.Errorf("the lost audit event was not logged:\n%s", logs)
	}
}

func TestManageUpcoming(t *testing.T) {
	e := newManageEnv(t, nil)
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/report", jobJSON("report", "1"))
	for id, body := range map[string]string{
		"morning":  calendarJSON("morning", "nightly", "09:00", ""),
		"noon":     calendarJSON("noon", "report", "12:00", `,"enabled":true`),
		"weekend":  `{"id":"weekend","when":{"calendar":{"at":"08:45","days":["sat-sun"]}},"job_id":"nightly","target":{"all":true},"tz":"utc"}`,
		"launch":   calendarJSON("launch", "report", "2026-06-22 10:00", ""),
		"past":     calendarJSON("past", "report", "2026-06-01 10:00", ""),
		"off":      calendarJSON("off", "nightly", "08:40", `,"enabled":false`),
		"by-agent": calendarJSON("by-agent", "nightly", "08:41", `,"runs_on":"agent"`),
		"per-pc":   `{"id":"per-pc","when":{"per_pc":"once"},"job_id":"nightly","target":{"all":true}}`,
		// 17:30 in Tokyo (UTC+9) is 08:30 UTC, next on Tuesday.
		"tokyo": `{"id":"tokyo","when":{"calendar":{"at":"17:30"}},"job_id":"report","target":{"all":true},"tz":"Asia/Tokyo"}`,
	} {
		e.must(http.StatusOK, http.MethodPut, "/api/schedules/"+id, body)
	}
	// Broken entries are skipped, not fatal.
	e.kvPut(kanade.BucketSchedules, "broken", `{"id":"broken","when":{"calendar":{"at":"08:31"}},"job_id":"nightly"}`)
	e.kvPut(kanade.BucketSchedules, "garbage", `not json`)

	type firing struct {
		ScheduleID string `json:"schedule_id"`
		JobID      string `json:"job_id"`
		At         string `json:"at"`
	}
	upcoming := func(query string) []firing {
		t.Helper()
		rec := e.must(http.StatusOK, http.MethodGet, "/api/schedules/upcoming"+query, "")
		var b struct {
			Items []firing `json:"items"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		if b.Items == nil {
			t.Fatalf("items is not an array: %s", rec.Body)
		}
		return b.Items
	}

	want := []firing{
		{"morning", "nightly", "2026-06-22T09:00:00Z"},
		{"launch", "report", "2026-06-22T10:00:00Z"},
		{"noon", "report", "2026-06-22T12:00:00Z"},
		{"tokyo", "report", "2026-06-23T08:30:00Z"},
		{"morning", "nightly", "2026-06-23T09:00:00Z"},
		{"noon", "report", "2026-06-23T12:00:00Z"},
	}
	if diff := cmp.Diff(want, upcoming("?limit=6")); diff != "" {
		t.Errorf("limit 6 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[:2], upcoming("?limit=2")); diff != "" {
		t.Errorf("limit 2 (-want +got):\n%s", diff)
	}
	if got := upcoming(""); len(got) != 20 {
		t.Errorf("default limit: %d firings, want 20", len(got))
	}
	// The weekend schedule shows up on Saturday, after five weekdays.
	all := upcoming("?limit=500")
	if len(all) != 500 {
		t.Errorf("limit 500: %d firings", len(all))
	}
	if i := slicesIndex(all, func(f firing) bool { return f.ScheduleID == "weekend" }); i < 0 || all[i].At != "2026-06-27T08:45:00Z" {
		t.Errorf("weekend firing at index %d of %v", i, all[:min(len(all), 25)])
	}

	// The clock decides "now": at 09:30 the morning firing of the 22nd is past.
	e.set(manageNow.Add(time.Hour))
	if diff := cmp.Diff(want[1:3], upcoming("?limit=2")); diff != "" {
		t.Errorf("an hour later (-want +got):\n%s", diff)
	}

	for _, q := range []string{"?limit=0", "?limit=501", "?limit=ten"} {
		rec := e.do(http.MethodGet, "/api/schedules/upcoming"+q, "")
		if rec.Code != http.StatusUnprocessableEntity {
			t.Errorf("%s: status %d, want 422; body %s", q, rec.Code, rec.Body)
			continue
		}
		if p := problemOf(t, rec); len(p.Errors) == 0 || p.Errors[0].Location != "query.limit" {
			t.Errorf("%s: errors %+v do not name query.limit", q, p.Errors)
		}
	}
}

func slicesIndex[T any](s []T, f func(T) bool) int {
	for i, v := range s {
		if f(v) {
			return i
		}
	}
	return -1
}

func TestManageListsBrokenValues(t *testing.T) {
	e := newManageEnv(t, nil)
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/good", jobJSON("good", "1"))
	e.kvPut(kanade.BucketJobs, "bad-shell", strings.Replace(jobJSON("bad-shell", "1"), `"sh"`, `"bash"`, 1))
	e.kvPut(kanade.BucketJobs, "wrong-id", jobJSON("right-id", "1"))
	e.kvPut(kanade.BucketJobs, "garbage", "not json {")
	e.must(http.StatusOK, http.MethodPut, "/api/schedules/fine", calendarJSON("fine", "good", "09:00", ""))
	e.kvPut(kanade.BucketSchedules, "two-kinds", `{"id":"two-kinds","when":{"per_pc":"once","per_target":"once"},"job_id":"good","target":{"all":true}}`)

	type item struct{ Key, Error, Raw, Value string }
	summary := func(l listBody) []item {
		var out []item
		for _, it := range l.Items {
			v := ""
			if it.Value != nil {
				v = "json"
			}
			out = append(out, item{it.Key, it.Error, it.Raw, v})
		}
		return out
	}
	wantJobs := []item{
		{"bad-shell", `execute.shell "bash" must be one of powershell, pwsh, cmd, sh`, "", "json"},
		{"garbage", "the stored value is not JSON", "not json {", ""},
		{"good", "", "", "json"},
		{"wrong-id", `id "right-id" must equal the key "wrong-id"`, "", "json"},
	}
	if diff := cmp.Diff(wantJobs, summary(e.list("/api/jobs"))); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
	wantSchedules := []item{
		{"fine", "", "", "json"},
		{"two-kinds", "when must have exactly one of per_pc, per_target, calendar", "", "json"},
	}
	if diff := cmp.Diff(wantSchedules, summary(e.list("/api/schedules"))); diff != "" {
		t.Errorf("schedules (-want +got):\n%s", diff)
	}

	// One entry: shown as stored when it is JSON, even if invalid ...
	rec := e.must(http.StatusOK, http.MethodGet, "/api/jobs/bad-shell", "")
	if !strings.Contains(rec.Body.String(), `"bash"`) {
		t.Errorf("GET bad-shell: %s", rec.Body)
	}
	// ... and a problem pointing at the list when it is not.
	rec = e.must(http.StatusInternalServerError, http.MethodGet, "/api/jobs/garbage", "")
	if p := problemOf(t, rec); !strings.Contains(p.Detail, "not JSON") || !strings.Contains(p.Detail, "/api/jobs") {
		t.Errorf("GET garbage: detail %q", p.Detail)
	}
}

func TestManageWithoutNATS(t *testing.T) {
	closed := func() *bus.Client {
		s := bustest.Start(t)
		nc, err := nats.Connect(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		c, err := bus.NewClient(nc)
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
		return c
	}()
	notBootstrapped := bustest.Start(t).Bus

	requests := []struct{ method, path, body string }{
		{http.MethodGet, "/api/jobs", ""},
		{http.MethodGet, "/api/jobs/nightly", ""},
		{http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1")},
		{http.MethodDelete, "/api/jobs/nightly", ""},
		{http.MethodGet, "/api/schedules", ""},
		{http.MethodGet, "/api/schedules/daily", ""},
		{http.MethodPut, "/api/schedules/daily", calendarJSON("daily", "nightly", "09:00", "")},
		{http.MethodDelete, "/api/schedules/daily", ""},
		{http.MethodGet, "/api/schedules/upcoming", ""},
	}
	for _, tt := range []struct {
		name   string
		js     func() (*bus.Client, error)
		detail string
	}{
		{"no JetStream configured", nil, "NATS is not configured"},
		{"NATS not connected", func() (*bus.Client, error) { return nil, bus.ErrNotConnected }, "NATS is not connected"},
		{"a closed connection", bus.Static(closed), "NATS is unavailable"},
		{"a server without the buckets", bus.Static(notBootstrapped), "bucket does not exist"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newManageEnv(t, func(c *handlers.Config) { c.Bus = tt.js })
			for _, r := range requests {
				rec := e.do(r.method, r.path, r.body)
				if rec.Code != http.StatusServiceUnavailable {
					t.Errorf("%s %s: status %d, want 503; body %s", r.method, r.path, rec.Code, rec.Body)
					continue
				}
				if p := problemOf(t, rec); !strings.Contains(p.Detail, tt.detail) {
					t.Errorf("%s %s: detail %q, want it to say %q", r.method, r.path, p.Detail, tt.detail)
				}
			}
		})
	}
}
