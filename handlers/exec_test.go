package handlers_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go/jetstream"
)

// send serves one request as the static-token caller with the given
// content type ("" for none) and X-Kanade-Source.
func (e *manageEnv) send(method, path, contentType, body string) *httptest.ResponseRecorder {
	e.t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	r.Header.Set("Authorization", "Bearer "+testToken)
	r.Header.Set("X-Kanade-Source", "cli")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	return rec
}

// fleet records heartbeats (alive now) and group memberships.
func (e *manageEnv) fleet(alive []string, groups map[string][]string) {
	e.t.Helper()
	ctx := context.Background()
	var beats []kanade.Heartbeat
	for _, pc := range alive {
		beats = append(beats, kanade.Heartbeat{PcID: pc, At: kanade.Timestamp{Time: manageNow.Add(-30 * time.Second)}, AgentVersion: "0.43.56"})
	}
	if err := e.db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, beats) }); err != nil {
		e.t.Fatal(err)
	}
	for pc, gs := range groups {
		b, _ := json.Marshal(map[string]any{"groups": gs})
		e.kvPut(kanade.BucketAgentGroups, pc, string(b))
	}
}

// command decodes one command message.
func command(t *testing.T, data []byte) kanade.Command {
	t.Helper()
	var c kanade.Command
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("command %s: %v", data, err)
	}
	return c
}

type execAnswer struct {
	ExecID      string   `json:"exec_id"`
	JobID       string   `json:"job_id"`
	Version     string   `json:"version"`
	TargetCount int64    `json:"target_count"`
	Subjects    []string `json:"subjects"`
}

// decodeExec decodes an exec answer as the upstream CLI does: exactly the
// five keys, each required.
func decodeExec(t *testing.T, body []byte) execAnswer {
	t.Helper()
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(body, &keys); err != nil {
		t.Fatalf("exec answer %s: %v", body, err)
	}
	for _, k := range []string{"exec_id", "job_id", "version", "target_count", "subjects"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("exec answer %s lacks %s", body, k)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var a execAnswer
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("exec answer %s: %v", body, err)
	}
	return a
}

