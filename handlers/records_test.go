package handlers_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
)

const jobYAML = `# Hardware inventory, every 6 hours.
id: inventory-hw
version: 1.10
description: Collect hardware facts
execute:
  shell: powershell
  script: |
    Get-CimInstance Win32_ComputerSystem |
      ConvertTo-Json   # one object
  timeout: 5m
inventory:
  display: []
`

const scheduleYAML = `# Every six hours per PC.
id: inv-hw
when: {per_pc: {every: 6h}}
job_id: inventory-hw
target:
  groups: [canary]
enabled: true   # keep it on
`

// kvValue reads a raw KV value ("" and false when absent).
func (e *manageEnv) kvValue(bucket, key string) (string, bool) {
	e.t.Helper()
	kv, err := e.nats.JS.KeyValue(context.Background(), bucket)
	if err != nil {
		e.t.Fatal(err)
	}
	v, err := kv.Get(context.Background(), key)
	if err != nil {
		return "", false
	}
	return string(v.Value()), true
}

func TestPostJobAndScheduleAsTheCLISendsThem(t *testing.T) {
	e := newManageEnv(t, nil)
	rec := e.send(http.MethodPost, "/api/jobs", "application/yaml", jobYAML)
	if rec.Code != http.StatusOK {
		t.Fatalf("POST /api/jobs = %d %s", rec.Code, rec.Body)
	}
	if diff := cmp.Diff(jsonOf(t, `{"id":"inventory-hw","version":"1.10","description":"Collect hardware facts","inventory":true}`), jsonOf(t, rec.Body.String())); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	stored, _ := e.kvValue(kanade.BucketJobs, "inventory-hw")
	m, err := kanade.ParseManifest("inventory-hw", []byte(stored))
	if err != nil || m.Version != "1.10" || !strings.Contains(m.Execute.Script, "ConvertTo-Json   # one object") {
		t.Errorf("stored job %s: %v", stored, err)
	}
	// The mirror is the operator's text, comments and block scalar kept.
	if mirror, _ := e.kvValue(kanade.BucketJobsYAML, "inventory-hw"); mirror != jobYAML {
		t.Errorf("jobs_yaml = %q, want the text as sent", mirror)
	}
	y := e.must(http.StatusOK, http.MethodGet, "/api/jobs/inventory-hw/yaml", "")
	if y.Body.String() != jobYAML || y.Header().Get("Content-Type") != "application/yaml" {
		t.Errorf("GET yaml = %q (%s)", y.Body, y.Header().Get("Content-Type"))
	}

	rec = e.send(http.MethodPost, "/api/schedules", "application/yaml", scheduleYAML)
	if rec.Code != http.StatusOK {
		t.Fatalf("POST /api/schedules = %d %s", rec.Code, rec.Body)
	}
	if diff := cmp.Diff(jsonOf(t, `{"id":"inv-hw","when":"per_pc every 6h","enabled":true,"job_id":"inventory-hw"}`), jsonOf(t, rec.Body.String())); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	stored, _ = e.kvValue(kanade.BucketSchedules, "inv-hw")
	if s, err := kanade.ParseSchedule("inv-hw", []byte(stored)); err != nil || s.Kind() != kanade.KindPerPC {
		t.Errorf("stored schedule %s: %v", stored, err)
	}
	if y := e.must(http.StatusOK, http.MethodGet, "/api/schedules/inv-hw/yaml", ""); y.Body.String() != scheduleYAML {
		t.Errorf("GET schedule yaml = %q", y.Body)
	}
	// A JSON body gets a rendered mirror.
	e.send(http.MethodPost, "/api/jobs", "application/json", jobJSON("nightly", "2"))
	y = e.must(http.StatusOK, http.MethodGet, "/api/jobs/nightly/yaml", "")
	if !strings.Contains(y.Body.String(), "id: nightly") || !strings.Contains(y.Body.String(), "script: echo hi") {
		t.Errorf("rendered yaml = %q", y.Body)
	}
	// No mirror at all (written before mirrors, or by hand): rendered.
	e.kvPut(kanade.BucketJobs, "legacy", jobJSON("legacy", "1"))
	if y := e.must(http.StatusOK, http.MethodGet, "/api/jobs/legacy/yaml", ""); !strings.Contains(y.Body.String(), "id: legacy") {
		t.Errorf("yaml of a job without mirror = %q", y.Body)
	}
	e.must(http.StatusNotFound, http.MethodGet, "/api/jobs/ghost/yaml", "")
	e.must(http.StatusNotFound, http.MethodGet, "/api/schedules/ghost/yaml", "")

	audits := e.auditLines()
	for i, want := range []string{`audit.operator.job_upsert.inventory-hw {"inventory":true,"revision":1,"source":"cli","sub":"service-token","version":"1.10"}`,
		`audit.operator.schedule_upsert.inv-hw {"enabled":true,"job_id":"inventory-hw","revision":1,"source":"cli","sub":"service-token","when":"per_pc every 6h"}`} {
		if audits[i] != want {
			t.Errorf("audit %d = %s, want %s", i, audits[i], want)
		}
	}
}

