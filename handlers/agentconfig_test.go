package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

// scopeFamily is one of the three kinds of scope, as the routes and the KV
// name it.
type scopeFamily struct {
	name, path, key, target string
}

var scopeFamilies = []scopeFamily{
	{"global", "/api/config", kanade.ScopeKeyGlobal, "audit.operator.%s.global"},
	{"group", "/api/groups/canary/config", kanade.GroupScopeKey("canary"), "audit.operator.%s"},
	{"pc", "/api/pcs/PC-1/config", kanade.PCScopeKey("PC-1"), "audit.operator.%s"},
}

func TestConfigScopesReadReplaceDelete(t *testing.T) {
	for _, f := range scopeFamilies {
		t.Run(f.name, func(t *testing.T) {
			e := newManageEnv(t, nil)
			kv := e.kvOther(kanade.BucketAgentConfig)
			if rec := e.must(http.StatusOK, http.MethodGet, f.path, ""); strings.TrimSpace(rec.Body.String()) != "{}" {
				t.Errorf("absent = %s, want {}", rec.Body)
			}
			body := `{"heartbeat_interval":"15s","target_version":"0.43.56","process_perf_enabled":false,` +
				`"process_perf_top_n":0,"inventory_interval":"1h","unknown":{"x":1},"max_local_concurrent":null}`
			want := `{"target_version":"0.43.56","heartbeat_interval":"15s","process_perf_enabled":false,"process_perf_top_n":0}`
			rec := e.send(http.MethodPut, f.path, "application/json", body)
			if rec.Code != http.StatusOK {
				t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
			}
			if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, rec.Body.String())); diff != "" {
				t.Errorf("PUT answer (-want +got):\n%s", diff)
			}
			if v, _ := stored(t, kv, f.key); v != want {
				t.Errorf("stored %s, want only the fields set: %s", v, want)
			}
			if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, e.must(http.StatusOK, http.MethodGet, f.path, "").Body.String())); diff != "" {
				t.Errorf("GET (-want +got):\n%s", diff)
			}
			// {} is stored as an empty scope, which exists.
			e.must(http.StatusOK, http.MethodPut, f.path, `{}`)
			if v, rev := stored(t, kv, f.key); v != "{}" || rev == 0 {
				t.Errorf("stored %q (rev %d), want {}", v, rev)
			}
			e.must(http.StatusNoContent, http.MethodDelete, f.path, "")
			if v, _ := stored(t, kv, f.key); v != "" {
				t.Errorf("after DELETE: %q", v)
			}
			e.must(http.StatusNoContent, http.MethodDelete, f.path, "") // absent: 204 too
			if rec := e.must(http.StatusOK, http.MethodGet, f.path, ""); strings.TrimSpace(rec.Body.String()) != "{}" {
				t.Errorf("after DELETE = %s, want {}", rec.Body)
			}
			// (auditLines sorts the keys; only the first request sent a source.)
			const sorted = `{"heartbeat_interval":"15s","process_perf_enabled":false,"process_perf_top_n":0,"target_version":"0.43.56"}`
			wantAudit := []string{
				fmt.Sprintf(f.target, "config_scope_put") + ` {"scope":` + sorted + `,"source":"cli","sub":"service-token"}`,
				fmt.Sprintf(f.target, "config_scope_put") + ` {"scope":{},"sub":"service-token"}`,
				fmt.Sprintf(f.target, "config_scope_clear") + ` {"sub":"service-token"}`,
				fmt.Sprintf(f.target, "config_scope_clear") + ` {"sub":"service-token"}`,
			}
			if diff := cmp.Diff(wantAudit, e.auditLines()); diff != "" {
				t.Errorf("audit (-want +got):\n%s", diff)
			}
			for _, a := range e.audits() {
				if a.Event["target"] != f.key {
					t.Errorf("audit target %v, want the key %s", a.Event["target"], f.key)
				}
			}
		})
	}
}

