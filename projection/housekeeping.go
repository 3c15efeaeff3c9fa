package projection

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kanade-fleet/backend/storage"
)

// runHousekeeping reaps, expires and trims every Housekeeping period (and
// once at start). Each step works in bounded transactions, so the projector's
// batches never wait long behind it.
func (w *Worker) runHousekeeping(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Housekeeping)
	defer t.Stop()
	for {
		if err := w.Housekeep(ctx); err != nil && ctx.Err() == nil {
			w.log.Error("housekeeping failed; next round will retry", slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Housekeep runs one round at the Clock's now: reap overdue running rows,
// expire stale pending executions, delete rows past retention (runs,
// executions, audit entries, inventory history events). Each step
// repeats its bounded transaction until a batch comes back short.
func (w *Worker) Housekeep(ctx context.Context) error {
	now := w.cfg.Clock()
	limit := w.cfg.HousekeepingBatch
	steps := []struct {
		action string
		fn     func(tx *storage.Tx) (int64, error)
	}{
		{"reap", func(tx *storage.Tx) (int64, error) {
			n, err := tx.Reap(ctx, now, limit)
			return int64(n), err
		}},
		{"expire_pending", func(tx *storage.Tx) (int64, error) { return tx.ExpirePending(ctx, now, limit) }},
		{"delete_results", func(tx *storage.Tx) (int64, error) {
			return tx.DeleteOldResults(ctx, now.Add(-storage.ResultRetention), limit)
		}},
		{"delete_executions", func(tx *storage.Tx) (int64, error) {
			return tx.DeleteOldExecutions(ctx, now.Add(-storage.ResultRetention), limit)
		}},
		{"delete_audit", func(tx *storage.Tx) (int64, error) {
			return tx.DeleteOldAudit(ctx, now.Add(-storage.AuditRetention), limit)
		}},
		{"delete_inventory_history", func(tx *storage.Tx) (int64, error) {
			return tx.DeleteOldInventoryHistory(ctx, now.Add(-storage.InventoryHistoryRetention), limit)
		}},
	}
	for _, s := range steps {
		for {
			var n int64
			err := w.cfg.DB.Update(ctx, func(tx *storage.Tx) error {
				var err error
				n, err = s.fn(tx)
				return err
			})
			if err != nil {
				return fmt.Errorf("housekeeping %s: %w", s.action, err)
			}
			w.m.housekeeping.WithLabelValues(s.action).Add(float64(n))
			if n < int64(limit) {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return nil
}
