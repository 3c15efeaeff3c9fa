package kanade_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

// The wire.md examples: every case below patches one of them.
const (
	heartbeatExample = `{"pc_id":"PC-0123","at":"2026-09-30T01:23:45.123Z","agent_version":"0.45.3","hostname":"PC-0123",
 "os_family":"windows","agent_cpu_pct":0.4,"agent_rss_bytes":45056000,"last_logon_user":"CORP\\taro"}`
	resultExample = `{"result_id":"0b6c2a4e-3c0d-4a55-9a0e-6e2d7f1b9c11","request_id":"6f1c9e2a-8d4b-4c1e-b1a3-2f0e9d7c5b44",
 "exec_id":"1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e4f5","pc_id":"PC-0123","exit_code":0,"stdout":"ok","stderr":"",
 "started_at":"2026-09-30T01:20:00.100Z","finished_at":"2026-09-30T01:20:04.730Z","manifest_id":"inventory-hw"}`
	startedExample = `{"result_id":"0b6c2a4e-3c0d-4a55-9a0e-6e2d7f1b9c11","request_id":"6f1c9e2a-8d4b-4c1e-b1a3-2f0e9d7c5b44",
 "exec_id":"1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e4f5","pc_id":"PC-0123","started_at":"2026-09-30T01:20:00.100Z",
 "manifest_id":"inventory-hw","version":"3"}`
	auditExample = `{"actor":"operator","action":"config_scope_put","target":"groups.canary","payload":{"sub":"alice"},
 "occurred_at":"2026-09-30T01:20:00Z"}`
)

