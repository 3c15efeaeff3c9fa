// Package seed builds the run data set of the benchmarks (bench/scandurations,
// bench/scale, storage's read benchmarks) and its baseline: N finished runs
// over a 24 h window, written through the real projection write path (Seed,
// Cached) or, for 10M-run sizes, loaded in bulk (Bulk, BulkCached), and the
// row-pulling computation of kanade-backend 0.43.56 to compare against.
package seed

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
)

// Now is the end of the benchmark's window; Since its start. Mid-hour on
// purpose, so the first hour of the window is partial.
var Now = time.Date(2026, 6, 20, 0, 17, 23, 456789012, time.UTC)

// Since is the start of the 24 h window.
func Since() time.Time { return Now.Add(-24 * time.Hour) }

// Agents is the number of PCs the runs are spread over.
const Agents = 3000

// BatchSize is the number of results per write transaction.
const BatchSize = 5000

// Each generates, deterministically, n runs of jobs jobs finished inside the
// window, plus n/100 finished in the hour before it (which the window must
// leave out), in finished_at order as the RESULTS stream delivers them, and
// hands them to fn in batches of BatchSize.
func Each(n, jobs int, fn func([]storage.Result) error) error {
	rng := rand.New(rand.NewPCG(uint64(n), uint64(jobs)))
	// Each job has its own typical duration, from half a second to ten minutes.
	mu := make([]float64, jobs)
	for j := range mu {
		mu[j] = math.Log(500) + rng.Float64()*(math.Log(600000)-math.Log(500))
	}
	before := n / 100
	total := n + before
	first := Since().Add(-time.Hour)
	zero := int64(0)
	fail := int64(1)
	skip := int64(125)
	batch := make([]storage.Result, 0, BatchSize)
	for i := 0; i < total; i++ {
		var finished time.Time
		if i < before {
			finished = first.Add(time.Duration(int64(i) * int64(time.Hour) / int64(before)))
		} else {
			// In floating point: i * 24 h in nanoseconds overflows int64
			// past about 107k runs, which folded 1M runs into 5 hours.
			finished = Since().Add(time.Duration(float64(i-before) / float64(n) * float64(24*time.Hour)))
		}
		finished = finished.Add(time.Duration(rng.Int64N(int64(time.Millisecond))))
		j := rng.IntN(jobs)
		d := time.Duration(math.Exp(mu[j]+rng.NormFloat64()*0.8) * float64(time.Millisecond))
		if rng.IntN(1000) == 0 { // clock skew: finished before started
			d = -time.Duration(rng.Int64N(int64(time.Second)))
		}
		exit := &zero
		if rng.IntN(50) == 0 {
			exit = &fail
		}
		id := fmt.Sprintf("%016x-%07d", rng.Uint64(), i)
		// Each run belongs to its job's execution of that hour (the
		// /api/results?exec_id= benchmark), and one in 200 was skipped;
		// both without a draw of rng, so the rest of the data set is
		// what it was.
		skipped := i%200 == 7
		if skipped {
			exit = &skip
		}
		batch = append(batch, storage.Result{ExecResult: kanade.ExecResult{ResultID: id, RequestID: id, PcID: fmt.Sprintf("pc-%05d", rng.IntN(3000)),
			ExitCode: exit, Skipped: skipped, StartedAt: kanade.Timestamp{Time: finished.Add(-d)}, FinishedAt: kanade.Timestamp{Time: finished},
			ManifestID: fmt.Sprintf("job-%03d", j), ExecID: fmt.Sprintf("exec-%03d-%d", j, finished.Unix()/3600)},
			RecordedAt: finished.Add(time.Duration(rng.Int64N(int64(2 * time.Second))))})
		if len(batch) == BatchSize || i == total-1 {
			if err := fn(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}

// Seed writes the data set of Each into db through the projection's write
// path, one transaction per batch.
func Seed(ctx context.Context, db *storage.DB, n, jobs int) error {
	// The roster of the PCs that ran them (the partial pc= filter of
	// /api/results resolves PCs there).
	beats := make([]kanade.Heartbeat, Agents)
	for i := range beats {
		id := fmt.Sprintf("pc-%05d", i)
		beats[i] = kanade.Heartbeat{PcID: id, Hostname: &id, At: kanade.Timestamp{Time: Now}}
	}
	if err := db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, beats) }); err != nil {
		return err
	}
	return Each(n, jobs, func(batch []storage.Result) error {
		return db.Update(ctx, func(tx *storage.Tx) error {
			_, err := tx.ApplyResults(ctx, batch)
			return err
		})
	})
}

