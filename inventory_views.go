package kanade

// The read shapes of the inventory routes (fleet.md §5.5), between storage
// and handlers like those of views.go. JSON that the projection stored
// (facts, display snapshots) is served as JSON (any holding raw bytes);
// identity_json, before_json and after_json are JSON strings holding JSON,
// as upstream serves them.

// InventoryJob is one entry of GET /api/inventory/jobs: a job of KV jobs
// with an inventory hint.
type InventoryJob struct {
	ManifestID  string         `json:"manifest_id"`
	Description *string        `json:"description" doc:"null when the job has none"`
	Display     []DisplayField `json:"display" nullable:"false"`
	Summary     []DisplayField `json:"summary" nullable:"true" doc:"null when absent (the SPA then uses display)"`
	Explode     []ExplodeSpec  `json:"explode" nullable:"true" doc:"null when absent"`
}

// InventoryByJob is GET /api/inventory/by-job/{manifest_id}: every PC's
// latest facts of one job, ordered by pc_id.
type InventoryByJob struct {
	ManifestID string `json:"manifest_id"`
	Display    any    `json:"display" doc:"The display fields as projected with the first row that has them ([] without rows)."`
	Summary    any    `json:"summary" doc:"The summary fields as projected with the first row that has them, or null."`
	// Rows is every PC's facts.
	Rows []InventoryJobRow `json:"rows" nullable:"false"`
}

// InventoryJobRow is one PC's facts of a job.
type InventoryJobRow struct {
	PCID        string  `json:"pc_id"`
	Facts       any     `json:"facts" doc:"The report's JSON object; null when the stored text no longer parses."`
	CollectedAt *string `json:"collected_at" format:"date-time" doc:"The run's finished_at (agent clock)."`
}

// InventoryPCFacts is one entry of GET /api/inventory/{pc_id}: the PC's
// latest facts of one job.
type InventoryPCFacts struct {
	JobID       string  `json:"job_id"`
	Facts       any     `json:"facts" doc:"The report's JSON object; null when the stored text no longer parses."`
	Display     any     `json:"display" doc:"The display fields as projected with this report."`
	Summary     any     `json:"summary" doc:"The summary fields as projected with this report, or null."`
	CollectedAt *string `json:"collected_at" format:"date-time" doc:"The run's finished_at (agent clock)."`
	RecordedAt  string  `json:"recorded_at" format:"date-time" doc:"The RESULTS message's stream timestamp."`
}

// InventoryHistoryEvent is one row of inventory_history.
type InventoryHistoryEvent struct {
	ID           int64   `json:"id"`
	PCID         string  `json:"pc_id"`
	JobID        string  `json:"job_id"`
	FieldPath    string  `json:"field_path" doc:"The explode field, or the history scalar."`
	IdentityJSON *string `json:"identity_json" doc:"JSON text of the primary-key values; null for a scalar."`
	ChangeKind   string  `json:"change_kind" enum:"added,removed,changed"`
	BeforeJSON   *string `json:"before_json" doc:"JSON text of the row (for a scalar {\"value\": v}) before; null when added."`
	AfterJSON    *string `json:"after_json" doc:"JSON text of the row (for a scalar {\"value\": v}) after; null when removed."`
	ObservedAt   string  `json:"observed_at" format:"date-time" doc:"The stream timestamp of the report that showed the change."`
}

// InventoryFirstSeen is one PC of GET …/history/first_seen.
type InventoryFirstSeen struct {
	PCID        string `json:"pc_id"`
	FirstSeenAt string `json:"first_seen_at" format:"date-time"`
}