// patch returns the JSON object doc with the members of p replacing its own;
// a member patched to the JSON text "absent" is removed.
func patch(t testing.TB, doc string, p map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range p {
		if v == "absent" {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeValidate is what the projection does with a message body.
func decodeValidate(data []byte, v interface{ Validate() error }) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return v.Validate()
}

func list(n int, s string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// maxErrorBytes bounds a validation error's text, whatever the input size:
// the error is logged and counted per message.
const maxErrorBytes = 300

func TestValidateRejectsEachBrokenBoundNamingTheField(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	type payload struct {
		name string
		doc  string
		new  func() interface{ Validate() error }
	}
	hb := payload{"heartbeat", heartbeatExample, func() interface{ Validate() error } { return &kanade.Heartbeat{} }}
	res := payload{"result", resultExample, func() interface{ Validate() error } { return &kanade.ExecResult{} }}
	st := payload{"started event", startedExample, func() interface{ Validate() error } { return &kanade.EventStarted{} }}
	au := payload{"audit", auditExample, func() interface{ Validate() error } { return &kanade.AuditEvent{} }}

	tests := []struct {
		name  string
		p     payload
		patch map[string]any
		// want is the whole error text ("" = valid); field the FieldError's
		// field when the error is a rule (not a decode error).
		want  string
		field string
	}{
		// The examples themselves.
		{name: "the heartbeat example is valid", p: hb},
		{name: "the result example is valid", p: res},
		{name: "the started example is valid", p: st},
		{name: "the audit example is valid", p: au},

		// Heartbeat.
		{name: "a heartbeat without pc_id", p: hb, patch: map[string]any{"pc_id": "absent"},
			want: "heartbeat: pc_id is required", field: "pc_id"},
		{name: "a very long heartbeat pc_id", p: hb, patch: map[string]any{"pc_id": long(5000)},
			want: `heartbeat: pc_id "` + long(64) + `…(5000 bytes)" must be 1–128 bytes of [A-Za-z0-9_=/-]`, field: "pc_id"},
		{name: "a pc_id with a dot", p: hb, patch: map[string]any{"pc_id": "PC.1"},
			want: `heartbeat: pc_id "PC.1" must be 1–128 bytes of [A-Za-z0-9_=/-]`, field: "pc_id"},
		{name: "a pc_id with a newline is quoted escaped", p: hb, patch: map[string]any{"pc_id": "PC\n1"},
			want: `heartbeat: pc_id "PC\\x0a1" must be 1–128 bytes of [A-Za-z0-9_=/-]`, field: "pc_id"},
		{name: "a heartbeat without at", p: hb, patch: map[string]any{"at": "absent"},
			want: "heartbeat: at is required", field: "at"},
		{name: "a heartbeat at the zero time counts as absent", p: hb, patch: map[string]any{"at": "0001-01-01T00:00:00Z"},
			want: "heartbeat: at is required", field: "at"},
		{name: "a heartbeat without agent_version", p: hb, patch: map[string]any{"agent_version": ""},
			want: "heartbeat: agent_version is required", field: "agent_version"},
		{name: "an agent_version of 129 bytes", p: hb, patch: map[string]any{"agent_version": long(129)},
			want: `heartbeat: agent_version "` + long(64) + `…(129 bytes)" must be 1–128 bytes of printable UTF-8`, field: "agent_version"},
		{name: "an agent_version with an invisible character", p: hb, patch: map[string]any{"agent_version": "1.0\u200b"},
			want: `heartbeat: agent_version "1.0\\u200b" must be 1–128 bytes of printable UTF-8`, field: "agent_version"},
		{name: "an agent_version with a space is printable", p: hb, patch: map[string]any{"agent_version": "0.45.3 (dev)"}},
		{name: "a hostname of 1024 bytes", p: hb, patch: map[string]any{"hostname": long(1024)}},
		{name: "a hostname of 1025 bytes", p: hb, patch: map[string]any{"hostname": long(1025)},
			want: `heartbeat: hostname "` + long(64) + `…(1025 bytes)" must be at most 1024 bytes of UTF-8 without control characters`, field: "hostname"},
		{name: "an empty hostname stays allowed", p: hb, patch: map[string]any{"hostname": ""}},
		{name: "an os_family with a control character", p: hb, patch: map[string]any{"os_family": "win\x00dows"},
			want: `heartbeat: os_family "win\\x00dows" must be at most 1024 bytes of UTF-8 without control characters`, field: "os_family"},
		{name: "a last_logon_user with a newline", p: hb, patch: map[string]any{"last_logon_user": "taro\nFAKE LOG LINE"},
			want: `heartbeat: last_logon_user "taro\\x0aFAKE LOG LINE" must be at most 1024 bytes of UTF-8 without control characters`, field: "last_logon_user"},
		{name: "a last_logon_display_name of 1025 bytes", p: hb, patch: map[string]any{"last_logon_display_name": long(1025)},
			want: `heartbeat: last_logon_display_name "` + long(64) + `…(1025 bytes)" must be at most 1024 bytes of UTF-8 without control characters`, field: "last_logon_display_name"},
		{name: "256 quarantined versions", p: hb, patch: map[string]any{"quarantined_versions": list(256, "0.1.0")}},
		{name: "257 quarantined versions", p: hb, patch: map[string]any{"quarantined_versions": list(257, "0.1.0")},
			want: "heartbeat: quarantined_versions must have at most 256 entries (has 257)", field: "quarantined_versions"},
		{name: "a command key of 256 bytes", p: hb, patch: map[string]any{"command_keys": []string{"k1", long(256)}}},
		{name: "a command key of 257 bytes", p: hb, patch: map[string]any{"command_keys": []string{"k1", long(257)}},
			want: `heartbeat: command_keys[1] "` + long(64) + `…(257 bytes)" must be at most 256 bytes of UTF-8 without control characters`, field: "command_keys[1]"},
		{name: "an empty command_keys list is known-empty, not broken", p: hb, patch: map[string]any{"command_keys": []string{}}},
		{name: "257 command protocols", p: hb, patch: map[string]any{"command_protocols": list(257, "v1")},
			want: "heartbeat: command_protocols must have at most 256 entries (has 257)", field: "command_protocols"},

		// ExecResult.
		{name: "a result without result_id gets a derived one", p: res, patch: map[string]any{"result_id": "absent"}},
		{name: "a result_id of 129 bytes", p: res, patch: map[string]any{"result_id": long(129)},
			want: `result: result_id "` + long(64) + `…(129 bytes)" must be 1–128 bytes of UTF-8 without control characters`, field: "result_id"},
		{name: "a result without request_id", p: res, patch: map[string]any{"request_id": "absent"},
			want: "result: request_id is required", field: "request_id"},
		{name: "a request_id with a dot would split results.<request_id>", p: res, patch: map[string]any{"request_id": "a.b"},
			want: `result: request_id "a.b" must be a subject token: 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters`, field: "request_id"},
		{name: "an exec_id of 129 bytes would make kill.<exec_id> unsafe", p: res, patch: map[string]any{"exec_id": long(129)},
			want: `result: exec_id "` + long(64) + `…(129 bytes)" must be a subject token: 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters`, field: "exec_id"},
		{name: "an absent exec_id (ad-hoc run) stays allowed", p: res, patch: map[string]any{"exec_id": "absent"}},
		{name: "a result pc_id with a space", p: res, patch: map[string]any{"pc_id": "PC 1"},
			want: `result: pc_id "PC 1" must be 1–128 bytes of [A-Za-z0-9_=/-]`, field: "pc_id"},
		{name: "a result without exit_code", p: res, patch: map[string]any{"exit_code": "absent"},
			want: "result: exit_code is required", field: "exit_code"},
		{name: "a stdout_object naming an object", p: res, patch: map[string]any{"stdout_object": "6f1c9e2a-8d4b-4c1e-b1a3-2f0e9d7c5b44/stdout"}},
		{name: "a stdout_object of 3,100 bytes", p: res, patch: map[string]any{"stdout_object": long(3100)},
			want: `result: stdout_object "` + long(64) + `…(3100 bytes)" must be an object name: 1–255 bytes of UTF-8 without control characters`, field: "stdout_object"},
		{name: "a stderr_object with a NUL", p: res, patch: map[string]any{"stderr_object": "r/std\x00err"},
			want: `result: stderr_object "r/std\\x00err" must be an object name: 1–255 bytes of UTF-8 without control characters`, field: "stderr_object"},
		{name: "a result without started_at", p: res, patch: map[string]any{"started_at": "absent"},
			want: "result: started_at is required", field: "started_at"},
		{name: "a result with a null finished_at", p: res, patch: map[string]any{"finished_at": nil},
			want: "result: finished_at is required", field: "finished_at"},
		{name: "a run from year 0001 to 9999 has valid timestamps", p: res,
			patch: map[string]any{"started_at": "0001-01-01T00:00:00.000000001Z", "finished_at": "9999-12-31T23:59:59.999999999Z"}},
		{name: "a started_at in year 0000 does not decode", p: res, patch: map[string]any{"started_at": "0000-12-31T23:59:59Z"},
			want: `decode: parse timestamp "0000-12-31T23:59:59Z": year 0 out of range 0001–9999`},
		{name: "a finished_at pushed into year 10000 by its offset does not decode", p: res, patch: map[string]any{"finished_at": "9999-12-31T23:59:59-01:00"},
			want: `decode: parse timestamp "9999-12-31T23:59:59-01:00": year 10000 out of range`},
		{name: "a manifest_id of 5,000 bytes", p: res, patch: map[string]any{"manifest_id": long(5000)},
			want: `result: manifest_id "` + long(64) + `…(5000 bytes)" must be a KV key: 1–255 bytes of [-/_=.A-Za-z0-9], not starting or ending with '.', no '..'`, field: "manifest_id"},
		{name: "a manifest_id with a space", p: res, patch: map[string]any{"manifest_id": "inventory hw"},
			want: `result: manifest_id "inventory hw" must be a KV key: 1–255 bytes of [-/_=.A-Za-z0-9], not starting or ending with '.', no '..'`, field: "manifest_id"},
		{name: "a parent_result_id of 129 bytes", p: res, patch: map[string]any{"parent_result_id": long(129)},
			want: `result: parent_result_id "` + long(64) + `…(129 bytes)" must be 1–128 bytes of UTF-8 without control characters`, field: "parent_result_id"},

		// EventStarted.
		{name: "a started event without result_id", p: st, patch: map[string]any{"result_id": ""},
			want: "started event: result_id is required", field: "result_id"},
		{name: "a started result_id with a control character", p: st, patch: map[string]any{"result_id": "r\x1b1"},
			want: `started event: result_id "r\\x1b1" must be 1–128 bytes of UTF-8 without control characters`, field: "result_id"},
		{name: "a started pc_id of 129 bytes", p: st, patch: map[string]any{"pc_id": long(129)},
			want: `started event: pc_id "` + long(64) + `…(129 bytes)" must be 1–128 bytes of [A-Za-z0-9_=/-]`, field: "pc_id"},
		{name: "a started event without request_id or exec_id (ad-hoc)", p: st, patch: map[string]any{"request_id": "absent", "exec_id": ""}},
		{name: "a started request_id with a wildcard", p: st, patch: map[string]any{"request_id": "r>"},
			want: `started event: request_id "r>" must be a subject token: 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters`, field: "request_id"},
		{name: "a started exec_id with a star", p: st, patch: map[string]any{"exec_id": "*"},
			want: `started event: exec_id "*" must be a subject token: 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters`, field: "exec_id"},
		{name: "a started event without pc_id", p: st, patch: map[string]any{"pc_id": "absent"},
			want: "started event: pc_id is required", field: "pc_id"},
		{name: "a started event without started_at", p: st, patch: map[string]any{"started_at": nil},
			want: "started event: started_at is required", field: "started_at"},
		{name: "a started manifest_id of 5,000 bytes", p: st, patch: map[string]any{"manifest_id": long(5000)},
			want: `started event: manifest_id "` + long(64) + `…(5000 bytes)" must be a KV key: 1–255 bytes of [-/_=.A-Za-z0-9], not starting or ending with '.', no '..'`, field: "manifest_id"},
		{name: "a started manifest_id ending in a dot", p: st, patch: map[string]any{"manifest_id": "inv."},
			want: `started event: manifest_id "inv." must be a KV key: 1–255 bytes of [-/_=.A-Za-z0-9], not starting or ending with '.', no '..'`, field: "manifest_id"},
		{name: "a started version of 129 bytes", p: st, patch: map[string]any{"version": long(129)},
			want: `started event: version "` + long(64) + `…(129 bytes)" must be 1–128 bytes of UTF-8 without control characters`, field: "version"},

		// AuditEvent.
		{name: "an audit event without actor", p: au, patch: map[string]any{"actor": "absent"},
			want: "audit: actor is required", field: "actor"},
		{name: "an actor of 129 bytes", p: au, patch: map[string]any{"actor": long(129)},
			want: `audit: actor "` + long(64) + `…(129 bytes)" must be 1–128 bytes of UTF-8 without control characters`, field: "actor"},
		{name: "an audit event without action", p: au, patch: map[string]any{"action": ""},
			want: "audit: action is required", field: "action"},
		{name: "an action with a newline", p: au, patch: map[string]any{"action": "put\nx"},
			want: `audit: action "put\\x0ax" must be 1–128 bytes of UTF-8 without control characters`, field: "action"},
		{name: "an action with a dot is stored (it is only left out of the subject)", p: au, patch: map[string]any{"action": "schedule.update"}},
		{name: "a null target", p: au, patch: map[string]any{"target": nil}},
		{name: "a target of 1024 bytes", p: au, patch: map[string]any{"target": long(1024)}},
		{name: "a target of 1025 bytes", p: au, patch: map[string]any{"target": long(1025)},
			want: `audit: target "` + long(64) + `…(1025 bytes)" must be at most 1024 bytes of UTF-8 without control characters`, field: "target"},
		{name: "an audit event without occurred_at", p: au, patch: map[string]any{"occurred_at": "absent"},
			want: "audit: occurred_at is required", field: "occurred_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.p.new()
			err := decodeValidate(patch(t, tt.p.doc, tt.patch), v)
			got := ""
			if err != nil {
				got = err.Error()
			}
			switch {
			case tt.want == "":
				if err != nil {
					t.Fatalf("error = %v, want nil", err)
				}
				return
			case strings.HasPrefix(tt.want, "decode: "): // encoding/json adds no field
				if !strings.HasPrefix(got, tt.want) {
					t.Fatalf("error = %q, want the prefix %q", got, tt.want)
				}
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			var fe *kanade.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("error %v: FieldError %+v, want field %q", err, fe, tt.field)
			}
			if len(got) > maxErrorBytes {
				t.Errorf("error is %d bytes, want at most %d", len(got), maxErrorBytes)
			}
		})
	}
}

func TestValidateDerivesTheLegacyResultID(t *testing.T) {
	var r kanade.ExecResult
	if err := decodeValidate(patch(t, resultExample, map[string]any{"result_id": "absent"}), &r); err != nil {
		t.Fatal(err)
	}
	if want := kanade.LegacyResultID(r.RequestID, r.PcID); r.ResultID != want {
		t.Errorf("result_id = %q, want the derived %q", r.ResultID, want)
	}
}

// TestValidateChecksTimestampsBuiltInGo covers payloads that never went
// through JSON (the simulator, the benchmarks): a year the SQL layout cannot
// hold is refused by Validate too.
func TestValidateChecksTimestampsBuiltInGo(t *testing.T) {
	var h kanade.Heartbeat
	if err := json.Unmarshal([]byte(heartbeatExample), &h); err != nil {
		t.Fatal(err)
	}
	h.At.Time = h.At.AddDate(10000, 0, 0)
	err := h.Validate()
	var fe *kanade.FieldError
	if !errors.As(err, &fe) || fe.Field != "at" {
		t.Fatalf("Validate() = %v, want a FieldError on at", err)
	}
}

func TestAuditSubjectClipsWhatItQuotes(t *testing.T) {
	ev := kanade.AuditEvent{Actor: strings.Repeat("a", 3100), Action: "put\n"}
	_, err := ev.Subject()
	if err == nil {
		t.Fatal("Subject() of a 3,100-byte actor succeeded")
	}
	if len(err.Error()) > maxErrorBytes || strings.Contains(err.Error(), "\n") {
		t.Errorf("Subject() error is %d bytes or holds a newline: %q", len(err.Error()), err)
	}
}
