package storage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// Issue 13 (triage): /api/results filtered by exec_id, a started_at window
// and partial, case-insensitive job and PC, each alone and together with the
// rest, checked against a brute-force reference on random data, every page
// size walked to the end.

// filterRun is a readsRun with what the new filters look at.
type filterRun struct {
	readsRun
	exec string
}

// filterFleet is the roster: pc_id → hostname. PCs named "gone-*" ran
// jobs but are no longer on it.
func filterFleet(nPCs int) map[string]string {
	out := map[string]string{}
	for i := range nPCs {
		out[fmt.Sprintf("PC-%03d", i)] = fmt.Sprintf("Host-%c%02d", 'a'+i%3, i)
	}
	return out
}

func filterRandomRuns(r *rand.Rand, n, nPCs, nJobs int) []filterRun {
	var out []filterRun
	for i := range n {
		run := filterRun{readsRun: readsRun{id: fmt.Sprintf("r-%03d-%d", r.IntN(1000), i)}}
		switch r.IntN(20) {
		case 0:
			run.pc = "gone-1"
		default:
			run.pc = fmt.Sprintf("PC-%03d", r.IntN(nPCs))
		}
		if r.IntN(8) > 0 {
			// Mixed case: the partial filter is case-insensitive.
			run.job = fmt.Sprintf([]string{"job-%02d", "Job-%02d", "JOB_%02d"}[r.IntN(3)], r.IntN(nJobs))
		}
		if r.IntN(3) > 0 {
			run.exec = fmt.Sprintf("exec-%d", r.IntN(4))
		}
		if r.IntN(12) > 0 {
			run.started = readsPtr(readsTS(time.Duration(r.IntN(40)) * time.Second))
		}
		switch r.IntN(6) {
		case 0: // running
		case 1:
			run.exit, run.skipped = readsPtr[int64](125), true
		case 2:
			run.exit, run.skipped = readsPtr[int64](0), true
		case 3:
			run.exit = readsPtr[int64](2)
		case 4:
			run.exit, run.reaped = readsPtr[int64](-1), true
		default:
			run.exit = readsPtr[int64](0)
		}
		if run.exit != nil {
			run.finished = readsPtr(readsTS(time.Minute))
		}
		out = append(out, run)
	}
	return out
}

func filterInsert(t *testing.T, db *storage.DB, fleet map[string]string, runs []filterRun) {
	t.Helper()
	for pc, host := range fleet {
		readsExec(t, db, `INSERT INTO agents (pc_id, hostname, last_heartbeat, updated_at) VALUES (?, ?, ?, ?)`,
			pc, host, readsTS(0), readsTS(0))
	}
	plain := make([]readsRun, len(runs))
	for i, r := range runs {
		plain[i] = r.readsRun
	}
	readsInsertRuns(t, db, plain)
	for _, r := range runs {
		if r.exec != "" {
			readsExec(t, db, `UPDATE execution_results SET exec_id = ? WHERE result_id = ?`, r.exec, r.id)
		}
	}
}

// filterMatches is the reference: RunFilter's documented rules, in Go.
func filterMatches(f storage.RunFilter, fleet map[string]string, r filterRun) bool {
	contains := func(v, sub string) bool { return strings.Contains(strings.ToLower(v), strings.ToLower(sub)) }
	switch {
	case f.JobID != "" && r.job != f.JobID,
		f.PCID != "" && r.pc != f.PCID,
		f.ExecID != "" && r.exec != f.ExecID,
		f.Job != "" && (r.job == "" || !contains(r.job, f.Job)):
		return false
	}
	if f.PC != "" {
		host, onRoster := fleet[r.pc]
		if !onRoster || !contains(r.pc, f.PC) && !contains(host, f.PC) {
			return false
		}
	}
	if !f.Since.IsZero() || !f.Until.IsZero() {
		if r.started == nil {
			return false
		}
		at, _ := kanade.ParseTime(*r.started)
		if !f.Since.IsZero() && at.Before(f.Since) || !f.Until.IsZero() && !at.Before(f.Until) {
			return false
		}
	}
	switch f.Status {
	case storage.RunsSuccess:
		return r.exit != nil && *r.exit == 0 && !r.skipped
	case storage.RunsFailure:
		return r.exit != nil && *r.exit != 0 && !r.skipped
	case storage.RunsRunning:
		return r.finished == nil
	case storage.RunsSkipped:
		return r.skipped
	}
	return true
}

