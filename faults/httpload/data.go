package httpload

import (
	"context"
	"fmt"
)

// checkData reads each load target once and compares it with what was
// seeded, so the load phase is known to measure endpoints doing real work
// on the whole data set rather than answering from an empty or wrong one.
func checkData(ctx context.Context, base, token string, s Seeded) Check {
	c := Check{Name: "endpoints serve the seeded data"}
	bad := func(format string, args ...any) { c.Details = append(c.Details, fmt.Sprintf(format, args...)) }

	var fleet struct {
		Status string `json:"status"`
		Agents struct {
			Known, Active int
		} `json:"agents"`
		JetStream struct {
			AllOK bool `json:"all_ok"`
		} `json:"jetstream"`
		RecentResults struct {
			Total, Failed int
		} `json:"recent_results"`
	}
	if err := getJSON(ctx, base, token, "/api/health/fleet", &fleet); err != nil {
		bad("%v", err)
	} else {
		if fleet.Status != "ok" || !fleet.JetStream.AllOK {
			bad("fleet status %q, jetstream all_ok %v; want ok and true", fleet.Status, fleet.JetStream.AllOK)
		}
		if fleet.Agents.Known != s.Agents {
			bad("fleet agents.known %d, want %d", fleet.Agents.Known, s.Agents)
		}
		// Fresh agents beat within the minute before seeding ended; one
		// that crossed the 2 min threshold while the server started is
		// stale now, so active may be lower, never higher.
		if fleet.Agents.Active <= 0 || fleet.Agents.Active > s.Fresh {
			bad("fleet agents.active %d, want 1..%d", fleet.Agents.Active, s.Fresh)
		}
		if fleet.RecentResults.Total != s.Runs || fleet.RecentResults.Failed != s.Failed {
			bad("fleet recent_results %d (%d failed), want %d (%d failed)",
				fleet.RecentResults.Total, fleet.RecentResults.Failed, s.Runs, s.Failed)
		}
	}

	var scan []struct {
		JobID string `json:"job_id"`
		Count int    `json:"count"`
	}
	runs := 0
	if err := getJSON(ctx, base, token, "/api/health/scan_durations", &scan); err != nil {
		bad("%v", err)
	} else {
		for _, r := range scan {
			runs += r.Count
		}
		if len(scan) != s.Jobs || runs != s.Runs {
			bad("scan_durations: %d jobs with %d runs, want %d with %d", len(scan), runs, s.Jobs, s.Runs)
		}
	}

	var agents struct {
		Items      []struct{} `json:"items"`
		NextCursor *string    `json:"next_cursor"`
	}
	if err := getJSON(ctx, base, token, "/api/agents?limit=100", &agents); err != nil {
		bad("%v", err)
	} else if want := min(100, s.Agents); len(agents.Items) != want || (s.Agents > 100) != (agents.NextCursor != nil) {
		bad("agents page: %d items (next_cursor %v), want %d", len(agents.Items), agents.NextCursor != nil, want)
	}

	c.Pass = len(c.Details) == 0
	c.Measured = fmt.Sprintf("fleet %s: %d known, %d active, %d runs (%d failed) in 24 h; scan_durations: %d jobs, %d runs; agents page: %d items",
		fleet.Status, fleet.Agents.Known, fleet.Agents.Active, fleet.RecentResults.Total, fleet.RecentResults.Failed,
		len(scan), runs, len(agents.Items))
	return c
}
