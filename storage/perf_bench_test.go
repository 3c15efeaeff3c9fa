package storage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// BenchmarkHostSeries times the 24 h per-PC series on a day of 100 PCs
// (bench/telemetry runs the full-size comparison with its raw baseline).
func BenchmarkHostSeries(b *testing.B) {
	ctx := context.Background()
	db := storagetest.Open(b, nil)
	start := time.Date(2026, 6, 20, 0, 0, 0, 0, time.UTC)
	var batch []kanade.HostPerf
	for m := range 24 * 60 {
		for i := range 100 {
			batch = append(batch, kanade.HostPerf{PcID: fmt.Sprintf("PC-%03d", i), At: kanade.Timestamp{Time: start.Add(time.Duration(m) * time.Minute)},
				CPUPct: fp(float64(m % 100)), MemUsedBytes: ip(int64(m))})
		}
	}
	if err := db.Update(ctx, func(tx *storage.Tx) error { _, err := tx.InsertHostPerf(ctx, batch); return err }); err != nil {
		b.Fatal(err)
	}
	from, to := start.Add(90*time.Second), start.Add(24*time.Hour)
	b.Run("rollups", func(b *testing.B) {
		for b.Loop() {
			if _, err := db.HostSeries(ctx, "PC-050", from, to, 300); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		for b.Loop() {
			if _, err := db.HostSeries(ctx, "PC-050", from, to, 240); err != nil {
				b.Fatal(err)
			}
		}
	})
}