func TestConfigScopeStatusCodes(t *testing.T) {
	e := newManageEnv(t, nil)
	const js = "application/json"
	var cases []statusCase
	for _, f := range scopeFamilies {
		p := f.path
		cases = append(cases,
			statusCase{f.name + " bad duration", "PUT", p, js, `{"heartbeat_interval":"30 minutes-ish"}`, 400, "heartbeat_interval", "body.heartbeat_interval"},
			statusCase{f.name + " zero interval", "PUT", p, js, `{"host_perf_interval":"0s"}`, 400, "host_perf_interval", "body.host_perf_interval"},
			statusCase{f.name + " bad timestamp", "PUT", p, js, `{"process_perf_expires_at":"tomorrow"}`, 400, "process_perf_expires_at", "body.process_perf_expires_at"},
			statusCase{f.name + " negative top n", "PUT", p, js, `{"process_perf_top_n":-1}`, 400, "process_perf_top_n", "body.process_perf_top_n"},
			statusCase{f.name + " zero concurrency", "PUT", p, js, `{"max_local_concurrent":0}`, 400, "max_local_concurrent", "body.max_local_concurrent"},
			statusCase{f.name + " blank version", "PUT", p, js, `{"target_version":" "}`, 400, "target_version", "body.target_version"},
			statusCase{f.name + " number for a duration", "PUT", p, js, `{"heartbeat_interval":30}`, 422, "heartbeat_interval", "body.heartbeat_interval"},
			statusCase{f.name + " string for a bool", "PUT", p, js, `{"process_perf_enabled":"yes"}`, 422, "process_perf_enabled", "body.process_perf_enabled"},
			statusCase{f.name + " array body", "PUT", p, js, `[]`, 422, "must be a JSON object", "body"},
			statusCase{f.name + " malformed", "PUT", p, js, `{"heartbeat_interval":`, 400, "not JSON", "body"},
			statusCase{f.name + " text/plain", "PUT", p, "text/plain", `{}`, 415, "application/json", ""},
		)
	}
	cases = append(cases,
		statusCase{"group name in Japanese", "GET", "/api/groups/%E6%9D%B1%E4%BA%AC/config", "", "", 400, "name", "path.name"},
		statusCase{"group name with a dot", "PUT", "/api/groups/a.b/config", js, `{}`, 400, "name", "path.name"},
		statusCase{"group name too long", "DELETE", "/api/groups/" + strings.Repeat("g", 129) + "/config", "", "", 400, "name", "path.name"},
		statusCase{"bad pc_id", "GET", "/api/pcs/PC.1/config", "", "", 400, "pc_id", "path.pc_id"},
		statusCase{"bad pc_id on PUT", "PUT", "/api/pcs/PC%2A/config", js, `{}`, 400, "pc_id", "path.pc_id"},
		statusCase{"bad pc_id on DELETE", "DELETE", "/api/pcs/PC.1/config", "", "", 400, "pc_id", "path.pc_id"},
	)
	e.checkStatuses(t, cases)
	if got := e.auditLines(); len(got) != 0 {
		t.Errorf("audit after refused requests: %v", got)
	}

	for _, f := range scopeFamilies {
		e.kvPut(kanade.BucketAgentConfig, f.key, `{"heartbeat_interval":30}`)
	}
	cases = nil
	for _, f := range scopeFamilies {
		cases = append(cases,
			statusCase{f.name + " GET undecodable", "GET", f.path, "", "", 500, "does not decode", ""},
			statusCase{f.name + " PUT over undecodable", "PUT", f.path, js, `{}`, 200, "", ""})
	}
	e.checkStatuses(t, cases)

	if err := e.nats.JS.DeleteKeyValue(t.Context(), kanade.BucketAgentConfig); err != nil {
		t.Fatal(err)
	}
	cases = nil
	for _, f := range scopeFamilies {
		cases = append(cases,
			statusCase{f.name + " GET no bucket", "GET", f.path, "", "", 503, "agent_config", ""},
			statusCase{f.name + " PUT no bucket", "PUT", f.path, js, `{}`, 503, "agent_config", ""},
			statusCase{f.name + " DELETE no bucket", "DELETE", f.path, "", "", 503, "agent_config", ""},
			statusCase{f.name + " set field no bucket", "PUT", f.path + "/fields/heartbeat_interval", js, `{"value":"15s"}`, 503, "agent_config", ""},
			statusCase{f.name + " unset field no bucket", "DELETE", f.path + "/fields/heartbeat_interval", "", "", 503, "agent_config", ""})
	}
	cases = append(cases,
		statusCase{"effective no bucket", "GET", "/api/agents/PC-1/effective_config", "", "", 503, "agent_config", ""},
		statusCase{"pc inherited no bucket", "GET", "/api/pcs/PC-1/config/inherited", "", "", 503, "agent_config", ""},
		statusCase{"group inherited no bucket", "GET", "/api/groups/canary/config/inherited", "", "", 503, "agent_config", ""},
		statusCase{"defaults need no bucket", "GET", "/api/config/defaults", "", "", 200, "", ""},
	)
	e.checkStatuses(t, cases)
}