func TestExecFansAJobOutToGroupsAndPCs(t *testing.T) {
	e := newManageEnv(t, nil)
	cmds := e.listen("commands.>")
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "7"))
	e.fleet([]string{"PC-1", "PC-2", "PC-3"}, map[string][]string{"PC-1": {"canary"}, "PC-2": {"canary", "wave1"}, "PC-3": {"wave1"}, "PC-8": {"canary"}})
	before := len(e.audits())

	rec := e.send(http.MethodPost, "/api/exec/nightly", "application/json",
		`{"target":{"groups":["canary","wave1"],"pcs":["PC-9","PC-1"],"all":false},"jitter":"5m","future_key":1}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("exec = %d %s", rec.Code, rec.Body)
	}
	a := decodeExec(t, rec.Body.Bytes())
	// Alive members of canary or wave1 (PC-8 is not alive) plus the pcs
	// verbatim: PC-1, PC-2, PC-3, PC-9.
	want := execAnswer{ExecID: a.ExecID, JobID: "nightly", Version: "7", TargetCount: 4,
		Subjects: []string{"commands.group.canary", "commands.group.wave1", "commands.pc.PC-9", "commands.pc.PC-1"}}
	if diff := cmp.Diff(want, a); diff != "" || a.ExecID == "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	got := cmds.subjects(t, 4)
	var subjects []string
	var requestID string
	for _, m := range cmds.msgs {
		subjects = append(subjects, m.Subject)
		c := command(t, m.Data)
		if c.ID != "nightly" || c.Version != "7" || c.ExecID != a.ExecID || c.JitterSecs == nil || *c.JitterSecs != 300 ||
			c.Script != "echo hi" || c.TimeoutSecs != 60 || c.RequestID == "" {
			t.Errorf("command on %s: %+v", m.Subject, c)
		}
		if requestID != "" && c.RequestID != requestID {
			t.Errorf("request_id %s on %s, want the one request_id of the exec %s", c.RequestID, m.Subject, requestID)
		}
		requestID = c.RequestID
		// Agents ignore Nats-Msg-Id; a Kanade-Sig* header would read as a
		// forged command to newer agents (control.md §1.5).
		for k := range m.Header {
			if strings.HasPrefix(strings.ToLower(k), "kanade-sig") {
				t.Errorf("command on %s carries %s", m.Subject, k)
			}
		}
	}
	if diff := cmp.Diff(want.Subjects, subjects); diff != "" {
		t.Errorf("published (-want +got):\n%s (%v)", diff, got)
	}
	// Stored by EXEC, each with its message id (a retried publish is
	// stored once).
	s, err := e.nats.JS.Stream(t.Context(), kanade.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range want.Subjects {
		m, err := s.GetLastMsgForSubject(t.Context(), subj)
		if err != nil {
			t.Fatalf("EXEC holds nothing on %s: %v", subj, err)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != a.ExecID+":"+subj {
			t.Errorf("Nats-Msg-Id on %s = %q", subj, id)
		}
	}
	// script_current pinned, the execution recorded, the audit event.
	kv, _ := e.nats.JS.KeyValue(t.Context(), kanade.BucketScriptCurrent)
	if v, err := kv.Get(t.Context(), "nightly"); err != nil || string(v.Value()) != "7" {
		t.Errorf("script_current[nightly] = %v %v", v, err)
	}
	ex := e.must(http.StatusOK, http.MethodGet, "/api/executions/"+a.ExecID, "")
	for _, s := range []string{`"initiated_by":"operator"`, `"target_count":4`, `"status":"pending"`, `"job_id":"nightly"`} {
		if !strings.Contains(ex.Body.String(), s) {
			t.Errorf("execution %s lacks %s", ex.Body, s)
		}
	}
	audits := e.auditLines()[before:]
	wantAudit := `audit.operator.exec.nightly {"exec_id":"` + a.ExecID + `","source":"cli","sub":"service-token","subjects":["commands.group.canary","commands.group.wave1","commands.pc.PC-9","commands.pc.PC-1"],"subjects_total":4,"target_count":4,"version":"7","wave_mode":false}`
	if diff := cmp.Diff([]string{wantAudit}, audits); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

func TestExecToAllCountsTheAliveFleet(t *testing.T) {
	e := newManageEnv(t, nil)
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	e.fleet([]string{"PC-1", "PC-2"}, nil)
	// PC-3 last beat an hour ago: not expected.
	ctx := context.Background()
	if err := e.db.Update(ctx, func(tx *storage.Tx) error {
		return tx.UpsertHeartbeats(ctx, []kanade.Heartbeat{{PcID: "PC-3", At: kanade.Timestamp{Time: manageNow.Add(-time.Hour)}, AgentVersion: "1"}})
	}); err != nil {
		t.Fatal(err)
	}
	rec := e.send(http.MethodPost, "/api/exec/nightly", "application/json", `{"target":{"all":true,"groups":[],"pcs":[]}}`)
	a := decodeExec(t, rec.Body.Bytes())
	if a.TargetCount != 2 || !cmp.Equal(a.Subjects, []string{"commands.all"}) {
		t.Errorf("exec to all = %+v, want target_count 2 on commands.all", a)
	}
	// An empty fleet still expects one answer, so the execution cannot be
	// completed by nobody.
	e2 := newManageEnv(t, nil)
	e2.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	a = decodeExec(t, e2.send(http.MethodPost, "/api/exec/nightly", "application/json", `{"target":{"all":true}}`).Body.Bytes())
	if a.TargetCount != 1 {
		t.Errorf("exec to an empty fleet: target_count %d, want 1", a.TargetCount)
	}
}

func TestExecWithWavesSendsTheFirstNowAndStoresTheRest(t *testing.T) {
	e := newManageEnv(t, nil)
	cmds := e.listen("commands.>")
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	e.fleet([]string{"PC-1", "PC-2"}, map[string][]string{"PC-1": {"canary"}, "PC-2": {"wave1"}})
	rec := e.send(http.MethodPost, "/api/exec/nightly", "application/json",
		`{"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"},{"group":"wave1","delay":"30m"}]}}`)
	a := decodeExec(t, rec.Body.Bytes())
	if a.TargetCount != 2 || !cmp.Equal(a.Subjects, []string{"commands.group.canary", "commands.group.wave1"}) {
		t.Errorf("answer %+v", a)
	}
	if got := cmds.subjects(t, 1); len(got) != 1 || !strings.HasPrefix(got[0], "commands.group.canary ") {
		t.Errorf("published now: %v, want only the canary wave", got)
	}
	if due, err := e.db.DueWaves(context.Background(), manageNow.Add(29*time.Minute), 10); err != nil || len(due) != 0 {
		t.Errorf("waves due before 30m: %v %v", due, err)
	}
	due, err := e.db.DueWaves(context.Background(), manageNow.Add(30*time.Minute), 10)
	if err != nil || len(due) != 1 || due[0].Subject != "commands.group.wave1" || due[0].ExecID != a.ExecID {
		t.Errorf("waves due at 30m: %+v %v, want the wave1 wave of %s", due, err, a.ExecID)
	}
	audit := e.auditLines()
	if last := audit[len(audit)-1]; !strings.Contains(last, `"wave_mode":true`) {
		t.Errorf("audit %s, want wave_mode true", last)
	}
}

func TestExecScriptObjectCarriesItsDigest(t *testing.T) {
	e := newManageEnv(t, nil)
	cmds := e.listen("commands.>")
	job := `{"id":"big","version":"2","execute":{"shell":"sh","script_object":"big/2","timeout":"5m"}}`
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/big", job)
	// No object store (a NATS bootstrapped by an older backend): 503; then
	// the object missing: 404.
	if err := e.nats.JS.DeleteObjectStore(t.Context(), kanade.ObjectScripts); err != nil {
		t.Fatal(err)
	}
	rec := e.send(http.MethodPost, "/api/exec/big", "application/json", `{"target":{"pcs":["PC-1"]}}`)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("exec without the scripts store = %d %s, want 503", rec.Code, rec.Body)
	}
	os, err := e.nats.JS.CreateObjectStore(t.Context(), jetstream.ObjectStoreConfig{Bucket: kanade.ObjectScripts})
	if err != nil {
		t.Fatal(err)
	}
	rec = e.send(http.MethodPost, "/api/exec/big", "application/json", `{"target":{"pcs":["PC-1"]}}`)
	if rec.Code != http.StatusNotFound {
		t.Errorf("exec of a missing object = %d %s, want 404", rec.Code, rec.Body)
	}
	if _, err := os.PutBytes(t.Context(), "big/2", []byte("echo big")); err != nil {
		t.Fatal(err)
	}
	rec = e.send(http.MethodPost, "/api/exec/big", "application/json", `{"target":{"pcs":["PC-1"]}}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("exec = %d %s", rec.Code, rec.Body)
	}
	got := cmds.subjects(t, 1)
	if len(got) != 1 {
		t.Fatalf("published %v", got)
	}
	c := command(t, cmds.msgs[0].Data)
	sum := sha256.Sum256([]byte("echo big"))
	if c.Script != "" || c.ScriptObject != "big/2" || c.ScriptObjectSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("command %+v, want the object and its hex SHA-256", c)
	}
}

