package storage

import (
	"context"
	"time"

	"github.com/kanade-fleet/backend"
)

// RankForTest exposes the integer nearest-rank index.
func RankForTest(num, den int64, n int) int { return rank(num, den, n) }

// ScanDurationsAggregatedForTest is ScanDurations summing the later hours in
// SQL, as it does on libSQL.
func ScanDurationsAggregatedForTest(ctx context.Context, db *DB, since time.Time) ([]kanade.ScanDuration, error) {
	return db.scanDurations(ctx, since, true)
}

// FinishedRunForTest is one row the scan-duration reference reads.
type FinishedRunForTest struct {
	JobID, ResultID, StartedAt, FinishedAt string
}

// FinishedRunsForTest reads every row api.md counts as a finished run,
// straight from execution_results: the brute-force reference of the
// duration summaries.
func FinishedRunsForTest(ctx context.Context, db *DB) ([]FinishedRunForTest, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT job_id, result_id, started_at, finished_at FROM execution_results
		WHERE finished_at IS NOT NULL AND started_at IS NOT NULL AND job_id IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []FinishedRunForTest
	for rows.Next() {
		var r FinishedRunForTest
		if err := rows.Scan(&r.JobID, &r.ResultID, &r.StartedAt, &r.FinishedAt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ScanQueryPlansForTest returns the EXPLAIN QUERY PLAN details of the
// statements of ScanDurations and flushDurations, by name.
func ScanQueryPlansForTest(ctx context.Context, db *DB) (map[string][]string, error) {
	in, args := bucketValues([]bucketKey{{1, "a"}, {2, "b"}})
	return queryPlans(ctx, db, map[string]planCase{
		"segments":    {segmentsSQL, []any{1}},
		"first hour":  {firstHourSQL, []any{1}},
		"first blobs": {firstHourSQL, []any{1}},
		"load":        {loadBucketsSQL(in), args},
		"load blobs":  {loadBucketsSQL(in), args},
		"delete runs": {`DELETE FROM duration_runs WHERE (hour, job_id) IN ` + in, args},
		"bins":        {binsSQL, []any{5, `[["a",1],["b",-3]]`}},
		"bins raw":    {binsRawSQL, []any{5, `[["a",1],["b",-3]]`}},
		"delete bins": {deleteBinsSQL(2), []any{"a", 1, 5, "b", 2, 6}},
		"slowest":     {slowestRunsSQL, []any{"2026-01-01T00:00:00.000000000Z", `[["a",1],["b",2]]`}},
		"marks":       {bucketMarksSQL, []any{5}},
		"bucket segs": {bucketSegsSQL, []any{`[["a",1],["b",2]]`}},
		"bucket runs": {bucketRunsSQL, []any{`[["a",1],["b",2]]`}},
		"later segs":  {laterSegsSQL, []any{5}},
		"first runs":  {firstRunsSQL, []any{5}},
		"first segs":  {firstRunsSQL, []any{5}},
		"bins hour":   {binsHourSQL, []any{`[["a",1,5],["b",-3,6]]`}},
		"bins walk":   {binsWalkSQL, []any{5, `[["a",1],["b",-3]]`}},
		"meta": {`SELECT hour, job_id, COUNT(*), MAX(seg) FROM duration_segments
			WHERE (hour, job_id) IN ` + in + ` GROUP BY hour, job_id`, args},
		"delete": {`DELETE FROM duration_segments WHERE (hour, job_id) IN ` + in, args},
	})
}

// ScanDurationsUncachedForTest is ScanDurations reading every hour again,
// as it did before it kept them (scan_cache.go); what is kept stays.
func ScanDurationsUncachedForTest(ctx context.Context, db *DB, since time.Time) ([]kanade.ScanDuration, error) {
	c := db.scanCache
	db.scanCache = nil
	defer func() { db.scanCache = c }()
	return db.ScanDurations(ctx, since)
}

// ScanCacheForTest says how many buckets db keeps for scan_durations,
// how many of them with their first-hour runs and how many of their bins.
func ScanCacheForTest(db *DB) (buckets, first, bins int) {
	if db.scanCache == nil {
		return 0, 0, 0
	}
	db.scanCache.mu.Lock()
	defer db.scanCache.mu.Unlock()
	for _, b := range db.scanCache.buckets {
		buckets++
		if b.first != nil {
			first++
		}
		b.mu.Lock()
		bins += len(b.bins)
		b.mu.Unlock()
	}
	return buckets, first, bins
}
