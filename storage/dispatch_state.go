package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kanade-fleet/backend"
)

// The scheduler's state in SQL (scheduler.md; tables in
// migrations/0002_scheduler.sql): what package schedule reads to decide a
// dispatch (alive PCs, completions, how far a calendar was checked) and what
// it writes as it dispatches (executions, waves waiting for their delay).
// The Schedule record itself is the root package's (schedule.go); the loop
// that uses these queries is package schedule.

// AlivePCs lists the PCs whose last heartbeat is at or after since, sorted:
// the "alive" PCs a target with all or groups expands to.
func (db *DB) AlivePCs(ctx context.Context, since time.Time) ([]string, error) {
	rows, err := db.read.QueryContext(ctx,
		`SELECT pc_id FROM agents WHERE last_heartbeat >= ? ORDER BY pc_id`, kanade.FormatTime(since))
	if err != nil {
		return nil, fmt.Errorf("alive pcs: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var pc string
		if err := rows.Scan(&pc); err != nil {
			return nil, fmt.Errorf("alive pcs: %w", err)
		}
		out = append(out, pc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alive pcs: %w", err)
	}
	return out, nil
}

// Completions returns each PC's newest successful (exit 0, not skipped)
// finish of jobID, from the trigger-kept job_completions table.
func (db *DB) Completions(ctx context.Context, jobID string) (map[string]time.Time, error) {
	rows, err := db.read.QueryContext(ctx,
		`SELECT pc_id, finished_at FROM job_completions WHERE job_id = ?`, jobID)
	if err != nil {
		return nil, fmt.Errorf("completions of %s: %w", jobID, err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var pc, at string
		if err := rows.Scan(&pc, &at); err != nil {
			return nil, fmt.Errorf("completions of %s: %w", jobID, err)
		}
		t, err := kanade.ParseTime(at)
		if err != nil {
			return nil, fmt.Errorf("completions of %s: pc %s: %w", jobID, pc, err)
		}
		out[pc] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("completions of %s: %w", jobID, err)
	}
	return out, nil
}

// NewExecution is one dispatch of a job, recorded as it goes out.
type NewExecution struct {
	ExecID, JobID, Version, InitiatedBy string
	InitiatedAt                         time.Time
	// TargetCount is the number of PCs the command went to, when known.
	TargetCount *int64
}

// InsertExecution records a dispatch with status pending. A result that
// arrived first (possible: agents answer fast) may have moved nothing, since
// counters only move on existing executions; so the counts of runs already
// recorded for exec_id are taken in here.
func (tx *Tx) InsertExecution(ctx context.Context, e NewExecution) error {
	_, err := tx.tx.ExecContext(ctx, `INSERT INTO executions
		(exec_id, job_id, version, initiated_by, initiated_at, target_count, success_count, failure_count,
		 skipped_count, status)
		SELECT ?, ?, ?, ?, ?, ?, s, f, k,
		       CASE WHEN s + f + k = 0 AND r = 0 THEN 'pending'
		            WHEN ? IS NOT NULL AND s + f + k >= ? THEN 'completed' ELSE 'running' END
		  FROM (SELECT COALESCE(SUM(run_status = 1), 0) AS s, COALESCE(SUM(run_status = 2), 0) AS f,
		               COALESCE(SUM(run_status = 3), 0) AS k, COUNT(*) AS r
		          FROM execution_results INDEXED BY execution_results_exec_started WHERE exec_id = ?)`,
		e.ExecID, nullString(e.JobID), nullString(e.Version), e.InitiatedBy, kanade.FormatTime(e.InitiatedAt),
		e.TargetCount, e.TargetCount, e.TargetCount, e.ExecID)
	if err != nil {
		return fmt.Errorf("insert execution %s: %w", e.ExecID, err)
	}
	return nil
}

// ScheduleCheckedUntil is the instant up to which a schedule's calendar
// firings were handled; ok is false for a schedule never seen.
func (db *DB) ScheduleCheckedUntil(ctx context.Context, scheduleID string) (t time.Time, ok bool, err error) {
	var s string
	err = db.read.QueryRowContext(ctx,
		`SELECT checked_until FROM schedule_checks WHERE schedule_id = ?`, scheduleID).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("schedule %s checked_until: %w", scheduleID, err)
	}
	t, err = kanade.ParseTime(s)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("schedule %s checked_until: %w", scheduleID, err)
	}
	return t, true, nil
}

// SetScheduleChecked moves a schedule's checked_until forward (never back:
// several workers write it).
func (tx *Tx) SetScheduleChecked(ctx context.Context, scheduleID string, t time.Time) error {
	_, err := tx.tx.ExecContext(ctx, `INSERT INTO schedule_checks (schedule_id, checked_until) VALUES (?, ?)
		ON CONFLICT (schedule_id) DO UPDATE SET checked_until = excluded.checked_until
		WHERE excluded.checked_until > checked_until`, scheduleID, kanade.FormatTime(t))
	if err != nil {
		return fmt.Errorf("schedule %s checked_until: %w", scheduleID, err)
	}
	return nil
}

// Wave is a rollout wave waiting for its delay.
type Wave struct {
	ExecID  string
	Wave    int
	Subject string
	DueAt   time.Time
	// Command is the JSON published when the wave is due.
	Command []byte
}

// AddWaves stores waves to publish later.
func (tx *Tx) AddWaves(ctx context.Context, waves []Wave) error {
	for _, w := range waves {
		_, err := tx.tx.ExecContext(ctx, `INSERT INTO rollout_waves (exec_id, wave, subject, due_at, command)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			w.ExecID, w.Wave, w.Subject, kanade.FormatTime(w.DueAt), string(w.Command))
		if err != nil {
			return fmt.Errorf("add wave %d of %s: %w", w.Wave, w.ExecID, err)
		}
	}
	return nil
}

// DueWaves lists unsent waves due at or before now, oldest first.
func (db *DB) DueWaves(ctx context.Context, now time.Time, limit int) ([]Wave, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT exec_id, wave, subject, due_at, command FROM rollout_waves
		WHERE sent_at IS NULL AND due_at <= ? ORDER BY due_at, exec_id, wave LIMIT ?`, kanade.FormatTime(now), limit)
	if err != nil {
		return nil, fmt.Errorf("due waves: %w", err)
	}
	defer rows.Close()
	var out []Wave
	for rows.Next() {
		var w Wave
		var due, cmd string
		if err := rows.Scan(&w.ExecID, &w.Wave, &w.Subject, &due, &cmd); err != nil {
			return nil, fmt.Errorf("due waves: %w", err)
		}
		if w.DueAt, err = kanade.ParseTime(due); err != nil {
			return nil, fmt.Errorf("due waves: %w", err)
		}
		w.Command = []byte(cmd)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("due waves: %w", err)
	}
	return out, nil
}

// MarkWaveSent marks a wave sent and reports whether this call did it (false:
// another worker already had).
func (tx *Tx) MarkWaveSent(ctx context.Context, execID string, wave int, at time.Time) (bool, error) {
	res, err := tx.tx.ExecContext(ctx, `UPDATE rollout_waves SET sent_at = ?
		WHERE exec_id = ? AND wave = ? AND sent_at IS NULL`, kanade.FormatTime(at), execID, wave)
	if err != nil {
		return false, fmt.Errorf("mark wave %d of %s sent: %w", wave, execID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("mark wave %d of %s sent: %w", wave, execID, err)
	}
	return n == 1, nil
}
