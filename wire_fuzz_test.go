package kanade_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/kanade-fleet/backend"
)

// Fuzz targets for everything that decodes bytes from the wire or from KV.
// Run them all with scripts/fuzz.sh; `go test` alone runs their seeds.

// addSeeds adds doc and, for each patch, doc with that patch applied.
func addSeeds(f *testing.F, doc string, patches ...map[string]any) {
	f.Add([]byte(doc))
	for _, p := range patches {
		f.Add(patch(f, doc, p))
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
}

// hugeSeed is a value over every bound (1,250 bytes of control sequences),
// so the seeds alone check that errors stay short whatever the input size.
// Much larger seeds slow the fuzzer down: it minimizes what it finds.
var hugeSeed = strings.Repeat("\x1b[2J\n", 250)

// checkErr fails when a validation error is too long to log per message.
func checkErr(t *testing.T, err error) {
	t.Helper()
	if n := len(err.Error()); n > maxErrorBytes {
		t.Fatalf("error is %d bytes (max %d): %.200s…", n, maxErrorBytes, err)
	}
}

// checkTime fails unless a required timestamp is set and fits TimeLayout
// exactly, which every range query in storage relies on.
func checkTime(t *testing.T, field string, ts kanade.Timestamp) {
	t.Helper()
	if ts.IsZero() {
		t.Fatalf("%s is zero after Validate", field)
	}
	s := kanade.FormatTime(ts.Time)
	if len(s) != len(kanade.TimeLayout) {
		t.Fatalf("%s formats as %q, not %d bytes", field, s, len(kanade.TimeLayout))
	}
	back, err := kanade.ParseTime(s)
	if err != nil || !back.Equal(ts.Time) {
		t.Fatalf("%s: %q parses back as %v, %v", field, s, back, err)
	}
}

// checkID fails unless v obeys rule (empty allowed when optional).
func checkID(t *testing.T, field, v string, optional bool, rule func(string) bool) {
	t.Helper()
	if optional && v == "" {
		return
	}
	if !rule(v) {
		t.Fatalf("%s %q passed Validate but breaks its rule", field, kanade.Clip(v))
	}
}

func textRule(max int) func(string) bool {
	return func(s string) bool { return kanade.ValidText(s, max) }
}

func FuzzHeartbeat(f *testing.F) {
	addSeeds(f, heartbeatExample,
		map[string]any{"pc_id": hugeSeed},
		map[string]any{"pc_id": "DESKTOP-ABC12", "command_keys": []string{"k1"}, "command_protocols": []string{}, "enforcing": false},
		map[string]any{"quarantined_versions": list(257, "1")},
		map[string]any{"hostname": nil, "last_logon_display_name": "山田 太郎"},
		map[string]any{"at": "9999-12-31T23:59:59.999999999Z", "agent_version": "0.45.3 (dev)"},
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		var h kanade.Heartbeat
		if json.Unmarshal(data, &h) != nil {
			return
		}
		if err := h.Validate(); err != nil {
			checkErr(t, err)
			return
		}
		checkID(t, "pc_id", h.PcID, false, kanade.ValidPCID)
		checkTime(t, "at", h.At)
		checkID(t, "agent_version", h.AgentVersion, false, textRule(kanade.MaxIDBytes))
		for name, p := range map[string]*string{"hostname": h.Hostname, "os_family": h.OsFamily,
			"last_logon_user": h.LastLogonUser, "last_logon_display_name": h.LastLogonDisplayName} {
			if p != nil {
				checkID(t, name, *p, true, textRule(kanade.MaxTextBytes))
			}
		}
		lists := map[string][]string{"quarantined_versions": h.QuarantinedVersions}
		if h.CommandKeys != nil {
			lists["command_keys"] = *h.CommandKeys
		}
		if h.CommandProtocols != nil {
			lists["command_protocols"] = *h.CommandProtocols
		}
		for name, l := range lists {
			if len(l) > kanade.MaxListEntries {
				t.Fatalf("%s has %d entries after Validate", name, len(l))
			}
			for i, v := range l {
				checkID(t, fmt.Sprintf("%s[%d]", name, i), v, true, textRule(kanade.MaxListEntryBytes))
			}
		}
	})
}

