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

// TestManifestFieldsOf04356 covers the fields upstream 0.43.56 added to a
// manifest: the script sources, staleness, the hints and on_failure.
func TestManifestFieldsOf04356(t *testing.T) {
	valid := func() kanade.Manifest {
		return kanade.Manifest{ID: "job", Version: "1", Execute: kanade.Execute{Shell: "sh", Script: "x", Timeout: "1m"}}
	}
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	tests := []struct {
		name   string
		mutate func(*kanade.Manifest)
		field  string // the FieldError's field; "" = valid
	}{
		{"a script object alone", func(m *kanade.Manifest) { m.Execute.Script, m.Execute.ScriptObject = "", "cleanup/1.0.1" }, ""},
		{"a script file alone", func(m *kanade.Manifest) { m.Execute.Script, m.Execute.ScriptFile = "", "scripts/cleanup.ps1" }, ""},
		{"an emptied script next to an object is unset", func(m *kanade.Manifest) { m.Execute.ScriptObject = "cleanup/1"; m.Execute.Script = "" }, ""},
		{"no script source", func(m *kanade.Manifest) { m.Execute.Script = "" }, "execute.script"},
		{"script and script_object", func(m *kanade.Manifest) { m.Execute.ScriptObject = "cleanup/1" }, "execute"},
		{"script and script_file", func(m *kanade.Manifest) { m.Execute.ScriptFile = "a.ps1" }, "execute"},
		{"script_file and script_object", func(m *kanade.Manifest) {
			m.Execute.Script, m.Execute.ScriptFile, m.Execute.ScriptObject = "", "a.ps1", "a/1"
		}, "execute"},
		{"a script object without a version", func(m *kanade.Manifest) { m.Execute.Script, m.Execute.ScriptObject = "", "cleanup" }, "execute.script_object"},
		{"a script object with three parts", func(m *kanade.Manifest) { m.Execute.Script, m.Execute.ScriptObject = "", "a/b/c" }, "execute.script_object"},
		{"a script object with an empty name", func(m *kanade.Manifest) { m.Execute.Script, m.Execute.ScriptObject = "", "/1" }, "execute.script_object"},
		{"staleness cached", func(m *kanade.Manifest) { m.Staleness = &kanade.Staleness{Mode: "cached"} }, ""},
		{"staleness strict with an age", func(m *kanade.Manifest) { m.Staleness = &kanade.Staleness{Mode: "strict", MaxCacheAge: "0s"} }, ""},
		{"staleness strict without an age", func(m *kanade.Manifest) { m.Staleness = &kanade.Staleness{Mode: "strict"} }, "staleness.max_cache_age"},
		{"an age without strict", func(m *kanade.Manifest) { m.Staleness = &kanade.Staleness{Mode: "unchecked", MaxCacheAge: "1h"} }, "staleness.max_cache_age"},
		{"an unknown staleness mode", func(m *kanade.Manifest) { m.Staleness = &kanade.Staleness{Mode: "fresh"} }, "staleness.mode"},
		{"an emit hint", func(m *kanade.Manifest) { m.Emit = raw(`{"type":"events","watermark_path":"C:\\w"}`) }, ""},
		{"an emit hint of another type", func(m *kanade.Manifest) { m.Emit = raw(`{"type":"metrics"}`) }, "emit.type"},
		{"emit with inventory", func(m *kanade.Manifest) {
			m.Emit, m.Inventory = raw(`{"type":"events"}`), raw(`{"display":[{"field":"a","label":"A"}]}`)
		}, "emit"},
		{"emit with check", func(m *kanade.Manifest) { m.Emit, m.Check = raw(`{"type":"events"}`), raw(`{"name":"disk"}`) }, "emit"},
		{"check with collect", func(m *kanade.Manifest) {
			m.Check, m.Collect = raw(`{"name":"disk"}`), raw(`{"name":"logs","max_size":"50MB"}`)
		}, ""},
		{"a check without a name", func(m *kanade.Manifest) { m.Check = raw(`{"label":"Disk"}`) }, "check.name"},
		{"a blank check name", func(m *kanade.Manifest) { m.Check = raw(`{"name":"  "}`) }, "check.name"},
		{"a collect size that is not one", func(m *kanade.Manifest) { m.Collect = raw(`{"name":"logs","max_size":"huge"}`) }, "collect.max_size"},
		{"an inventory without display", func(m *kanade.Manifest) { m.Inventory = raw(`{"summary":[]}`) }, "inventory.display"},
		{"an inventory column of the wrong type", func(m *kanade.Manifest) {
			m.Inventory = raw(`{"display":[{"field":"a","label":"A","columns":[{"field":1,"label":"x"}]}]}`)
		}, "inventory.display[0].columns[0].field"},
		{"a hint that is not an object", func(m *kanade.Manifest) { m.Check = raw(`"disk"`) }, "check"},
		{"a client hint of an unknown category", func(m *kanade.Manifest) { m.Client = raw(`{"name":"x","category":"games"}`) }, "client.category"},
		{"a retry", func(m *kanade.Manifest) {
			m.OnFailure = &kanade.OnFailure{Retry: &kanade.Retry{Max: 3, Backoff: "30s"}}
		}, ""},
		{"a retry of 0 attempts", func(m *kanade.Manifest) {
			m.OnFailure = &kanade.OnFailure{Retry: &kanade.Retry{Max: 0, Backoff: "30s"}}
		}, "on_failure.retry.max"},
		{"a retry of 11 attempts", func(m *kanade.Manifest) {
			m.OnFailure = &kanade.OnFailure{Retry: &kanade.Retry{Max: 11, Backoff: "30s"}}
		}, "on_failure.retry.max"},
		{"a retry backoff under a second", func(m *kanade.Manifest) {
			m.OnFailure = &kanade.OnFailure{Retry: &kanade.Retry{Max: 1, Backoff: "500ms"}}
		}, "on_failure.retry.backoff"},
		{"an empty on_failure", func(m *kanade.Manifest) { m.OnFailure = &kanade.OnFailure{} }, ""},
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
				t.Fatalf("Validate() = %v, want a FieldError on %s", err, tt.field)
			}
		})
	}
}

