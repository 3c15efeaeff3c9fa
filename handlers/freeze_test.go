package handlers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

func TestFreezeSetShowClear(t *testing.T) {
	e := newManageEnv(t, nil)
	if rec := e.must(http.StatusOK, http.MethodGet, "/api/freeze", ""); strings.TrimSpace(rec.Body.String()) != "null" {
		t.Errorf("no freeze = %s, want null", rec.Body)
	}
	body := `{"from":"2026-12-20","until":"2027-01-05","reason":"year-end freeze","unknown":1}`
	rec := e.send(http.MethodPut, "/api/freeze", "application/json", body)
	if rec.Code != http.StatusOK {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	want := `{"from":"2026-12-20","until":"2027-01-05","reason":"year-end freeze","tz":"local"}`
	if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, rec.Body.String())); diff != "" {
		t.Errorf("PUT answer (-want +got):\n%s", diff)
	}
	kv, err := e.nats.JS.KeyValue(t.Context(), kanade.BucketFleetConfig)
	if err != nil {
		t.Fatal(err)
	}
	v, err := kv.Get(t.Context(), kanade.KeyFreeze)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, string(v.Value()))); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
	get := e.must(http.StatusOK, http.MethodGet, "/api/freeze", "")
	if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, get.Body.String())); diff != "" {
		t.Errorf("GET (-want +got):\n%s", diff)
	}
	e.must(http.StatusNoContent, http.MethodDelete, "/api/freeze", "")
	e.must(http.StatusNoContent, http.MethodDelete, "/api/freeze", "") // none set is fine
	if rec := e.must(http.StatusOK, http.MethodGet, "/api/freeze", ""); strings.TrimSpace(rec.Body.String()) != "null" {
		t.Errorf("after thaw = %s, want null", rec.Body)
	}
	wantAudit := []string{
		`audit.operator.freeze_set.freeze {"from":"2026-12-20","reason":"year-end freeze","source":"cli","until":"2027-01-05"}`,
		`audit.operator.freeze_clear.freeze {"sub":"service-token"}`,
		`audit.operator.freeze_clear.freeze {"sub":"service-token"}`,
	}
	got := e.auditLines()
	// sub is in the first too; compare without it for brevity.
	got[0] = strings.Replace(got[0], `,"sub":"service-token"`, "", 1)
	if diff := cmp.Diff(wantAudit, got); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	// An open freeze has null bounds in its audit event.
	e.must(http.StatusOK, http.MethodPut, "/api/freeze", `{}`)
	if got := e.auditLines(); !strings.Contains(got[len(got)-1], `"from":null`) || !strings.Contains(got[len(got)-1], `"until":null`) {
		t.Errorf("audit of {} = %s", got[len(got)-1])
	}
}

func TestFreezeRefusesBadInputAndNeverReportsDoubtAsThawed(t *testing.T) {
	e := newManageEnv(t, nil)
	for _, tt := range []struct {
		name, ct, body string
		status         int
		says           string
	}{
		{"bounds reversed", "application/json", `{"from":"2027-01-05","until":"2026-12-20"}`, 400, "invalid freeze: until"},
		{"bad date", "application/json", `{"from":"next week"}`, 400, "invalid freeze: from"},
		{"bad tz", "application/json", `{"tz":"Mars/Olympus"}`, 400, "tz"},
		{"not JSON", "application/json", `{"from":`, 400, "invalid freeze"},
		{"null", "application/json", `null`, 400, "invalid freeze"},
		{"no content type", "", `{}`, 415, "application/json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.send(http.MethodPut, "/api/freeze", tt.ct, tt.body)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if p := problemOf(t, rec); !strings.Contains(p.Detail, tt.says) {
				t.Errorf("detail %q does not say %q", p.Detail, tt.says)
			}
		})
	}
	if got := e.auditLines(); len(got) != 0 {
		t.Errorf("audit after refused requests: %v", got)
	}
	// Garbage stored behind the API's back: the scheduler treats it as
	// frozen, so the API must not say null.
	e.kvPut(kanade.BucketFleetConfig, kanade.KeyFreeze, `{"from":`)
	if rec := e.do(http.MethodGet, "/api/freeze", ""); rec.Code != http.StatusInternalServerError {
		t.Errorf("GET of an undecodable freeze = %d %s, want 500", rec.Code, rec.Body)
	}
	// No bucket: 503, not null.
	if err := e.nats.JS.DeleteKeyValue(t.Context(), kanade.BucketFleetConfig); err != nil {
		t.Fatal(err)
	}
	if rec := e.do(http.MethodGet, "/api/freeze", ""); rec.Code < 500 {
		t.Errorf("GET without the bucket = %d %s, want a 5xx", rec.Code, rec.Body)
	}
}

// A freeze stops automation, not an operator (control.md §6.3).
func TestFreezeDoesNotGateOperatorActions(t *testing.T) {
	e := newManageEnv(t, nil)
	cmds := e.listen("commands.>")
	kills := e.listen("kill.>")
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "1"))
	e.must(http.StatusOK, http.MethodPut, "/api/freeze", `{"reason":"incident"}`)
	rec := e.send(http.MethodPost, "/api/exec/nightly", "application/json", `{"target":{"pcs":["PC-1"]}}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("exec while frozen = %d %s", rec.Code, rec.Body)
	}
	if got := cmds.subjects(t, 1); len(got) != 1 {
		t.Errorf("commands while frozen: %v", got)
	}
	e.must(http.StatusNoContent, http.MethodPost, "/api/executions/e-1/kill", "")
	if got := kills.subjects(t, 1); len(got) != 1 {
		t.Errorf("kills while frozen: %v", got)
	}
	e.must(http.StatusNoContent, http.MethodPost, "/api/scripts/nightly/revoke", "")
}
