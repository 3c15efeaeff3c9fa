package kanade_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

func TestAgentGroupsAreStoredNormalised(t *testing.T) {
	got := string(kanade.EncodeAgentGroups([]string{"wave1", "canary", "wave1"}))
	if want := `{"groups":["canary","wave1"]}`; got != want {
		t.Errorf("EncodeAgentGroups = %s, want %s", got, want)
	}
	if got := string(kanade.EncodeAgentGroups(nil)); got != `{"groups":[]}` {
		t.Errorf("no groups = %s", got)
	}
	for in, want := range map[string][]string{
		``:                                   {},
		`{"groups":null}`:                    {},
		`{"groups":["b","a","b"],"extra":1}`: {"a", "b"},
		`{"groups":["カナデ","canary"]}`:        {"canary", "カナデ"},
	} {
		got, err := kanade.DecodeAgentGroups([]byte(in))
		if err != nil || !cmp.Equal(got, want) {
			t.Errorf("DecodeAgentGroups(%s) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := kanade.DecodeAgentGroups([]byte(`["a"]`)); err == nil {
		t.Error("an array decoded as a membership value")
	}
}

func TestGroupNames(t *testing.T) {
	for _, g := range []string{"canary", "wave-1", "カナデ", strings.Repeat("g", 128)} {
		if !kanade.ValidGroupName(g) {
			t.Errorf("%q refused as a group", g)
		}
	}
	for _, g := range []string{"", "a.b", "a*", ">", "a b", "a\tb", "a\x7f", strings.Repeat("g", 129), "\xff"} {
		if kanade.ValidGroupName(g) {
			t.Errorf("%q accepted as a group", g)
		}
	}
	if err := kanade.CheckScopeGroup("name", "カナデ"); err == nil || !strings.Contains(err.Error(), "config scope") {
		t.Errorf("a Japanese group carries a scope: %v", err)
	}
	if err := kanade.CheckGroups([]string{"ok", "not.ok"}); err == nil || !strings.HasPrefix(err.Error(), "groups[1]") {
		t.Errorf("CheckGroups = %v", err)
	}
}

func TestScopeKeys(t *testing.T) {
	for key, want := range map[string][3]string{
		"global":         {"global", "", "global"},
		"groups.canary":  {"group", "canary", "group:canary"},
		"groups.a.b":     {"group", "a.b", "group:a.b"},
		"pcs.PC-0001":    {"pc", "PC-0001", "pc:PC-0001"},
		"target_version": {},
		"groups.":        {},
		"something.else": {},
	} {
		kind, name, ok := kanade.ParseScopeKey(key)
		if ok != (want[0] != "") || kind != want[0] || name != want[1] {
			t.Errorf("ParseScopeKey(%q) = %q, %q, %v", key, kind, name, ok)
		}
		if ok && kanade.ScopeLabel(kind, name) != want[2] {
			t.Errorf("label of %q = %q", key, kanade.ScopeLabel(kind, name))
		}
	}
}

func TestConfigScopeChecks(t *testing.T) {
	for body, field := range map[string]string{
		`{"heartbeat_interval":"soon"}`:          "heartbeat_interval",
		`{"heartbeat_interval":"0s"}`:            "heartbeat_interval",
		`{"target_version_jitter":"-5m"}`:        "target_version_jitter",
		`{"host_perf_interval":""}`:              "host_perf_interval",
		`{"process_perf_expires_at":"tomorrow"}`: "process_perf_expires_at",
		`{"process_perf_top_n":-1}`:              "process_perf_top_n",
		`{"process_perf_top_n":4294967296}`:      "process_perf_top_n",
		`{"max_local_concurrent":0}`:             "max_local_concurrent",
		`{"target_version":"  "}`:                "target_version",
		`{"process_perf_enabled":"yes"}`:         "process_perf_enabled",
		`{"heartbeat_interval":30}`:              "heartbeat_interval",
	} {
		s, err := kanade.DecodeConfigScope([]byte(body))
		if err == nil {
			err = s.Validate()
		}
		var fe *kanade.FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: error %v, want one naming %s", body, err, field)
		}
	}
	ok := `{"target_version":"0.43.56","target_version_jitter":"30m","heartbeat_interval":"1h 30m",` +
		`"process_perf_expires_at":"2026-12-24T18:00:00+09:00","process_perf_top_n":0,"max_local_concurrent":4,"inventory_interval":"1h"}`
	s, err := kanade.DecodeConfigScope([]byte(ok))
	if err == nil {
		err = s.Validate()
	}
	if err != nil {
		t.Fatalf("%s: %v", ok, err)
	}
	// Unknown (and retired) fields are not stored.
	if strings.Contains(string(s.Encode()), "inventory") {
		t.Errorf("stored %s", s.Encode())
	}
	if got := string((kanade.ConfigScope{}).Encode()); got != "{}" {
		t.Errorf("empty scope = %s", got)
	}
}

func TestConfigScopeWithField(t *testing.T) {
	s, err := kanade.ConfigScope{}.WithField("heartbeat_interval", json.RawMessage(`"15s"`))
	if err != nil || string(s.Encode()) != `{"heartbeat_interval":"15s"}` {
		t.Fatalf("set = %s, %v", s.Encode(), err)
	}
	s, err = s.WithField("heartbeat_interval", json.RawMessage(`null`))
	if err != nil || string(s.Encode()) != `{}` {
		t.Errorf("clear = %s, %v", s.Encode(), err)
	}
	if _, err := s.WithField("heartbeat_interval", json.RawMessage(`"never"`)); err == nil {
		t.Error("a bad duration was set")
	}
	if _, err := s.WithField("inventory_interval", json.RawMessage(`"1h"`)); err == nil || !strings.Contains(err.Error(), "must be one of") {
		t.Errorf("unknown field: %v", err)
	}
}

// The field routes check the value they set, not the rest of the scope
// (upstream's apply_field): a bad value stored behind the API's back in
// another field must not block an edit, nor be reported as its error.
func TestConfigScopeWithFieldChecksOnlyItsField(t *testing.T) {
	stored, err := kanade.DecodeConfigScope([]byte(`{"heartbeat_interval":"bogus","target_version":"1.0"}`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := stored.WithField("host_perf_interval", json.RawMessage(`"90s"`))
	if err != nil || string(s.Encode()) != `{"target_version":"1.0","heartbeat_interval":"bogus","host_perf_interval":"90s"}` {
		t.Errorf("set beside a bad stored field = %s, %v", s.Encode(), err)
	}
	var fe *kanade.FieldError
	if _, err := stored.WithField("host_perf_interval", json.RawMessage(`"0s"`)); !errors.As(err, &fe) || fe.Field != "host_perf_interval" {
		t.Errorf("a bad value = %v, want a FieldError naming host_perf_interval", err)
	}
	if _, err := stored.WithField("heartbeat_interval", json.RawMessage(`5`)); !errors.As(err, &fe) || fe.Field != "heartbeat_interval" {
		t.Errorf("a number for a duration = %v, want a FieldError naming heartbeat_interval", err)
	}
}

// Newer CLIs and SPAs send {"value": "…"} for every field (upstream's
// FieldValue is a string), booleans and counts included.
func TestConfigScopeWithFieldTakesTextForms(t *testing.T) {
	for _, tt := range []struct{ field, raw, want string }{
		{"process_perf_enabled", `"true"`, `{"process_perf_enabled":true}`},
		{"process_perf_enabled", `false`, `{"process_perf_enabled":false}`},
		{"process_perf_top_n", `"20"`, `{"process_perf_top_n":20}`},
		{"max_local_concurrent", `"4"`, `{"max_local_concurrent":4}`},
		{"max_local_concurrent", `4`, `{"max_local_concurrent":4}`},
		{"client_display_name", `"20"`, `{"client_display_name":"20"}`},
		{"target_version", `"0.43.56"`, `{"target_version":"0.43.56"}`},
	} {
		s, err := kanade.ConfigScope{}.WithField(tt.field, json.RawMessage(tt.raw))
		if err != nil || string(s.Encode()) != tt.want {
			t.Errorf("%s = %s: %s, %v; want %s", tt.field, tt.raw, s.Encode(), err, tt.want)
		}
	}
	for _, tt := range []struct{ field, raw string }{
		{"process_perf_enabled", `"yes"`},
		{"process_perf_top_n", `"-1"`},
		{"process_perf_top_n", `"twenty"`},
		{"max_local_concurrent", `"0"`},
		{"max_local_concurrent", `"1.5"`},
	} {
		var fe *kanade.FieldError
		if _, err := (kanade.ConfigScope{}).WithField(tt.field, json.RawMessage(tt.raw)); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%s = %s: %v, want a FieldError naming it", tt.field, tt.raw, err)
		}
	}
}

func TestResolveMergesInOrder(t *testing.T) {
	scope := func(s string) kanade.ConfigScope {
		c, err := kanade.DecodeConfigScope([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	l := kanade.ConfigLayers{
		Global: new(scope(`{"target_version":"1.0","heartbeat_interval":"45s"}`)),
		Groups: map[string]kanade.ConfigScope{
			"canary": scope(`{"target_version":"1.1","heartbeat_interval":"20s","host_perf_interval":"10s"}`),
			"wave1":  scope(`{"heartbeat_interval":"20s","process_perf_top_n":5}`),
			"other":  scope(`{"process_perf_enabled":true}`),
		},
		PCs: map[string]kanade.ConfigScope{"PC-1": scope(`{"process_perf_top_n":7}`)},
	}
	r := l.Resolve("PC-1", []string{"wave1", "canary", "nogroupscope"}, true)
	got, _ := json.Marshal(r.Effective)
	want := `{"target_version":"1.1","target_version_jitter":"10m","heartbeat_interval":"20s","host_perf_interval":"10s",` +
		`"process_perf_enabled":false,"process_perf_expires_at":null,"process_perf_top_n":7,"client_display_name":null,"max_local_concurrent":null}`
	if string(got) != want {
		t.Errorf("effective\n got %s\nwant %s", got, want)
	}
	if diff := cmp.Diff([]string{"multi-group conflict on `heartbeat_interval`: set by [canary, wave1]; wave1 wins"}, r.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"canary", "nogroupscope", "wave1"}, r.Groups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if r := l.Resolve("PC-1", []string{"wave1"}, false); r.Effective.ProcessPerfTopN != 5 {
		t.Errorf("inherited top_n = %d, want the group's 5", r.Effective.ProcessPerfTopN)
	}
	if r := (kanade.ConfigLayers{}).Resolve("PC-9", nil, true); !cmp.Equal(r.Effective, kanade.DefaultEffectiveConfig()) {
		t.Errorf("nothing stored = %+v", r.Effective)
	}
}
