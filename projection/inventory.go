package projection

import (
	"context"
	"log/slog"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
)

// prepareInventory attaches the inventory report to a successful run of a
// job whose manifest has an inventory hint (fleet.md §5.4), parsed here,
// outside the transaction. Only a failure to read the manifest is an
// error (the batch is read again).
func (w *Worker) prepareInventory(ctx context.Context, c *conn, r *storage.Result) error {
	if r.ExitCode == nil || *r.ExitCode != 0 || r.Skipped || r.ManifestID == "" {
		return nil
	}
	spec, err := c.specs.spec(ctx, r.ManifestID)
	if err != nil || spec == nil {
		return err
	}
	r.Inventory = storage.PrepareInventory(spec, r.Stdout)
	return nil
}

// inventoryOutcome counts and logs what a committed batch's inventory
// projection did: each invalid report and failed step gets a log line (the
// first few of a batch; the counters have them all).
func (w *Worker) inventoryOutcome(st storage.InventoryStats, upTo uint64) {
	w.m.inventory.WithLabelValues("projected").Add(float64(st.Projected - st.Unchanged))
	w.m.inventory.WithLabelValues("unchanged").Add(float64(st.Unchanged))
	w.m.inventory.WithLabelValues("stale").Add(float64(st.Stale))
	w.m.inventory.WithLabelValues("invalid").Add(float64(st.Invalid))
	w.m.invFailures.Add(float64(st.Failed))
	w.m.invEvents.Add(float64(st.Events))
	w.m.invSkipped.Add(float64(st.Skipped))
	for _, is := range st.Issues {
		msg := "projector: inventory step failed and was undone; the run is stored"
		if is.Step == "parse" {
			msg = "projector: inventory report is not one JSON object; the run is stored without inventory"
		}
		w.log.Warn(msg, slog.String("step", is.Step), slog.String("result_id", kanade.Clip(is.ResultID)),
			slog.String("pc_id", kanade.Clip(is.PcID)), slog.String("job", kanade.Clip(is.JobID)),
			slog.String("err", kanade.Clip(is.Err.Error())), slog.Uint64("up_to_seq", upTo))
	}
	if more := st.Invalid + st.Failed - len(st.Issues); more > 0 {
		w.log.Warn("projector: more inventory reports failed in this batch than were logged",
			slog.Int("not_logged", more), slog.Uint64("up_to_seq", upTo))
	}
	if st.Skipped > 0 {
		w.log.Info("projector: inventory array elements left out (not an object, no primary-key value, or a duplicate key)",
			slog.Int("elements", st.Skipped), slog.Uint64("up_to_seq", upTo))
	}
}
