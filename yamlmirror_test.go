package kanade_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

func TestRenderYAMLOfAManifest(t *testing.T) {
	m, err := kanade.ParseManifest("", []byte(manifestJSON))
	if err != nil {
		t.Fatal(err)
	}
	got, err := kanade.RenderYAML(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `id: inventory-hw
version: "1.10"
description: hardware facts
execute:
  shell: powershell
  script: |
    Get-CimInstance Win32_ComputerSystem |
      ConvertTo-Json
  timeout: 5m
  run_as: system
staleness:
  mode: strict
  max_cache_age: 1h
inventory:
  display:
    - field: hostname
      label: Host
    - field: disks
      label: Disks
      type: table
      columns:
        - field: size
          label: Size
          type: bytes
on_failure:
  retry:
    max: 3
    backoff: 30s
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("RenderYAML (-want +got):\n%s", diff)
	}
}

func TestRenderYAMLOfRawJSON(t *testing.T) {
	in := `{"z":1,"a":{"n":18446744073709551616,"f":-1.5e-3,"t":true,"nil":null,"empty":{},"none":[]},` +
		`"list":[[1,2],[],{},{"k":"v","w":[{"x":"y"}]},"s"],"a2":"x","z":2}`
	got, err := kanade.RenderYAML([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	// Members keep their JSON order; a member given twice keeps its first
	// place and its last value, as encoding/json reads it.
	want := `z: 2
a:
  "n": 18446744073709551616
  f: -1.5e-3
  t: true
  nil: null
  empty: {}
  none: []
list:
  -
    - 1
    - 2
  - []
  - {}
  - k: v
    w:
      - x: "y"
  - s
a2: x
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("RenderYAML (-want +got):\n%s", diff)
	}
	if _, err := kanade.RenderYAML([]byte(`{"a":`)); err == nil {
		t.Error("RenderYAML(broken JSON) = nil error")
	}
	if _, err := kanade.RenderYAML(json.RawMessage(`{} {}`)); err == nil {
		t.Error("RenderYAML(two values) = nil error")
	}
	if got, _ := kanade.RenderYAML(map[string]any{}); string(got) != "{}\n" {
		t.Errorf("RenderYAML({}) = %q", got)
	}
}

// TestRenderYAMLStringsReadBack: every string comes back as the same
// string from a YAML reader that knows nothing of the record's shape, so
// the editor (and serde_yaml) sees what is stored.
func TestRenderYAMLStringsReadBack(t *testing.T) {
	for _, s := range []string{
		"", "plain words", "1.10", "09:00", "2026-01-01", "1e3", "0x10", "0o17", ".inf", "-", "-1", "+1", "1_000",
		"yes", "No", "on", "OFF", "y", "n", "null", "Null", "~", "true", "False",
		" leading", "trailing ", "two  spaces", "a: b", "a #b", "# c", "- x", "? x", ": x", "@at", "`tick", "!tag", "&anchor",
		"*alias", "%dir", "{a}", "[a]", "a,b", "|", ">", "'single'", `"double"`, `back\slash`, "<<",
		"6h", "1.5d", "0s", "1h30m", "C:\\temp", "/usr/bin/env sh", "cleanup/1.0.1", "Europe/Berlin", "mon-fri",
		"unicode 年末 freeze", "nbsp\u00a0x", "line\u2028sep", "bom\ufeffx", "del\x7fx", "bell\x07", "tab\tx",
		"one\nline", "ends\n", "two trailing\n\n", "three trailing\n\n\n", "\n", "\n\nx", "x\n\n\ny\n",
		"  indented first\nline", "first\n  indented\n", "tab\n\tline\n", "blank\n   \nline\n", "crlf\r\nline\r\n",
		"--- \nmarker\n...\n", "#!/bin/sh\nset -e\necho \"hi\" # note\n",
	} {
		doc := map[string]string{"s": s, s: "key"}
		out, err := kanade.RenderYAML(doc)
		if err != nil {
			t.Fatalf("RenderYAML(%q): %v", s, err)
		}
		var back map[string]any
		if err := yaml.Unmarshal(out, &back); err != nil {
			t.Errorf("RenderYAML(%q) is not YAML: %v\n%s", s, err, out)
			continue
		}
		if diff := cmp.Diff(map[string]any{"s": s, s: "key"}, back); diff != "" {
			t.Errorf("RenderYAML(%q) reads back differently (-want +got):\n%s\n%s", s, diff, out)
		}
	}
}