// fieldUpdate decodes {"scope": …, "changed": …}, exactly those keys.
func fieldUpdate(t *testing.T, body []byte) (scope string, changed bool) {
	t.Helper()
	var b map[string]json.RawMessage
	if err := json.Unmarshal(body, &b); err != nil || len(b) != 2 || b["scope"] == nil || b["changed"] == nil {
		t.Fatalf("field update %s: %v", body, err)
	}
	if err := json.Unmarshal(b["changed"], &changed); err != nil {
		t.Fatal(err)
	}
	return string(b["scope"]), changed
}

func TestConfigFieldsSetAndClearByCompareAndSwap(t *testing.T) {
	for _, f := range scopeFamilies {
		t.Run(f.name, func(t *testing.T) {
			e := newManageEnv(t, nil)
			kv := e.kvOther(kanade.BucketAgentConfig)
			field := f.path + "/fields/"
			// Clearing a field of no scope writes nothing, creates no key.
			scope, changed := fieldUpdate(t, e.must(http.StatusOK, http.MethodDelete, field+"heartbeat_interval", "").Body.Bytes())
			if scope != "{}" || changed {
				t.Errorf("clear on nothing = %s %v", scope, changed)
			}
			if v, rev := stored(t, kv, f.key); rev != 0 {
				t.Errorf("clear on nothing stored %q", v)
			}
			scope, changed = fieldUpdate(t, e.must(http.StatusOK, http.MethodPut, field+"heartbeat_interval", `{"value":"15s"}`).Body.Bytes())
			if scope != `{"heartbeat_interval":"15s"}` || !changed {
				t.Errorf("set = %s %v", scope, changed)
			}
			v, rev := stored(t, kv, f.key)
			if v != `{"heartbeat_interval":"15s"}` {
				t.Errorf("stored %s", v)
			}
			_, changed = fieldUpdate(t, e.must(http.StatusOK, http.MethodPut, field+"heartbeat_interval", `{"value":"15s"}`).Body.Bytes())
			if _, again := stored(t, kv, f.key); changed || again != rev {
				t.Errorf("setting the same value: changed %v, revision %d → %d", changed, rev, again)
			}
			// The text forms newer clients send, and another field kept.
			scope, _ = fieldUpdate(t, e.must(http.StatusOK, http.MethodPut, field+"process_perf_enabled", `{"value":"true"}`).Body.Bytes())
			if scope != `{"heartbeat_interval":"15s","process_perf_enabled":true}` {
				t.Errorf("set a bool by its text = %s", scope)
			}
			e.must(http.StatusOK, http.MethodPut, field+"process_perf_top_n", `{"value":5}`)
			// A field stored behind the API's back with a bad value does
			// not block an edit of another field.
			v, _ = stored(t, kv, f.key)
			e.kvPut(kanade.BucketAgentConfig, f.key, strings.Replace(v, `"15s"`, `"bogus"`, 1))
			scope, changed = fieldUpdate(t, e.must(http.StatusOK, http.MethodDelete, field+"process_perf_enabled", "").Body.Bytes())
			if scope != `{"heartbeat_interval":"bogus","process_perf_top_n":5}` || !changed {
				t.Errorf("clear beside a bad stored value = %s %v", scope, changed)
			}
			if v, _ := stored(t, kv, f.key); v != scope {
				t.Errorf("stored %s, answered %s", v, scope)
			}
			got := e.auditLines()
			want := []string{
				`config_field_unset {"changed":false,"field":"heartbeat_interval","sub":"service-token"}`,
				`config_field_set {"changed":true,"field":"heartbeat_interval","sub":"service-token","value":"15s"}`,
				`config_field_set {"changed":false,"field":"heartbeat_interval","sub":"service-token","value":"15s"}`,
				`config_field_set {"changed":true,"field":"process_perf_enabled","sub":"service-token","value":"true"}`,
				`config_field_set {"changed":true,"field":"process_perf_top_n","sub":"service-token","value":5}`,
				`config_field_unset {"changed":true,"field":"process_perf_enabled","sub":"service-token"}`,
			}
			for i := range want {
				want[i] = fmt.Sprintf(f.target, strings.Fields(want[i])[0]) + " " + strings.SplitN(want[i], " ", 2)[1]
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("audit (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigFieldStatusCodes(t *testing.T) {
	e := newManageEnv(t, nil)
	const js = "application/json"
	var cases []statusCase
	for _, f := range scopeFamilies {
		p := f.path + "/fields/"
		cases = append(cases,
			statusCase{f.name + " unknown field", "PUT", p + "inventory_interval", js, `{"value":"1h"}`, 400, "must be one of", "path.field"},
			statusCase{f.name + " unset unknown field", "DELETE", p + "nope", "", "", 400, "must be one of", "path.field"},
			statusCase{f.name + " bad duration", "PUT", p + "target_version_jitter", js, `{"value":"30minutes-ish"}`, 400, "target_version_jitter", "body.value"},
			statusCase{f.name + " bad bool text", "PUT", p + "process_perf_enabled", js, `{"value":"yes"}`, 400, "process_perf_enabled", "body.value"},
			statusCase{f.name + " zero concurrency", "PUT", p + "max_local_concurrent", js, `{"value":"0"}`, 400, "max_local_concurrent", "body.value"},
			statusCase{f.name + " number for a duration", "PUT", p + "heartbeat_interval", js, `{"value":15}`, 400, "heartbeat_interval", "body.value"},
			statusCase{f.name + " no value", "PUT", p + "heartbeat_interval", js, `{}`, 422, "value is required", "body.value"},
			statusCase{f.name + " null value", "PUT", p + "heartbeat_interval", js, `{"value":null}`, 422, "value is required", "body.value"},
			statusCase{f.name + " array body", "PUT", p + "heartbeat_interval", js, `["15s"]`, 422, "must be a JSON object", "body"},
			statusCase{f.name + " malformed", "PUT", p + "heartbeat_interval", js, `{"value":`, 400, "not JSON", "body"},
			statusCase{f.name + " text/plain", "PUT", p + "heartbeat_interval", "text/plain", `{"value":"15s"}`, 415, "application/json", ""},
		)
	}
	cases = append(cases,
		statusCase{"bad group", "PUT", "/api/groups/a.b/config/fields/heartbeat_interval", js, `{"value":"15s"}`, 400, "name", "path.name"},
		statusCase{"bad pc", "DELETE", "/api/pcs/PC.1/config/fields/heartbeat_interval", "", "", 400, "pc_id", "path.pc_id"},
	)
	e.checkStatuses(t, cases)
	if got := e.auditLines(); len(got) != 0 {
		t.Errorf("audit after refused requests: %v", got)
	}
	for _, f := range scopeFamilies {
		e.kvPut(kanade.BucketAgentConfig, f.key, `[1,2]`)
	}
	cases = nil
	for _, f := range scopeFamilies {
		p := f.path + "/fields/heartbeat_interval"
		cases = append(cases,
			statusCase{f.name + " set on undecodable", "PUT", p, js, `{"value":"15s"}`, 500, "does not decode", ""},
			statusCase{f.name + " unset on undecodable", "DELETE", p, "", "", 500, "does not decode", ""})
	}
	e.checkStatuses(t, cases)
}

// Concurrent writers of different fields of one scope (an operator and a
// rollout) never lose each other's field.
func TestConfigFieldEditsDoNotLoseConcurrentFields(t *testing.T) {
	e := newManageEnv(t, nil)
	fields := map[string]string{
		"heartbeat_interval": `"15s"`, "host_perf_interval": `"2m"`, "target_version_jitter": `"5m"`,
		"target_version": `"1.2.3"`, "process_perf_enabled": `true`, "process_perf_top_n": `7`,
		"max_local_concurrent": `3`, "client_display_name": `"端末"`, "process_perf_expires_at": `"2026-12-24T18:00:00Z"`,
	}
	var wg sync.WaitGroup
	for round := range 3 {
		for field, v := range fields {
			wg.Go(func() {
				path := "/api/config/fields/" + field
				steps := []struct{ method, body string }{{http.MethodPut, `{"value":` + v + `}`}}
				if round == 1 { // clear and set again, racing the others
					steps = append(steps, struct{ method, body string }{http.MethodDelete, ""}, steps[0])
				}
				for _, s := range steps {
					ct := "application/json"
					if s.body == "" {
						ct = ""
					}
					if rec := e.send(s.method, path, ct, s.body); rec.Code != http.StatusOK {
						t.Errorf("%s %s: %d %s", s.method, path, rec.Code, rec.Body)
					}
				}
			})
		}
	}
	wg.Wait()
	got, _ := stored(t, e.kvOther(kanade.BucketAgentConfig), kanade.ScopeKeyGlobal)
	want := map[string]any{}
	for f, v := range fields {
		want[f] = jsonOf(t, v)
	}
	if diff := cmp.Diff(want, jsonOf(t, got)); diff != "" {
		t.Errorf("global after concurrent field edits (-want +got):\n%s", diff)
	}
}

// effective is GET /api/agents/{pc}/effective_config, decoded.
type effective struct {
	PCID      string         `json:"pc_id"`
	Effective map[string]any `json:"effective"`
	Warnings  []string       `json:"warnings"`
	MyGroups  []string       `json:"my_groups"`
}

func (e *manageEnv) effective(pc string) effective {
	e.t.Helper()
	rec := e.must(http.StatusOK, http.MethodGet, "/api/agents/"+pc+"/effective_config", "")
	var out effective
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		e.t.Fatalf("%s: %v", rec.Body, err)
	}
	if out.Warnings == nil || out.MyGroups == nil {
		e.t.Fatalf("warnings and my_groups must be arrays: %s", rec.Body)
	}
	return out
}

// defaults is the built-in EffectiveConfig as JSON values, with changes.
func defaults(changes map[string]any) map[string]any {
	out := map[string]any{
		"target_version": nil, "target_version_jitter": "10m", "heartbeat_interval": "30s", "host_perf_interval": "60s",
		"process_perf_enabled": false, "process_perf_expires_at": nil, "process_perf_top_n": float64(20),
		"client_display_name": nil, "max_local_concurrent": nil,
	}
	for k, v := range changes {
		out[k] = v
	}
	return out
}

func TestEffectiveConfigMergesInOrder(t *testing.T) {
	e := newManageEnv(t, nil)
	// Unknown PC, nothing stored: the defaults.
	got := e.effective("PC-0")
	if diff := cmp.Diff(effective{PCID: "PC-0", Effective: defaults(nil), Warnings: []string{}, MyGroups: []string{}}, got); diff != "" {
		t.Errorf("nothing stored (-want +got):\n%s", diff)
	}
	e.must(http.StatusOK, http.MethodPut, "/api/config", `{"target_version":"1.0","heartbeat_interval":"20s","host_perf_interval":"90s"}`)
	e.must(http.StatusOK, http.MethodPut, "/api/groups/canary/config", `{"target_version":"1.1","heartbeat_interval":"10s","process_perf_top_n":5}`)
	e.must(http.StatusOK, http.MethodPut, "/api/groups/wave1/config", `{"heartbeat_interval":"15s","process_perf_top_n":5}`)
	e.must(http.StatusOK, http.MethodPut, "/api/groups/kiosk/config", `{"client_display_name":"Kiosk"}`)
	e.must(http.StatusOK, http.MethodPut, "/api/pcs/PC-1/config", `{"host_perf_interval":"2m"}`)
	e.must(http.StatusOK, http.MethodPut, "/api/agents/PC-1/groups", `{"groups":["wave1","canary","solo"]}`)

	got = e.effective("PC-1")
	want := effective{PCID: "PC-1",
		Effective: defaults(map[string]any{"target_version": "1.1", "heartbeat_interval": "15s", "host_perf_interval": "2m",
			"process_perf_top_n": float64(5)}),
		Warnings: []string{
			"multi-group conflict on `heartbeat_interval`: set by [canary, wave1]; wave1 wins",
			"multi-group conflict on `process_perf_top_n`: set by [canary, wave1]; wave1 wins",
		},
		MyGroups: []string{"canary", "solo", "wave1"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PC-1 (-want +got):\n%s", diff)
	}
	// An unknown PC: global over the defaults.
	if diff := cmp.Diff(defaults(map[string]any{"target_version": "1.0", "heartbeat_interval": "20s", "host_perf_interval": "90s"}),
		e.effective("PC-9").Effective); diff != "" {
		t.Errorf("unknown PC (-want +got):\n%s", diff)
	}
	// The helper views.
	inherited := func(path string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(e.must(http.StatusOK, http.MethodGet, path, "").Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if diff := cmp.Diff(defaults(nil), inherited("/api/config/defaults")); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	global := defaults(map[string]any{"target_version": "1.0", "heartbeat_interval": "20s", "host_perf_interval": "90s"})
	for _, g := range []string{"canary", "unknown", "東京"} {
		if diff := cmp.Diff(global, inherited("/api/groups/"+g+"/config/inherited")); diff != "" {
			t.Errorf("group %s inherited (-want +got):\n%s", g, diff)
		}
	}
	wantPC := defaults(map[string]any{"target_version": "1.1", "heartbeat_interval": "15s", "host_perf_interval": "90s",
		"process_perf_top_n": float64(5)})
	if diff := cmp.Diff(wantPC, inherited("/api/pcs/PC-1/config/inherited")); diff != "" {
		t.Errorf("PC-1 inherited, its own scope left out (-want +got):\n%s", diff)
	}

	// A group scope that does not decode is skipped; the global or the
	// PC's own is a 500.
	e.kvPut(kanade.BucketAgentConfig, kanade.GroupScopeKey("wave1"), `{"heartbeat_interval":15}`)
	got = e.effective("PC-1")
	if got.Effective["heartbeat_interval"] != "10s" || len(got.Warnings) != 0 {
		t.Errorf("with wave1's scope undecodable: %+v", got)
	}
	e.kvPut(kanade.BucketAgentConfig, kanade.PCScopeKey("PC-1"), `{"host_perf_interval":[]}`)
	e.checkStatuses(t, []statusCase{
		{"PC scope undecodable", "GET", "/api/agents/PC-1/effective_config", "", "", 500, "does not decode", ""},
		{"PC inherited ignores its scope", "GET", "/api/pcs/PC-1/config/inherited", "", "", 200, "", ""},
		{"another PC is fine", "GET", "/api/agents/PC-2/effective_config", "", "", 200, "", ""},
	})
	e.kvPut(kanade.BucketAgentConfig, kanade.ScopeKeyGlobal, `"1.0"`)
	e.checkStatuses(t, []statusCase{
		{"global undecodable", "GET", "/api/agents/PC-2/effective_config", "", "", 500, "global", ""},
		{"global undecodable, group view", "GET", "/api/groups/canary/config/inherited", "", "", 500, "global", ""},
		{"global undecodable, PC view", "GET", "/api/pcs/PC-2/config/inherited", "", "", 500, "global", ""},
		{"bad pc_id", "GET", "/api/agents/PC.2/effective_config", "", "", 400, "pc_id", "path.pc_id"},
		{"bad pc_id, PC view", "GET", "/api/pcs/PC.2/config/inherited", "", "", 400, "pc_id", "path.pc_id"},
	})
	// The legacy key is skipped wherever the bucket is walked.
	e.must(http.StatusNoContent, http.MethodDelete, "/api/config", "")
	e.kvPut(kanade.BucketAgentConfig, kanade.LegacyTargetVersionKey, `0.1.0`)
	e.effective("PC-2")
}

func TestEffectiveConfigDegradesWithoutMembership(t *testing.T) {
	e := newManageEnv(t, nil)
	e.must(http.StatusOK, http.MethodPut, "/api/groups/canary/config", `{"heartbeat_interval":"10s"}`)
	e.kvPut(kanade.BucketAgentGroups, "PC-1", `{"groups":"canary"}`)
	got := e.effective("PC-1")
	if got.Effective["heartbeat_interval"] != "30s" || len(got.MyGroups) != 0 {
		t.Errorf("undecodable membership: %+v, want the defaults and no groups", got)
	}
	if !strings.Contains(e.logs.String(), "resolving without groups") {
		t.Errorf("the undecodable membership was not logged:\n%s", e.logs)
	}
	if err := e.nats.JS.DeleteKeyValue(t.Context(), kanade.BucketAgentGroups); err != nil {
		t.Fatal(err)
	}
	e.checkStatuses(t, []statusCase{
		{"no agent_groups", "GET", "/api/agents/PC-1/effective_config", "", "", 503, "agent_groups", ""},
		{"no agent_groups, PC view", "GET", "/api/pcs/PC-1/config/inherited", "", "", 503, "agent_groups", ""},
		{"group view needs no agent_groups", "GET", "/api/groups/canary/config/inherited", "", "", 200, "", ""},
	})
}