func TestPostRefusesUnknownKeysNamingEveryOne(t *testing.T) {
	e := newManageEnv(t, nil)
	for _, tt := range []struct{ name, path, ct, body, says string }{
		{"job typo", "/api/jobs", "application/yaml", "id: x\nversion: '1'\nexecute:\n  shell: sh\n  scirpt: true\n  timeout: 1m\nowner: me\n", "unknown field(s): execute.scirpt, owner"},
		{"job two sources", "/api/jobs", "application/json", `{"id":"x","version":"1","execute":{"shell":"sh","script":"a","script_object":"x/1","timeout":"1m"}}`, "execute"},
		{"job not YAML", "/api/jobs", "text/yaml", "id: [", "parse YAML body"},
		{"job id not a key", "/api/jobs", "application/json", jobJSON("a b", "1"), "id"},
		{"schedule typo", "/api/schedules", "application/x-yaml", "id: s\nwhen: {per_pc: once}\njob_id: x\ntarget: {all: true}\nrollout: {waves: [{group: a, dlay: 0s}]}\n", "rollout.waves[0].dlay"},
		{"schedule unknown job", "/api/schedules", "application/json", `{"id":"s","when":{"per_pc":"once"},"job_id":"ghost","target":{"all":true}}`, "unknown job_id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.send(http.MethodPost, tt.path, tt.ct, tt.body)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", rec.Code, rec.Body)
			}
			if p := problemOf(t, rec); !strings.Contains(p.Detail, tt.says) {
				t.Errorf("detail %q does not say %q", p.Detail, tt.says)
			}
		})
	}
	if got := e.auditLines(); len(got) != 0 {
		t.Errorf("audit after refused bodies: %v", got)
	}
}

func TestDeleteJobRevokesFirstAndDropsTheMirror(t *testing.T) {
	e := newManageEnv(t, nil)
	e.send(http.MethodPost, "/api/jobs", "application/yaml", jobYAML)
	e.send(http.MethodPost, "/api/schedules", "application/yaml", scheduleYAML)
	rec := e.do(http.MethodDelete, "/api/jobs/inventory-hw", "")
	if rec.Code != http.StatusConflict || !strings.Contains(problemOf(t, rec).Detail, "inv-hw") {
		t.Errorf("delete of a scheduled job = %d %s, want 409 naming inv-hw", rec.Code, rec.Body)
	}
	if _, ok := e.kvValue(kanade.BucketScriptStatus, "inventory-hw"); ok {
		t.Errorf("a refused delete revoked the job")
	}
	e.must(http.StatusNoContent, http.MethodDelete, "/api/schedules/inv-hw", "")
	if _, ok := e.kvValue(kanade.BucketSchedulesYAML, "inv-hw"); ok {
		t.Errorf("the schedule's mirror survived its delete")
	}
	e.must(http.StatusNoContent, http.MethodDelete, "/api/jobs/inventory-hw", "")
	if v, _ := e.kvValue(kanade.BucketScriptStatus, "inventory-hw"); v != "REVOKED" {
		t.Errorf("script_status after delete = %q, want REVOKED", v)
	}
	if _, ok := e.kvValue(kanade.BucketJobsYAML, "inventory-hw"); ok {
		t.Errorf("the job's mirror survived its delete")
	}
	last := e.auditLines()
	if got := last[len(last)-1]; !strings.HasPrefix(got, `audit.operator.job_delete.inventory-hw {"cascade_revoke":true`) {
		t.Errorf("audit %s", got)
	}
	// Without script_status the delete does nothing and says why.
	e.send(http.MethodPost, "/api/jobs", "application/json", jobJSON("other", "1"))
	if err := e.nats.JS.DeleteKeyValue(t.Context(), kanade.BucketScriptStatus); err != nil {
		t.Fatal(err)
	}
	if rec := e.do(http.MethodDelete, "/api/jobs/other", ""); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("delete without script_status = %d %s, want 503", rec.Code, rec.Body)
	}
	if _, ok := e.kvValue(kanade.BucketJobs, "other"); !ok {
		t.Errorf("the job was deleted without its revoke")
	}
}

