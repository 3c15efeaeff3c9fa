package kanade_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

func TestIsYAMLContentType(t *testing.T) {
	tests := []struct {
		contentType string
		want        bool
	}{
		{"application/yaml", true},
		{"text/yaml", true},
		{"application/x-yaml", true},
		{"text/x-yaml", true},
		{"Application/YAML; charset=utf-8", true},
		{"  text/yaml ;charset=utf-8", true},
		{"application/json", false},
		{"", false},
		{"text/plain", false},
		{"application/yaml-patch", false},
		{"yaml", false},
	}
	for _, tt := range tests {
		if got := kanade.IsYAMLContentType(tt.contentType); got != tt.want {
			t.Errorf("IsYAMLContentType(%q) = %v, want %v", tt.contentType, got, tt.want)
		}
	}
}

// bodyOutcome is what a strict decoder said about a body, in a form a
// table can state: the error's type and the one thing it carries.
type bodyOutcome struct {
	Syntax  bool     // a *BodySyntaxError
	Unknown []string // the paths of an *UnknownFieldsError
	Field   string   // the field of a *FieldError
}

func outcomeOf(t *testing.T, err error) bodyOutcome {
	t.Helper()
	var (
		se *kanade.BodySyntaxError
		ue *kanade.UnknownFieldsError
		fe *kanade.FieldError
	)
	switch {
	case err == nil:
		return bodyOutcome{}
	case errors.As(err, &se):
		return bodyOutcome{Syntax: true}
	case errors.As(err, &ue):
		return bodyOutcome{Unknown: ue.Paths}
	case errors.As(err, &fe):
		return bodyOutcome{Field: fe.Field}
	}
	t.Fatalf("untyped error %T: %v", err, err)
	return bodyOutcome{}
}

const manifestYAML = `# inventory job
id: inventory-hw
version: 1.10
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
    - {field: hostname, label: Host}
    - field: disks
      label: Disks
      type: table
      columns:
        - {field: size, label: Size, type: bytes}
on_failure:
  retry: {max: 3, backoff: 30s}
`

const manifestJSON = `{"id":"inventory-hw","version":"1.10","description":"hardware facts",
"execute":{"shell":"powershell","script":"Get-CimInstance Win32_ComputerSystem |\n  ConvertTo-Json\n","timeout":"5m","run_as":"system"},
"staleness":{"mode":"strict","max_cache_age":"1h"},
"inventory":{"display":[{"field":"hostname","label":"Host"},{"field":"disks","label":"Disks","type":"table","columns":[{"field":"size","label":"Size","type":"bytes"}]}]},
"on_failure":{"retry":{"max":3,"backoff":"30s"}}}`

