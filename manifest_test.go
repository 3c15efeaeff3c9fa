package kanade_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

func TestManifestKeepsUnknownFields(t *testing.T) {
	in := `{"id":"inventory-hw","version":"3","execute":{"shell":"sh","script":"uname -a","timeout":"5m"},"signature":{"alg":"ed25519"},"x":1}`
	var m kanade.Manifest
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var want, got map[string]any
	json.Unmarshal([]byte(in), &want)
	json.Unmarshal(out, &got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-in +out):\n%s", diff)
	}
}

// TestManifestDoesNotKeepAKnownFieldTwice: encoding/json matches member
// names case-insensitively, so "ID" is the id, not an unknown field; kept
// in Extra as well it was written back after "id" and became the id on the
// next read (caught by FuzzManifest's round trip on a seed).
func TestManifestDoesNotKeepAKnownFieldTwice(t *testing.T) {
	in := `{"ID":"x","id":"job","Version":"1","execute":{"shell":"sh","script":"x","timeout":"1s"},"Extra":1}`
	var m kanade.Manifest
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"job","version":"1","execute":{"shell":"sh","script":"x","timeout":"1s"},"Extra":1}`
	if diff := cmp.Diff(want, string(out)); diff != "" {
		t.Errorf("written back (-want +got):\n%s", diff)
	}
}

func TestManifestValidation(t *testing.T) {
	valid := func() kanade.Manifest {
		return kanade.Manifest{ID: "job", Version: "1", Execute: kanade.Execute{Shell: "pwsh", Script: "x", Timeout: "1d"}}
	}
	tests := []struct {
		name   string
		mutate func(*kanade.Manifest)
		field  string // the FieldError's field; "" = valid
		want   string // the whole error
	}{
		{"a minimal manifest is valid", func(*kanade.Manifest) {}, "", ""},
		{"the id is required", func(m *kanade.Manifest) { m.ID = "" }, "id", "id is required"},
		{"the id must be a subject token", func(m *kanade.Manifest) { m.ID = "a.b" }, "id",
			`id "a.b" must be 1–128 characters of [-/_=A-Za-z0-9] (a subject token and a KV key)`},
		{"the version is required", func(m *kanade.Manifest) { m.Version = "" }, "version", "version is required"},
		{"an unknown shell is refused", func(m *kanade.Manifest) { m.Execute.Shell = "bash" }, "execute.shell",
			`execute.shell "bash" must be one of powershell, pwsh, cmd, sh`},
		{"the script is required", func(m *kanade.Manifest) { m.Execute.Script = "" }, "execute.script", "execute.script is required (or one of execute.script_file, execute.script_object)"},
		{"the timeout is required", func(m *kanade.Manifest) { m.Execute.Timeout = " " }, "execute.timeout", "execute.timeout is required"},
		{"the timeout must parse", func(m *kanade.Manifest) { m.Execute.Timeout = "soon" }, "execute.timeout",
			`execute.timeout "soon" must be a duration such as 90s, 5m, 1h30m or 1.5d`},
		{"the timeout must be positive", func(m *kanade.Manifest) { m.Execute.Timeout = "0s" }, "execute.timeout",
			`execute.timeout "0s" must be greater than zero`},
		{"the jitter must not be negative", func(m *kanade.Manifest) { m.Execute.Jitter = "-5s" }, "execute.jitter",
			`execute.jitter "-5s" must not be negative`},
		{"run_as is one of three", func(m *kanade.Manifest) { m.Execute.RunAs = "root" }, "execute.run_as",
			`execute.run_as "root" must be one of system, user, system_gui`},
		{"target groups are tokens", func(m *kanade.Manifest) { m.Target = &kanade.Target{Groups: []string{"a b"}} }, "target.groups[0]",
			`target.groups[0] "a b" must be a subject token: 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters`},
		{"target pcs are tokens", func(m *kanade.Manifest) { m.Target = &kanade.Target{PCs: []string{"PC-1", "a>"}} }, "target.pcs[1]",
			`target.pcs[1] "a>" must be a subject token: 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters`},
		{"rollout waves need delays", func(m *kanade.Manifest) {
			m.Rollout = &kanade.Rollout{Strategy: "wave", Waves: []kanade.Wave{{Group: "canary", Delay: "later"}}}
		}, "rollout.waves[0].delay", `rollout.waves[0].delay "later" must be a duration such as 90s, 5m, 1h30m or 1.5d`},
		{"rollout waves need a group", func(m *kanade.Manifest) {
			m.Rollout = &kanade.Rollout{Strategy: "wave", Waves: []kanade.Wave{{Group: "canary"}, {Delay: "1h"}}}
		}, "rollout.waves[1].group", "rollout.waves[1].group is required"},
		{"a value is quoted clipped", func(m *kanade.Manifest) { m.Execute.Shell = strings.Repeat("x", 100) }, "execute.shell",
			`execute.shell "` + strings.Repeat("x", 64) + `…(100 bytes)" must be one of powershell, pwsh, cmd, sh`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := valid()
			tt.mutate(&m)
			err := m.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *kanade.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Validate() = %v (FieldError %+v), want a FieldError on %s", err, fe, tt.field)
			}
			if err.Error() != tt.want {
				t.Errorf("Validate() =\n%s\nwant\n%s", err, tt.want)
			}
		})
	}
}

// TestParseManifestNamesTheField: ParseManifest's errors carry the field
// like Validate's, for a member of the wrong JSON type and for an id that is
// not its key too; only a value that is not an object names none.
func TestParseManifestNamesTheField(t *testing.T) {
	const ok = `{"id":"job","version":"1","execute":{"shell":"sh","script":"x","timeout":"1m"}}`
	tests := []struct {
		name, key, data string
		field           string // "" = a plain error
		want            string
	}{
		{"a version that is a number", "", strings.Replace(ok, `"1"`, `1`, 1), "version", "version must be a string (got a JSON number)"},
		{"an execute that is a string", "", `{"id":"job","version":"1","execute":"sh -c x"}`, "execute", "execute must be an object (got a JSON string)"},
		{"a nested member of the wrong type", "", strings.Replace(ok, `"script":"x"`, `"script":["x"]`, 1), "execute.script",
			"execute.script must be a string (got a JSON array)"},
		{"an id that is not the key", "other", ok, "id", `id "job" must equal the key "other"`},
		{"an array", "", `[1]`, "", "manifest must be an object (got a JSON array)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := kanade.ParseManifest(tt.key, []byte(tt.data))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("ParseManifest = %v, want %q", err, tt.want)
			}
			var fe *kanade.FieldError
			if isField := errors.As(err, &fe); isField != (tt.field != "") || isField && fe.Field != tt.field {
				t.Errorf("FieldError %+v, want one on %q", fe, tt.field)
			}
		})
	}
	if m, err := kanade.ParseManifest("job", []byte(ok)); err != nil || m.ID != "job" {
		t.Errorf("ParseManifest(valid) = %+v, %v", m, err)
	}
}

func TestManifestCommandIsTheWireShape(t *testing.T) {
	m := kanade.Manifest{ID: "job", Version: "7", Execute: kanade.Execute{Shell: "sh", Script: "true", Timeout: "10m", Jitter: "30s"}}
	deadline := time.Date(2026, 6, 10, 9, 5, 0, 0, time.UTC)
	c, err := m.Command(kanade.CommandOptions{ExecID: "e", RequestID: "r", DeadlineAt: &deadline})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c)
	want := `{"id":"job","version":"7","request_id":"r","exec_id":"e","shell":"sh","script":"true","timeout_secs":600,"jitter_secs":30,"deadline_at":"2026-06-10T09:05:00Z","staleness":{"mode":"cached"}}`
	if string(b) != want {
		t.Errorf("command =\n%s\nwant\n%s", b, want)
	}
	m.Execute.Jitter = ""
	c, _ = m.Command(kanade.CommandOptions{RequestID: "r"})
	b, _ = json.Marshal(c)
	if !strings.Contains(string(b), `"jitter_secs":null`) || !strings.Contains(string(b), `"staleness":{"mode":"cached"}`) {
		t.Errorf("jitter_secs and staleness must always be present: %s", b)
	}
}
