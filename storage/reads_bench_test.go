package storage_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/bench/seed"
	"github.com/kanade-fleet/backend/storage"
)

// BenchmarkListRuns pages /api/results over 1M runs of 200 jobs on 3000 PCs
// (the seeded file of bench/scandurations): the first page and a page deep
// in the list, unfiltered and filtered by job, PC and status.
func BenchmarkListRuns(b *testing.B) {
	ctx := b.Context()
	db := openSeeded(b, 1000000)
	for _, bc := range []struct {
		name string
		f    storage.RunFilter
	}{
		{"all", storage.RunFilter{}},
		{"job", storage.RunFilter{JobID: "job-042"}},
		{"pc", storage.RunFilter{PCID: "pc-00042"}},
		{"job+failure", storage.RunFilter{JobID: "job-042", Status: storage.RunStatus("failure")}},
		{"job+pc", storage.RunFilter{JobID: "job-042", PCID: "pc-00042"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// The 20th page: a keyset cursor deep into the list.
			f := bc.f
			f.PageRequest = storage.PageRequest{Limit: 50}
			for range 19 {
				p, err := db.ListRuns(ctx, f)
				if err != nil {
					b.Fatal(err)
				}
				if p.NextCursor == nil {
					break
				}
				f.Cursor = *p.NextCursor
			}
			for b.Loop() {
				if _, err := db.ListRuns(ctx, f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkListRunsFilters is issue 13's results filters at 1M runs (the
// seeded file of bench/scandurations: 200 jobs, 3000 PCs on the roster, 2 %
// failures, 0.5 % skipped, one execution per job and hour; no running runs,
// so status=running is left out): the first page
// of each filter, and its ratio to the plain first page measured first in
// the same run (x-plain). Before migration 0014, status=failure&limit=200
// walked the started_at index and discarded the successes.
func BenchmarkListRunsFilters(b *testing.B) {
	ctx := b.Context()
	db := openSeeded(b, 1000000)
	mid := seed.Now.Add(-12 * time.Hour)
	exec := fmt.Sprintf("exec-042-%d", mid.Unix()/3600)
	failure, success := storage.RunsFailure, storage.RunsSuccess
	var plain float64
	for _, bc := range []struct {
		name string
		f    storage.RunFilter
	}{
		{"plain", storage.RunFilter{}}, // the baseline: first in the run
		{"plain&limit=200", storage.RunFilter{PageRequest: storage.PageRequest{Limit: 200}}},
		{"status=failure&limit=200", storage.RunFilter{PageRequest: storage.PageRequest{Limit: 200}, Status: failure}},
		{"status=failure", storage.RunFilter{Status: failure}},
		{"status=success", storage.RunFilter{Status: success}},
		{"status=skipped", storage.RunFilter{Status: storage.RunsSkipped}},
		{"exec_id", storage.RunFilter{ExecID: exec}},
		{"exec_id&status=failure", storage.RunFilter{ExecID: exec, Status: failure}},
		{"job_id&status=failure", storage.RunFilter{JobID: "job-042", Status: failure}},
		{"pc_id&status=failure", storage.RunFilter{PCID: "pc-00042", Status: failure}},
		{"job=JOB-042 (1 job)", storage.RunFilter{Job: "JOB-042"}},
		{"job=job-04 (10 jobs)", storage.RunFilter{Job: "job-04"}},
		{"job=job-04&status=failure", storage.RunFilter{Job: "job-04", Status: failure}},
		{"job=job (200 jobs)", storage.RunFilter{Job: "job"}},
		{"job=job&status=skipped", storage.RunFilter{Job: "job", Status: storage.RunsSkipped}},
		{"pc=PC-00042 (1 pc)", storage.RunFilter{PC: "PC-00042"}},
		{"pc=pc-0004 (10 pcs)", storage.RunFilter{PC: "pc-0004"}},
		{"pc=pc-0004&status=failure", storage.RunFilter{PC: "pc-0004", Status: failure}},
		{"pc=pc-0 (1000 pcs)", storage.RunFilter{PC: "pc-0"}},
		{"pc=pc-0&status=failure", storage.RunFilter{PC: "pc-0", Status: failure}},
		{"job=job-04&pc=pc-0004", storage.RunFilter{Job: "job-04", PC: "pc-0004"}},
		{"since&until (1 h)", storage.RunFilter{Since: mid, Until: mid.Add(time.Hour)}},
		{"since&until&status=failure", storage.RunFilter{Since: mid, Until: mid.Add(time.Hour), Status: failure}},
		{"since&until&job=job-04&status=failure", storage.RunFilter{Since: mid, Until: mid.Add(time.Hour), Job: "job-04", Status: failure}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := bc.f
			if f.Limit == 0 {
				f.Limit = 50
			}
			p, err := db.ListRuns(ctx, f)
			if err != nil {
				b.Fatal(err)
			}
			if len(p.Items) == 0 {
				b.Fatalf("%s: an empty page measures nothing", bc.name)
			}
			start := time.Now()
			n := 0
			for b.Loop() {
				if _, err := db.ListRuns(ctx, f); err != nil {
					b.Fatal(err)
				}
				n++
			}
			per := float64(time.Since(start).Nanoseconds()) / float64(n)
			if bc.name == "plain" {
				plain = per
			}
			if plain > 0 {
				b.ReportMetric(per/plain, "x-plain")
			}
			b.ReportMetric(float64(len(p.Items)), "rows")
		})
	}
}
