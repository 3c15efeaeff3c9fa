package kanade

import (
	"encoding/json"
	"fmt"
	"math"
)

// The agent lifecycle and live actions of fleet.md §3–§4: the subjects and
// payloads the backend uses to ask one agent something over core-NATS
// request/reply (ping, log tail, job tail), the ObsEvent the heartbeat
// watchdog publishes, and the server setting that turns the dead-agent prune
// on. Agents and the dashboard depend on every name here.

// SubjectPing is the request subject of POST /api/agents/{pc_id}/ping
// (fleet.md §4.1); the agent answers a Heartbeat built on the spot.
func SubjectPing(pcID string) string { return "agents." + pcID + ".ping" }

// SubjectLogsFetch is the request subject of GET /api/agents/{pc_id}/logs
// (fleet.md §4.2); the body is a LogsRequest, the reply the log text.
func SubjectLogsFetch(pcID string) string { return "logs.fetch." + pcID }

// SubjectJobTail is the request subject of GET /api/results/{id}/tail
// (fleet.md §4.3); the body is a JobTailRequest, the reply a JobTailReply.
func SubjectJobTail(pcID string) string { return "job.tail." + pcID }

// SubjectObs is where an ObsEvent about pcID is published (stream
// OBS_EVENTS, wire.md §1).
func SubjectObs(pcID string) string { return "obs." + pcID }

// LogsRequest asks an agent for the last TailLines lines of its newest log
// file (an agent reads a missing field as 500).
type LogsRequest struct {
	TailLines uint64 `json:"tail_lines"`
}

// JobTailRequest asks an agent for the output so far of one running result.
type JobTailRequest struct {
	ResultID string `json:"result_id"`
}

// JobTailReply is an agent's answer to a JobTailRequest: every field
// defaults to false or empty. Stdout and Stderr are suffixes of the output
// when their *Truncated flag is set.
type JobTailReply struct {
	Found           bool   `json:"found"`
	Running         bool   `json:"running"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
}

// ObsEvent is one entry of a PC's observability timeline, on obs.{pc_id}
// (observe.md §2.1). Agents publish most of them; the backend's heartbeat
// watchdog publishes agent_offline and agent_online. EventRecordID is unique
// within (pc_id, source), which is what makes a re-sent event a no-op.
type ObsEvent struct {
	PcID          string          `json:"pc_id"`
	At            Timestamp       `json:"at"`
	Kind          string          `json:"kind"`
	Source        string          `json:"source"`
	EventRecordID *string         `json:"event_record_id"`
	Payload       json.RawMessage `json:"payload"`
}

// The heartbeat watchdog's events (fleet.md §3.5): the ObsEvent source and
// kinds, and the actor of the audit event that records each transition.
const (
	WatchdogSource   = "backend:heartbeat-watchdog"
	WatchdogActor    = WatchdogSource
	KindAgentOffline = "agent_offline"
	KindAgentOnline  = "agent_online"
	// KindAgentStarted is the event an agent sends when it starts.
	KindAgentStarted = "agent_started"
)

// AgentVersionCount is one bucket of GET /api/agents/versions: how many
// agents report a version, and how many of them are active (last heartbeat
// within the stale threshold). Version is null for agents that never
// reported one.
type AgentVersionCount struct {
	Version *string `json:"version" doc:"agent_version; null for agents that never reported one"`
	Total   int64   `json:"total"`
	Active  int64   `json:"active" doc:"of total, those whose last heartbeat is within the stale threshold of now"`
}

// The server_settings KV bucket (fleet.md §3.4): backend-side settings an
// operator edits, one JSON document under one key. It is not part of the
// bootstrap contract: the backend only reads it when it exists.
const (
	BucketServerSettings = "server_settings"
	KeyServerSettings    = "settings"
	// MaxAgentPruneDays is the largest prune window (100 years): larger
	// values are clamped to it, so now − N days stays representable.
	MaxAgentPruneDays = 36500
)

// AgentPruneDays reads agent_prune_days from a server_settings document:
// set is false when the field is absent or null (the caller then falls
// back to its own setting); days 0 means pruning is off, and values above
// MaxAgentPruneDays are clamped to it. Anything but a JSON object whose
// field is a non-negative integer is an error: a destructive knob is never
// guessed.
func AgentPruneDays(doc []byte) (days int, set bool, err error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		return 0, false, fmt.Errorf("server_settings: not a JSON object: %s", clip(err.Error(), errExcerptBytes))
	}
	raw, ok := m["agent_prune_days"]
	if !ok || string(raw) == "null" {
		return 0, false, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f < 0 || f != math.Trunc(f) {
		return 0, false, fmt.Errorf("server_settings: agent_prune_days must be a non-negative integer, got %s", clip(string(raw), errExcerptBytes))
	}
	return int(min(f, MaxAgentPruneDays)), true, nil
}