func TestReadsRunFiltersEqualTheReferenceOnEveryPage(t *testing.T) {
	storagetest.AnswersOnly(t)
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	// 90 PCs and 80 jobs: "pc-0" and "job" match more ids than one range
	// each serves (MaxRunArmsForTest), "pc-05" and "_1" fewer.
	fleet := filterFleet(90)
	runs := filterRandomRuns(rand.New(rand.NewPCG(13, 5)), 400, 90, 80)
	filterInsert(t, db, fleet, runs)
	if storage.MaxRunArmsForTest >= 80 {
		t.Fatalf("MaxRunArmsForTest %d: the seed no longer reaches the walk path", storage.MaxRunArmsForTest)
	}

	since, until := readsBase.Add(10*time.Second), readsBase.Add(25*time.Second)
	bases := []storage.RunFilter{
		{},
		{ExecID: "exec-2"},
		{JobID: "Job-07"},
		{PCID: "PC-011"},
		{PCID: "gone-1"},
		{Job: "job"},     // all jobs, any case: the walk path
		{Job: "jOb-1"},   // "job-1x" and "Job-1x", not "JOB_1x": one range each
		{Job: "_1"},      // a literal underscore: only "JOB_1x"
		{Job: "%"},       // a literal percent: nothing
		{PC: "pc-0"},     // 90 PCs: the walk path; never gone-1
		{PC: "pc-05"},    // ten PCs
		{PC: "HOST-B"},   // by hostname, a third of the roster
		{PC: "host-c05"}, // one PC by hostname
		{PC: "gone"},     // not on the roster
		{Since: since},   // a window leaves out runs without a start
		{Until: until},
		{Since: since, Until: until},
		{Job: "job-0", PC: "pc-0"},  // both partial
		{Job: "job-1", PC: "pc-03"}, // both partial, few of each
		{ExecID: "exec-1", PC: "pc-01", Job: "JOB"}, // everything
		{JobID: "job-03", PC: "pc-0", Since: since},
		{PCID: "PC-004", Job: "job", Until: until},
	}
	// Every base with every status; with a small sample (storagetest.Small:
	// the race detector, sqld) each base with one status, a different one
	// from base to base.
	var filters []storage.RunFilter
	statuses := []storage.RunStatus{"", storage.RunsSuccess, storage.RunsFailure, storage.RunsRunning, storage.RunsSkipped}
	for i, b := range bases {
		for j, st := range statuses {
			if storagetest.Small() && j != i%len(statuses) {
				continue
			}
			f := b
			f.Status = st
			filters = append(filters, f)
		}
	}
	nonEmpty := 0
	for _, f := range filters {
		var want []filterRun
		for _, r := range runs {
			if filterMatches(f, fleet, r) {
				want = append(want, r)
			}
		}
		plain := make([]readsRun, len(want))
		for i, r := range want {
			plain[i] = r.readsRun
		}
		wantIDs := readsRunOrder(plain)
		if len(wantIDs) > 2 {
			nonEmpty++
		}
		// A page of one row puts a page boundary between every two rows;
		// the walk is a query per row, so over a remote libSQL server only
		// the larger sizes run.
		limits := []int{1, 4, 50}
		if os.Getenv("KANADE_TEST_SQLD") != "" {
			limits = []int{4, 50}
		}
		for _, limit := range limits {
			name := fmt.Sprintf("%+v/limit %d", f, limit)
			got := readsWalk(t, limit, func(r kanade.Run) string { return r.ResultID },
				func(cursor string) (kanade.Page[kanade.Run], error) {
					g := f
					g.Limit, g.Cursor = limit, cursor
					return db.ListRuns(ctx, g)
				})
			if diff := cmp.Diff(wantIDs, got); diff != "" {
				t.Errorf("%s: ids served (-want +got):\n%s", name, diff)
			}
		}
	}
	// A reference that matches nothing proves nothing: most filters must
	// select a real walk.
	if nonEmpty < len(filters)/2 {
		t.Errorf("only %d of %d filters select more than two runs; the seed is too thin", nonEmpty, len(filters))
	}
}

