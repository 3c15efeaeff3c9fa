package httpload

import (
	"fmt"
	"strings"
	"time"
)

// Markdown renders the report as a section of RELIABILITY.md: the setup, one
// row per endpoint, and each check with its verdict and what was measured.
func (r *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "FAIL"
	}
	s := r.Setup
	p("## HTTP under load and abuse\n\n")
	p("**Result: %s**\n\n", verdict(r.Pass()))

	p("### Setup\n\n")
	p("- Data: %d agents (%d beat within the last minute, the rest 3 min to 30 days ago) and %d finished runs of %d jobs "+
		"(durations log-normal around per-job typical times from 50 ms to 30 min; %d failed) finished within the last 24 h, "+
		"written through `storage` (ApplyResults, UpsertHeartbeats) in batches of %d in %s; SQLite file %s.\n",
		s.Seeded.Agents, s.Seeded.Fresh, s.Seeded.Runs, s.Seeded.Jobs, s.Seeded.Failed, seedBatch, round(s.Seeded.Took), mib(s.DBBytes))
	built := "given"
	if s.Built {
		built = fmt.Sprintf("built with `go build` in %s", round(s.BuildTook))
	}
	p("- Server: `./shells/http` (%s) as a child process on that file, embedded NATS on a free port, `KANADE_WORKER=off`, "+
		"a static token, JSON logs; ready (`/readyz` 200) %s after start. Its limits: ReadHeaderTimeout %s, ReadTimeout %s, "+
		"MaxHeaderBytes %d KiB; huma's per-operation body limit 1 MiB and body read timeout 5 s.\n",
		built, round(s.StartTook), serverReadHeaderTimeout, serverReadTimeout, serverMaxHeaderBytes>>10)
	p("- Client: %d goroutines with keep-alive (%d TCP connections opened) for %s (%s until the last in-flight request finished), "+
		"each cycling through the three endpoints with the bearer token; a request over %s counts as an error.\n",
		r.Load.Conns, r.Load.Dials, r.Load.Duration, round(r.Load.Elapsed), loadRequestTimeout)
	p("- Machine: %s/%s, %d CPUs shared by client and server, %s.\n", s.OS, s.Arch, s.NumCPU, s.GoVersion)
	if s.WorkDir != "" {
		p("- Work directory (database, server log): `%s`.\n", s.WorkDir)
	}
	p("- Correct statuses: 200 only, for all three. `/api/health/fleet` answers 503 only when a JetStream resource is missing, " +
		"the database cannot be read, or stale/known reaches the degraded ratio (default 1.0, a total blackout); the shell " +
		"bootstraps every resource and most seeded agents are fresh, so `ok`/200 is the only correct answer and a 503 counts as an error.\n\n")

	p("### Load\n\n")
	p("| endpoint | requests | errors | req/s | p50 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|\n")
	total, errs := 0, 0
	for _, e := range r.Endpoints {
		total += e.Requests
		errs += e.Errors
		p("| `%s` | %d | %d | %.1f | %s | %s | %s |\n", e.Name, e.Requests, e.Errors, e.PerSecond, ms(e.P50), ms(e.P99), ms(e.Max))
	}
	rate := 0.0
	if r.Load.Elapsed > 0 {
		rate = float64(total) / r.Load.Elapsed.Seconds()
	}
	p("| all | %d | %d | %.1f | | | |\n\n", total, errs, rate)
	for _, e := range r.Endpoints {
		if len(e.ErrorSamples) > 0 {
			p("Errors of `%s`:\n", e.Name)
			for _, m := range e.ErrorSamples {
				p("- %s\n", m)
			}
			p("\n")
		}
	}

	p("### Checks\n\n")
	p("| check | result | measured |\n|---|---|---|\n")
	for _, c := range r.Checks {
		p("| %s | %s | %s |\n", c.Name, verdict(c.Pass), strings.ReplaceAll(c.Measured, "|", `\|`))
	}
	for _, c := range r.Checks {
		if len(c.Details) > 0 {
			p("\n%s (%s):\n", c.Name, verdict(c.Pass))
			for _, d := range c.Details {
				p("- %s\n", d)
			}
		}
	}
	return b.String()
}

// ms renders a latency in milliseconds with precision that fits its size.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func mib(n int64) string {
	if n < 0 {
		return "of unknown size"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