func TestManifestCommandCarriesTheNewFields(t *testing.T) {
	const digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	m := kanade.Manifest{ID: "cleanup", Version: "1.0.1",
		Execute:   kanade.Execute{Shell: "powershell", ScriptObject: "cleanup/1.0.1", Timeout: "90s", RunAs: "user", Cwd: `C:\temp`},
		Staleness: &kanade.Staleness{Mode: "strict", MaxCacheAge: "1h"},
		Check:     json.RawMessage(`{"name":"disk","fleet":true}`),
		Collect:   json.RawMessage(`{"name":"logs"}`),
		OnFailure: &kanade.OnFailure{Retry: &kanade.Retry{Max: 2, Backoff: "1m"}},
	}
	c, err := m.Command(kanade.CommandOptions{ExecID: "e", RequestID: "r", ScriptObjectSHA256: digest, Retry: m.Retry()})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c)
	want := `{"id":"cleanup","version":"1.0.1","request_id":"r","exec_id":"e","shell":"powershell","script":"",` +
		`"script_object":"cleanup/1.0.1","script_object_sha256":"` + digest + `","timeout_secs":90,"jitter_secs":null,` +
		`"run_as":"user","cwd":"C:\\temp","staleness":{"mode":"strict","max_cache_age":"1h"},` +
		`"check":{"name":"disk","fleet":true},"collect":{"name":"logs"},"retry":{"max":2,"backoff_secs":60}}`
	if string(b) != want {
		t.Errorf("command =\n%s\nwant\n%s", b, want)
	}

	for _, tt := range []struct {
		name   string
		mutate func(*kanade.Manifest, *kanade.CommandOptions)
		want   string // a part of the error
	}{
		{"a script object needs its digest", func(_ *kanade.Manifest, o *kanade.CommandOptions) { o.ScriptObjectSHA256 = "" }, "needs its SHA-256"},
		{"a digest in upper case is refused", func(_ *kanade.Manifest, o *kanade.CommandOptions) { o.ScriptObjectSHA256 = strings.ToUpper(digest) }, "needs its SHA-256"},
		{"a script file was never inlined", func(m *kanade.Manifest, _ *kanade.CommandOptions) {
			m.Execute.ScriptObject, m.Execute.ScriptFile = "", "cleanup.ps1"
		}, "never inlined"},
		{"an invalid manifest", func(m *kanade.Manifest, _ *kanade.CommandOptions) { m.Execute.Shell = "bash" }, "execute.shell"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mm := m
			o := kanade.CommandOptions{RequestID: "r", ScriptObjectSHA256: digest}
			tt.mutate(&mm, &o)
			if _, err := mm.Command(o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Command = %v, want an error with %q", err, tt.want)
			}
		})
	}

	// An inline script ignores a digest and sends no script_object.
	inline := kanade.Manifest{ID: "j", Version: "1", Execute: kanade.Execute{Shell: "sh", Script: "true", Timeout: "1s"}}
	c, err = inline.Command(kanade.CommandOptions{RequestID: "r", ScriptObjectSHA256: digest})
	if err != nil || c.ScriptObject != "" || c.ScriptObjectSHA256 != "" || c.Script != "true" || c.Retry != nil {
		t.Errorf("inline command = %+v, %v", c, err)
	}
}