func FuzzExecResult(f *testing.F) {
	addSeeds(f, resultExample,
		map[string]any{"result_id": "absent", "exec_id": "absent", "stdout": "", "stdout_object": "6f1c9e2a/stdout"},
		map[string]any{"stdout_object": strings.Repeat("o", 3100)},
		map[string]any{"manifest_id": strings.Repeat("m", 5000)},
		map[string]any{"started_at": "0001-01-01T00:00:00.000000001Z", "finished_at": "9999-12-31T23:59:59.999999999Z"},
		map[string]any{"parent_result_id": "0b6c2a4e", "skipped": true, "exit_code": 124, "pc_id": hugeSeed},
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		var r kanade.ExecResult
		if json.Unmarshal(data, &r) != nil {
			return
		}
		if err := r.Validate(); err != nil {
			checkErr(t, err)
			return
		}
		checkID(t, "result_id", r.ResultID, false, kanade.ValidID)
		checkID(t, "request_id", r.RequestID, false, kanade.ValidToken)
		checkID(t, "exec_id", r.ExecID, true, kanade.ValidToken)
		checkID(t, "pc_id", r.PcID, false, kanade.ValidPCID)
		if r.ExitCode == nil {
			t.Fatal("exit_code is nil after Validate")
		}
		checkID(t, "stdout_object", r.StdoutObject, true, kanade.ValidObjectName)
		checkID(t, "stderr_object", r.StderrObject, true, kanade.ValidObjectName)
		checkTime(t, "started_at", r.StartedAt)
		checkTime(t, "finished_at", r.FinishedAt)
		checkID(t, "manifest_id", r.ManifestID, true, kanade.ValidKVKey)
		checkID(t, "parent_result_id", r.ParentResultID, true, kanade.ValidID)
		// Redeliveries must map to one row: validating again changes nothing.
		again := r
		if err := again.Validate(); err != nil || again.ResultID != r.ResultID {
			t.Fatalf("second Validate: %v, result_id %q then %q", err, r.ResultID, again.ResultID)
		}
	})
}

func FuzzEventStarted(f *testing.F) {
	addSeeds(f, startedExample,
		map[string]any{"exec_id": "", "request_id": "absent", "version": "absent", "manifest_id": "absent"},
		map[string]any{"manifest_id": strings.Repeat("m", 5000)},
		map[string]any{"manifest_id": "a..b", "version": hugeSeed},
		map[string]any{"started_at": "0000-12-31T23:59:59Z"},
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		var e kanade.EventStarted
		if json.Unmarshal(data, &e) != nil {
			return
		}
		if err := e.Validate(); err != nil {
			checkErr(t, err)
			return
		}
		checkID(t, "result_id", e.ResultID, false, kanade.ValidID)
		checkID(t, "request_id", e.RequestID, true, kanade.ValidToken)
		checkID(t, "exec_id", e.ExecID, true, kanade.ValidToken)
		checkID(t, "pc_id", e.PcID, false, kanade.ValidPCID)
		checkTime(t, "started_at", e.StartedAt)
		checkID(t, "manifest_id", e.ManifestID, true, kanade.ValidKVKey)
		checkID(t, "version", e.Version, true, kanade.ValidID)
	})
}

func FuzzAuditEvent(f *testing.F) {
	addSeeds(f, auditExample,
		map[string]any{"target": nil, "actor": "scheduler", "action": "exec"},
		map[string]any{"target": "a.b c", "action": "schedule.update"},
		map[string]any{"actor": hugeSeed, "payload": []int{1, 2}},
		map[string]any{"target": strings.Repeat("t", 1025)},
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		var a kanade.AuditEvent
		if json.Unmarshal(data, &a) != nil {
			return
		}
		err := a.Validate()
		// Subject runs on events the backend builds itself; whatever they
		// hold, it must either refuse them briefly or give a subject whose
		// tokens are all valid.
		subject, serr := a.Subject()
		if serr != nil {
			checkErr(t, serr)
		} else {
			toks := strings.Split(subject, ".")
			if len(toks) < 3 || len(toks) > 4 || toks[0] != "audit" || toks[1] != a.Actor || toks[2] != a.Action {
				t.Fatalf("Subject() = %q for actor %q, action %q", kanade.Clip(subject), kanade.Clip(a.Actor), kanade.Clip(a.Action))
			}
			for _, tok := range toks {
				checkID(t, "subject token", tok, false, kanade.ValidToken)
			}
		}
		if err != nil {
			checkErr(t, err)
			return
		}
		checkID(t, "actor", a.Actor, false, kanade.ValidID)
		checkID(t, "action", a.Action, false, kanade.ValidID)
		if a.Target != nil {
			checkID(t, "target", *a.Target, true, textRule(kanade.MaxTargetBytes))
		}
		checkTime(t, "occurred_at", a.OccurredAt)
	})
}

