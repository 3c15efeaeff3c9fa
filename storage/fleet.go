package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/kanade-fleet/backend"
)

// The fleet rollup reads the trigger-maintained summaries of 0001_init.sql
// instead of scanning agents or execution_results, so /api/health/fleet costs
// the same with ten agents or a hundred thousand, and one round trip to a
// remote libSQL server (each method is one statement with subselects).
//
// A count "since cutoff" is split at the cutoff's minute. Whole minutes after
// it come from the per-minute summary (at most a day of rows). The cutoff's
// own minute is read from the base table through an index that carries every
// column the count needs (agents_last_heartbeat of 0008,
// execution_results_recorded_at of 0022), as a contiguous range of entries
// and never a row lookup, and only the shorter of its two parts: either the
// part at or after the cutoff is counted, or the minute's summary is taken
// whole and the part before the cutoff subtracted. So the base-table work is
// at most half a minute of heartbeats or results, whatever the fleet's size
// or the runs kept: 100k agents beating every 30 s are ~1 700 index entries,
// 10M runs a day ~3 500. Placeholders are plain "?" (arguments repeated)
// because that is what both drivers bind alike.

// minuteKeyLen is the length of a minute key: "2006-01-02T15:04" is the first
// 16 characters of kanade.TimeLayout, as the triggers' substr(…, 1, 16).
const minuteKeyLen = 16

// minuteSplit returns the minute key of cutoff and the TimeLayout text of
// cutoff and of the start of the next minute.
func minuteSplit(cutoff time.Time) (minute, from, to string) {
	from = kanade.FormatTime(cutoff)
	next := cutoff.UTC().Truncate(time.Minute).Add(time.Minute)
	return from[:minuteKeyLen], from, kanade.FormatTime(next)
}

// edge is how a count since a cutoff reads the cutoff's own minute: the
// summary rows with minute > (or, when subtract, >=) minute, plus (or minus)
// the base-table rows with from <= timestamp < to.
type edge struct {
	minute, from, to string
	subtract         bool
}

// edgeOf picks the shorter part of cutoff's minute: [cutoff, next minute)
// added to the whole minutes after it, or [minute start, cutoff) subtracted
// from the whole minutes from its own on.
func edgeOf(cutoff time.Time) edge {
	minute, from, to := minuteSplit(cutoff)
	start := cutoff.UTC().Truncate(time.Minute)
	if cutoff.Sub(start) >= time.Minute/2 {
		return edge{minute: minute, from: from, to: to}
	}
	return edge{minute: minute, from: kanade.FormatTime(start), to: from, subtract: true}
}

// pick returns add or sub by e.subtract.
func (e edge) pick(add, sub string) string {
	if e.subtract {
		return sub
	}
	return add
}

// agentCountsQuery: known from the counter, active from the per-minute summary
// and the edge (see edge), the edge as an index-only range of
// agents_last_heartbeat.
func agentCountsQuery(op, sign string) string {
	return `SELECT
	(SELECT value FROM fleet_counters WHERE name = 'agents'),
	(SELECT COALESCE(SUM(agents), 0) FROM agent_version_minutes WHERE minute ` + op + ` ?)
	` + sign + ` (SELECT COUNT(*) FROM agents WHERE last_heartbeat >= ? AND last_heartbeat < ?)`
}

var (
	agentCountsAdd = agentCountsQuery(">", "+")
	agentCountsSub = agentCountsQuery(">=", "-")
)

// AgentCounts returns how many agents are known and how many are active: their
// last heartbeat is at or after now − staleThreshold. Heartbeats from clocks
// running ahead (after now) count as active.
func (db *DB) AgentCounts(ctx context.Context, now time.Time, staleThreshold time.Duration) (known, active int64, err error) {
	e := edgeOf(now.Add(-staleThreshold))
	var k *int64
	if err := db.cachedRowOn(ctx, db.rollup, e.pick(agentCountsAdd, agentCountsSub), []any{e.minute, e.from, e.to}, &k, &active); err != nil {
		return 0, 0, fmt.Errorf("count agents: %w", err)
	}
	if k == nil {
		// The migration inserts the row; its absence is a damaged schema, not
		// an empty fleet.
		return 0, 0, fmt.Errorf("count agents: fleet_counters has no 'agents' row")
	}
	return *k, active, nil
}

// failedPredicate is the failure rule of api.md and of the result_minutes
// triggers: finished, not skipped, non-zero exit (a reaped run, −1, fails).
const failedPredicate = `exit_code IS NOT NULL AND exit_code <> 0 AND skipped = 0`

// resultCountsSQL reads each source once for both figures (a join of two
// one-row aggregates: a scalar subquery could return only one column); the
// edge (see edge) is an index-only range of execution_results_recorded_at.
func resultCountsSQL(op, sign string) string {
	return `SELECT m.total ` + sign + ` r.total, m.failed ` + sign + ` r.failed FROM
	(SELECT COALESCE(SUM(total), 0) AS total, COALESCE(SUM(failed), 0) AS failed
	   FROM result_minutes WHERE minute ` + op + ` ?) AS m,
	(SELECT COUNT(*) AS total, COALESCE(SUM(` + failedPredicate + `), 0) AS failed
	   FROM execution_results WHERE recorded_at >= ? AND recorded_at < ?) AS r`
}

var (
	resultCountsAdd = resultCountsSQL(">", "+")
	resultCountsSub = resultCountsSQL(">=", "-")
)

// ResultCounts returns how many runs were recorded at or after since and how
// many of them failed. A running run (exit code NULL) counts in total only;
// skipped runs are never failures.
func (db *DB) ResultCounts(ctx context.Context, since time.Time) (total, failed int64, err error) {
	e := edgeOf(since)
	if err := db.cachedRowOn(ctx, db.rollup, e.pick(resultCountsAdd, resultCountsSub), []any{e.minute, e.from, e.to}, &total, &failed); err != nil {
		return 0, 0, fmt.Errorf("count recent results: %w", err)
	}
	return total, failed, nil
}
