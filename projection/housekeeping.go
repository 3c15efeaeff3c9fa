package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
)

// runHousekeeping runs a housekeeping round on c every Housekeeping period
// (and once at start). Each step works in bounded transactions, bounded in
// rows and in time (repeat), so the projector's batches never wait long
// behind it.
func (w *Worker) runHousekeeping(ctx context.Context, c *bus.Client) error {
	t := time.NewTicker(w.cfg.Housekeeping)
	defer t.Stop()
	for {
		if err := w.HousekeepWith(ctx, c); err != nil && ctx.Err() == nil {
			w.log.Error("housekeeping failed; next round will retry", slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Housekeep runs one round on Config.Bus (see HousekeepWith).
func (w *Worker) Housekeep(ctx context.Context) error { return w.HousekeepWith(ctx, w.cfg.Bus) }

// HousekeepWith runs one round at the Clock's now: reap overdue running
// rows, expire stale pending executions, delete rows past retention (runs,
// executions, audit entries, inventory history events), prune
// agents not seen for the configured days (fleet.md §3.4), and run the
// heartbeat watchdog, which publishes on c (§3.5). Each step repeats its
// bounded transaction until a batch comes back short; a step that fails
// does not keep the others from running. Without c the watchdog does not
// run and the prune follows Config.AgentPruneDays alone.
func (w *Worker) HousekeepWith(ctx context.Context, c *bus.Client) error {
	now := w.cfg.Clock()
	steps := []struct {
		action string
		fn     func(tx *storage.Tx, limit int) (int64, error)
		// warm, when set, reads before each transaction what fn will
		// change (see repeat).
		warm func(ctx context.Context, limit int) error
	}{
		{"reap", func(tx *storage.Tx, limit int) (int64, error) {
			n, err := tx.Reap(ctx, now, limit)
			return int64(n), err
		}, nil},
		{"expire_pending", func(tx *storage.Tx, limit int) (int64, error) { return tx.ExpirePending(ctx, now, limit) }, nil},
		{"delete_results", func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldResults(ctx, now.Add(-storage.ResultRetention), limit)
		}, func(ctx context.Context, limit int) error {
			found, err := w.cfg.DB.WarmOldResults(ctx, now.Add(-storage.ResultRetention), limit)
			if w.cfg.warmed != nil {
				w.cfg.warmed(limit, found)
			}
			return err
		}},
		{"delete_executions", func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldExecutions(ctx, now.Add(-storage.ResultRetention), limit)
		}, nil},
		{"delete_audit", func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldAudit(ctx, now.Add(-storage.AuditRetention), limit)
		}, nil},
		{"delete_inventory_history", func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldInventoryHistory(ctx, now.Add(-storage.InventoryHistoryRetention), limit)
		}, nil},
		{"delete_host_perf", func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldHostPerf(ctx, now.Add(-storage.HostPerfRetention), limit)
		}, nil},
		{"delete_process_perf", func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldProcessPerf(ctx, now.Add(-storage.ProcessPerfRetention), limit)
		}, nil},
		{"delete_obs_events", func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldObsEvents(ctx, now.Add(-storage.ObsRetention), limit)
		}, nil},
	}
	var errs []error
	for _, s := range steps {
		if _, err := w.repeat(ctx, s.action, s.fn, s.warm); err != nil {
			errs = append(errs, err)
			break // the same database would fail the next steps too
		}
	}
	if err := w.pruneAgents(ctx, c, now); err != nil {
		errs = append(errs, err)
	}
	if c != nil {
		if err := w.watch(ctx, c, now); err != nil {
			errs = append(errs, fmt.Errorf("housekeeping watchdog: %w", err))
		}
	}
	return errors.Join(errs...)
}

// minHousekeepingBatch is the fewest rows repeat lets a transaction touch.
const minHousekeepingBatch = 10

// housekeepingWarmTime bounds a warm read (see repeat). A read transaction
// keeps the checkpointer from starting the WAL over while it lasts, so it
// must not last long; a batch whose pages are that cold is left to read
// the rest in its transaction.
const housekeepingWarmTime = time.Second

