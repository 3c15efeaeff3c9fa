package storage_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend/storage"
)

// Migration 0028 moves each segment's blobs from duration_segments into
// duration_runs and puts a head (runs, lo, hi, total) before each bins
// directory. A file in the layout before it (built here from the
// current tables, which hold the same values) answers scan_durations the
// same after the migration, keeps every segment, and still takes writes
// that rewrite its buckets. A file whose summaries are empty (one from
// before 0021) is rebuilt by the migration's Go step.
func TestMigration0028MovesTheSegmentsBlobs(t *testing.T) {
	ctx := t.Context()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(28, 1))
	var batch []storage.Result
	for i := range 3000 {
		started := t0.Add(time.Duration(rng.Int64N(int64(30 * time.Hour))))
		batch = append(batch, result(fmt.Sprintf("r%04d", i), fmt.Sprintf("job-%d", rng.IntN(7)), started,
			time.Duration(rng.Int64N(int64(time.Hour)))))
	}
	// Clock skew: a run that finished before it started (negative lo,
	// total), whose head the migration writes from SQL.
	batch = append(batch, result("skewed", "job-1", t0.Add(20*time.Hour), -90*time.Second))
	since := t0.Add(5*time.Hour + 17*time.Minute)

	for _, tc := range []struct {
		name  string
		empty bool // the summaries emptied as 0021 left them
	}{{"kept", false}, {"empty", true}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k.db")
			db, err := storage.Open(ctx, path, storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(batch); i += 500 { // many segments per bucket
				applyResults(t, db, batch[i:min(i+500, len(batch))]...)
			}
			checkSummaryInvariants(t, db)
			want, err := db.ScanDurations(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			segments, err := storage.RowsForTest(ctx, db, `SELECT s.hour, s.job_id, s.seg, s.runs, s.lo, s.hi, s.total, s.bins, r.durs, r.offs
				FROM duration_segments AS s JOIN duration_runs AS r USING (hour, job_id, seg) ORDER BY 1, 2, 3`)
			if err != nil {
				t.Fatal(err)
			}
			if len(segments) < 100 {
				t.Fatalf("%d segments; the test wants many", len(segments))
			}
			back := []string{
				`CREATE TABLE old (hour INTEGER NOT NULL, job_id TEXT NOT NULL, seg INTEGER NOT NULL, runs INTEGER NOT NULL,
					lo INTEGER NOT NULL, hi INTEGER NOT NULL, total INTEGER NOT NULL, bins BLOB NOT NULL, durs BLOB NOT NULL,
					offs BLOB NOT NULL, PRIMARY KEY (hour, job_id, seg)) WITHOUT ROWID`,
				`INSERT INTO old SELECT s.hour, s.job_id, s.seg, s.runs, s.lo, s.hi, s.total, substr(s.bins, 33), r.durs, r.offs
					FROM duration_segments AS s JOIN duration_runs AS r USING (hour, job_id, seg)`,
				`DROP TABLE duration_segments`,
				`DROP TABLE duration_runs`,
				`ALTER TABLE old RENAME TO duration_segments`,
				`DELETE FROM schema_migrations WHERE version = '0028_duration_runs'`,
				// 0029's triggers went with the table: 0029 again too.
				`DROP TABLE duration_buckets`,
				`DROP TABLE duration_changes`,
				`DELETE FROM schema_migrations WHERE version = '0029_duration_buckets'`,
			}
			if tc.empty {
				back = append(back, `DELETE FROM duration_segments`, `DELETE FROM duration_bins`)
			}
			for _, q := range back {
				if err := storage.ExecForTest(ctx, db, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if got, err := db.ScanDurations(ctx, since); err == nil {
				t.Fatalf("scan before the migration: %v, want an error (no duration_runs)", got)
			}
			if err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := db.ScanDurations(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("scan_durations after the migration (-before +after):\n%s", diff)
			}
			after, err := storage.RowsForTest(ctx, db, `SELECT s.hour, s.job_id, s.seg, s.runs, s.lo, s.hi, s.total, s.bins, r.durs, r.offs
				FROM duration_segments AS s JOIN duration_runs AS r USING (hour, job_id, seg) ORDER BY 1, 2, 3`)
			if err != nil {
				t.Fatal(err)
			}
			if tc.empty {
				// Rebuilt: one segment per bucket, the same runs.
				if len(after) == 0 || len(after) >= len(segments) {
					t.Errorf("%d segments rebuilt from %d", len(after), len(segments))
				}
			} else if diff := cmp.Diff(segments, after); diff != "" {
				t.Errorf("segments after the migration (-before +after):\n%s", diff)
			}
			// A late result and a removal rewrite buckets of the moved layout.
			late := result("late", "job-3", since.Add(time.Minute), 42*time.Millisecond)
			applyResults(t, db, late)
			if _, err := db.ScanDurations(ctx, since); err != nil {
				t.Fatal(err)
			}
			checkSummaryInvariants(t, db)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
