package storage_test

import (
	"testing"
	"time"

	"github.com/kanade-fleet/backend/bench/scandurations/seed"
	"github.com/kanade-fleet/backend/storage"
)

// BenchmarkScanDurations answers scan_durations over 100k runs of 200 jobs in
// a 24 h window, from a SQLite file seeded once through the write path and
// cached under os.TempDir() (see bench/scandurations for the comparison with
// the baseline, other sizes and sqld).
func BenchmarkScanDurations(b *testing.B) {
	ctx := b.Context()
	path, err := seed.Cached(ctx, 100000, 200)
	if err != nil {
		b.Fatal(err)
	}
	db, err := storage.Open(ctx, path, storage.Options{Clock: func() time.Time { return seed.Now }})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
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