func TestExecRefusesBadRequestsBeforeAnySideEffect(t *testing.T) {
	e := newManageEnv(t, nil)
	cmds := e.listen("commands.>")
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	e.kvPut(kanade.BucketJobs, "broken", `{"id":"broken","version":"1","execute":{"shell":"sh","timeout":"1m"}}`)
	before := len(e.audits())
	for _, tt := range []struct {
		name, path, ct, body string
		status               int
		says                 string
	}{
		{"unknown job", "/api/exec/ghost", "application/json", `{"target":{"all":true}}`, 404, "job 'ghost' not found in catalog"},
		{"job id that is no key", "/api/exec/a:b", "application/json", `{"target":{"all":true}}`, 400, "job_id"},
		{"no content type", "/api/exec/nightly", "", `{"target":{"all":true}}`, 415, "application/json"},
		{"text body", "/api/exec/nightly", "text/plain", `{"target":{"all":true}}`, 415, "application/json"},
		{"malformed JSON", "/api/exec/nightly", "application/json", `{"target":`, 400, "JSON"},
		{"a wrong type", "/api/exec/nightly", "application/json", `{"target":{"all":"yes"}}`, 400, "target.all"},
		{"empty plan", "/api/exec/nightly", "application/json", `{}`, 400, "target must specify at least one of all / groups / pcs"},
		{"empty target", "/api/exec/nightly", "application/json", `{"target":{"all":false,"groups":[],"pcs":[]}}`, 400, "target"},
		{"bad jitter", "/api/exec/nightly", "application/json", `{"target":{"all":true},"jitter":"soon"}`, 400, "jitter"},
		{"bad wave delay", "/api/exec/nightly", "application/json", `{"rollout":{"waves":[{"group":"a","delay":"0s"},{"group":"b","delay":"later"}]}}`, 400, "rollout.waves[1].delay"},
		{"no waves", "/api/exec/nightly", "application/json", `{"target":{"all":true},"rollout":{"strategy":"wave","waves":[]}}`, 400, "rollout.waves"},
		{"group not a token", "/api/exec/nightly", "application/json", `{"target":{"groups":["a.b"]}}`, 400, "target.groups[0]"},
		{"pc not a token", "/api/exec/nightly", "application/json", `{"target":{"pcs":["PC 1"]}}`, 400, "target.pcs[0]"},
		{"wave group not a token", "/api/exec/nightly", "application/json", `{"rollout":{"waves":[{"group":"*","delay":"0s"}]}}`, 400, "rollout.waves[0].group"},
		{"bad deadline", "/api/exec/nightly", "application/json", `{"target":{"all":true},"deadline_at":"tomorrow"}`, 400, "deadline_at"},
		{"stored job invalid", "/api/exec/broken", "application/json", `{"target":{"all":true}}`, 400, "broken"},
		{"body too large", "/api/exec/nightly", "application/json", `{"target":{"all":true},"x":"` + strings.Repeat("x", 2<<20) + `"}`, 413, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.send(http.MethodPost, tt.path, tt.ct, tt.body)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if p := problemOf(t, rec); !strings.Contains(p.Detail, tt.says) {
				t.Errorf("detail %q does not say %q", p.Detail, tt.says)
			}
		})
	}
	if got := cmds.subjects(t, 0); len(got) != 0 {
		t.Errorf("published %v", got)
	}
	if got := e.audits(); len(got) != before {
		t.Errorf("%d audit events after refused requests", len(got)-before)
	}
	if ids, err := e.db.ActiveExecIDs(context.Background(), "nightly"); err != nil || len(ids) != 0 {
		t.Errorf("executions recorded after refused requests: %v %v", ids, err)
	}
}

