package kanade_test

import (
	"encoding/json"
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
		want   string // substring of the error; "" = valid
	}{
		{"a minimal manifest is valid", func(*kanade.Manifest) {}, ""},
		{"the id must be a subject token", func(m *kanade.Manifest) { m.ID = "a.b" }, "id:"},
		{"the version is required", func(m *kanade.Manifest) { m.Version = "" }, "version: required"},
		{"an unknown shell is refused", func(m *kanade.Manifest) { m.Execute.Shell = "bash" }, "execute.shell"},
		{"the timeout must parse", func(m *kanade.Manifest) { m.Execute.Timeout = "soon" }, "execute.timeout"},
		{"the timeout must be positive", func(m *kanade.Manifest) { m.Execute.Timeout = "0s" }, "execute.timeout: must be positive"},
		{"run_as is one of three", func(m *kanade.Manifest) { m.Execute.RunAs = "root" }, "execute.run_as"},
		{"target groups are tokens", func(m *kanade.Manifest) { m.Target = &kanade.Target{Groups: []string{"a b"}} }, "target.groups[0]"},
		{"rollout waves need delays", func(m *kanade.Manifest) {
			m.Rollout = &kanade.Rollout{Strategy: "wave", Waves: []kanade.Wave{{Group: "canary", Delay: "later"}}}
		}, "rollout.waves[0].delay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := valid()
			tt.mutate(&m)
			err := m.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
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