// Cached returns the path of a seeded SQLite file for (n, jobs), seeding it
// on first use: os.TempDir()/kanade-bench-<schema hash>-<n>[-<jobs>j].db. A
// schema or summary-format change gives a new name, so a stale file is never
// reused. The file is written under a temporary name and renamed when done.
func Cached(ctx context.Context, n, jobs int) (string, error) {
	// v2: exec ids, skips and the roster (the results filters' benchmark).
	name := fmt.Sprintf("kanade-bench-%s-v2-%d", storage.SchemaHash(), n)
	if jobs != 200 {
		name += fmt.Sprintf("-%dj", jobs)
	}
	path := filepath.Join(os.TempDir(), name+".db")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	db, err := storage.Open(ctx, tmp, storage.Options{Clock: func() time.Time { return Now }})
	if err != nil {
		return "", err
	}
	if err := Seed(ctx, db, n, jobs); err != nil {
		db.Close()
		return "", fmt.Errorf("seed %s: %w", tmp, err)
	}
	if err := db.Close(); err != nil {
		return "", err
	}
	// Fold the WAL back into the file so one file is the whole database.
	sdb, err := sql.Open("sqlite", tmp)
	if err != nil {
		return "", err
	}
	_, err = sdb.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	if err == nil {
		_, err = sdb.ExecContext(ctx, `PRAGMA journal_mode=DELETE`)
	}
	err = errors.Join(err, sdb.Close())
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", tmp, err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return path, nil
}

// Baseline is what kanade-backend 0.43.56 does: pull every finished row of
// the window, compute the durations in Go, sort each job's durations and
// take nearest ranks with its float formula. Ties for the slowest run go to
// the smallest result_id, the rule ScanDurations follows.
//
// page > 0 pulls the rows in keyset pages of that many rows (by finished_at,
// result_id), because a libSQL server refuses a response over 10 MB, which
// the one query of 0.43.56 exceeds well before 100k rows.
func Baseline(ctx context.Context, db *sql.DB, since time.Time, page int) ([]kanade.ScanDuration, error) {
	type acc struct {
		durs    []int64
		slowest int64
		id      *string
	}
	byJob := map[string]*acc{}
	const where = `FROM execution_results WHERE finished_at IS NOT NULL AND started_at IS NOT NULL AND job_id IS NOT NULL AND finished_at >= ?`
	q, args := `SELECT job_id, result_id, started_at, finished_at `+where, []any{kanade.FormatTime(since)}
	lastAt, lastID := "", ""
	for {
		if page > 0 {
			q = `SELECT job_id, result_id, started_at, finished_at ` + where + ` AND (finished_at, result_id) > (?, ?)
				ORDER BY finished_at, result_id LIMIT ?`
			args = []any{kanade.FormatTime(since), lastAt, lastID, page}
		}
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		got := 0
		for rows.Next() {
			var job, startedAt, finishedAt string
			var id *string
			if err := rows.Scan(&job, &id, &startedAt, &finishedAt); err != nil {
				rows.Close()
				return nil, fmt.Errorf("baseline: %w", err)
			}
			got++
			if id != nil {
				lastAt, lastID = finishedAt, *id
			}
			started, err := kanade.ParseTime(startedAt)
			if err != nil {
				rows.Close()
				return nil, err
			}
			finished, err := kanade.ParseTime(finishedAt)
			if err != nil {
				rows.Close()
				return nil, err
			}
			d := kanade.DurationMillis(started, finished)
			a := byJob[job]
			if a == nil {
				a = &acc{slowest: -1}
				byJob[job] = a
			}
			a.durs = append(a.durs, d)
			if d > a.slowest || d == a.slowest && id != nil && (a.id == nil || *id < *a.id) {
				a.slowest, a.id = d, id
			}
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		if page == 0 || got < page {
			break
		}
	}
	out := make([]kanade.ScanDuration, 0, len(byJob))
	for job, a := range byJob {
		slices.Sort(a.durs)
		n := len(a.durs)
		var sum int64
		for _, d := range a.durs {
			sum += d
		}
		out = append(out, kanade.ScanDuration{JobID: job, Count: int64(n), MinMs: a.durs[0],
			P50Ms: percentile(a.durs, 0.50), P95Ms: percentile(a.durs, 0.95), P99Ms: percentile(a.durs, 0.99),
			MaxMs: a.durs[n-1], MeanMs: sum / int64(n), MaxResultID: a.id})
	}
	slices.SortFunc(out, func(a, b kanade.ScanDuration) int {
		if a.P95Ms != b.P95Ms {
			if a.P95Ms > b.P95Ms {
				return -1
			}
			return 1
		}
		return strings.Compare(a.JobID, b.JobID)
	})
	return out, nil
}

// percentile is 0.43.56's nearest rank, verbatim.
func percentile(sorted []int64, q float64) int64 {
	r := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(r-1, 0), len(sorted)-1)]
}
