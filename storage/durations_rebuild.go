package storage

import (
	"context"
	"fmt"

	"github.com/kanade-fleet/backend"
)

// RebuildDurations recomputes the run-duration summaries (durations.go)
// from execution_results, in one write transaction. The projection keeps
// them in step with every row it writes; rows put into the table another
// way (a bulk import, the dashboard's performance seed of a million runs)
// have no summary entries until this runs, and GET
// /api/health/scan_durations would not count them.
func (db *DB) RebuildDurations(ctx context.Context) error {
	return db.Update(ctx, func(tx *Tx) error { return tx.rebuildDurations(ctx) })
}

// rebuildDurations is RebuildDurations inside tx. The entries go in when
// the transaction flushes its summary changes.
func (tx *Tx) rebuildDurations(ctx context.Context) error {
	for _, table := range []string{"duration_segments", "duration_runs", "duration_bins"} {
		if _, err := tx.tx.ExecContext(ctx, `DELETE FROM `+table); err != nil {
			return fmt.Errorf("rebuild durations: %w", err)
		}
	}
	// The same test loadRuns uses for "this row is in the summaries".
	rows, err := tx.tx.QueryContext(ctx, `SELECT result_id, job_id, finished_at, duration_ms FROM execution_results
		WHERE job_id IS NOT NULL AND finished_at IS NOT NULL AND duration_ms IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("rebuild durations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, job, finished string
		var ms int64
		if err := rows.Scan(&id, &job, &finished, &ms); err != nil {
			return fmt.Errorf("rebuild durations: %w", err)
		}
		t, err := kanade.ParseTime(finished)
		if err != nil {
			return fmt.Errorf("rebuild durations: result %s: stored finished_at: %w", id, err)
		}
		tx.addDuration(job, t, ms)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("rebuild durations: %w", err)
	}
	return nil
}

// rebuildEmptyDurations is the Go step of migration 0028: it rebuilds the
// summaries if they are empty while summarized runs exist. Migration 0021
// changed the summaries' format and recreated their tables empty; the
// rebuild is this code's, which writes 0028's tables, so a file from
// before 0021 is rebuilt here, after both. On a file whose summaries were
// kept, 0028's SQL moved them and this reads one row.
func (tx *Tx) rebuildEmptyDurations(ctx context.Context) error {
	var empty bool
	if err := tx.tx.QueryRowContext(ctx, `SELECT NOT EXISTS (SELECT 1 FROM duration_segments)
		AND EXISTS (SELECT 1 FROM execution_results WHERE job_id IS NOT NULL AND finished_at IS NOT NULL AND duration_ms IS NOT NULL)`).Scan(&empty); err != nil {
		return fmt.Errorf("rebuild durations: %w", err)
	}
	if !empty {
		return nil
	}
	return tx.rebuildDurations(ctx)
}
