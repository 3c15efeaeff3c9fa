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

func TestRunRequestValidate(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		field string // the FieldError's field; "" = valid
		want  func(*testing.T, *kanade.RunRequest)
	}{
		{name: "defaults", body: `{"pc_id":"PC-1","script":"hostname"}`, want: func(t *testing.T, r *kanade.RunRequest) {
			if r.Shell != "powershell" || r.RunAs != "system" || *r.TimeoutSecs != 60 || r.ExecID != "" || r.JitterSecs != nil {
				t.Errorf("defaults: %+v (timeout %d)", r, *r.TimeoutSecs)
			}
		}},
		{name: "ps is powershell", body: `{"pc_id":"PC-1","script":"x","shell":"ps"}`, want: shellIs("powershell")},
		{name: "pwsh stays pwsh", body: `{"pc_id":"PC-1","script":"x","shell":"pwsh"}`, want: shellIs("pwsh")},
		{name: "cmd", body: `{"pc_id":"PC-1","script":"x","shell":"cmd"}`, want: shellIs("cmd")},
		{name: "sh", body: `{"pc_id":"PC-1","script":"x","shell":"sh"}`, want: shellIs("sh")},
		{name: "job_id is the old exec_id", body: `{"pc_id":"PC-1","script":"x","job_id":"e-1"}`, want: func(t *testing.T, r *kanade.RunRequest) {
			if r.ExecID != "e-1" || r.JobID != "" {
				t.Errorf("exec_id %q job_id %q, want e-1 and none", r.ExecID, r.JobID)
			}
		}},
		{name: "both names with one value", body: `{"pc_id":"PC-1","script":"x","job_id":"e-1","exec_id":"e-1"}`},
		{name: "a zero timeout", body: `{"pc_id":"PC-1","script":"x","timeout_secs":0}`, want: func(t *testing.T, r *kanade.RunRequest) {
			if *r.TimeoutSecs != 0 {
				t.Errorf("timeout = %d, want 0 kept", *r.TimeoutSecs)
			}
		}},
		{name: "the longest timeout", body: `{"pc_id":"PC-1","script":"x","timeout_secs":3600,"jitter_secs":0,"run_as":"system_gui"}`},
		{name: "unknown keys are ignored", body: `{"pc_id":"PC-1","script":"x","cwd":"C:\\"}`},

		{name: "no pc", body: `{"script":"x"}`, field: "pc_id"},
		{name: "a pc with a dot", body: `{"pc_id":"PC.1","script":"x"}`, field: "pc_id"},
		{name: "a pc with a space", body: `{"pc_id":"PC 1","script":"x"}`, field: "pc_id"},
		{name: "a pc that is a wildcard", body: `{"pc_id":">","script":"x"}`, field: "pc_id"},
		{name: "no script", body: `{"pc_id":"PC-1"}`, field: "script"},
		{name: "an empty script", body: `{"pc_id":"PC-1","script":""}`, field: "script"},
		{name: "an unknown shell", body: `{"pc_id":"PC-1","script":"x","shell":"bash"}`, field: "shell"},
		{name: "shells are lower case", body: `{"pc_id":"PC-1","script":"x","shell":"PowerShell"}`, field: "shell"},
		{name: "a timeout over an hour", body: `{"pc_id":"PC-1","script":"x","timeout_secs":3601}`, field: "timeout_secs"},
		{name: "a negative timeout", body: `{"pc_id":"PC-1","script":"x","timeout_secs":-1}`, field: "timeout_secs"},
		{name: "an exec id with a dot", body: `{"pc_id":"PC-1","script":"x","exec_id":"a.b"}`, field: "exec_id"},
		{name: "an old job id with a space", body: `{"pc_id":"PC-1","script":"x","job_id":"a b"}`, field: "job_id"},
		{name: "two different exec ids", body: `{"pc_id":"PC-1","script":"x","job_id":"a","exec_id":"b"}`, field: "job_id"},
		{name: "a negative jitter", body: `{"pc_id":"PC-1","script":"x","jitter_secs":-5}`, field: "jitter_secs"},
		{name: "an unknown run_as", body: `{"pc_id":"PC-1","script":"x","run_as":"root"}`, field: "run_as"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := kanade.DecodeRunRequest([]byte(tt.body))
			if err != nil {
				t.Fatalf("DecodeRunRequest = %v", err)
			}
			err = r.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if tt.want != nil {
					tt.want(t, r)
				}
				if err := r.Validate(); err != nil {
					t.Errorf("a second Validate() = %v", err)
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

func shellIs(want string) func(*testing.T, *kanade.RunRequest) {
	return func(t *testing.T, r *kanade.RunRequest) {
		if r.Shell != want {
			t.Errorf("shell = %q, want %q", r.Shell, want)
		}
	}
}

func TestDecodeRunRequestErrors(t *testing.T) {
	for _, tt := range []struct {
		name, body, field string // field "" = a BodySyntaxError
	}{
		{"not JSON", `{"pc_id":`, ""},
		{"a string", `"PC-1"`, ""},
		{"a key given twice", `{"pc_id":"a","pc_id":"b"}`, ""},
		{"a timeout that is a string", `{"timeout_secs":"60"}`, "timeout_secs"},
		{"a fractional timeout", `{"timeout_secs":1.5}`, "timeout_secs"},
		{"a script that is a list", `{"script":["a","b"]}`, "script"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := kanade.DecodeRunRequest([]byte(tt.body))
			var se *kanade.BodySyntaxError
			var fe *kanade.FieldError
			if tt.field == "" && !errors.As(err, &se) || tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field) {
				t.Errorf("error %v, want %s", err, map[bool]string{true: "a BodySyntaxError", false: "a FieldError on " + tt.field}[tt.field == ""])
			}
		})
	}
}

func TestRunRequestCommand(t *testing.T) {
	r, err := kanade.DecodeRunRequest([]byte(`{"pc_id":"PC-0123","script":"Get-Process","shell":"ps","timeout_secs":120,` +
		`"job_id":"1d2e","jitter_secs":5,"run_as":"user"}`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Command("6f1c9e2a-8d4b-4c1e-b1a3-2f0e9d7c5b44")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c)
	want := `{"id":"adhoc-run","version":"0.0.0","request_id":"6f1c9e2a-8d4b-4c1e-b1a3-2f0e9d7c5b44","exec_id":"1d2e",` +
		`"shell":"powershell","script":"Get-Process","timeout_secs":120,"jitter_secs":5,"run_as":"user","staleness":{"mode":"cached"}}`
	if string(b) != want {
		t.Errorf("command =\n%s\nwant\n%s", b, want)
	}
	if r.Subject() != "commands.pc.PC-0123" || r.Wait() != 130*time.Second {
		t.Errorf("subject %q wait %v", r.Subject(), r.Wait())
	}

	// The defaults give run_as system, jitter_secs null, no exec_id.
	d := &kanade.RunRequest{PCID: "PC-1", Script: "x"}
	c, err = d.Command("r")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(c)
	want = `{"id":"adhoc-run","version":"0.0.0","request_id":"r","shell":"powershell","script":"x","timeout_secs":60,` +
		`"jitter_secs":null,"run_as":"system","staleness":{"mode":"cached"}}`
	if string(b) != want {
		t.Errorf("default command =\n%s\nwant\n%s", b, want)
	}
	if d.Wait() != 70*time.Second {
		t.Errorf("default wait = %v", d.Wait())
	}

	if _, err := (&kanade.RunRequest{PCID: "PC 1", Script: "x"}).Command("r"); err == nil {
		t.Error("Command of an invalid request = nil error")
	}
	if _, err := d.Command("a.b"); err == nil {
		t.Error("Command with a request id that is not a token = nil error")
	}
}

func TestRunRequestAuditPayload(t *testing.T) {
	script := strings.Repeat("é", 499) + "末尾" // 501 characters, 1004 bytes
	r := &kanade.RunRequest{PCID: "PC-1", Script: script, Shell: "sh"}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	got := r.AuditPayload("req")
	want := map[string]any{"request_id": "req", "exec_id": nil, "shell": "sh", "run_as": "system",
		"script": strings.Repeat("é", 499) + "末"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AuditPayload (-want +got):\n%s", diff)
	}
	r.ExecID = "e"
	if got := r.AuditPayload("req"); got["exec_id"] != "e" {
		t.Errorf("exec_id = %v", got["exec_id"])
	}
	short := &kanade.RunRequest{PCID: "PC-1", Script: "echo hi"}
	short.Validate()
	if got := short.AuditPayload("r")["script"]; got != "echo hi" {
		t.Errorf("a short script is kept whole, got %v", got)
	}
}
