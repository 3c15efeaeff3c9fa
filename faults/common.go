package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/kanade-fleet/backend/bus"
)

// bootstrap creates the JetStream resources of wire.md §2 (as the shells
// do), so a backlog can be published before any worker runs.
func bootstrap(ctx context.Context, url string, replicas int) error {
	nc, err := connectNATS(url, "faults-bootstrap")
	if err != nil {
		return err
	}
	defer nc.Close()
	c, err := bus.NewClient(nc)
	if err != nil {
		return err
	}
	defer c.Close()
	bctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.Bootstrap(bctx, replicas); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}

// checkLanded waits until the database at db holds every id in want (or
// stops making progress), then records the exact comparison as a check.
// extraOK allows rows that are not in want (other loads in the same table).
func checkLanded(ctx context.Context, e *Env, r *Result, label, db string, want []string, stall time.Duration) (Diff, error) {
	start := time.Now()
	_, werr := waitRows(ctx, int64(len(want)), stall, func(ctx context.Context) (int64, error) { return finishedRows(ctx, db) })
	if ctx.Err() != nil {
		return Diff{}, ctx.Err()
	}
	if werr != nil {
		e.Logf("%s: %v", label, werr)
	}
	got, err := resultIDs(ctx, db)
	if err != nil {
		return Diff{}, err
	}
	d := DiffIDs(want, got)
	r.Measure("%s: %s (waited %s for the rows)", label, d, round(time.Since(start)))
	r.Check(d.OK(), "%s: every acked result has exactly one row and no row is unexpected (%d missing, %d extra, %d duplicated of %d acked)",
		label, len(d.Missing), len(d.Extra), len(d.Dups), d.Want)
	return d, nil
}

// randDur is a uniformly random duration in [lo, hi).
func randDur(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rand.Int64N(int64(hi-lo)))
}

// shellOpts are the options of a worker or HTTP shell whose files live
// under e.Dir/name.
func (e *Env) shellOpts(db, natsURL, dataName string, env ...string) ShellOptions {
	return ShellOptions{DB: db, NATSURL: natsURL, DataDir: filepath.Join(e.Dir, dataName), Env: env}
}

// errorLines picks a shell's log lines at level ERROR or WARN mentioning any
// of the needles (all of them when no needle is given).
func errorLines(s *Shell, max int, needles ...string) []string {
	lines := s.LogGrep(0, `"level":"ERROR"`, `"level":"WARN"`)
	if len(needles) == 0 {
		if len(lines) > max {
			lines = lines[:max]
		}
		return lines
	}
	return grepLines(lines, max, needles...)
}

// rate formats a per-second rate.
func rate(n int, d time.Duration) string {
	if d <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f/s", float64(n)/d.Seconds())
}

func joinMax(items []string, max int) string {
	if len(items) > max {
		return strings.Join(items[:max], ", ") + fmt.Sprintf(" … (%d in all)", len(items))
	}
	return strings.Join(items, ", ")
}
