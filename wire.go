package kanade

import (
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
)

// Subjects of wire.md §1.
const (
	SubjectHeartbeats    = "heartbeat.>"
	SubjectResults       = "results.>"
	SubjectEventsStarted = "events.started.>"
	SubjectAudit         = "audit.>"
)

// Heartbeat is an agent's periodic beat on heartbeat.{pc_id}, and the reply to
// agents.{pc_id}.ping. Pointer and slice fields are optional: nil means "not
// given", which the projection must distinguish from a zero value (a ping reply
// carries no logon user and must not erase the stored one).
type Heartbeat struct {
	PcID                  string    `json:"pc_id"`
	At                    Timestamp `json:"at"`
	AgentVersion          string    `json:"agent_version"`
	Hostname              *string   `json:"hostname,omitempty"`
	OsFamily              *string   `json:"os_family,omitempty"`
	AgentCPUPct           *float64  `json:"agent_cpu_pct,omitempty"`
	AgentRSSBytes         *int64    `json:"agent_rss_bytes,omitempty"`
	AgentDiskReadBytes    *int64    `json:"agent_disk_read_bytes,omitempty"`
	AgentDiskWrittenBytes *int64    `json:"agent_disk_written_bytes,omitempty"`
	QuarantinedVersions   []string  `json:"quarantined_versions,omitempty"`
	LastLogonUser         *string   `json:"last_logon_user,omitempty"`
	LastLogonDisplayName  *string   `json:"last_logon_display_name,omitempty"`
	CommandKeys           *[]string `json:"command_keys,omitempty"`
	CommandProtocols      *[]string `json:"command_protocols,omitempty"`
	Enforcing             *bool     `json:"enforcing,omitempty"`
}

// Validate reports what makes a decoded heartbeat unusable.
func (h *Heartbeat) Validate() error {
	switch {
	case h.PcID == "":
		return errors.New("heartbeat: pc_id is required")
	case h.At.IsZero():
		return errors.New("heartbeat: at is required")
	case h.AgentVersion == "":
		return errors.New("heartbeat: agent_version is required")
	}
	return nil
}

// ExecResult is one PC's answer to one published command, on results.{request_id}.
type ExecResult struct {
	ResultID       string    `json:"result_id"`
	RequestID      string    `json:"request_id"`
	ExecID         string    `json:"exec_id,omitempty"`
	PcID           string    `json:"pc_id"`
	ExitCode       *int64    `json:"exit_code"`
	Skipped        bool      `json:"skipped,omitempty"`
	Stdout         string    `json:"stdout"`
	Stderr         string    `json:"stderr"`
	StdoutObject   string    `json:"stdout_object,omitempty"`
	StderrObject   string    `json:"stderr_object,omitempty"`
	StartedAt      Timestamp `json:"started_at"`
	FinishedAt     Timestamp `json:"finished_at"`
	ManifestID     string    `json:"manifest_id,omitempty"`
	ParentResultID string    `json:"parent_result_id,omitempty"`
}

// Validate checks the required fields and derives a stable result_id for very
// old agents that send none, so redeliveries of their results map to one row.
func (r *ExecResult) Validate() error {
	switch {
	case r.RequestID == "":
		return errors.New("result: request_id is required")
	case r.PcID == "":
		return errors.New("result: pc_id is required")
	case r.ExitCode == nil:
		return errors.New("result: exit_code is required")
	case r.StartedAt.IsZero():
		return errors.New("result: started_at is required")
	case r.FinishedAt.IsZero():
		return errors.New("result: finished_at is required")
	}
	if r.ResultID == "" {
		r.ResultID = LegacyResultID(r.RequestID, r.PcID)
	}
	return nil
}

// resultNamespace is the UUID namespace of derived result ids (a fixed random v4).
var resultNamespace = [16]byte{0x6b, 0x61, 0x6e, 0x61, 0x64, 0x65, 0x4a, 0x8e, 0x9c, 0x3d, 0x52, 0x1f, 0x0a, 0x77, 0x41, 0x90}

// LegacyResultID is the name-based (v5) UUID of (request_id, pc_id), the
// result_id of a result from an agent too old to send one.
func LegacyResultID(requestID, pcID string) string {
	h := sha1.New()
	h.Write(resultNamespace[:])
	h.Write([]byte(requestID + "\x00" + pcID))
	s := h.Sum(nil)
	s[6] = (s[6] & 0x0f) | 0x50
	s[8] = (s[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

// EventStarted announces that a PC began a run, on events.started.{exec_id}.{pc_id}.
type EventStarted struct {
	ResultID   string    `json:"result_id"`
	RequestID  string    `json:"request_id"`
	ExecID     string    `json:"exec_id,omitempty"`
	PcID       string    `json:"pc_id"`
	StartedAt  Timestamp `json:"started_at"`
	ManifestID string    `json:"manifest_id,omitempty"`
	Version    string    `json:"version,omitempty"`
}

// Validate reports what makes a decoded started event unusable.
func (e *EventStarted) Validate() error {
	switch {
	case e.ResultID == "":
		return errors.New("started event: result_id is required")
	case e.PcID == "":
		return errors.New("started event: pc_id is required")
	case e.StartedAt.IsZero():
		return errors.New("started event: started_at is required")
	}
	return nil
}

// AuditEvent is one entry of the audit trail, on audit.{actor}.{action}[.{target}].
type AuditEvent struct {
	Actor      string          `json:"actor"`
	Action     string          `json:"action"`
	Target     *string         `json:"target"`
	Payload    json.RawMessage `json:"payload"`
	OccurredAt Timestamp       `json:"occurred_at"`
}

// Validate reports what makes a decoded audit event unusable.
func (a *AuditEvent) Validate() error {
	switch {
	case a.Actor == "":
		return errors.New("audit: actor is required")
	case a.Action == "":
		return errors.New("audit: action is required")
	case a.OccurredAt.IsZero():
		return errors.New("audit: occurred_at is required")
	}
	return nil
}

// Subject is the subject an audit event is published on. A target that is not a
// valid subject token is left out of the subject; it stays in the body.
func (a *AuditEvent) Subject() (string, error) {
	if !ValidToken(a.Actor) || !ValidToken(a.Action) {
		return "", fmt.Errorf("audit subject: actor %q or action %q is not a subject token", a.Actor, a.Action)
	}
	s := "audit." + a.Actor + "." + a.Action
	if a.Target != nil && ValidToken(*a.Target) {
		s += "." + *a.Target
	}
	return s, nil
}

// Staleness tells an agent how fresh its cached script must be.
type Staleness struct {
	Mode string `json:"mode"`
}

// Command is what the backend publishes on commands.* for agents to run.
type Command struct {
	ID          string     `json:"id"`
	Version     string     `json:"version"`
	RequestID   string     `json:"request_id"`
	ExecID      string     `json:"exec_id,omitempty"`
	Shell       string     `json:"shell"`
	Script      string     `json:"script"`
	TimeoutSecs int64      `json:"timeout_secs"`
	JitterSecs  *int64     `json:"jitter_secs"`
	RunAs       string     `json:"run_as,omitempty"`
	Cwd         string     `json:"cwd,omitempty"`
	DeadlineAt  *Timestamp `json:"deadline_at,omitempty"`
	Staleness   Staleness  `json:"staleness"`
}
