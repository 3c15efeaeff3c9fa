package kanade_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

// resultSeeds are RESULTS messages as agents send them and at the edges
// of what DecodeExecResult takes itself or leaves to encoding/json.
var resultSeeds = []string{
	`{"result_id":"r1","request_id":"q1","exec_id":"e1","pc_id":"pc-1","exit_code":0,"stdout":"hello\n","stderr":"",` +
		`"started_at":"2026-12-01T10:00:00Z","finished_at":"2026-12-01T10:00:01.5Z","manifest_id":"m1"}`,
	`{"request_id":"q1","pc_id":"pc-1","exit_code":-1,"skipped":true,"stdout":"{\"apps\":[{\"name\":\"a\\\"b\"}]}","stderr":null,"started_at":null}`,
	`{"request_id":"q1","pc_id":"pc-1","exit_code":null,"skipped":false,"stdout_object":"o1","stderr_object":"o2","parent_result_id":"p"}`,
	`{"request_id":"q1","pc_id":"pc-1","exit_code":1,"exit_code":2,"stdout":"a","stdout":"b","extra":[1,{"x":null}],"more":"\u00e9"}`,
	`{"Request_ID":"q1","PC_ID":"pc-1","exit_code":3}`,
	`{"request_id":"q1","pc_\u0069d":"pc-1","exit_code":3}`,
	`{"request_id":"q1","pc_id":"pc-1","exit_code":1.5}`,
	`{"request_id":"q1","pc_id":"pc-1","exit_code":1e2}`,
	`{"request_id":"q1","pc_id":"pc-1","exit_code":99999999999999999999}`,
	`{"request_id":"q1","pc_id":"pc-1","exit_code":"0"}`,
	`{"request_id":"q1","pc_id":"pc-1","exit_code":0,"skipped":"yes"}`,
	`{"request_id":"q1","pc_id":"pc-1","exit_code":0,"stdout":7}`,
	`{"request_id":"q1","pc_id":"pc-1","exit_code":0,"started_at":"yesterday"}`,
	`{"request_id":"q1","pc_id":"pc-1","exit_code":0,"finished_at":12}`,
	"{\"request_id\":\"q1\",\"pc_id\":\"pc-1\",\"exit_code\":0,\"stdout\":\"\xff\xfe \\ud83d\"}",
	"{\"request_id\":\"q1\",\"pc_id\":\"pc-1\",\"\xc5\xbftdout\":\"long s folds to s\"}",
	"{\"request_id\":\"q1\",\"pc_id\":\"pc-1\",\"\xe2\x84\xaaey\":\"kelvin\"}",
	` { "request_id" : "q1" , "pc_id" : "pc-1" , "exit_code" : 0 } `,
	`{"request_id":"q1","pc_id":"pc-1","exit_code":0}x`, `{"request_id":"q1",}`, `[]`, `null`, `"x"`, `{}`, ``,
}

// FuzzDecodeExecResult holds DecodeExecResult to json.Unmarshal: the same
// value, or the same error.
func FuzzDecodeExecResult(f *testing.F) {
	for _, s := range resultSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want kanade.ExecResult
		wantErr := json.Unmarshal(b, &want)
		got, err := kanade.DecodeExecResult(b)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("DecodeExecResult(%q): error %v, json.Unmarshal: %v", b, err, wantErr)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("DecodeExecResult(%q) differs from json.Unmarshal (-want +got):\n%s", b, diff)
		}
	})
}

func TestDecodeExecResultOfAnAgentsResult(t *testing.T) {
	exit := int64(0)
	in := kanade.ExecResult{ResultID: "r1", RequestID: "q1", PcID: "pc-1", ExitCode: &exit,
		Stdout: `{"apps":[{"name":"7-Zip \"x64\"","version":"24.08"}]}` + "\n\t\u00e9\U0001F600", Stderr: "warn\r\n"}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := kanade.DecodeExecResult(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// encoding/json's nesting limit counts the message's own object.
	for _, depth := range []int{9999, 10000} {
		msg := []byte(`{"request_id":"q","pc_id":"p","exit_code":0,"extra":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`)
		var want kanade.ExecResult
		wantErr := json.Unmarshal(msg, &want)
		got, err := kanade.DecodeExecResult(msg)
		if (err == nil) != (wantErr == nil) || cmp.Diff(want, got) != "" {
			t.Errorf("a member %d deep: error %v, encoding/json's %v", depth, err, wantErr)
		}
		if depth == 10000 && wantErr == nil {
			t.Errorf("encoding/json took a member %d deep: the case tests nothing", depth)
		}
	}
	if _, err := kanade.DecodeExecResult([]byte(`{"exit_code":1.5}`)); err == nil || !strings.Contains(err.Error(), "exit_code") {
		t.Errorf("a fraction as exit code: err = %v, want encoding/json's error naming exit_code", err)
	}
}

func BenchmarkDecodeExecResult(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"hostname":"pc-0001","apps":[`)
	for i := range 150 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"name":"Application Number ` + strings.Repeat("x", i%7) + `","version":"12.4.1","publisher":"Some Vendor Inc."}`)
	}
	sb.WriteString(`]}`)
	exit := int64(0)
	msg, _ := json.Marshal(kanade.ExecResult{ResultID: "r1", RequestID: "q1", PcID: "pc-1", ExitCode: &exit, Stdout: sb.String()})
	b.SetBytes(int64(len(msg)))
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := kanade.DecodeExecResult(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var r kanade.ExecResult
			if err := json.Unmarshal(msg, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
