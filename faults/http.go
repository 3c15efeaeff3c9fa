package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/kanade-fleet/backend/faults/httpload"
)

// runHTTP is the HTTP side of the suite (package httpload): the read
// endpoints monitors and the dashboard hit hardest, under concurrent load
// on a seeded fleet, then abused the way a hostile client would.
func runHTTP(ctx context.Context, e *Env, r *Result) error {
	o := httpload.Options{
		HTTPBinary: filepath.Join(e.Bins, "kanade-http"),
		WorkDir:    e.Dir,
		Agents:     e.Size.HTTPAgents,
		Runs:       e.Size.HTTPRuns,
		Conns:      50,
		Duration:   e.Size.HTTPDuration,
		Logf:       e.Logf,
	}
	r.Do("seeded %d agents and %d runs in the last 24 h, started `shells/http` on it (worker off), then %d keep-alive connections for %s on fleet health, scan durations and the agents list, then the abuse checks",
		o.Agents, o.Runs, o.Conns, o.Duration)
	rep, err := httpload.Run(ctx, o)
	if err != nil {
		return err
	}
	errs := 0
	for _, ep := range rep.Endpoints {
		errs += ep.Errors
		r.Measure("%s: %d requests, %d errors, %.1f req/s, p50 %s, p99 %s, max %s", ep.Name, ep.Requests, ep.Errors,
			ep.PerSecond, ep.P50.Round(100_000), ep.P99.Round(100_000), ep.Max.Round(100_000))
		r.Check(ep.Errors == 0 && ep.Requests > 0, "%s: %d requests, %d errors", ep.Name, ep.Requests, ep.Errors)
		if ep.Name == "GET /api/health/fleet" {
			r.Figure("fleet health p50 %s p99 %s", ep.P50.Round(100_000), ep.P99.Round(100_000))
		}
	}
	r.Figure("%d load errors", errs)
	for _, c := range rep.Checks {
		text := c.Name + ": " + c.Measured
		if !c.Pass && len(c.Details) > 0 {
			text += " (" + strings.Join(c.Details, "; ") + ")"
		}
		r.Check(c.Pass, "%s", text)
	}
	r.Note("the full httpload report, as `go run ./faults/httpload/cmd` prints it, follows")
	r.Quote("httpload report", strings.Split(strings.TrimSpace(rep.Markdown()), "\n"))
	if !rep.Pass() && errs == 0 {
		return fmt.Errorf("httpload: report failed")
	}
	return nil
}
