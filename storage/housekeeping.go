package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// Housekeeping (storage.md "Housekeeping"): the worker calls these every few
// minutes. Every delete is bounded by a row limit so one call is one short
// transaction; the caller loops while a call reports a full batch.

// Retention windows of storage.md.
const (
	ResultRetention = 90 * 24 * time.Hour
	AuditRetention  = 365 * 24 * time.Hour
	// PendingExpiry is how long an execution may stay pending before it is
	// marked expired.
	PendingExpiry = time.Hour
)

// ExpirePending marks executions still pending an hour after initiated_at as
// expired, at most limit of them, and returns how many changed.
func (tx *Tx) ExpirePending(ctx context.Context, now time.Time, limit int) (int64, error) {
	res, err := tx.tx.ExecContext(ctx, `UPDATE executions SET status = 'expired'
		WHERE exec_id IN (SELECT exec_id FROM executions
		                  WHERE status = 'pending' AND initiated_at < ? ORDER BY initiated_at LIMIT ?)`,
		kanade.FormatTime(now.Add(-PendingExpiry)), limit)
	if err != nil {
		return 0, fmt.Errorf("expire pending executions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// oldResults is the batch DeleteOldResults takes (and WarmOldResults reads
// ahead of it): the oldest limit runs recorded before cutoff, bound in that
// order.
const oldResults = `FROM execution_results WHERE recorded_at < ? ORDER BY recorded_at LIMIT ?`

// CountOldResults counts the runs recorded before cutoff, up to most: what
// a housekeeping round has to delete, so it can spread the deletes over
// its period instead of making them all at once (projection's pacing). It
// reads the batch clause DeleteOldResults deletes by, through the index
// on recorded_at, so the count costs at most most index entries; a count
// of most means at least that many.
func (db *DB) CountOldResults(ctx context.Context, cutoff time.Time, most int) (int64, error) {
	var n int64
	if err := db.cachedRow(ctx, `SELECT count(*) FROM (SELECT 1 `+oldResults+`)`,
		[]any{kanade.FormatTime(cutoff), most}, &n); err != nil {
		return 0, fmt.Errorf("count old results: %w", err)
	}
	return n, nil
}

// DeleteOldResults deletes at most limit execution_results recorded before
// cutoff, taking each deleted run out of the duration summaries in the same
// transaction so the summaries stay exact.
func (tx *Tx) DeleteOldResults(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	rows, err := tx.tx.QueryContext(ctx, `SELECT result_id, job_id, finished_at, duration_ms `+oldResults,
		kanade.FormatTime(cutoff), limit)
	if err != nil {
		return 0, fmt.Errorf("select old results: %w", err)
	}
	var ids []any
	for rows.Next() {
		var id string
		var jobID, finishedAt *string
		var dur *int64
		if err := rows.Scan(&id, &jobID, &finishedAt, &dur); err != nil {
			rows.Close()
			return 0, fmt.Errorf("select old results: %w", err)
		}
		// The same test loadRuns uses for "this row is in the summaries".
		if jobID != nil && finishedAt != nil && dur != nil {
			t, err := kanade.ParseTime(*finishedAt)
			if err != nil {
				rows.Close()
				return 0, fmt.Errorf("result %s: stored finished_at: %w", id, err)
			}
			tx.removeDuration(*jobID, t, *dur)
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return 0, fmt.Errorf("select old results: %w", err)
	}
	var deleted int64
	for len(ids) > 0 {
		n := min(len(ids), 500)
		res, err := tx.tx.ExecContext(ctx, `DELETE FROM execution_results WHERE result_id IN (`+
			strings.TrimSuffix(strings.Repeat("?,", n), ",")+`)`, ids[:n]...)
		if err != nil {
			return deleted, fmt.Errorf("delete old results: %w", err)
		}
		c, _ := res.RowsAffected()
		deleted += c
		ids = ids[n:]
	}
	return deleted, nil
}

// DeleteOldExecutions deletes at most limit executions initiated before cutoff.
func (tx *Tx) DeleteOldExecutions(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	res, err := tx.tx.ExecContext(ctx, `DELETE FROM executions WHERE exec_id IN
		(SELECT exec_id FROM executions WHERE initiated_at < ? ORDER BY initiated_at LIMIT ?)`,
		kanade.FormatTime(cutoff), limit)
	if err != nil {
		return 0, fmt.Errorf("delete old executions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// DeleteOldAudit deletes at most limit audit entries that occurred before cutoff.
func (tx *Tx) DeleteOldAudit(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	res, err := tx.tx.ExecContext(ctx, `DELETE FROM audit_log WHERE id IN
		(SELECT id FROM audit_log WHERE occurred_at < ? ORDER BY occurred_at LIMIT ?)`,
		kanade.FormatTime(cutoff), limit)
	if err != nil {
		return 0, fmt.Errorf("delete old audit entries: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// DeleteOldInventoryHistory deletes at most limit inventory_history events
// observed before cutoff (fleet.md §5.3: 90 days). Nothing else of the
// inventory is swept: facts and derived rows are the current state.
func (tx *Tx) DeleteOldInventoryHistory(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	res, err := tx.tx.ExecContext(ctx, `DELETE FROM inventory_history WHERE id IN
		(SELECT id FROM inventory_history WHERE observed_at < ? ORDER BY observed_at LIMIT ?)`,
		kanade.FormatTime(cutoff), limit)
	if err != nil {
		return 0, fmt.Errorf("delete old inventory history: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
