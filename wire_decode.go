package kanade

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/kanade-fleet/backend/internal/jsonscan"
)

// DecodeExecResult decodes a RESULTS message as json.Unmarshal into a zero
// ExecResult would, with the same value or the same error (the fuzz test
// holds it to that), at several times its speed on the messages agents
// send: one object of the known members, exactly spelled. encoding/json
// spends most of its time on a result checking its stdout byte by byte
// through a state machine (an inventory report is 20 KB of JSON quoted in
// it). Anything else (a member spelled in another case, an escaped name, a
// value of the wrong type, an error of any kind) goes to json.Unmarshal.
func DecodeExecResult(data []byte) (ExecResult, error) {
	var r ExecResult
	if fastResult(data, &r) {
		return r, nil
	}
	r = ExecResult{}
	err := json.Unmarshal(data, &r)
	return r, err
}

// resultFields are the JSON names of ExecResult's fields.
var resultFields = []string{"result_id", "request_id", "exec_id", "pc_id", "exit_code", "skipped", "stdout", "stderr",
	"stdout_object", "stderr_object", "started_at", "finished_at", "manifest_id", "parent_result_id"}

// fastResult decodes data into r if it can do so exactly as encoding/json
// would, and reports whether it did. It checks the text as it goes (as
// json.Valid would, member by member) rather than in a pass of its own.
func fastResult(data []byte, r *ExecResult) bool {
	i := jsonscan.SkipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = jsonscan.SkipSpace(data, i+1)
	for first := true; ; first = false {
		if i < len(data) && data[i] == '}' && first {
			break
		}
		if i >= len(data) || data[i] != '"' {
			return false
		}
		end := jsonscan.String(data, i)
		if end < 0 {
			return false
		}
		name := data[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			return false
		}
		i = jsonscan.SkipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = jsonscan.SkipSpace(data, i+1)
		end = jsonscan.NestedValue(data, i, 1) // inside the message's object
		if end < 0 || !r.set(name, data[i:end]) {
			return false
		}
		i = jsonscan.SkipSpace(data, end)
		if i < len(data) && data[i] == ',' {
			i = jsonscan.SkipSpace(data, i+1)
			continue
		}
		if i < len(data) && data[i] == '}' {
			break
		}
		return false
	}
	return jsonscan.SkipSpace(data, i+1) == len(data)
}

// set stores member name's value v in r, and reports false where
// encoding/json would do something else than set a field of that exact
// name (or ignore a name no field has).
func (r *ExecResult) set(name, v []byte) bool {
	var dst *string
	switch string(name) {
	case "result_id":
		dst = &r.ResultID
	case "request_id":
		dst = &r.RequestID
	case "exec_id":
		dst = &r.ExecID
	case "pc_id":
		dst = &r.PcID
	case "stdout":
		dst = &r.Stdout
	case "stderr":
		dst = &r.Stderr
	case "stdout_object":
		dst = &r.StdoutObject
	case "stderr_object":
		dst = &r.StderrObject
	case "manifest_id":
		dst = &r.ManifestID
	case "parent_result_id":
		dst = &r.ParentResultID
	case "exit_code":
		switch v[0] {
		case 'n':
			r.ExitCode = nil
			return true
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return false // a fraction, an exponent or out of range: encoding/json's error
			}
			r.ExitCode = &n
			return true
		}
		return false
	case "skipped":
		switch v[0] {
		case 'n':
		case 't':
			r.Skipped = true
		case 'f':
			r.Skipped = false
		default:
			return false
		}
		return true
	case "started_at":
		return r.StartedAt.UnmarshalJSON(v) == nil
	case "finished_at":
		return r.FinishedAt.UnmarshalJSON(v) == nil
	default:
		// encoding/json matches a name in any case (Unicode folding
		// included) when no field has it exactly; anything it could
		// match goes to it.
		for _, c := range name {
			if c >= 0x80 {
				return false
			}
		}
		for _, f := range resultFields {
			if strings.EqualFold(f, string(name)) {
				return false
			}
		}
		return true // a member no field has: ignored
	}
	switch v[0] {
	case 'n':
		return true // null leaves a string as it was
	case '"':
		*dst = jsonscan.UnquoteValid(v)
		return true
	}
	return false
}
