package storage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/sim"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// BenchmarkPrepareInventory parses one report of the simulator's inventory
// job (~150 apps), the work the projector does per inventory result before
// its transaction.
func BenchmarkPrepareInventory(b *testing.B) {
	hint := sim.InventoryHint()
	stdout := sim.NewInventory(42, 150, 3000).Report("SIM-000001", 1, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	b.SetBytes(int64(len(stdout)))
	b.ReportAllocs()
	for b.Loop() {
		if r := storage.PrepareInventory(hint, stdout); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

// BenchmarkInventoryProjectReports projects, in one ApplyResults, a batch of
// 100 reports of the simulator's inventory job, each a day after the PC's
// previous one (most change a few apps, as in bench/ingest's steady state),
// on PCs whose earlier reports are already projected: the per-report work
// of the results transaction. Reported per report.
func BenchmarkInventoryProjectReports(b *testing.B) {
	const pcs, batch = 300, 100
	db := storagetest.Open(b, nil)
	hint := sim.InventoryHint()
	inv := sim.NewInventory(42, 150, 3000)
	base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	round := 0
	next := func(pc int) storage.Result {
		at := base.Add(time.Duration(round)*6*time.Hour + time.Duration(pc)*time.Second)
		id := fmt.Sprintf("r%d-%d", round, pc)
		name := fmt.Sprintf("SIM-%06d", pc)
		stdout := inv.Report(name, pc, at)
		exit := int64(0)
		return storage.Result{ExecResult: kanade.ExecResult{ResultID: id, RequestID: id, PcID: name, ExitCode: &exit,
			Stdout: stdout, StartedAt: kanade.Timestamp{Time: at}, FinishedAt: kanade.Timestamp{Time: at},
			ManifestID: sim.InventoryJob.ID}, RecordedAt: at, Inventory: storage.PrepareInventory(hint, stdout)}
	}
	events := 0
	apply := func(rs []storage.Result) {
		ctx := context.Background()
		if err := db.Update(ctx, func(tx *storage.Tx) error {
			st, err := tx.ApplyResults(ctx, rs)
			events += st.Inventory.Events
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	for lo := 0; lo < pcs; lo += batch {
		var rs []storage.Result
		for pc := lo; pc < lo+batch; pc++ {
			rs = append(rs, next(pc))
		}
		apply(rs)
	}
	lo := 0
	var reports int
	events = 0
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		if lo == 0 {
			round++
		}
		var rs []storage.Result
		for pc := lo; pc < lo+batch; pc++ {
			rs = append(rs, next(pc))
		}
		lo = (lo + batch) % pcs
		b.StartTimer()
		apply(rs)
		reports += batch
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(reports), "ns/report")
	b.ReportMetric(float64(events)/float64(reports), "events/report")
}
