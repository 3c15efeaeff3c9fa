package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
)

// wire records the core NATS messages on one subject pattern, the way an
// agent (kill.>) or an auditor (audit.>) sees them.
type wire struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func (e *manageEnv) listen(subject string) *wire {
	e.t.Helper()
	w := &wire{}
	sub, err := e.nats.NC.Subscribe(subject, func(m *nats.Msg) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.msgs = append(w.msgs, m)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.nats.NC.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

// subjects waits until n messages arrived (or a few seconds passed) and
// returns their subjects, with the payload appended after a space when it
// is not empty.
func (w *wire) subjects(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		got := len(w.msgs)
		w.mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A little longer, so that a message too many is seen too.
	time.Sleep(50 * time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []string{}
	for _, m := range w.msgs {
		s := m.Subject
		if len(m.Data) > 0 {
			s += " " + string(m.Data)
		}
		out = append(out, s)
	}
	return out
}

// execution inserts an executions row of job; done makes it completed (one
// successful result of its one target), else it stays pending.
func (e *manageEnv) execution(execID, jobID string, done bool) {
	e.t.Helper()
	ctx := context.Background()
	one := int64(1)
	err := e.db.Update(ctx, func(tx *storage.Tx) error {
		if done {
			r := storage.Result{RecordedAt: manageNow}
			zero := int64(0)
			r.ResultID, r.RequestID, r.ExecID, r.ManifestID, r.PcID, r.ExitCode = execID+"-r", execID+"-q", execID, jobID, "PC-1", &zero
			r.StartedAt = kanade.Timestamp{Time: manageNow}
			r.FinishedAt = kanade.Timestamp{Time: manageNow}
			if _, err := tx.ApplyResults(ctx, []storage.Result{r}); err != nil {
				return err
			}
		}
		return tx.InsertExecution(ctx, storage.NewExecution{ExecID: execID, JobID: jobID, Version: "1",
			InitiatedBy: "operator", InitiatedAt: manageNow, TargetCount: &one})
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// auditPayloads returns "subject payload" of every audit event, the
// occurred_at left out.
func (e *manageEnv) auditLines() []string {
	out := []string{}
	for _, a := range e.audits() {
		p, _ := a.Event["payload"].(map[string]any)
		out = append(out, a.Subject+" "+string(mustMarshal(e.t, p)))
	}
	return out
}

func TestKillJobSignalsEveryActiveExecution(t *testing.T) {
	e := newManageEnv(t, nil)
	kills := e.listen("kill.>")
	e.execution("e-2", "nightly", false)
	e.execution("e-1", "nightly", false)
	e.execution("e-done", "nightly", true)
	e.execution("e-other", "report", false)

	e.must(http.StatusNoContent, http.MethodPost, "/api/jobs/nightly/kill", "")
	if diff := cmp.Diff([]string{"kill.e-1", "kill.e-2"}, kills.subjects(t, 2)); diff != "" {
		t.Errorf("kill messages (-want +got):\n%s", diff)
	}
	want := []string{`audit.operator.kill.nightly {"exec_ids":["e-1","e-2"],"sub":"service-token"}`}
	if diff := cmp.Diff(want, e.auditLines()); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

func TestKillJobWithNothingRunningIsASilentSuccess(t *testing.T) {
	e := newManageEnv(t, nil)
	kills := e.listen("kill.>")
	e.execution("e-done", "nightly", true)
	e.must(http.StatusNoContent, http.MethodPost, "/api/jobs/nightly/kill", "")
	e.must(http.StatusNoContent, http.MethodPost, "/api/jobs/never-ran/kill", "")
	if got := kills.subjects(t, 0); len(got) != 0 {
		t.Errorf("kill messages %v, want none", got)
	}
	if got := e.auditLines(); len(got) != 0 {
		t.Errorf("audit %v, want none: nothing was done", got)
	}
}

func TestKillExecution(t *testing.T) {
	e := newManageEnv(t, nil)
	kills := e.listen("kill.>")
	e.must(http.StatusNoContent, http.MethodPost, "/api/executions/0b6c-adhoc/kill", "")
	if diff := cmp.Diff([]string{"kill.0b6c-adhoc"}, kills.subjects(t, 1)); diff != "" {
		t.Errorf("kill messages (-want +got):\n%s", diff)
	}
	want := []string{`audit.operator.kill.0b6c-adhoc {"exec_ids":["0b6c-adhoc"],"sub":"service-token"}`}
	if diff := cmp.Diff(want, e.auditLines()); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

func TestKillRefusesIDsThatCannotBeSubjects(t *testing.T) {
	e := newManageEnv(t, nil)
	kills := e.listen("kill.>")
	for _, path := range []string{"/api/executions/a.b/kill", "/api/executions/a*/kill", "/api/jobs/.x/kill", "/api/jobs/a%20b/kill"} {
		rec := e.do(http.MethodPost, path, "")
		if rec.Code != http.StatusBadRequest {
			t.Errorf("POST %s = %d %s, want 400", path, rec.Code, rec.Body)
			continue
		}
		if p := problemOf(t, rec); !strings.Contains(p.Detail, "_id") {
			t.Errorf("POST %s: %q does not name the field", path, p.Detail)
		}
	}
	if got := kills.subjects(t, 0); len(got) != 0 {
		t.Errorf("kill messages %v after refused requests", got)
	}
}

func TestKillWithoutNATSIs503(t *testing.T) {
	e := newManageEnv(t, nil)
	e.execution("e-1", "nightly", false)
	e.nats.Shutdown()
	e.nats.WaitForShutdown()
	for _, path := range []string{"/api/jobs/nightly/kill", "/api/executions/e-1/kill"} {
		if rec := e.do(http.MethodPost, path, ""); rec.Code != http.StatusServiceUnavailable {
			t.Errorf("POST %s with NATS down = %d %s, want 503", path, rec.Code, rec.Body)
		}
	}
}

func TestRevokeAndUnrevoke(t *testing.T) {
	e := newManageEnv(t, nil)
	e.must(http.StatusOK, http.MethodGet, "/api/scripts/status", "")
	if got := e.do(http.MethodGet, "/api/scripts/status", "").Body.String(); strings.TrimSpace(got) != "{}" {
		t.Errorf("status before any revoke = %s, want {}", got)
	}
	e.must(http.StatusNoContent, http.MethodPost, "/api/scripts/cleanup-temp/revoke", "")
	e.must(http.StatusNoContent, http.MethodPost, "/api/scripts/inventory-hw/revoke", "")
	e.must(http.StatusNoContent, http.MethodPost, "/api/scripts/inventory-hw/unrevoke", "")

	// The raw KV bytes, as agents read them.
	kv, err := e.nats.JS.KeyValue(t.Context(), kanade.BucketScriptStatus)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"cleanup-temp": "REVOKED", "inventory-hw": "ACTIVE"} {
		v, err := kv.Get(t.Context(), key)
		if err != nil || string(v.Value()) != want {
			t.Errorf("script_status[%s] = %v %v, want %s", key, v, err, want)
		}
	}
	rec := e.do(http.MethodGet, "/api/scripts/status", "")
	if diff := cmp.Diff(map[string]any{"cleanup-temp": "REVOKED", "inventory-hw": "ACTIVE"}, jsonOf(t, rec.Body.String())); diff != "" {
		t.Errorf("GET /api/scripts/status (-want +got):\n%s", diff)
	}
	want := []string{
		`audit.operator.script_revoke.cleanup-temp {"sub":"service-token"}`,
		`audit.operator.script_revoke.inventory-hw {"sub":"service-token"}`,
		`audit.operator.script_unrevoke.inventory-hw {"sub":"service-token"}`,
	}
	if diff := cmp.Diff(want, e.auditLines()); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

func TestRevokeErrors(t *testing.T) {
	e := newManageEnv(t, nil)
	if rec := e.do(http.MethodPost, "/api/scripts/.bad/revoke", ""); rec.Code != http.StatusBadRequest {
		t.Errorf("revoke of an invalid key = %d %s, want 400", rec.Code, rec.Body)
	}
	if err := e.nats.JS.DeleteKeyValue(t.Context(), kanade.BucketScriptStatus); err != nil {
		t.Fatal(err)
	}
	if rec := e.do(http.MethodPost, "/api/scripts/x/revoke", ""); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("revoke without the bucket = %d %s, want 503", rec.Code, rec.Body)
	}
	rec := e.do(http.MethodGet, "/api/scripts/status", "")
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "{}" {
		t.Errorf("status without the bucket = %d %s, want 200 {}", rec.Code, rec.Body)
	}
	if got := e.auditLines(); len(got) != 0 {
		t.Errorf("audit %v after failed requests", got)
	}
}

func TestRequestBodiesAreCapped(t *testing.T) {
	e := newManageEnv(t, nil)
	big := `{"id":"nightly","version":"1","description":"` + strings.Repeat("x", 2<<20) + `","execute":{"shell":"sh","script":"true","timeout":"1m"}}`
	if rec := e.do(http.MethodPut, "/api/jobs/nightly", big); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("PUT of a 2 MiB body = %d, want 413", rec.Code)
	}
	if got := e.auditLines(); len(got) != 0 {
		t.Errorf("audit %v after a refused body", got)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