func TestExecPublishFailureIs502AndTakesTheExecutionBack(t *testing.T) {
	e := newManageEnv(t, nil)
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	if err := e.nats.JS.DeleteStream(t.Context(), kanade.StreamExec); err != nil {
		t.Fatal(err)
	}
	rec := e.send(http.MethodPost, "/api/exec/nightly", "application/json", `{"target":{"pcs":["PC-1"]}}`)
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("exec with no EXEC stream = %d %s, want 502", rec.Code, rec.Body)
	}
	if p := problemOf(t, rec); !strings.Contains(p.Detail, "publish to commands.pc.PC-1") {
		t.Errorf("detail %q", p.Detail)
	}
	if ids, err := e.db.ActiveExecIDs(context.Background(), "nightly"); err != nil || len(ids) != 0 {
		t.Errorf("executions left after a failed exec: %v %v", ids, err)
	}
	for _, l := range e.auditLines() {
		if strings.Contains(l, ".exec.") {
			t.Errorf("audit event for a failed exec: %s", l)
		}
	}
}

func TestExecWithoutNATSIs503(t *testing.T) {
	e := newManageEnv(t, nil)
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	e.nats.Shutdown()
	e.nats.WaitForShutdown()
	// Sent before the client has seen the close: the read it starts with
	// loses its reply, and is not asked again (bus.AnswersACaller). It
	// used to wait out the request's 30 s.
	start := time.Now()
	rec := e.send(http.MethodPost, "/api/exec/nightly", "application/json", `{"target":{"all":true}}`)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("exec with NATS down = %d %s, want 503", rec.Code, rec.Body)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the 503 took %v: the request waited for NATS to come back", took)
	}
}
