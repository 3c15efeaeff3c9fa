package kanade

import "encoding/json"

// The API's read shapes: what storage's queries return and handlers serve as
// JSON (api.md "Read and manage endpoints", GET /api/health/scan_durations).
// They live here, between the two, so neither owns the other's contract. The
// struct tags beyond json (doc, format, enum, nullable) are huma's, read by
// reflection when handlers builds the OpenAPI document; they are plain
// strings, so this package still imports no HTTP or SQL code. Timestamps are
// the stored text: RFC 3339, UTC, nine fractional digits (TimeLayout).

// Page is one page of a list. NextCursor is nil on the last page.
type Page[T any] struct {
	Items      []T     `json:"items" nullable:"false"`
	NextCursor *string `json:"next_cursor" doc:"Pass as ?cursor= to get the next page; null on the last page."`
}

// Agent is one row of the roster. Timestamps are the stored text: RFC 3339,
// UTC, nine fractional digits.
type Agent struct {
	PCID                  string   `json:"pc_id"`
	Hostname              *string  `json:"hostname"`
	OSFamily              *string  `json:"os_family"`
	AgentVersion          *string  `json:"agent_version"`
	LastHeartbeat         string   `json:"last_heartbeat" format:"date-time"`
	Online                bool     `json:"online" doc:"last_heartbeat is within the stale threshold of now"`
	AgentCPUPct           *float64 `json:"agent_cpu_pct"`
	AgentRSSBytes         *int64   `json:"agent_rss_bytes"`
	AgentDiskReadBytes    *int64   `json:"agent_disk_read_bytes"`
	AgentDiskWrittenBytes *int64   `json:"agent_disk_written_bytes"`
	QuarantinedVersions   []string `json:"quarantined_versions" nullable:"true"`
	LastLogonUser         *string  `json:"last_logon_user"`
	LastLogonDisplayName  *string  `json:"last_logon_display_name"`
	CommandKeys           []string `json:"command_keys" nullable:"true" doc:"null when unknown"`
	CommandProtocols      []string `json:"command_protocols" nullable:"true" doc:"null when unknown"`
	Enforcing             *bool    `json:"enforcing" doc:"null when unknown"`
	UpdatedAt             string   `json:"updated_at" format:"date-time"`
}

// Run is one row of execution_results without its output, as lists show it.
type Run struct {
	ResultID       string  `json:"result_id"`
	RequestID      *string `json:"request_id"`
	ExecID         *string `json:"exec_id"`
	PCID           *string `json:"pc_id"`
	JobID          *string `json:"job_id"`
	Version        *string `json:"version"`
	ExitCode       *int64  `json:"exit_code" doc:"null while running; -1 when reaped"`
	Skipped        bool    `json:"skipped"`
	StartedAt      *string `json:"started_at" format:"date-time"`
	FinishedAt     *string `json:"finished_at" format:"date-time" doc:"null while running"`
	RecordedAt     string  `json:"recorded_at" format:"date-time"`
	ExpiresAt      *string `json:"expires_at" format:"date-time"`
	Reaped         bool    `json:"reaped"`
	ParentResultID *string `json:"parent_result_id"`
	DurationMs     *int64  `json:"duration_ms" doc:"whole milliseconds finished_at - started_at; null until both are known"`
}

// RunDetail is a run with its output.
type RunDetail struct {
	Run
	Stdout *string `json:"stdout"`
	Stderr *string `json:"stderr"`
}

// Execution is one fan-out with its counters.
type Execution struct {
	ExecID       string  `json:"exec_id"`
	JobID        *string `json:"job_id"`
	Version      *string `json:"version"`
	InitiatedBy  *string `json:"initiated_by"`
	InitiatedAt  *string `json:"initiated_at" format:"date-time"`
	TargetCount  *int64  `json:"target_count"`
	SuccessCount int64   `json:"success_count" doc:"runs that finished with exit 0, not skipped"`
	FailureCount int64   `json:"failure_count" doc:"runs that finished with a non-zero exit code (a reaped run is -1), not skipped: the same rule as ?status=failure and the fleet rollup's failed"`
	SkippedCount int64   `json:"skipped_count" doc:"runs the agent skipped (e.g. a PC offline at dispatch that received the command after its deadline); an answer, not a failure. Skipped answers from PCs outside the target can make the three counts exceed target_count"`
	Status       string  `json:"status" enum:"pending,running,completed,expired"`
}

// AuditEntry is one row of the audit log.
type AuditEntry struct {
	ID         int64           `json:"id"`
	Actor      string          `json:"actor"`
	Action     string          `json:"action"`
	Target     *string         `json:"target"`
	Payload    json.RawMessage `json:"payload" doc:"the event's JSON payload, null when it had none"`
	OccurredAt string          `json:"occurred_at" format:"date-time"`
	StreamSeq  *int64          `json:"stream_seq"`
}

// ScanDuration is the run-time summary of one job over a window, as served by
// GET /api/health/scan_durations (api.md). Durations are whole milliseconds;
// percentiles are nearest-rank, so every figure is a duration some run really
// had.
type ScanDuration struct {
	JobID  string `json:"job_id"`
	Count  int64  `json:"count"`
	MinMs  int64  `json:"min_ms"`
	P50Ms  int64  `json:"p50_ms"`
	P95Ms  int64  `json:"p95_ms"`
	P99Ms  int64  `json:"p99_ms"`
	MaxMs  int64  `json:"max_ms"`
	MeanMs int64  `json:"mean_ms"`
	// MaxResultID is the result_id of a slowest run, so the dashboard can link
	// to it; nil only when that row has none.
	MaxResultID *string `json:"max_result_id"`
}