// FuzzManifest decodes a KV "jobs" value; one that validates must survive
// being written back (known fields and unknown ones alike).
func FuzzManifest(f *testing.F) {
	for _, s := range []string{
		`{"id":"inventory-hw","version":"3","execute":{"shell":"sh","script":"uname -a","timeout":"5m"},"signature":{"alg":"ed25519"},"x":1}`,
		`{"id":"job","version":"1","execute":{"shell":"pwsh","script":"x","timeout":"1d","jitter":"30s","run_as":"user","cwd":"C:\\"}}`,
		`{"id":"job","version":"7","execute":{"shell":"cmd","script":"dir","timeout":"10m"},"target":{"all":false,"groups":["canary"],"pcs":["PC-1"]},
		 "rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"},{"group":"wave1","delay":"1h"}]}}`,
		`{"id":"a b","version":"","execute":{"shell":"bash"}}`,
		`{"ID":"x","id":"job","version":"1","execute":{"shell":"sh","script":"x","timeout":"1s"}}`,
		`{"id":"inventory-sw","version":"1","execute":{"shell":"sh","script":"x","timeout":"5m"},"inventory":{"display":[{"field":"h","label":"H"}],` +
			`"explode":[{"field":"apps","table":"inventory_sw_apps","primary_key":["name"],"columns":[{"field":"name","index":true},{"field":"kb","type":"integer"}],"track_history":true}],"history_scalars":["os"]}}`,
		// Found by the fuzzer: "&" comes back as "\u0026".
		`{"XB":"&","id":"00000","version":"0","eXeCute":{"shell":"sh","sCript":"0","timeout":"1s"}}`,
	} {
		f.Add([]byte(s))
	}
	rawType := reflect.TypeOf(json.RawMessage(nil))
	equal := cmp.Options{
		cmp.AllowUnexported(kanade.Wave{}),
		cmp.FilterPath(func(p cmp.Path) bool { return p.Last().Type() != rawType }, cmpopts.EquateEmpty()),
		// Unknown members are kept as raw JSON; writing them back may
		// change its spelling (whitespace, "&" as "\u0026") but not its
		// value.
		cmp.Comparer(func(a, b json.RawMessage) bool {
			if len(a) == 0 || len(b) == 0 {
				return len(a) == len(b)
			}
			va, erra := decodeAny(a)
			vb, errb := decodeAny(b)
			return erra == nil && errb == nil && cmp.Equal(va, vb)
		}),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m kanade.Manifest
		if json.Unmarshal(data, &m) != nil || m.Validate() != nil {
			return
		}
		if !kanade.ValidToken(m.ID) {
			t.Fatalf("id %q passed Validate", kanade.Clip(m.ID))
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("marshal a valid manifest: %v", err)
		}
		var back kanade.Manifest
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("re-decode %s: %v", out, err)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("re-validate %s: %v", out, err)
		}
		if diff := cmp.Diff(m, back, equal); diff != "" {
			t.Fatalf("round trip of %s (-first +second):\n%s", data, diff)
		}
	})
}

// decodeAny decodes one JSON value, keeping numbers as written.
func decodeAny(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

// FuzzParseTime: a timestamp that parses formats to the fixed-width layout
// and parses back to the same instant; one that does not gets a short error.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"2026-09-30T01:23:45.123Z", "2026-06-10T09:00:00+09:00", "2026-06-19T01:02:03.5Z",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "9999-12-31T23:30:00-01:00",
		"2026-13-10T00:00:00Z", "2026-06-20", "yesterday", hugeSeed,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := kanade.ParseTime(s)
		if err != nil {
			checkErr(t, err)
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("ParseTime(%q) is in %v, want UTC", s, got.Location())
		}
		formatted := kanade.FormatTime(got)
		if len(formatted) != len(kanade.TimeLayout) {
			t.Fatalf("ParseTime(%q) formats as %q (%d bytes, want %d)", s, formatted, len(formatted), len(kanade.TimeLayout))
		}
		back, err := kanade.ParseTime(formatted)
		if err != nil || !back.Equal(got) || kanade.FormatTime(back) != formatted {
			t.Fatalf("%q → %q → %v, %v", s, formatted, back, err)
		}
	})
}

// FuzzClip: the excerpt is valid UTF-8 without control or invisible
// characters, bounded, and exact for short printable values.
func FuzzClip(f *testing.F) {
	for _, s := range []string{"PC-0123", "a\nb", "\xff\xfe", strings.Repeat("あ", 40), hugeSeed, "\u202e\U000e0001",
		// Cut, yet as long as the input (found by the fuzzer).
		"ああ㍂" + strings.Repeat("あ", 28) + "\x810000000000000",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := kanade.Clip(s)
		if !utf8.ValidString(got) {
			t.Fatalf("Clip(%q) = %q is not UTF-8", s, got)
		}
		for _, r := range got {
			if r != ' ' && !unicode.IsPrint(r) {
				t.Fatalf("Clip(%q) = %q holds %U", s, got, r)
			}
		}
		body, cut := got, false
		if suffix := fmt.Sprintf("…(%d bytes)", len(s)); got != s && strings.HasSuffix(got, suffix) {
			body, cut = strings.TrimSuffix(got, suffix), true
		}
		if len(body) > 96 {
			t.Fatalf("Clip(%q) keeps %d bytes", s, len(body))
		}
		printable := utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }) < 0
		if printable && len(s) <= 96 && got != s {
			t.Fatalf("Clip(%q) = %q, want it unchanged", s, got)
		}
		if printable && cut && !strings.HasPrefix(s, body) {
			t.Fatalf("Clip(%q) = %q is not a prefix", s, got)
		}
		if !cut && len(s) > 96 && printable {
			t.Fatalf("Clip of %d printable bytes was not cut: %q", len(s), got)
		}
	})
}