func TestReadsRunFilterCursorStaysWithItsList(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	fleet := filterFleet(5)
	filterInsert(t, db, fleet, filterRandomRuns(rand.New(rand.NewPCG(1, 1)), 40, 5, 3))
	// A partial filter that matches nothing still checks its paging input.
	if _, err := db.ListRuns(ctx, storage.RunFilter{PageRequest: storage.PageRequest{Limit: 5, Cursor: "garbage!"}, Job: "no such job"}); err == nil {
		t.Error("a malformed cursor with an empty partial match was accepted")
	}
	if _, err := db.ListRuns(ctx, storage.RunFilter{PageRequest: storage.PageRequest{Limit: 0}, PC: "nobody"}); err == nil {
		t.Error("limit 0 with an empty partial match was accepted")
	}
}

// Every filter combination walks an index range in list order: never a scan
// of the table, never a sort of all matching rows (only the ties of one start
// time on the PC index, which has no result_id, are sorted).
func TestReadsRunFiltersWalkAnIndexRange(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	fleet := filterFleet(90)
	filterInsert(t, db, fleet, filterRandomRuns(rand.New(rand.NewPCG(2, 2)), 200, 90, 80))
	since := readsBase
	cases := []struct {
		f     storage.RunFilter
		index string
	}{
		{storage.RunFilter{}, "execution_results_started"},
		{storage.RunFilter{Status: storage.RunsSuccess}, "execution_results_started"},
		{storage.RunFilter{Status: storage.RunsFailure}, "execution_results_status_started (run_status=?"},
		{storage.RunFilter{Status: storage.RunsSkipped, Since: since}, "execution_results_status_started (run_status=? AND started_at>? AND started_at<?)"},
		{storage.RunFilter{Status: storage.RunsRunning}, "execution_results_status_started (run_status=?"},
		{storage.RunFilter{ExecID: "e"}, "execution_results_exec_started (exec_id=?"},
		{storage.RunFilter{ExecID: "e", Status: storage.RunsFailure}, "execution_results_exec_status_started (exec_id=? AND run_status=?"},
		{storage.RunFilter{JobID: "j"}, "execution_results_job_started (job_id=?"},
		{storage.RunFilter{JobID: "j", Status: storage.RunsFailure}, "execution_results_job_status_started (job_id=? AND run_status=?"},
		{storage.RunFilter{JobID: "j", Status: storage.RunsSkipped, Since: since}, "execution_results_job_status_started (job_id=? AND run_status=? AND started_at>? AND started_at<?)"},
		{storage.RunFilter{PCID: "p", Status: storage.RunsFailure}, "execution_results_pc_status_started (pc_id=? AND run_status=?"},
		{storage.RunFilter{PCID: "p", JobID: "j"}, "execution_results_pc_started (pc_id=?"},
		{storage.RunFilter{Job: "jOb-1"}, "execution_results_job_started (job_id=?"},
		{storage.RunFilter{Job: "jOb-1", Status: storage.RunsFailure}, "execution_results_job_status_started (job_id=? AND run_status=?"},
		{storage.RunFilter{PC: "pc-05"}, "execution_results_pc_started (pc_id=?"},
		{storage.RunFilter{PC: "pc-05", Status: storage.RunsFailure}, "execution_results_pc_status_started (pc_id=? AND run_status=?"},
		{storage.RunFilter{PC: "pc-0", Status: storage.RunsFailure}, "execution_results_status_started (run_status=?"},
		{storage.RunFilter{Job: "job", Status: storage.RunsSkipped}, "execution_results_status_started (run_status=?"},
	}
	for _, c := range cases {
		plan, err := storage.RunsQueryPlanForTest(ctx, db, c.f)
		if err != nil {
			t.Fatalf("%+v: %v", c.f, err)
		}
		p := strings.Join(plan, " | ")
		sorts := strings.Count(p, "TEMP B-TREE")
		// The arms of a partial filter are merged in order (MERGE (UNION
		// ALL)), never sorted.
		allowed := strings.Count(p, "RIGHT PART OF ORDER BY") + strings.Count(p, "LAST TERM OF ORDER BY")
		switch {
		case !strings.Contains(p, "SEARCH execution_results USING INDEX "+c.index) && !strings.Contains(p, "SEARCH execution_results USING COVERING INDEX "+c.index):
			t.Errorf("%+v: plan %q, want a range of %s", c.f, p, c.index)
		case strings.Contains(p, "SCAN execution_results"):
			t.Errorf("%+v: plan %q scans the table", c.f, p)
		case sorts > allowed:
			t.Errorf("%+v: plan %q sorts the matching rows", c.f, p)
		}
	}
}