func TestDisableAndEnableSchedule(t *testing.T) {
	e := newManageEnv(t, nil)
	kills := e.listen("kill.>")
	e.send(http.MethodPost, "/api/jobs", "application/yaml", jobYAML)
	e.send(http.MethodPost, "/api/schedules", "application/yaml", scheduleYAML)
	// Two runs started and not reported, one finished.
	ctx := context.Background()
	err := e.db.Update(ctx, func(tx *storage.Tx) error {
		var batch []storage.Started
		for i, x := range []string{"e-1", "e-2"} {
			var s storage.Started
			s.ResultID, s.RequestID, s.ExecID, s.PcID, s.ManifestID = "r"+x, "q"+x, x, []string{"PC-1", "PC-2"}[i], "inventory-hw"
			s.StartedAt, s.RecordedAt = kanade.Timestamp{Time: manageNow}, manageNow
			batch = append(batch, s)
		}
		_, err := tx.ApplyStarted(ctx, batch)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.execution("e-3", "inventory-hw", true)

	e.must(http.StatusNoContent, http.MethodPost, "/api/schedules/inv-hw/disable?cascade=true&cascade_kill=true", "")
	stored, _ := e.kvValue(kanade.BucketSchedules, "inv-hw")
	if s, err := kanade.ParseSchedule("inv-hw", []byte(stored)); err != nil || s.Enabled {
		t.Errorf("stored after disable: %s %v", stored, err)
	}
	mirror, _ := e.kvValue(kanade.BucketSchedulesYAML, "inv-hw")
	if want := strings.Replace(scheduleYAML, "enabled: true   # keep it on", "enabled: false", 1); mirror != want {
		t.Errorf("mirror after disable = %q, want %q", mirror, want)
	}
	if v, _ := e.kvValue(kanade.BucketScriptStatus, "inventory-hw"); v != "REVOKED" {
		t.Errorf("cascade did not revoke: %q", v)
	}
	if diff := cmp.Diff([]string{"kill.e-1", "kill.e-2"}, kills.subjects(t, 2)); diff != "" {
		t.Errorf("kills (-want +got):\n%s", diff)
	}
	a := e.auditLines()
	if got := a[len(a)-1]; got != `audit.operator.schedule_disable.inv-hw {"cascade":true,"cascade_kill":true,"job_id":"inventory-hw","killed_execs":2,"sub":"service-token"}` {
		t.Errorf("audit %s", got)
	}

	// Enable: on again, the revoke stays; enabling twice writes nothing.
	e.must(http.StatusNoContent, http.MethodPost, "/api/schedules/inv-hw/enable", "")
	e.must(http.StatusNoContent, http.MethodPost, "/api/schedules/inv-hw/enable", "")
	stored, _ = e.kvValue(kanade.BucketSchedules, "inv-hw")
	if s, err := kanade.ParseSchedule("inv-hw", []byte(stored)); err != nil || !s.Enabled {
		t.Errorf("stored after enable: %s %v", stored, err)
	}
	if mirror, _ := e.kvValue(kanade.BucketSchedulesYAML, "inv-hw"); !strings.Contains(mirror, "\nenabled: true\n") || !strings.HasPrefix(mirror, "# Every six hours per PC.") {
		t.Errorf("mirror after enable = %q", mirror)
	}
	if v, _ := e.kvValue(kanade.BucketScriptStatus, "inventory-hw"); v != "REVOKED" {
		t.Errorf("enable unrevoked the job: %q", v)
	}
	b := e.auditLines()
	if n := len(b) - len(a); n != 1 || !strings.HasPrefix(b[len(b)-1], `audit.operator.schedule_enable.inv-hw {"job_id":"inventory-hw"`) {
		t.Errorf("audit after two enables: %v", b[len(a):])
	}

	// A plain disable, as older CLIs send it, then the errors.
	e.must(http.StatusNoContent, http.MethodPost, "/api/schedules/inv-hw/disable?cascade=false", "")
	if rec := e.do(http.MethodPost, "/api/schedules/inv-hw/disable?cascade=yes", ""); rec.Code != http.StatusBadRequest ||
		!strings.Contains(problemOf(t, rec).Detail, "cascade") {
		t.Errorf("cascade=yes = %d %s, want 400", rec.Code, rec.Body)
	}
	e.must(http.StatusNotFound, http.MethodPost, "/api/schedules/ghost/disable", "")
	e.must(http.StatusNotFound, http.MethodPost, "/api/schedules/ghost/enable", "")
	e.kvPut(kanade.BucketSchedules, "broken", `{"id":"broken","when":"x"}`)
	e.must(http.StatusInternalServerError, http.MethodPost, "/api/schedules/broken/disable", "")
}

func TestSchemasAreServed(t *testing.T) {
	e := newManageEnv(t, nil)
	for _, name := range []string{"manifest", "schedule"} {
		rec := e.must(http.StatusOK, http.MethodGet, "/api/schemas/"+name+".json", "")
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", name, ct)
		}
		s, ok := jsonOf(t, rec.Body.String()).(map[string]any)
		if !ok || s["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s schema: %.200s", name, rec.Body)
		}
	}
	// huma's own per-type schemas moved out of the way.
	e.must(http.StatusOK, http.MethodGet, "/api/openapi/schemas/ExecBody.json", "")
}

