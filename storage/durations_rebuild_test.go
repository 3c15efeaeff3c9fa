package storage_test

import (
	"context"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// TestRebuildDurationsCountsRowsWrittenAround: runs inserted straight into
// execution_results (not through the projection) are missing from the
// summaries until RebuildDurations, after which the summaries hold every
// row once and ScanDurations equals the brute-force reference, also when
// rebuilt again.
func TestRebuildDurationsCountsRowsWrittenAround(t *testing.T) {
	db := storagetest.Open(t, nil)
	applyResults(t, db,
		result("r-1", "inventory", t0, 3*time.Second),
		result("r-2", "inventory", t0.Add(time.Minute), 5*time.Second),
		result("r-3", "patch", t0.Add(2*time.Hour), 40*time.Second))
	apply(t, db, func(ctx context.Context, tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO execution_results (result_id, exec_id, pc_id, job_id, exit_code, skipped,
			started_at, finished_at, recorded_at, duration_ms) VALUES
			('x-1', NULL, 'pc', 'inventory', 0, 0, '2026-03-01T00:30:00.000000000Z', '2026-03-01T00:30:07.000000000Z', '2026-03-01T00:30:07.000000000Z', 7000),
			('x-2', NULL, 'pc', 'backup', 1, 0, '2026-03-01T05:00:00.000000000Z', '2026-03-01T05:01:00.000000000Z', '2026-03-01T05:01:00.000000000Z', 60000),
			('x-3', NULL, 'pc', 'backup', NULL, 0, '2026-03-01T05:00:00.000000000Z', NULL, '2026-03-01T05:00:00.000000000Z', NULL)`)
		return err
	})
	since := t0.Add(-time.Hour)
	before, err := db.ScanDurations(t.Context(), since)
	if err != nil {
		t.Fatal(err)
	}
	if gocmp.Equal(before, reference(t, db, since)) {
		t.Fatal("the summaries already count the rows written around them: the test proves nothing")
	}
	for range 2 {
		if err := db.RebuildDurations(t.Context()); err != nil {
			t.Fatal(err)
		}
		checkSummaryInvariants(t, db)
		got, err := db.ScanDurations(t.Context(), since)
		if err != nil {
			t.Fatal(err)
		}
		if diff := gocmp.Diff(reference(t, db, since), got); diff != "" {
			t.Fatalf("after the rebuild (-reference +ScanDurations):\n%s", diff)
		}
		if len(got) != 3 {
			t.Errorf("%d jobs, want inventory, patch and backup", len(got))
		}
	}
}