func TestDecodeManifestBodyReadsYAMLAsItsJSON(t *testing.T) {
	fromYAML, err := kanade.DecodeManifestBody([]byte(manifestYAML), true)
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := kanade.DecodeManifestBody([]byte(manifestJSON), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := fromYAML.Validate(); err != nil {
		t.Fatalf("Validate(from YAML) = %v", err)
	}
	a, _ := json.Marshal(fromYAML)
	b, _ := json.Marshal(fromJSON)
	var va, vb any
	json.Unmarshal(a, &va)
	json.Unmarshal(b, &vb)
	if diff := cmp.Diff(vb, va); diff != "" {
		t.Errorf("YAML and JSON bodies decode differently (-json +yaml):\n%s", diff)
	}
	// version: 1.10 is the text 1.10, as upstream's serde_yaml reads a
	// plain scalar into a string field, not the number 1.1.
	if fromYAML.Version != "1.10" {
		t.Errorf("version = %q, want 1.10", fromYAML.Version)
	}
}

func TestDecodeManifestBody(t *testing.T) {
	const exec = "execute: {shell: sh, script: x, timeout: 5m}\n"
	tests := []struct {
		name   string
		yaml   bool
		body   string
		want   bodyOutcome
		expect func(*testing.T, *kanade.Manifest)
	}{
		{name: "a minimal YAML manifest", yaml: true, body: "id: job\nversion: '1'\n" + exec},
		{name: "a minimal JSON manifest", body: `{"id":"job","version":"1","execute":{"shell":"sh","script":"x","timeout":"5m"}}`},
		{name: "every unknown key is named at once, at every level", yaml: true,
			body: "id: job\nversion: '1'\nexecute: {shell: sh, scirpt: x, script: x, timeout: 5m}\ntarget: {all: true, grups: [a]}\n" +
				"rollout: {waves: [{group: a, delay: 0s}, {group: b, dlay: 1h}]}\nfoo: 1\nemit: {type: events, watermark: x}\n",
			want: bodyOutcome{Unknown: []string{"emit.watermark", "execute.scirpt", "foo", "rollout.waves[1].dlay", "target.grups"}}},
		{name: "unknown keys in JSON too", body: `{"id":"job","version":"1","execute":{"shell":"sh","script":"x","timeout":"5m","shel":"sh"},"ID":"x"}`,
			want: bodyOutcome{Unknown: []string{"ID", "execute.shel"}}},
		{name: "unknown keys inside a hint", yaml: true,
			body: "id: job\nversion: '1'\n" + exec + "inventory:\n  display:\n    - {field: a, label: A, colour: red}\n  explode:\n    - {field: f, table: t, primary_key: [k], columns: [{field: c, idx: true}]}\n",
			want: bodyOutcome{Unknown: []string{"inventory.display[0].colour", "inventory.explode[0].columns[0].idx"}}},
		{name: "unknown keys under on_failure", yaml: true, body: "id: job\nversion: '1'\n" + exec + "on_failure: {retry: {max: 1, backoff: 1s, jitter: 1s}}\n",
			want: bodyOutcome{Unknown: []string{"on_failure.retry.jitter"}}},
		{name: "a key that is not a string is still named", yaml: true, body: "id: job\nversion: '1'\n" + exec + "on: 1\n",
			want: bodyOutcome{Unknown: []string{"on"}}},
		{name: "a key given twice in YAML", yaml: true, body: "id: job\nid: other\nversion: '1'\n" + exec, want: bodyOutcome{Syntax: true}},
		{name: "a key given twice in JSON", body: `{"id":"job","version":"1","id":"other"}`, want: bodyOutcome{Syntax: true}},
		{name: "a nested key given twice in JSON", body: `{"execute":{"shell":"sh","shell":"cmd"}}`, want: bodyOutcome{Syntax: true}},
		{name: "broken YAML", yaml: true, body: "id: [job\n", want: bodyOutcome{Syntax: true}},
		{name: "broken JSON", body: `{"id":`, want: bodyOutcome{Syntax: true}},
		{name: "trailing JSON", body: `{"id":"job"} {}`, want: bodyOutcome{Syntax: true}},
		{name: "an empty YAML body", yaml: true, body: "# nothing\n", want: bodyOutcome{Syntax: true}},
		{name: "an empty JSON body", body: "", want: bodyOutcome{Syntax: true}},
		{name: "a YAML list", yaml: true, body: "- id: job\n", want: bodyOutcome{Syntax: true}},
		{name: "a JSON array", body: `[{"id":"job"}]`, want: bodyOutcome{Syntax: true}},
		{name: "two YAML documents", yaml: true, body: "id: a\n---\nid: b\n", want: bodyOutcome{Syntax: true}},
		{name: "a body that is not UTF-8", yaml: true, body: "id: \xff\n", want: bodyOutcome{Syntax: true}},
		{name: "a number where a string is due, in JSON", body: `{"id":"job","version":1}`, want: bodyOutcome{Field: "version"}},
		{name: "a list where a string is due, in YAML", yaml: true, body: "id: job\nversion: [1]\n", want: bodyOutcome{Field: "version"}},
		{name: "a string where a bool is due", yaml: true, body: "id: job\nrequire_approval: maybe\n", want: bodyOutcome{Field: "require_approval"}},
		{name: "validation is left to the caller", yaml: true, body: "id: job\n",
			expect: func(t *testing.T, m *kanade.Manifest) {
				if m.ID != "job" || m.Validate() == nil {
					t.Errorf("got %+v, want id job and a failing Validate", m)
				}
			}},
		{name: "anchors, aliases and merge keys are read", yaml: true,
			body: "id: job\nversion: &v '2'\ndescription: *v\nexecute:\n  <<: {shell: sh, script: x}\n  timeout: 5m\n",
			expect: func(t *testing.T, m *kanade.Manifest) {
				if m.Description != "2" || m.Execute.Shell != "sh" || m.Execute.Script != "x" {
					t.Errorf("got %+v", m)
				}
			}},
		{name: "a block scalar keeps its text", yaml: true,
			body: "id: job\nversion: '1'\nexecute:\n  shell: sh\n  timeout: 5m\n  script: |-\n    a: b\n    # not a comment\n",
			expect: func(t *testing.T, m *kanade.Manifest) {
				if m.Execute.Script != "a: b\n# not a comment" {
					t.Errorf("script = %q", m.Execute.Script)
				}
			}},
		{name: "plain scalars keep their text where a string is due", yaml: true,
			body: "id: job\nversion: 2.0\ndescription: true\nexecute: {shell: sh, script: 0x10, timeout: 5m}\n",
			expect: func(t *testing.T, m *kanade.Manifest) {
				if m.Version != "2.0" || m.Description != "true" || m.Execute.Script != "0x10" {
					t.Errorf("got version %q description %q script %q", m.Version, m.Description, m.Execute.Script)
				}
			}},
		{name: "null is not given", yaml: true, body: "id: job\nversion: '1'\n" + exec + "emit: null\nstaleness: ~\n",
			expect: func(t *testing.T, m *kanade.Manifest) {
				if m.Emit != nil || m.Staleness != nil {
					t.Errorf("emit %s staleness %+v, want neither", m.Emit, m.Staleness)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := kanade.DecodeManifestBody([]byte(tt.body), tt.yaml)
			if diff := cmp.Diff(tt.want, outcomeOf(t, err)); diff != "" {
				t.Fatalf("DecodeManifestBody = %v (-want +got):\n%s", err, diff)
			}
			if err == nil && tt.expect != nil {
				tt.expect(t, m)
			}
			if err != nil && m != nil {
				t.Errorf("a failed decode returned a manifest: %+v", m)
			}
		})
	}
}

// TestBodyErrorsSayWhatIsWrong: the texts an operator reads in the 400.
func TestBodyErrorsSayWhatIsWrong(t *testing.T) {
	tests := []struct {
		name string
		yaml bool
		body string
		want string
	}{
		{"unknown keys", true, "id: job\nfoo: 1\nexecute: {scirpt: x}\n",
			"unknown field(s): execute.scirpt, foo — check for typos; fields must match the current schema"},
		{"a duplicate JSON key names its path", false, `{"execute":{"shell":"sh","shell":"cmd"}}`,
			`parse JSON body: key "execute.shell" is given twice`},
		{"a JSON syntax error says where", false, `{"id" "job"}`,
			"parse JSON body: byte 6: invalid character '\"' after object key"},
		{"a YAML error is one line", true, "id: job\nid: x\n",
			`parse YAML body: [2:1] mapping key "id" already defined at [1:1]`},
		{"several documents", true, "id: a\n---\nid: b\n", "parse YAML body: the body holds several YAML documents; send one"},
		{"not a mapping", true, "just text\n", "parse YAML body: the body must be a mapping"},
		{"not an object", false, `"text"`, "parse JSON body: the body must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := kanade.DecodeManifestBody([]byte(tt.body), tt.yaml)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

// TestYAMLAliasesCannotExplode: nested aliases that would expand to
// millions of values are refused, not expanded.
func TestYAMLAliasesCannotExplode(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		p := "a" + string(rune('0'+i-1))
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [*" + p + ", *" + p + ", *" + p + ", *" + p + ", *" + p +
			", *" + p + ", *" + p + ", *" + p + ", *" + p + ", *" + p + "]\n")
	}
	_, err := kanade.DecodeManifestBody([]byte(b.String()), true)
	var se *kanade.BodySyntaxError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "expands to more than") {
		t.Errorf("DecodeManifestBody(alias bomb) = %v, want a BodySyntaxError about the expansion", err)
	}
}

func TestDecodeScheduleBody(t *testing.T) {
	const rest = "job_id: inventory-hw\ntarget: {groups: [canary]}\n"
	tests := []struct {
		name   string
		yaml   bool
		body   string
		want   bodyOutcome
		expect func(*testing.T, *kanade.Schedule)
	}{
		{name: "the map form of when", yaml: true, body: "id: s\nwhen: {per_pc: {every: 6h}}\n" + rest,
			expect: func(t *testing.T, s *kanade.Schedule) {
				if s.When.PerPC == nil || s.When.PerPC.Every != "6h" {
					t.Errorf("when = %+v", s.When)
				}
			}},
		{name: "per_target once", yaml: true, body: "id: s\nwhen:\n  per_target: once\n" + rest,
			expect: func(t *testing.T, s *kanade.Schedule) {
				if s.When.PerTarget == nil || !s.When.PerTarget.Once {
					t.Errorf("when = %+v", s.When)
				}
			}},
		{name: "a calendar with a quoted time", yaml: true, body: "id: s\nwhen: {calendar: {at: '09:00', days: [mon-fri]}}\n" + rest,
			expect: func(t *testing.T, s *kanade.Schedule) {
				if c := s.When.Calendar; c == nil || c.At != "09:00" || len(c.Days) != 1 || c.Days[0] != "mon-fri" {
					t.Errorf("when = %+v", s.When.Calendar)
				}
			}},
		{name: "enabled defaults to true", yaml: true, body: "id: s\nwhen: {per_pc: once}\n" + rest,
			expect: func(t *testing.T, s *kanade.Schedule) {
				if !s.Enabled {
					t.Error("enabled = false, want true when absent")
				}
			}},
		{name: "enabled false is kept", body: `{"id":"s","when":{"per_pc":"once"},"job_id":"j","target":{"all":true},"enabled":false}`,
			expect: func(t *testing.T, s *kanade.Schedule) {
				if s.Enabled {
					t.Error("enabled = true, want false")
				}
			}},
		{name: "unknown keys at every level, the flattened plan keys included", yaml: true,
			body: "id: s\nwhen: {per_pc: {every: 6h, evry: 1h}}\n" + rest + "rollout: {waves: [{group: a, delay: 0s, wait: 1}]}\n" +
				"active: {form: 2026-01-01}\non_failure: {retyr: {}}\ncron: '* * * * *'\n",
			want: bodyOutcome{Unknown: []string{"active.form", "cron", "on_failure.retyr", "rollout.waves[0].wait", "when.per_pc.evry"}}},
		{name: "an unknown when form", yaml: true, body: "id: s\nwhen: {per_galaxy: once}\n" + rest,
			want: bodyOutcome{Unknown: []string{"when.per_galaxy"}}},
		{name: "an unknown calendar key", body: `{"id":"s","when":{"calendar":{"at":"09:00","dayz":["mon"]}},"job_id":"j","target":{"all":true}}`,
			want: bodyOutcome{Unknown: []string{"when.calendar.dayz"}}},
		{name: "a cadence that is neither once nor every", yaml: true, body: "id: s\nwhen: {per_pc: onec}\n" + rest,
			want: bodyOutcome{Field: "when.per_pc"}},
		{name: "a target that is a string", yaml: true, body: "id: s\nwhen: {per_pc: once}\njob_id: j\ntarget: all\n",
			want: bodyOutcome{Field: "target"}},
		{name: "a duplicate key", yaml: true, body: "id: s\nwhen: {per_pc: once}\nwhen: {per_target: once}\n" + rest,
			want: bodyOutcome{Syntax: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := kanade.DecodeScheduleBody([]byte(tt.body), tt.yaml)
			if diff := cmp.Diff(tt.want, outcomeOf(t, err)); diff != "" {
				t.Fatalf("DecodeScheduleBody = %v (-want +got):\n%s", err, diff)
			}
			if err == nil {
				if verr := s.Validate(""); verr != nil {
					t.Fatalf("Validate = %v", verr)
				}
				if tt.expect != nil {
					tt.expect(t, s)
				}
			}
		})
	}
}
