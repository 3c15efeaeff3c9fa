package storage_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// TestWarmOldResultsFindsEveryIndexEntryOfTheBatch: the warm read finds the
// batch's rows and, in every index of execution_results, exactly the
// entries those rows have (so it read the pages the delete will change):
// one per row in a full index, one per qualifying row in a partial one,
// NULL keys included. The batch is DeleteOldResults' own: the oldest rows
// before the cutoff, at most limit, and the delete then removes exactly
// those.
func TestWarmOldResultsFindsEveryIndexEntryOfTheBatch(t *testing.T) {
	ctx := t.Context()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db := storagetest.Open(t, func() time.Time { return base })
	if db.Remote() {
		t.Skip("a libSQL server's pages are not this process's to warm")
	}
	type run struct {
		exec, job   any
		exit        any
		skipped     int
		finished    bool
		stdout      string
		recordedMin int
	}
	big := strings.Repeat("x", 200_000) // overflow pages
	runs := []run{
		{"e1", "j1", 0, 0, true, "ok", 0},
		{"e1", "j1", 2, 0, true, big, 1},
		{"e1", "j2", 0, 1, true, "", 2},       // skipped
		{"e2", "j2", nil, 0, false, "", 3},    // running, in an execution
		{nil, "j1", nil, 0, false, "", 4},     // running, ad hoc
		{nil, nil, 0, 0, true, "", 5},         // no job
		{"e2", "j2", 0, 0, true, big, 6},      // success
		{"e3", "j3", 1, 0, true, "", 7},       // failure
		{"e3", "j3", 0, 0, true, "", 8},       // outside the limit
		{"e4", "j1", 1, 0, true, "", 60 * 24}, // after the cutoff
	}
	for i, r := range runs {
		rec := base.Add(time.Duration(r.recordedMin) * time.Minute)
		var finished, expires any
		if r.finished {
			finished = kanade.FormatTime(rec)
		} else {
			expires = kanade.FormatTime(rec.Add(time.Hour))
		}
		if err := storage.ExecForTest(ctx, db, `INSERT INTO execution_results
			(result_id, exec_id, pc_id, job_id, exit_code, skipped, stdout, started_at, finished_at, recorded_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			fmt.Sprintf("r%02d", i), r.exec, fmt.Sprintf("pc%d", i%3), r.job, r.exit, r.skipped, r.stdout,
			kanade.FormatTime(rec.Add(-time.Second)), finished, kanade.FormatTime(rec), expires); err != nil {
			t.Fatal(err)
		}
	}
	cutoff, limit := base.Add(time.Hour), 8
	// In the batch (the first eight): 2 running (one with an exec_id), 4
	// not a success (skipped, failed, running), 1 without a job.
	partial := map[string]int{
		"execution_results_running":             2,
		"execution_results_unfinished_by_job":   1,
		"execution_results_status_started":      5,
		"execution_results_job_status_started":  5,
		"execution_results_pc_status_started":   5,
		"execution_results_exec_status_started": 5,
	}
	want := map[string]int{"": limit}
	idx, err := storage.RowsForTest(ctx, db, `SELECT name, partial FROM pragma_index_list('execution_results')`)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range idx {
		name := r[0].(string)
		if r[1].(int64) == 0 {
			want[name] = limit
			continue
		}
		n, ok := partial[name]
		if !ok {
			t.Fatalf("partial index %s has no expected count here: add one", name)
		}
		want[name] = n
	}
	if len(want) < 16 {
		t.Fatalf("only %d indexes found: %v", len(want)-1, want)
	}

	got, err := db.WarmOldResults(ctx, cutoff, limit)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries found (-want +got):\n%s", diff)
	}

	// The same batch is what the delete takes.
	var deleted int64
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		deleted, err = tx.DeleteOldResults(ctx, cutoff, limit)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	left, err := storage.RowsForTest(ctx, db, `SELECT result_id FROM execution_results ORDER BY result_id`)
	if err != nil {
		t.Fatal(err)
	}
	if deleted != int64(limit) || fmt.Sprint(left) != "[[r08] [r09]]" {
		t.Errorf("deleted %d, left %v; want %d, [[r08] [r09]]", deleted, left, limit)
	}
	got, err = db.WarmOldResults(ctx, cutoff, limit)
	if err != nil {
		t.Fatal(err)
	}
	if got[""] != 1 {
		t.Errorf("after the delete the warm read found %d rows, want 1", got[""])
	}
}

// TestWarmOldResultsSeeksEveryIndex: each lookup is a search of its own
// index on all its key columns and the rowid, never a scan: at 10M runs a
// scan of one index would read it all, at every batch.
func TestWarmOldResultsSeeksEveryIndex(t *testing.T) {
	ctx := t.Context()
	db := storagetest.Open(t, nil)
	if db.Remote() {
		t.Skip("a libSQL server's pages are not this process's to warm")
	}
	q, plan, err := storage.WarmPlanForTest(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := storage.RowsForTest(ctx, db, `SELECT name, "unique" FROM pragma_index_list('execution_results')`)
	if err != nil {
		t.Fatal(err)
	}
	unique := map[string]bool{}
	for _, r := range idx {
		unique[r[0].(string)] = r[1].(int64) == 1
	}
	searched := map[string]bool{}
	seek := regexp.MustCompile(`^SEARCH execution_results EXISTS USING (?:COVERING )?INDEX (\S+) \((.*)\)$`)
	for _, d := range plan {
		if strings.HasPrefix(d, "SCAN execution_results") || strings.HasPrefix(d, "SCAN t") {
			t.Errorf("plan scans the table or an index: %q", d)
		}
		m := seek.FindStringSubmatch(d)
		if m == nil {
			continue
		}
		// A unique index's key is its columns; any other's ends with the
		// rowid.
		if !unique[m[1]] && !strings.HasSuffix(m[2], " AND rowid=?") {
			t.Errorf("%s is not sought down to the rowid: %q", m[1], d)
		}
		searched[m[1]] = true
	}
	for _, r := range idx {
		if !searched[r[0].(string)] {
			t.Errorf("index %s is not searched", r[0])
		}
	}
	if t.Failed() {
		t.Logf("query:\n%s\nplan:\n%s", q, strings.Join(plan, "\n"))
	}
}