func TestRetryLowering(t *testing.T) {
	tests := []struct {
		name string
		of   *kanade.OnFailure
		want *kanade.RetrySpec
	}{
		{"none", nil, nil},
		{"no retry", &kanade.OnFailure{}, nil},
		{"whole seconds", &kanade.OnFailure{Retry: &kanade.Retry{Max: 3, Backoff: "1m30s"}}, &kanade.RetrySpec{Max: 3, BackoffSecs: 90}},
		{"truncated to seconds", &kanade.OnFailure{Retry: &kanade.Retry{Max: 1, Backoff: "1.9s"}}, &kanade.RetrySpec{Max: 1, BackoffSecs: 1}},
		{"days", &kanade.OnFailure{Retry: &kanade.Retry{Max: 10, Backoff: "1d"}}, &kanade.RetrySpec{Max: 10, BackoffSecs: 86400}},
		{"an invalid retry is not sent", &kanade.OnFailure{Retry: &kanade.Retry{Max: 50, Backoff: "1s"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := kanade.Manifest{OnFailure: tt.of}
			s := kanade.Schedule{OnFailure: tt.of}
			if diff := cmp.Diff(tt.want, m.Retry()); diff != "" {
				t.Errorf("Manifest.Retry (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, s.Retry()); diff != "" {
				t.Errorf("Schedule.Retry (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCommandSecondsAreTruncated: control.md §0.2, a *_secs field takes
// the whole seconds of its duration; a timeout under a second still gives
// the agent one.
func TestCommandSecondsAreTruncated(t *testing.T) {
	for _, tt := range []struct {
		timeout, jitter string
		secs, jsecs     int64
	}{
		{"90.9s", "1.9s", 90, 1},
		{"1m", "59.999s", 60, 59},
		{"500ms", "0s", 1, 0},
	} {
		m := kanade.Manifest{ID: "j", Version: "1", Execute: kanade.Execute{Shell: "sh", Script: "x", Timeout: tt.timeout, Jitter: tt.jitter}}
		c, err := m.Command(kanade.CommandOptions{RequestID: "r"})
		if err != nil {
			t.Fatal(err)
		}
		if c.TimeoutSecs != tt.secs || c.JitterSecs == nil || *c.JitterSecs != tt.jsecs {
			t.Errorf("timeout %s jitter %s: timeout_secs %d jitter_secs %v, want %d and %d", tt.timeout, tt.jitter, c.TimeoutSecs, c.JitterSecs, tt.secs, tt.jsecs)
		}
	}
}
