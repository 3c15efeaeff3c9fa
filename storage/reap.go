package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// ReapAfter is how long a running row without expires_at may run before it
// is reaped (storage.md Housekeeping "Reap").
const ReapAfter = 24 * time.Hour

// reapNote is appended to the stderr of a reaped run.
const reapNote = "[kanade] reaped: no result arrived before the run's deadline"

// Reap finishes at most limit overdue running rows (storage.md Housekeeping):
// past expires_at or, without one, started more than ReapAfter before now.
// Each gets exit_code −1, reaped = 1, finished_at = now, a note appended to
// stderr and its duration; its execution's failure_count is bumped and the
// run enters the duration summaries, all in this transaction. A real result
// arriving later replaces all of that (ApplyResults) and moves the run from
// failure_count to its own outcome's counter. It returns how many rows it reaped.
func (tx *Tx) Reap(ctx context.Context, now time.Time, limit int) (int, error) {
	at := kanade.FormatTime(now)
	rows, err := tx.tx.QueryContext(ctx, `SELECT result_id, job_id, exec_id, started_at FROM execution_results
		WHERE finished_at IS NULL
		  AND (expires_at < ? OR (expires_at IS NULL AND started_at < ?))
		ORDER BY result_id LIMIT ?`, at, kanade.FormatTime(now.Add(-ReapAfter)), limit)
	if err != nil {
		return 0, fmt.Errorf("reap: select overdue runs: %w", err)
	}
	type overdue struct {
		id  string
		dur any // NULL without started_at
	}
	var runs []overdue
	execs := map[string]*execDelta{}
	for rows.Next() {
		var id string
		var jobID, execID, startedAt *string
		if err := rows.Scan(&id, &jobID, &execID, &startedAt); err != nil {
			rows.Close()
			return 0, fmt.Errorf("reap: select overdue runs: %w", err)
		}
		o := overdue{id: id}
		if startedAt != nil {
			started, err := kanade.ParseTime(*startedAt)
			if err != nil {
				rows.Close()
				return 0, fmt.Errorf("reap %s: stored started_at: %w", id, err)
			}
			ms, plausible := runMillis(started, now)
			o.dur = durationArg(ms, plausible)
			if jobID != nil && plausible {
				tx.addDuration(*jobID, now, ms)
			}
		}
		if execID != nil {
			addOutcome(execs, *execID, outFailure, 1)
		}
		runs = append(runs, o)
	}
	if err := rows.Close(); err != nil {
		return 0, fmt.Errorf("reap: select overdue runs: %w", err)
	}
	const per = 500
	for start := 0; start < len(runs); start += per {
		chunk := runs[start:min(start+per, len(runs))]
		args := []any{at, reapNote, reapNote}
		for _, o := range chunk {
			args = append(args, o.id, o.dur)
		}
		_, err := tx.tx.ExecContext(ctx, `UPDATE execution_results
			SET exit_code = -1, reaped = 1, finished_at = ?, duration_ms = v.column2,
			    stderr = CASE WHEN stderr IS NULL OR stderr = '' THEN ? ELSE stderr || char(10) || ? END
			FROM (VALUES `+strings.TrimSuffix(strings.Repeat("(?,?),", len(chunk)), ",")+`) AS v
			WHERE execution_results.result_id = v.column1`, args...)
		if err != nil {
			return 0, fmt.Errorf("reap %d runs: %w", len(chunk), err)
		}
	}
	if err := tx.bumpExecutions(ctx, execs); err != nil {
		return 0, fmt.Errorf("reap: %w", err)
	}
	return len(runs), nil
}
