package kanade

import (
	"crypto/sha1"
	"encoding/json"
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

// Validate reports what makes a decoded heartbeat unusable: a missing
// required field, or a field breaking its bound (ident.go). The pc_id becomes
// a subject token and KV key later, so it must be a ValidPCID; the free text
// is bounded so one beat cannot bloat the agents table or the logs. A
// *FieldError in the chain names the field.
func (h *Heartbeat) Validate() error {
	var c checker
	c.required("pc_id", h.PcID != "")
	c.rule("pc_id", h.PcID, ValidPCID(h.PcID), rulePCID)
	c.time("at", h.At)
	c.required("agent_version", h.AgentVersion != "")
	c.rule("agent_version", h.AgentVersion, validPrintable(h.AgentVersion, MaxIDBytes),
		"must be 1–128 bytes of printable UTF-8")
	for _, f := range []struct {
		name string
		v    *string
	}{
		{"hostname", h.Hostname}, {"os_family", h.OsFamily},
		{"last_logon_user", h.LastLogonUser}, {"last_logon_display_name", h.LastLogonDisplayName},
	} {
		if f.v != nil {
			c.rule(f.name, *f.v, ValidText(*f.v, MaxTextBytes), "must be at most 1024 bytes of UTF-8 without control characters")
		}
	}
	c.list("quarantined_versions", h.QuarantinedVersions)
	if h.CommandKeys != nil {
		c.list("command_keys", *h.CommandKeys)
	}
	if h.CommandProtocols != nil {
		c.list("command_protocols", *h.CommandProtocols)
	}
	if c.err != nil {
		return fmt.Errorf("heartbeat: %w", c.err)
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

// Validate checks the required fields and the bound of every id (ident.go),
// and derives a stable result_id for very old agents that send none, so
// redeliveries of their results map to one row. request_id and exec_id
// become subject tokens (results.<request_id>, kill.<exec_id>), the object
// names are fetched from the object store and manifest_id is a key of KV
// "jobs", so each must obey that place's rule. A *FieldError in the chain
// names the field.
func (r *ExecResult) Validate() error {
	var c checker
	c.optional("result_id", r.ResultID, ValidID, ruleID)
	c.required("request_id", r.RequestID != "")
	c.rule("request_id", r.RequestID, ValidToken(r.RequestID), ruleToken)
	c.optional("exec_id", r.ExecID, ValidToken, ruleToken)
	c.required("pc_id", r.PcID != "")
	c.rule("pc_id", r.PcID, ValidPCID(r.PcID), rulePCID)
	c.required("exit_code", r.ExitCode != nil)
	c.optional("stdout_object", r.StdoutObject, ValidObjectName, ruleObject)
	c.optional("stderr_object", r.StderrObject, ValidObjectName, ruleObject)
	c.time("started_at", r.StartedAt)
	c.time("finished_at", r.FinishedAt)
	c.optional("manifest_id", r.ManifestID, ValidKVKey, ruleKVKey)
	c.optional("parent_result_id", r.ParentResultID, ValidID, ruleID)
	if c.err != nil {
		return fmt.Errorf("result: %w", c.err)
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

// Validate reports what makes a decoded started event unusable: a missing
// required field or an id breaking its rule (the same rules as ExecResult;
// manifest_id is read as a key of KV "jobs"). A *FieldError in the chain
// names the field.
func (e *EventStarted) Validate() error {
	var c checker
	c.required("result_id", e.ResultID != "")
	c.rule("result_id", e.ResultID, ValidID(e.ResultID), ruleID)
	c.optional("request_id", e.RequestID, ValidToken, ruleToken)
	c.optional("exec_id", e.ExecID, ValidToken, ruleToken)
	c.required("pc_id", e.PcID != "")
	c.rule("pc_id", e.PcID, ValidPCID(e.PcID), rulePCID)
	c.time("started_at", e.StartedAt)
	c.optional("manifest_id", e.ManifestID, ValidKVKey, ruleKVKey)
	c.optional("version", e.Version, ValidID, ruleID)
	if c.err != nil {
		return fmt.Errorf("started event: %w", c.err)
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

// Validate reports what makes a decoded audit event unusable: a missing
// actor, action or occurred_at, or an actor, action or target breaking its
// bound (they are stored and shown, and Subject puts them into a subject). A
// *FieldError in the chain names the field.
func (a *AuditEvent) Validate() error {
	var c checker
	c.required("actor", a.Actor != "")
	c.rule("actor", a.Actor, ValidID(a.Actor), ruleID)
	c.required("action", a.Action != "")
	c.rule("action", a.Action, ValidID(a.Action), ruleID)
	if a.Target != nil {
		c.rule("target", *a.Target, ValidText(*a.Target, MaxTargetBytes),
			"must be at most 1024 bytes of UTF-8 without control characters")
	}
	c.time("occurred_at", a.OccurredAt)
	if c.err != nil {
		return fmt.Errorf("audit: %w", c.err)
	}
	return nil
}

// Subject is the subject an audit event is published on. A target that is not a
// valid subject token is left out of the subject; it stays in the body.
func (a *AuditEvent) Subject() (string, error) {
	if !ValidToken(a.Actor) || !ValidToken(a.Action) {
		return "", fmt.Errorf("audit subject: actor %q or action %q is not a subject token",
			clip(a.Actor, errExcerptBytes), clip(a.Action, errExcerptBytes))
	}
	s := "audit." + a.Actor + "." + a.Action
	if a.Target != nil && ValidToken(*a.Target) {
		s += "." + *a.Target
	}
	return s, nil
}

// Staleness tells an agent how fresh its cached view of script_current and
// script_status must be before it runs a command (control.md §4.3): mode
// "cached" (the default: any cached value), "strict" (connected to NATS
// within MaxCacheAge, else the run is skipped) or "unchecked" (no revoke or
// version-pin check at all). A manifest declares it and every Command
// carries a copy, so an agent decides without reading KV "jobs".
type Staleness struct {
	Mode        string `json:"mode" schema:"required,enum=cached|strict|unchecked"`
	MaxCacheAge string `json:"max_cache_age,omitempty" schema:"pattern=duration"`
}

// The staleness modes agents know.
const (
	StalenessCached    = "cached"
	StalenessStrict    = "strict"
	StalenessUnchecked = "unchecked"
)

// RetrySpec is how an agent retries a failed run in place (a schedule's
// on_failure.retry lowered to the wire): at most Max more attempts,
// BackoffSecs apart. Commands of HTTP execs and ad-hoc runs carry none.
type RetrySpec struct {
	Max         int   `json:"max"`
	BackoffSecs int64 `json:"backoff_secs"`
}

// Command is what the backend publishes on commands.* for agents to run
// (wire.md §3, control.md §1.4). The field names are the ones agents read;
// the hints (emit, check, collect) are the manifest's JSON, copied verbatim,
// since agents interpret them and this backend does not.
type Command struct {
	ID        string `json:"id"`
	Version   string `json:"version"`
	RequestID string `json:"request_id"`
	ExecID    string `json:"exec_id,omitempty"`
	Shell     string `json:"shell"`
	// Script is the inline body, "" when ScriptObject names the body.
	Script string `json:"script"`
	// ScriptObject is the key <name>/<version> of the body in object
	// store "scripts"; ScriptObjectSHA256 is the lower-case hex SHA-256
	// the agent checks the fetched body against.
	ScriptObject       string          `json:"script_object,omitempty"`
	ScriptObjectSHA256 string          `json:"script_object_sha256,omitempty"`
	TimeoutSecs        int64           `json:"timeout_secs"`
	JitterSecs         *int64          `json:"jitter_secs"`
	RunAs              string          `json:"run_as,omitempty"`
	Cwd                string          `json:"cwd,omitempty"`
	DeadlineAt         *Timestamp      `json:"deadline_at,omitempty"`
	Staleness          Staleness       `json:"staleness"`
	Emit               json.RawMessage `json:"emit,omitempty"`
	Check              json.RawMessage `json:"check,omitempty"`
	Collect            json.RawMessage `json:"collect,omitempty"`
	Retry              *RetrySpec      `json:"retry,omitempty"`
}
