package storage

import (
	"context"
	"database/sql"
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
