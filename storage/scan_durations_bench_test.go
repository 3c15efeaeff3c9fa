package storage_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/bench/seed"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
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

// BenchmarkApplyResultsMarks projects batches of 1000 results of 200 jobs
// (the projector's batch), each run finishing in the current hour, with
// duration_buckets' triggers as migrated ("marks") and with them dropped
// ("no marks"), alternating: what keeping scan_durations' marks costs the
// write path, in the same run.
func BenchmarkApplyResultsMarks(b *testing.B) {
	for _, marks := range []bool{true, false, true, false} {
		name := "marks"
		if !marks {
			name = "no marks"
		}
		b.Run(name, func(b *testing.B) {
			ctx := b.Context()
			db := storagetest.Open(b, nil)
			if !marks {
				for _, trig := range []string{"insert", "delete", "update"} {
					if err := storage.ExecForTest(ctx, db, "DROP TRIGGER duration_segments_"+trig); err != nil {
						b.Fatal(err)
					}
				}
			}
			at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			i := 0
			for b.Loop() {
				batch := make([]storage.Result, 1000)
				for k := range batch {
					i++
					batch[k] = result(fmt.Sprintf("r%09d", i), fmt.Sprintf("job-%03d", i%200), at.Add(time.Duration(i)*10*time.Millisecond), time.Duration(i%5000)*time.Millisecond)
				}
				if err := db.Update(ctx, func(tx *storage.Tx) error {
					_, err := tx.ApplyResults(ctx, batch)
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
