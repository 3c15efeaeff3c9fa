package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kanade-fleet/backend"
)

// The control plane's SQL (control.md; indexes in migrations/0005_control.sql):
// how many PCs a fan-out reaches, which executions a kill signals, and
// taking back an execution whose commands never went out.

// The statements whose plans a test checks (they must use the partial
// indexes of 0005_control.sql, not walk a job's history).
const (
	countAliveSQL  = `SELECT COUNT(*) FROM agents WHERE last_heartbeat >= ?`
	activeExecsSQL = `SELECT exec_id FROM executions
		WHERE job_id = ? AND status IN ('pending', 'running') ORDER BY exec_id`
	unfinishedExecsSQL = `SELECT DISTINCT exec_id FROM execution_results
		WHERE job_id = ? AND finished_at IS NULL AND exec_id IS NOT NULL ORDER BY exec_id`
	lastRunSQL = `SELECT pc_id, exit_code, started_at, finished_at FROM execution_results
		WHERE job_id = ? ORDER BY started_at DESC, result_id DESC LIMIT 1`
	recentRunsSQL = `SELECT
		COALESCE(SUM(finished_at IS NOT NULL AND reaped = 0 AND exit_code = 0), 0),
		COALESCE(SUM(finished_at IS NOT NULL AND (reaped = 1 OR exit_code IS NULL OR exit_code <> 0)), 0)
		FROM execution_results WHERE job_id = ? AND started_at >= ?`
)

// CountAlive counts the PCs whose last heartbeat is at or after since: the
// target_count of a fan-out to all (control.md §1.3), without listing them.
func (db *DB) CountAlive(ctx context.Context, since time.Time) (int64, error) {
	var n int64
	err := db.read.QueryRowContext(ctx, countAliveSQL, kanade.FormatTime(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count alive pcs: %w", err)
	}
	return n, nil
}

// ActiveExecIDs lists the job's executions still pending or running, the
// ones POST /api/jobs/{job_id}/kill signals (control.md §3.1), sorted.
func (db *DB) ActiveExecIDs(ctx context.Context, jobID string) ([]string, error) {
	return db.strings(ctx, "active executions", activeExecsSQL, jobID)
}

// UnfinishedExecIDs lists the distinct exec_ids of the job's runs that have
// started and not reported (control.md §5.7 cascade_kill), sorted.
func (db *DB) UnfinishedExecIDs(ctx context.Context, jobID string) ([]string, error) {
	return db.strings(ctx, "unfinished executions", unfinishedExecsSQL, jobID)
}

// strings runs a query of one text column.
func (db *DB) strings(ctx context.Context, what, query string, args ...any) ([]string, error) {
	rows, err := db.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if s.Valid {
			out = append(out, s.String)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// DeleteExecution takes back an execution none of whose commands went out
// (control.md §1.7: the row is written before the first publish, so a fast
// answer always finds it, and removed when the publish fails outright),
// with its waiting waves.
func (tx *Tx) DeleteExecution(ctx context.Context, execID string) error {
	if _, err := tx.tx.ExecContext(ctx, `DELETE FROM rollout_waves WHERE exec_id = ?`, execID); err != nil {
		return fmt.Errorf("delete waves of %s: %w", execID, err)
	}
	if _, err := tx.tx.ExecContext(ctx, `DELETE FROM executions WHERE exec_id = ?`, execID); err != nil {
		return fmt.Errorf("delete execution %s: %w", execID, err)
	}
	return nil
}

// LastRun is the newest run of a job (GET /api/schedules/{id}/status).
type LastRun struct {
	PcID       string
	ExitCode   *int64
	StartedAt  time.Time
	FinishedAt *time.Time
}

// JobRuns summarises a job's runs for a schedule's status: the newest run
// (nil when none) and, among the runs started at or after since, how many
// succeeded and how many failed (reaped runs count as failed; unfinished
// ones as neither). Both walk execution_results_job_started, so a job
// with a million runs costs its window, not its history.
func (db *DB) JobRuns(ctx context.Context, jobID string, since time.Time) (last *LastRun, ok, fail int64, err error) {
	var pc, started string
	var exit sql.NullInt64
	var finished sql.NullString
	err = db.read.QueryRowContext(ctx, lastRunSQL, jobID).Scan(&pc, &exit, &started, &finished)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, 0, 0, nil
	case err != nil:
		return nil, 0, 0, fmt.Errorf("last run of %s: %w", jobID, err)
	}
	last = &LastRun{PcID: pc}
	if last.StartedAt, err = kanade.ParseTime(started); err != nil {
		return nil, 0, 0, fmt.Errorf("last run of %s: started_at: %w", jobID, err)
	}
	if exit.Valid {
		last.ExitCode = &exit.Int64
	}
	if finished.Valid {
		t, err := kanade.ParseTime(finished.String)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("last run of %s: finished_at: %w", jobID, err)
		}
		last.FinishedAt = &t
	}
	err = db.read.QueryRowContext(ctx, recentRunsSQL, jobID, kanade.FormatTime(since)).Scan(&ok, &fail)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("recent runs of %s: %w", jobID, err)
	}
	return last, ok, fail, nil
}
