package kanade

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
