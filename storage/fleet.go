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
// A count "since cutoff" is split at the minute boundary after the cutoff:
// whole minutes after the cutoff's minute come from the per-minute summary
// (at most a day of rows), and the part of the cutoff's own minute at or after
// the cutoff comes from the base table through its timestamp index (at most a
// minute of rows). Placeholders are plain "?" (arguments repeated) because
// that is what both drivers bind alike.

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

const agentCountsSQL = `SELECT
	(SELECT value FROM fleet_counters WHERE name = 'agents'),
	(SELECT COALESCE(SUM(agents), 0) FROM agent_version_minutes WHERE minute > ?)
	+ (SELECT COUNT(*) FROM agents WHERE last_heartbeat >= ? AND last_heartbeat < ?)`

// AgentCounts returns how many agents are known and how many are active: their
// last heartbeat is at or after now − staleThreshold. Heartbeats from clocks
// running ahead (after now) count as active.
func (db *DB) AgentCounts(ctx context.Context, now time.Time, staleThreshold time.Duration) (known, active int64, err error) {
	minute, from, to := minuteSplit(now.Add(-staleThreshold))
	var k *int64
	if err := db.rollup.QueryRowContext(ctx, agentCountsSQL, minute, from, to).Scan(&k, &active); err != nil {
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
// one-row aggregates: a scalar subquery could return only one column).
const resultCountsSQL = `SELECT m.total + r.total, m.failed + r.failed FROM
	(SELECT COALESCE(SUM(total), 0) AS total, COALESCE(SUM(failed), 0) AS failed
	   FROM result_minutes WHERE minute > ?) AS m,
	(SELECT COUNT(*) AS total, COALESCE(SUM(` + failedPredicate + `), 0) AS failed
	   FROM execution_results WHERE recorded_at >= ? AND recorded_at < ?) AS r`

// ResultCounts returns how many runs were recorded at or after since and how
// many of them failed. A running run (exit code NULL) counts in total only;
// skipped runs are never failures.
func (db *DB) ResultCounts(ctx context.Context, since time.Time) (total, failed int64, err error) {
	minute, from, to := minuteSplit(since)
	if err := db.rollup.QueryRowContext(ctx, resultCountsSQL, minute, from, to).Scan(&total, &failed); err != nil {
		return 0, 0, fmt.Errorf("count recent results: %w", err)
	}
	return total, failed, nil
}
