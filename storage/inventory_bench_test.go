package storage_test

import (
	"testing"
	"time"

	"github.com/kanade-fleet/backend/sim"
	"github.com/kanade-fleet/backend/storage"
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
