package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
)

// runHousekeeping runs a housekeeping round on c every Housekeeping period
// (and once at start), spreading each round's retention deletes over
// most of the period (HousekeepOver). Each step works in bounded
// transactions, bounded in rows and in time (repeat), so the projector's
// batches never wait long behind it.
func (w *Worker) runHousekeeping(ctx context.Context, c *bus.Client) error {
	t := time.NewTicker(w.cfg.Housekeeping)
	defer t.Stop()
	for {
		if err := w.HousekeepOver(ctx, c, RetentionSpread(w.cfg.Housekeeping)); err != nil && ctx.Err() == nil {
			w.log.Error("housekeeping failed; next round will retry", slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RetentionSpread is how long the housekeeping loop of the given period
// spreads a round's run deletes over (HousekeepOver): three quarters of
// it, the rest being slack for a round that runs long, so rounds do not
// run into each other. Exported so bench/scale paces as the loop does.
func RetentionSpread(period time.Duration) time.Duration { return period * 3 / 4 }

// maxPacedRows is the most expired runs a round paces (HousekeepOver). A
// round that finds at least this many has a backlog (the first round on
// a fleet's history, or after the worker was down): spread over a 5-minute
// period that is more than the deletes' own rate with their rests, so the
// round deletes as fast as the rests allow; counting further would only
// make the count cost more.
const maxPacedRows = 100_000

// pacedEvery is about how often a paced round deletes: each transaction
// takes what expires in this long at the round's pace (at least
// minHousekeepingBatch rows), so a steady fleet's expiry leaves as a
// trickle of small transactions, not a burst of large ones whose dirtied
// pages the checkpointer then writes back all at once.
const pacedEvery = time.Second

// Housekeep runs one round on Config.Bus (see HousekeepWith).
func (w *Worker) Housekeep(ctx context.Context) error { return w.HousekeepWith(ctx, w.cfg.Bus) }

// HousekeepWith runs one round at once: HousekeepOver with no spread.
func (w *Worker) HousekeepWith(ctx context.Context, c *bus.Client) error {
	return w.HousekeepOver(ctx, c, 0)
}

// HousekeepOver runs one round at the Clock's now: reap overdue running
// rows, expire stale pending executions, delete rows past retention
// (executions, audit entries, inventory history events, performance
// samples, events), prune agents not seen for the configured days
// (fleet.md §3.4), run the heartbeat watchdog, which publishes on c
// (§3.5), and last delete the runs past retention, spread over about
// spread. Each step repeats its bounded transaction until a batch comes
// back short; a step that fails does not keep the others from running.
// Without c the watchdog does not run and the prune follows
// Config.AgentPruneDays alone.
//
// The runs are the one table whose retention is heavy (a run's row has
// fifteen index entries scattered over a file of millions of runs) and
// steady (a fleet's runs expire about as fast as they arrive), so with a
// spread the round counts what has expired (up to maxPacedRows) and
// deletes it at the pace that takes about spread, in small transactions
// (pacedEvery), instead of all at once at the start of the round. They
// go last so the pacing delays no other step, the watchdog's offline
// events least of all.
func (w *Worker) HousekeepOver(ctx context.Context, c *bus.Client, spread time.Duration) error {
	now := w.cfg.Clock()
	steps := []step{
		{action: "reap", fn: func(tx *storage.Tx, limit int) (int64, error) {
			n, err := tx.Reap(ctx, now, limit)
			return int64(n), err
		}},
		{action: "expire_pending", fn: func(tx *storage.Tx, limit int) (int64, error) { return tx.ExpirePending(ctx, now, limit) }},
		{action: "delete_executions", fn: func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldExecutions(ctx, now.Add(-storage.ResultRetention), limit)
		}},
		{action: "delete_audit", fn: func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldAudit(ctx, now.Add(-storage.AuditRetention), limit)
		}},
		{action: "delete_inventory_history", fn: func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldInventoryHistory(ctx, now.Add(-storage.InventoryHistoryRetention), limit)
		}},
		{action: "delete_host_perf", fn: func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldHostPerf(ctx, now.Add(-storage.HostPerfRetention), limit)
		}},
		{action: "delete_process_perf", fn: func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldProcessPerf(ctx, now.Add(-storage.ProcessPerfRetention), limit)
		}},
		{action: "delete_obs_events", fn: func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldObsEvents(ctx, now.Add(-storage.ObsRetention), limit)
		}},
	}
	cutoff := now.Add(-storage.ResultRetention)
	results := step{action: "delete_results",
		fn: func(tx *storage.Tx, limit int) (int64, error) {
			return tx.DeleteOldResults(ctx, cutoff, limit)
		},
		warm: func(ctx context.Context, limit int) error {
			found, err := w.cfg.DB.WarmOldResults(ctx, cutoff, limit)
			if w.cfg.warmed != nil {
				w.cfg.warmed(limit, found)
			}
			return err
		},
		pending: func(ctx context.Context) (int64, error) {
			return w.cfg.DB.CountOldResults(ctx, cutoff, w.cfg.maxPacedRows)
		},
	}
	var errs []error
	failed := false
	for _, s := range steps {
		if _, err := w.repeat(ctx, s, 0); err != nil {
			errs = append(errs, err)
			failed = true
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
	if !failed {
		if _, err := w.repeat(ctx, results, spread); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// step is one housekeeping step: fn runs in each of its transactions.
type step struct {
	action string
	fn     func(tx *storage.Tx, limit int) (int64, error)
	// warm, when set, reads before each transaction what fn will change
	// (see repeat).
	warm func(ctx context.Context, limit int) error
	// pending, when set, counts the rows the step has to change, for
	// pacing it (see repeat).
	pending func(ctx context.Context) (int64, error)
}

// minHousekeepingBatch is the fewest rows repeat lets a transaction touch.
const minHousekeepingBatch = 10

// housekeepingWarmTime bounds a warm read (see repeat). A read transaction
// keeps the checkpointer from starting the WAL over while it lasts, so it
// must not last long; a batch whose pages are that cold is left to read
// the rest in its transaction.
const housekeepingWarmTime = time.Second

// repeat runs s.fn in bounded transactions until one changes fewer rows
// than the limit it was given, counting the rows under s.action, and
// returns how many it changed. The limit starts at minHousekeepingBatch and
// doubles after a transaction that took under a quarter of
// HousekeepingTxTime (up to HousekeepingBatch); one that took longer than
// HousekeepingTxTime halves it, so a transaction stays near that time
// whatever a row costs: on a 10M-row table with its indexes, on a loaded
// machine, a 1000-row delete can take seconds, and the projector's next
// batch waits for the whole of it. Starting small, no transaction is ever
// more than twice the size of one seen to be quick (starting at
// HousekeepingBatch, the first transaction of every step of every round
// was the one that stalled the projector). Retention needs little
// throughput (a day's expired runs are about a day's new ones), so small
// transactions cost nothing that matters, and neither does the rest after
// each (Config.HousekeepingRest) that leaves the disk time to take what
// the last one dirtied.
//
// s.warm, when not nil, runs before each transaction with its limit,
// outside the writer's turn: it reads the pages s.fn is about to change,
// so that a page the cache does not hold costs housekeeping a disk read,
// not the projector (storage.DB.WarmOldResults). It is cut short at
// housekeepingWarmTime, and the transaction runs all the same: a warm read
// is only ever an advance on the transaction's own. The rest counts the
// warm read's time with the transaction's: both are housekeeping's use of
// the disk.
//
// With a spread and s.pending, the step is paced: s.pending's count (below
// Config.maxPacedRows; at it, there is a backlog and no pace) over spread
// is its pace in rows a second. A transaction then takes at most what the
// pace deletes in pacedEvery, and the rest after it lasts until its rows'
// share of spread has passed, if that is longer than the rest above.
func (w *Worker) repeat(ctx context.Context, s step, spread time.Duration) (int64, error) {
	var pace float64 // rows a second; 0: unpaced
	most := w.cfg.HousekeepingBatch
	if s.pending != nil && spread > 0 {
		n, err := s.pending(ctx)
		if err != nil {
			return 0, fmt.Errorf("housekeeping %s: %w", s.action, err)
		}
		if n > 0 && n < int64(w.cfg.maxPacedRows) {
			pace = float64(n) / spread.Seconds()
			most = min(max(int(math.Ceil(pace*pacedEvery.Seconds())), minHousekeepingBatch), most)
		}
	}
	var total int64
	limit := min(minHousekeepingBatch, most)
	for {
		var warmed time.Duration
		if s.warm != nil {
			start := w.cfg.Clock()
			wctx, cancel := context.WithTimeout(ctx, housekeepingWarmTime)
			err := s.warm(wctx, limit)
			cut := ctx.Err() == nil && errors.Is(wctx.Err(), context.DeadlineExceeded)
			cancel()
			if err != nil && !cut {
				return total, fmt.Errorf("housekeeping %s: %w", s.action, err)
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
				w.cfg.inHousekeep(s.action, limit)
			}
			var err error
			n, err = s.fn(tx, limit)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("housekeeping %s: %w", s.action, err)
		}
		took := w.cfg.Clock().Sub(start)
		total += n
		w.m.housekeeping.WithLabelValues(s.action).Add(float64(n))
		if n < int64(limit) {
			return total, nil
		}
		if ctx.Err() != nil {
			return total, ctx.Err()
		}
		// Rest before the next one (Config.HousekeepingRest): what this
		// transaction dirtied is still to be checkpointed and synced.
		used := warmed + took
		rest := time.Duration(float64(used) * w.cfg.HousekeepingRest)
		if pace > 0 {
			rest = max(rest, time.Duration(float64(n)/pace*float64(time.Second))-used)
		}
		if rest > 0 {
			if err := w.cfg.rest(ctx, rest); err != nil {
				return total, err
			}
		}
		switch {
		case took > w.cfg.HousekeepingTxTime:
			limit = max(limit/2, min(minHousekeepingBatch, most))
		case took < w.cfg.HousekeepingTxTime/4:
			limit = min(limit*2, most)
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
	n, err := w.repeat(ctx, step{action: "prune_agents", fn: func(tx *storage.Tx, limit int) (int64, error) {
		return tx.PruneAgents(ctx, cutoff, limit)
	}}, 0)
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
