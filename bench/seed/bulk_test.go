package seed

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// TestBulkMatchesTheWritePath loads the same data set twice, through the
// projection (Seed) and in bulk (Bulk), and requires identical databases
// where it matters: every execution_results column, the rollups the
// dropped triggers keep (result_minutes, job_completions), the roster and
// the scan_durations answer.
func TestBulkMatchesTheWritePath(t *testing.T) {
	storagetest.AnswersOnly(t)
	ctx := context.Background()
	// A quarter of the runs over sqld (storagetest.Small).
	n, jobs := storagetest.Sample(12000, 3000), 20
	dir := t.TempDir()
	slow := filepath.Join(dir, "seed.db")
	db, err := storage.Open(ctx, slow, storage.Options{Clock: func() time.Time { return Now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := Seed(ctx, db, n, jobs); err != nil {
		t.Fatal(err)
	}
	want, err := db.ScanDurations(ctx, Since())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	fast := filepath.Join(dir, "bulk.db")
	if err := Bulk(ctx, fast, n, jobs, Agents, t.Logf); err != nil {
		t.Fatal(err)
	}
	db, err = storage.Open(ctx, fast, storage.Options{Clock: func() time.Time { return Now }})
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.ScanDurations(ctx, Since())
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("scan_durations differ (-write path +bulk):\n%s", diff)
	}
	for _, q := range []string{
		`SELECT * FROM execution_results ORDER BY result_id`,
		`SELECT * FROM result_minutes ORDER BY minute`,
		`SELECT * FROM job_completions ORDER BY job_id, pc_id`,
		`SELECT pc_id, hostname FROM agents ORDER BY pc_id`,
		`SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name`,
	} {
		a, b := dump(t, slow, q), dump(t, fast, q)
		if len(a) == 0 {
			t.Errorf("%s: no rows", q)
		}
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("%s differs (-write path +bulk):\n%.3000s", q, diff)
		}
	}
}

// dump returns every row of q as text.
func dump(t *testing.T, path, q string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i, v := range vals {
			if bs, ok := v.([]byte); ok {
				v = string(bs)
			}
			fmt.Fprintf(&b, "%s=%v|", cols[i], v)
		}
		out = append(out, b.String())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBulkCachedUpgradesAnOlderSchema: a cached bulk file of the same rows
// under an older schema (here, before migration 0021 re-encoded the
// duration summaries) is copied and brought forward instead of loaded
// again, is left as it was, and the copy answers scan_durations as a fresh
// load and the 0.43.56 row pull do.
func TestBulkCachedUpgradesAnOlderSchema(t *testing.T) {
	ctx := context.Background()
	n, jobs, agents := storagetest.Sample(6000, 2000), 20, 50
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	fresh := filepath.Join(dir, "fresh.db")
	if err := Bulk(ctx, fresh, n, jobs, agents, t.Logf); err != nil {
		t.Fatal(err)
	}
	scan := func(path string) []kanade.ScanDuration {
		t.Helper()
		db, err := storage.Open(ctx, path, storage.Options{Clock: func() time.Time { return Now }})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		got, err := db.ScanDurations(ctx, Since())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := scan(fresh)
	if len(want) != jobs {
		t.Fatalf("fresh load: %d jobs, want %d", len(want), jobs)
	}

	old := filepath.Join(dir, fmt.Sprintf("kanade-bench-000000000000-%s-%d-%da-%dj.db", bulkVersion, n, agents, jobs))
	if err := CopyFile(fresh, old); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", old)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`DELETE FROM schema_migrations WHERE version IN ('0021_duration_bins', '0028_duration_runs')`,
		`DROP TABLE duration_segments`,
		`DROP TABLE duration_runs`,
		`DROP TABLE duration_bins`,
		`CREATE TABLE duration_segments (hour INTEGER NOT NULL, job_id TEXT NOT NULL, seg INTEGER NOT NULL,
			runs INTEGER NOT NULL, durs BLOB NOT NULL, offs BLOB NOT NULL, PRIMARY KEY (hour, job_id, seg)) WITHOUT ROWID`,
		`INSERT INTO duration_segments VALUES (1, 'stale', 0, 1, x'01', x'00')`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	before := dump(t, old, `SELECT * FROM duration_segments`)

	var logs []string
	path, err := BulkCached(ctx, n, jobs, agents, func(format string, args ...any) {
		logs = append(logs, fmt.Sprintf(format, args...))
	})
	if err != nil {
		t.Fatal(err)
	}
	if all := strings.Join(logs, "\n"); !strings.Contains(all, "copied "+old) || strings.Contains(all, "rows loaded") {
		t.Fatalf("BulkCached did not upgrade %s:\n%s", old, all)
	}
	if diff := cmp.Diff(want, scan(path)); diff != "" {
		t.Errorf("scan_durations differ (-fresh load +upgraded):\n%s", diff)
	}
	rawUp, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	base, err := Baseline(ctx, rawUp, Since(), 0)
	rawUp.Close()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(base, want); diff != "" {
		t.Errorf("scan_durations differ (-0.43.56 +ours):\n%s", diff)
	}
	if diff := cmp.Diff(before, dump(t, old, `SELECT * FROM duration_segments`)); diff != "" {
		t.Errorf("the older file was written:\n%s", diff)
	}
	if again, err := BulkCached(ctx, n, jobs, agents, t.Logf); err != nil || again != path {
		t.Errorf("second call: %q, %v; want the upgraded %q", again, err, path)
	}
}