func TestSchedulePreviewAndStatus(t *testing.T) {
	e := newManageEnv(t, nil) // now: Monday 2026-06-22 08:30 UTC
	e.send(http.MethodPost, "/api/jobs", "application/json", jobJSON("nightly", "1"))
	e.send(http.MethodPost, "/api/schedules", "application/json", `{"id":"weekday","when":{"calendar":{"at":"09:00","days":["mon-fri"]}},"job_id":"nightly","target":{"all":true},"tz":"utc"}`)
	e.send(http.MethodPost, "/api/schedules", "application/yaml", "id: inv\nwhen: {per_pc: {every: 6h}}\njob_id: nightly\ntarget: {all: true}\n")

	rec := e.must(http.StatusOK, http.MethodGet, "/api/schedules/weekday/preview?count=6", "")
	want := `{"id":"weekday","when":"at 09:00 [mon-fri]","tz":"utc","enabled":true,"fires":["2026-06-22T09:00:00Z","2026-06-23T09:00:00Z",
		"2026-06-24T09:00:00Z","2026-06-25T09:00:00Z","2026-06-26T09:00:00Z","2026-06-29T09:00:00Z"]}`
	if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, rec.Body.String())); diff != "" {
		t.Errorf("preview (-want +got):\n%s", diff)
	}
	rec = e.must(http.StatusOK, http.MethodGet, "/api/schedules/weekday/preview?count=500", "")
	if n := len(jsonOf(t, rec.Body.String()).(map[string]any)["fires"].([]any)); n != 50 {
		t.Errorf("count=500 listed %d fires, want the cap 50", n)
	}
	rec = e.must(http.StatusOK, http.MethodGet, "/api/schedules/inv/preview", "")
	p := jsonOf(t, rec.Body.String()).(map[string]any)
	if len(p["fires"].([]any)) != 0 || !strings.Contains(p["note"].(string), "within the last 6h") {
		t.Errorf("per_pc preview = %s", rec.Body)
	}
	e.must(http.StatusNotFound, http.MethodGet, "/api/schedules/ghost/preview", "")

	// Status: no run yet, then two runs of the job (one failed) and an old one.
	rec = e.must(http.StatusOK, http.MethodGet, "/api/schedules/weekday/status", "")
	want = `{"id":"weekday","when":"at 09:00 [mon-fri]","tz":"utc","enabled":true,"next_run":"2026-06-22T09:00:00Z","last_run":null,"recent":{"window_hours":24,"ok":0,"fail":0}}`
	if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, rec.Body.String())); diff != "" {
		t.Errorf("status before runs (-want +got):\n%s", diff)
	}
	ctx := context.Background()
	run := func(id, pc string, started time.Time, exit int64) storage.Result {
		r := storage.Result{RecordedAt: started}
		r.ResultID, r.RequestID, r.PcID, r.ManifestID, r.ExitCode = id, id, pc, "nightly", &exit
		r.StartedAt, r.FinishedAt = kanade.Timestamp{Time: started}, kanade.Timestamp{Time: started.Add(time.Minute)}
		return r
	}
	if err := e.db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.ApplyResults(ctx, []storage.Result{run("r1", "PC-1", manageNow.Add(-2*time.Hour), 0),
			run("r2", "PC-2", manageNow.Add(-time.Hour), 3), run("r0", "PC-3", manageNow.Add(-48*time.Hour), 0)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rec = e.must(http.StatusOK, http.MethodGet, "/api/schedules/inv/status", "")
	want = `{"id":"inv","when":"per_pc every 6h","tz":"local","enabled":true,"next_run":null,
		"last_run":{"pc_id":"PC-2","exit_code":3,"started_at":"2026-06-22T07:30:00Z","finished_at":"2026-06-22T07:31:00Z"},
		"recent":{"window_hours":24,"ok":1,"fail":1}}`
	if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, rec.Body.String())); diff != "" {
		t.Errorf("status after runs (-want +got):\n%s", diff)
	}
}