// TestRenderYAMLRoundTrips: a mirror rendered from a record decodes, with
// the strict body decoder, to the same record.
func TestRenderYAMLRoundTrips(t *testing.T) {
	manifests := []string{minimalManifest, manifestJSON,
		`{"id":"j","version":"2.0","execute":{"shell":"cmd","script_object":"a/1","timeout":"1d","cwd":"C:\\Program Files"},` +
			`"check":{"name":"disk","fleet":true},"collect":{"name":"logs","max_size":"50MB"},"require_approval":true,` +
			`"target":{"all":true},"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"}]}}`,
		`{"id":"j","version":"yes","description":"on","execute":{"shell":"sh","script":"  indented\n\tand tabbed\n","timeout":"1m"},` +
			`"emit":{"type":"events"}}`,
	}
	for _, in := range manifests {
		m, err := kanade.ParseManifest("", []byte(in))
		if err != nil {
			t.Fatalf("corpus manifest %s: %v", in, err)
		}
		out, err := kanade.RenderYAML(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := kanade.DecodeManifestBody(out, true)
		if err != nil {
			t.Fatalf("DecodeManifestBody(RenderYAML) = %v\n%s", err, out)
		}
		assertSameJSON(t, m, back, out)
	}
	schedules := []string{
		`{"id":"s1","when":{"per_pc":"once"},"job_id":"j1","target":{"all":true},"enabled":true}`,
		`{"id":"nightly","when":{"calendar":{"at":"02:30","days":["mon-fri","sun"]}},"job_id":"backup",` +
			`"target":{"all":false,"groups":["office"],"pcs":["pc-1"]},"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"}]},` +
			`"jitter":"5m","starting_deadline":"1d","active":{"from":"2026-01-01","until":"2027-01-01T00:00:00Z"},` +
			`"tz":"Europe/Berlin","runs_on":"agent","enabled":false,"on_failure":{"retry":{"max":2,"backoff":"30s"}}}`,
		`{"id":"once","when":{"calendar":{"at":"2026-06-10 09:00"}},"job_id":"j","target":{"pcs":["PC-1"]},"tz":"utc","enabled":true}`,
		`{"id":"t","when":{"per_target":{"every":"24h"}},"job_id":"j","target":{"groups":["on","yes"]},"enabled":true}`,
	}
	for _, in := range schedules {
		s, err := kanade.ParseSchedule("", []byte(in))
		if err != nil {
			t.Fatalf("corpus schedule %s: %v", in, err)
		}
		out, err := kanade.RenderYAML(s)
		if err != nil {
			t.Fatal(err)
		}
		back, err := kanade.DecodeScheduleBody(out, true)
		if err != nil {
			t.Fatalf("DecodeScheduleBody(RenderYAML) = %v\n%s", err, out)
		}
		if err := back.Validate(""); err != nil {
			t.Fatalf("Validate(round trip) = %v\n%s", err, out)
		}
		assertSameJSON(t, s, back, out)
	}
}

func assertSameJSON(t *testing.T, want, got any, yamlText []byte) {
	t.Helper()
	a, _ := json.Marshal(want)
	b, _ := json.Marshal(got)
	var va, vb any
	json.Unmarshal(a, &va)
	json.Unmarshal(b, &vb)
	if diff := cmp.Diff(va, vb); diff != "" {
		t.Errorf("round trip through YAML changed the record (-want +got):\n%s\n%s", diff, yamlText)
	}
}

func TestPatchEnabled(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		enabled bool
		want    string
	}{
		{"a line is replaced, its comment dropped", "id: s\n# keep me\nenabled: true # since March\njob_id: j\n", false,
			"id: s\n# keep me\nenabled: false\njob_id: j\n"},
		{"enabled again", "id: s\nenabled: false\n", true, "id: s\nenabled: true\n"},
		{"no space after the colon", "enabled:true\n", false, "enabled: false\n"},
		{"only the first column-0 line", "enabled: true\nenabled: true\n", false, "enabled: false\nenabled: true\n"},
		{"an indented enabled is not the schedule's", "id: s\nwhen:\n  enabled: true\n", false,
			"id: s\nwhen:\n  enabled: true\nenabled: false\n"},
		{"a longer key is not enabled", "enabled_by: ops\n", false, "enabled_by: ops\nenabled: false\n"},
		{"appended after a final newline", "id: s\njob_id: j\n", false, "id: s\njob_id: j\nenabled: false\n"},
		{"appended after a line break when the text has none", "id: s\njob_id: j", true, "id: s\njob_id: j\nenabled: true\n"},
		{"an empty mirror", "", false, "enabled: false\n"},
		{"CRLF lines keep their ends", "id: s\r\nenabled: true  \r\njob_id: j\r\n", false, "id: s\r\nenabled: false\r\njob_id: j\r\n"},
		{"appended with CRLF to a CRLF text", "id: s\r\njob_id: j\r\n", false, "id: s\r\njob_id: j\r\nenabled: false\r\n"},
		{"appended with CRLF to a CRLF text without a final break", "id: s\r\njob_id: j", false, "id: s\r\njob_id: j\r\nenabled: false\r\n"},
		{"the last line without a line break", "id: s\nenabled: true", false, "id: s\nenabled: false"},
		{"comments and block scalars untouched", "# header\nid: s # the id\nnote: |\n  enabled: true\n  x\n\n# footer\nenabled: yes\n", false,
			"# header\nid: s # the id\nnote: |\n  enabled: true\n  x\n\n# footer\nenabled: false\n"},
		{"a tab or odd bytes elsewhere are kept", "a:\tb \xff\nenabled: false\n", true, "a:\tb \xff\nenabled: true\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			got := kanade.PatchEnabled(in, tt.enabled)
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("PatchEnabled (-want +got):\n%s", diff)
			}
			if string(in) != tt.in {
				t.Errorf("PatchEnabled changed its input to %q", in)
			}
		})
	}
}

// TestPatchEnabledKeepsTheScheduleReadable: the patched mirror of a real
// schedule still decodes, with the new value.
func TestPatchEnabledKeepsTheScheduleReadable(t *testing.T) {
	const mirror = "# nightly inventory\nid: inv\nwhen:\n  per_pc: {every: 6h}  # patrol\njob_id: inventory-hw\ntarget:\n  groups: [canary]\n"
	for _, enabled := range []bool{false, true, false} {
		patched := kanade.PatchEnabled([]byte(mirror), enabled)
		s, err := kanade.DecodeScheduleBody(patched, true)
		if err != nil {
			t.Fatalf("decode the patched mirror: %v\n%s", err, patched)
		}
		if s.Enabled != enabled || !strings.HasPrefix(string(patched), mirror) {
			t.Errorf("enabled = %v, want %v; mirror\n%s", s.Enabled, enabled, patched)
		}
	}
}
