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

	"github.com/kanade-fleet/backend/storage"
)

// TestBulkMatchesTheWritePath loads the same data set twice, through the
// projection (Seed) and in bulk (Bulk), and requires identical databases
// where it matters: every execution_results column, the rollups the
// dropped triggers keep (result_minutes, job_completions), the roster and
// the scan_durations answer.
func TestBulkMatchesTheWritePath(t *testing.T) {
	ctx := context.Background()
	const n, jobs = 12000, 20
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
