package kanade

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// The ad-hoc run of POST /api/run (control.md §2): one inline script on
// one PC, answered synchronously with the PC's result.
const (
	// AdhocRunID and AdhocRunVersion are the manifest id and version an
	// ad-hoc Command carries; no job of that id exists.
	AdhocRunID      = "adhoc-run"
	AdhocRunVersion = "0.0.0"
	// DefaultRunTimeoutSecs is timeout_secs when the body leaves it out.
	DefaultRunTimeoutSecs = 60
	// MaxRunTimeoutSecs caps timeout_secs (this backend's limit; upstream
	// has none): the HTTP request is held for timeout_secs + RunGrace, and
	// an hour is already past what any proxy in front keeps open.
	MaxRunTimeoutSecs = 3600
	// RunGrace is how much longer than the script's timeout the request
	// waits for the result (agent start-up, publish, the result's way
	// back), as upstream does.
	RunGrace = 10 * time.Second
	// runAuditScriptChars is how much of the script the audit event keeps.
	runAuditScriptChars = 500
)

// runShells maps every shell spelling a run body may use to the value
// the Command carries: "ps" is upstream's short name for powershell.
var runShells = map[string]string{"powershell": "powershell", "ps": "powershell", "cmd": "cmd", "pwsh": "pwsh", "sh": "sh"}

// RunRequest is the body of POST /api/run (control.md §2.1). Validate
// fills the defaults, so after it Shell, RunAs and TimeoutSecs are set and
// ExecID holds the exec id whichever name the caller used.
type RunRequest struct {
	PCID   string `json:"pc_id"`
	Script string `json:"script"`
	// Shell is powershell (default), ps (the same), cmd, pwsh or sh.
	Shell string `json:"shell,omitempty"`
	// TimeoutSecs is nil for the default (60).
	TimeoutSecs *int64 `json:"timeout_secs,omitempty"`
	// ExecID, when given, links the result to an execution and is the
	// kill subject (kill.<exec_id>).
	ExecID string `json:"exec_id,omitempty"`
	// JobID is ExecID's name in bodies older than v0.29; Validate moves it
	// to ExecID.
	JobID      string `json:"job_id,omitempty"`
	JitterSecs *int64 `json:"jitter_secs,omitempty"`
	// RunAs is system (default), user or system_gui.
	RunAs string `json:"run_as,omitempty"`
}

// DecodeRunRequest reads a POST /api/run body, tolerantly (unknown keys
// are ignored). A body that is not a JSON object is a *BodySyntaxError, a
// member of the wrong type a *FieldError. It does not Validate.
func DecodeRunRequest(body []byte) (*RunRequest, error) {
	v, err := jsonDocument(body)
	if err != nil {
		return nil, &BodySyntaxError{Format: "JSON", Msg: err.Error()}
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, &BodySyntaxError{Format: "JSON", Msg: "the body must be a JSON object"}
	}
	var r RunRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, jsonError("run request", "", err)
	}
	return &r, nil
}

// Validate checks the request (control.md §2.1) and fills its defaults:
// pc_id is a pc id (it becomes commands.pc.<pc_id>), the script is not
// empty, the shell is one of the five spellings (stored as the one agents
// read), timeout_secs is 0–3600 (default 60), exec_id and its old name
// job_id are one value and a subject token, jitter_secs is not negative
// and run_as is one of three. The first broken rule is a *FieldError
// naming the field.
func (r *RunRequest) Validate() error {
	var c checker
	c.required("pc_id", r.PCID != "")
	c.rule("pc_id", r.PCID, ValidPCID(r.PCID), rulePCID)
	c.required("script", r.Script != "")
	if r.Shell == "" {
		r.Shell = "powershell"
	}
	shell, ok := runShells[r.Shell]
	c.rule("shell", r.Shell, ok, "is an unknown shell: use powershell (or ps), cmd, pwsh or sh")
	if r.TimeoutSecs == nil {
		d := int64(DefaultRunTimeoutSecs)
		r.TimeoutSecs = &d
	}
	c.rule("timeout_secs", strconv.FormatInt(*r.TimeoutSecs, 10), *r.TimeoutSecs >= 0 && *r.TimeoutSecs <= MaxRunTimeoutSecs,
		"must be 0–3600 seconds (the request waits that long plus 10s for the result)")
	if r.JobID != "" {
		c.rule("job_id", r.JobID, r.ExecID == "" || r.ExecID == r.JobID, "is the old name of exec_id; give one of them, not two different ids")
	}
	execID := r.ExecID
	if execID == "" {
		execID = r.JobID
	}
	field := "exec_id"
	if r.ExecID == "" {
		field = "job_id"
	}
	c.optional(field, execID, ValidToken, ruleToken)
	if r.JitterSecs != nil {
		c.rule("jitter_secs", strconv.FormatInt(*r.JitterSecs, 10), *r.JitterSecs >= 0, "must not be negative")
	}
	if r.RunAs == "" {
		r.RunAs = "system"
	}
	c.rule("run_as", r.RunAs, validRunAs[r.RunAs], "must be one of system, user, system_gui")
	if c.err != nil {
		return c.err
	}
	r.Shell, r.ExecID, r.JobID = shell, execID, ""
	return nil
}

// Command is the ad-hoc Command (control.md §2.2): id adhoc-run, version
// 0.0.0, the body's shell, script, timeout, jitter, run_as and exec id,
// staleness cached, and no cwd, deadline, hints or retry. requestID (a
// fresh UUID) names the result subject results.<request_id>, so it must
// be a subject token. It validates r first.
func (r *RunRequest) Command(requestID string) (Command, error) {
	if err := r.Validate(); err != nil {
		return Command{}, fmt.Errorf("run request: %w", err)
	}
	if !ValidToken(requestID) {
		return Command{}, fmt.Errorf("run request: request id %q %s", clip(requestID, errExcerptBytes), ruleToken)
	}
	c := Command{ID: AdhocRunID, Version: AdhocRunVersion, RequestID: requestID, ExecID: r.ExecID,
		Shell: r.Shell, Script: r.Script, TimeoutSecs: *r.TimeoutSecs, RunAs: r.RunAs,
		Staleness: Staleness{Mode: StalenessCached}}
	if r.JitterSecs != nil {
		j := *r.JitterSecs
		c.JitterSecs = &j
	}
	return c, nil
}

// Subject is where the Command goes: commands.pc.<pc_id>.
func (r *RunRequest) Subject() string { return SubjectCommandsPC + r.PCID }

// Wait is how long the request waits for the result: the timeout plus
// RunGrace. Only meaningful after Validate.
func (r *RunRequest) Wait() time.Duration {
	secs := int64(DefaultRunTimeoutSecs)
	if r.TimeoutSecs != nil {
		secs = *r.TimeoutSecs
	}
	return time.Duration(secs)*time.Second + RunGrace
}

// AuditPayload is the payload of audit.operator.run.<pc_id> (control.md
// §2.4) without the caller's sub and source: request_id, exec_id (null
// when none), shell, run_as and the first 500 characters of the script,
// the payload upstream's CLI writes. Only meaningful after Validate.
func (r *RunRequest) AuditPayload(requestID string) map[string]any {
	var execID any
	if r.ExecID != "" {
		execID = r.ExecID
	}
	script := r.Script
	if utf8.RuneCountInString(script) > runAuditScriptChars {
		script = string([]rune(script)[:runAuditScriptChars])
	}
	return map[string]any{"request_id": requestID, "exec_id": execID, "shell": r.Shell, "run_as": r.RunAs, "script": script}
}
