package httpload

import (
	"slices"
	"time"
)

// EndpointStats is what the load phase measured for one endpoint.
type EndpointStats struct {
	Name     string // e.g. "GET /api/health/fleet"
	Requests int
	// Errors counts transport errors and unexpected statuses.
	Errors int
	// Statuses counts the status codes received (transport errors have none).
	Statuses map[int]int
	// ErrorSamples holds the first distinct error messages with their counts.
	ErrorSamples []string
	// PerSecond is Requests over the whole load phase's wall time.
	PerSecond     float64
	P50, P99, Max time.Duration
}

// percentile is the nearest-rank percentile of api.md: for n sorted values,
// rank = ceil(pct·n/100) and the value is the rank-th smallest. It is
// computed in integers because ceil(0.99·100) in floating point is 100 on
// some inputs and 99 on others. An empty slice gives 0.
func percentile(sorted []time.Duration, pct int) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := (pct*n + 99) / 100
	return sorted[min(max(rank-1, 0), n-1)]
}

// summarize sorts lat in place and fills the latency fields of s.
func summarize(s *EndpointStats, lat []time.Duration, elapsed time.Duration) {
	slices.Sort(lat)
	s.P50, s.P99 = percentile(lat, 50), percentile(lat, 99)
	if len(lat) > 0 {
		s.Max = lat[len(lat)-1]
	}
	if elapsed > 0 {
		s.PerSecond = float64(s.Requests) / elapsed.Seconds()
	}
}
