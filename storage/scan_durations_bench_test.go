package storage_test

import (
	"testing"
	"time"

	"github.com/kanade-fleet/backend/bench/seed"
	"github.com/kanade-fleet/backend/storage"
)

// BenchmarkScanDurations answers scan_durations over 100k runs of 200 jobs in
// a 24 h window, from a SQLite file seeded once through the write path and
// cached under os.TempDir() (see bench/scandurations for the comparison with
// the baseline, other sizes and sqld).
func BenchmarkScanDurations(b *testing.B) {
	ctx := b.Context()
	db := openSeeded(b, 100000)
	for b.Loop() {
		got, err := db.ScanDurations(ctx, seed.Since())
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != 200 {
			b.Fatalf("%d jobs, want 200", len(got))
		}
	}
}

// openSeeded opens the cached bench/scandurations file of runs runs over
// 200 jobs (seeded once through the write path), closed when b ends.
func openSeeded(b *testing.B, runs int) *storage.DB {
	b.Helper()
	path, err := seed.Cached(b.Context(), runs, 200)
	if err != nil {
		b.Fatal(err)
	}
	db, err := storage.Open(b.Context(), path, storage.Options{Clock: func() time.Time { return seed.Now }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}
