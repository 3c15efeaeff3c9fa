package storage_test

import (
	"testing"
	"time"

	"github.com/kanade-fleet/backend/bench/scandurations/seed"
	"github.com/kanade-fleet/backend/storage"
)

// BenchmarkListRuns pages /api/results over 1M runs of 200 jobs on 3000 PCs
// (the seeded file of bench/scandurations): the first page and a page deep
// in the list, unfiltered and filtered by job, PC and status.
func BenchmarkListRuns(b *testing.B) {
	ctx := b.Context()
	path, err := seed.Cached(ctx, 1000000, 200)
	if err != nil {
		b.Fatal(err)
	}
	db, err := storage.Open(ctx, path, storage.Options{Clock: func() time.Time { return seed.Now }})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
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