// repeat runs fn in bounded transactions until one changes fewer rows than
// the limit it was given, counting the rows under action, and returns how
// many it changed. The limit starts at minHousekeepingBatch and doubles
// after a transaction that took under a quarter of HousekeepingTxTime (up
// to HousekeepingBatch); one that took longer than HousekeepingTxTime
// halves it, so a transaction stays near that time whatever a row costs:
// on a 10M-row table with its indexes, on a loaded machine, a 1000-row
// delete can take seconds, and the projector's next batch waits for the
// whole of it. Starting small, no transaction is ever more than twice the
// size of one seen to be quick (starting at HousekeepingBatch, the first
// transaction of every step of every round was the one that stalled the
// projector). Retention needs little throughput (a day's expired runs are
// about a day's new ones), so small transactions cost nothing that matters,
// and neither does the rest after each (Config.HousekeepingRest) that
// leaves the disk time to take what the last one dirtied.
//
// warm, when not nil, runs before each transaction with its limit, outside
// the writer's turn: it reads the pages fn is about to change, so that a
// page the cache does not hold costs housekeeping a disk read, not the
// projector (storage.DB.WarmOldResults). It is cut short at
// housekeepingWarmTime, and the transaction runs all the same: a warm read
// is only ever an advance on the transaction's own. The rest counts the
// warm read's time with the transaction's: both are housekeeping's use of
// the disk.
func (w *Worker) repeat(ctx context.Context, action string, fn func(tx *storage.Tx, limit int) (int64, error), warm func(ctx context.Context, limit int) error) (int64, error) {
	var total int64
	limit := min(minHousekeepingBatch, w.cfg.HousekeepingBatch)
	for {
		var warmed time.Duration
		if warm != nil {
			start := w.cfg.Clock()
			wctx, cancel := context.WithTimeout(ctx, housekeepingWarmTime)
			err := warm(wctx, limit)
			cut := ctx.Err() == nil && errors.Is(wctx.Err(), context.DeadlineExceeded)
			cancel()
			if err != nil && !cut {
				return total, fmt.Errorf("housekeeping %s: %w", action, err)
			}
			warmed = w.cfg.Clock().Sub(start)
		}
		var n int64
		var start time.Time
		err := w.cfg.DB.Update(ctx, func(tx *storage.Tx) error {
			// Timed from inside the transaction to its commit: the wait
			// for the writer is other writers' time, not this one's.
			start = w.cfg.Clock()
			if w.cfg.inHousekeep != nil {
				w.cfg.inHousekeep(action, limit)
			}
			var err error
			n, err = fn(tx, limit)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("housekeeping %s: %w", action, err)
		}
		took := w.cfg.Clock().Sub(start)
		total += n
		w.m.housekeeping.WithLabelValues(action).Add(float64(n))
		if n < int64(limit) {
			return total, nil
		}
		if ctx.Err() != nil {
			return total, ctx.Err()
		}
		// Rest before the next one (Config.HousekeepingRest): what this
		// transaction dirtied is still to be checkpointed and synced.
		if rest := time.Duration(float64(warmed+took) * w.cfg.HousekeepingRest); rest > 0 {
			if err := w.cfg.rest(ctx, rest); err != nil {
				return total, err
			}
		}
		switch {
		case took > w.cfg.HousekeepingTxTime:
			limit = max(limit/2, min(minHousekeepingBatch, w.cfg.HousekeepingBatch))
		case took < w.cfg.HousekeepingTxTime/4:
			limit = min(limit*2, w.cfg.HousekeepingBatch)
		}
	}
}

// settingsTimeout bounds the read of KV server_settings.
const settingsTimeout = 10 * time.Second

// pruneAgents deletes the agents whose last heartbeat is more than the
// prune window's days before now, when pruning is on (fleet.md §3.4).
func (w *Worker) pruneAgents(ctx context.Context, c *bus.Client, now time.Time) error {
	days, err := w.pruneDays(ctx, c)
	if err != nil {
		return fmt.Errorf("housekeeping prune_agents: skipped: %w", err)
	}
	if days == 0 {
		return nil
	}
	cutoff := now.Add(-time.Duration(days) * 24 * time.Hour)
	n, err := w.repeat(ctx, "prune_agents", func(tx *storage.Tx, limit int) (int64, error) {
		return tx.PruneAgents(ctx, cutoff, limit)
	}, nil)
	if n > 0 {
		w.log.Info("pruned agents not seen for the prune window", slog.Int64("agents", n), slog.Int("days", days))
	}
	return err
}

// pruneDays is the prune window: agent_prune_days of KV server_settings
// where the document sets it, else Config.AgentPruneDays (also when the
// bucket or the document does not exist). A document that cannot be read
// or decoded is an error, so the prune is skipped rather than run with a
// window somebody did not choose.
func (w *Worker) pruneDays(ctx context.Context, c *bus.Client) (int, error) {
	if c == nil {
		return w.cfg.AgentPruneDays, nil
	}
	ctx, cancel := context.WithTimeout(ctx, settingsTimeout)
	defer cancel()
	e, err := c.Get(ctx, kanade.BucketServerSettings, kanade.KeyServerSettings)
	switch {
	case errors.Is(err, bus.ErrNotFound): // no bucket (ErrNoBucket is one too), or no document
		return w.cfg.AgentPruneDays, nil
	case err != nil:
		return 0, fmt.Errorf("read KV %s: %w", kanade.BucketServerSettings, err)
	}
	days, set, err := kanade.AgentPruneDays(e.Value)
	if err != nil {
		return 0, err
	}
	if !set {
		return w.cfg.AgentPruneDays, nil
	}
	return days, nil
}
