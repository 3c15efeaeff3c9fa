package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// The read side of the run-duration summaries: GET /api/health/scan_durations
// (durations.go keeps the duration_segments table it reads).

// Nearest-rank quantiles of api.md as exact fractions num/den, so that
// ceil(q·n) is computed in integers; see rank.
var quantiles = [3]struct{ num, den int64 }{{1, 2}, {19, 20}, {99, 100}}

// rank is the nearest-rank index of quantile num/den among n sorted values:
// ceil(num·n/den) − 1, clamped to [0, n−1]. Equal to the float formula of
// kanade-backend 0.43.56 (TestRankMatchesFloatFormula) without relying on how
// 0.95·n happens to round.
func rank(num, den int64, n int) int {
	r := int((num*int64(n)+den-1)/den) - 1
	return min(max(r, 0), n-1)
}

// ScanDurations summarizes, per job, the finished runs with finished_at >=
// since (api.md § scan_durations): exact count, min, nearest-rank p50/p95/p99,
// max, mean, and the smallest result_id among the slowest runs. It reads the
// duration summaries (one query, one row per segment, only the first hour with
// its offsets; pages of whole buckets on libSQL) and looks up the slowest runs
// with one more query per 1000 jobs, all in one read snapshot; it never reads
// the window's rows. Sorted by p95 descending, then
// job_id; an empty window gives an empty, non-nil slice.
func (db *DB) ScanDurations(ctx context.Context, since time.Time) ([]kanade.ScanDuration, error) {
	page := 0
	if db.remote {
		page = remoteSegmentPage
	}
	return db.scanDurations(ctx, since, page)
}

// remoteSegmentPage is how many segment rows one libSQL request returns:
// a server caps responses (sqld: 10 MB), and a window of a million runs is a
// few MB of segments.
const remoteSegmentPage = 1000

// queryer is a read snapshot: a transaction or a connection inside one.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// readSnapshot runs fn in one read transaction, so that the segments and the
// slowest-run lookup (and, on libSQL, every page of segments) see the same
// commit. SQLite's pool begins transactions IMMEDIATE (db.go), which would
// queue behind the writer, so there a connection gets a plain BEGIN.
func (db *DB) readSnapshot(ctx context.Context, fn func(q queryer) error) error {
	if db.remote {
		tx, err := db.read.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin read: %w", err)
		}
		defer tx.Rollback()
		return fn(tx)
	}
	conn, err := db.read.Conn(ctx)
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	err = fn(conn)
	if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
		// Never hand a connection still inside a transaction back to the pool.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return errors.Join(err, fmt.Errorf("end read: %w", rerr))
	}
	return err
}

// segmentsSQL reads the segments of whole buckets from (hour, job_id) on, in
// key order; only the window's first hour comes with its offsets.
const segmentsSQL = `SELECT hour, job_id, runs, durs, CASE WHEN hour = ? THEN offs END
	FROM duration_segments WHERE (hour, job_id) >= (?, ?) ORDER BY hour, job_id, seg`

// scanDurations is ScanDurations reading the segments in pages of page rows
// (0: one query).
func (db *DB) scanDurations(ctx context.Context, since time.Time, page int) ([]kanade.ScanDuration, error) {
	h0, off0 := hourOffset(since)
	acc := windowAcc{h0: h0, off0: off0, jobs: map[string]*jobRuns{}}
	var out []kanade.ScanDuration
	err := db.readSnapshot(ctx, func(q queryer) error {
		var err error
		if page == 0 {
			err = acc.readAll(ctx, q)
		} else {
			err = acc.readPages(ctx, q, page)
		}
		if err != nil {
			return fmt.Errorf("scan durations: %w", err)
		}
		out = make([]kanade.ScanDuration, 0, len(acc.jobs))
		for job, j := range acc.jobs {
			if j.n > 0 {
				out = append(out, j.summarize(job))
			}
		}
		return slowestRuns(ctx, q, since, out)
	})
	if err != nil {
		return nil, err
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

// windowAcc gathers the window's durations per job from segment rows.
type windowAcc struct {
	h0, off0 int64
	jobs     map[string]*jobRuns
	offs     []int64
}

// add decodes one segment row into its job's runs.
func (a *windowAcc) add(hour int64, job string, runs int64, durBlob, offBlob []byte) error {
	j := a.jobs[job]
	if j == nil {
		j = &jobRuns{}
		a.jobs[job] = j
	}
	// Each segment is decoded into a slice of its own size, never appended
	// to the job's earlier ones: growing one slice per job was 40% of a
	// 10M-run scan (bench/scale's profile). A value takes at least a byte,
	// so a corrupt count cannot ask for more than the blob holds.
	seg, err := decodeDurs(make([]int64, 0, min(runs, int64(len(durBlob)))), durBlob, runs)
	if err != nil {
		return fmt.Errorf("job %q, hour %d: %w", job, hour, err)
	}
	if hour == a.h0 {
		// The window starts inside this hour: keep the runs that finished at
		// or after since. Filtering keeps the segment sorted.
		if a.offs, err = decodeOffs(a.offs[:0], offBlob, runs); err != nil {
			return fmt.Errorf("job %q, hour %d: %w", job, hour, err)
		}
		kept := 0
		for i, o := range a.offs {
			if o >= a.off0 {
				seg[kept] = seg[i]
				kept++
			}
		}
		seg = seg[:kept]
	}
	if len(seg) > 0 {
		j.segs = append(j.segs, seg)
		j.n += len(seg)
	}
	return nil
}

// readAll reads every segment of the window in one query.
func (a *windowAcc) readAll(ctx context.Context, q queryer) error {
	rows, err := q.QueryContext(ctx, segmentsSQL, a.h0, a.h0, "")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var hour, runs int64
		var job string
		var durBlob, offBlob sql.RawBytes
		if err := rows.Scan(&hour, &job, &runs, &durBlob, &offBlob); err != nil {
			return err
		}
		if err := a.add(hour, job, runs, durBlob, offBlob); err != nil {
			return err
		}
	}
	return rows.Err()
}

// segRow is one buffered segment row of a page.
type segRow struct {
	hour, runs int64
	job        string
	durs, offs []byte
}

// readPages reads the window page by page. A page never splits a bucket: a
// full page gives back the rows of its last bucket, which the next page
// starts with, so every bucket is decoded from one statement.
func (a *windowAcc) readPages(ctx context.Context, q queryer, page int) error {
	hour, job := a.h0, ""
	for {
		rows, err := q.QueryContext(ctx, segmentsSQL+` LIMIT ?`, a.h0, hour, job, page)
		if err != nil {
			return err
		}
		var got []segRow
		for rows.Next() {
			var r segRow
			if err := rows.Scan(&r.hour, &r.job, &r.runs, &r.durs, &r.offs); err != nil {
				rows.Close()
				return err
			}
			got = append(got, r)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		full := len(got) == page
		if full {
			last := got[len(got)-1]
			for len(got) > 0 && got[len(got)-1].hour == last.hour && got[len(got)-1].job == last.job {
				got = got[:len(got)-1]
			}
			if len(got) == 0 {
				return fmt.Errorf("bucket (hour %d, job %q) has %d or more segments, more than a page", last.hour, last.job, page)
			}
			hour, job = last.hour, last.job
		}
		for _, r := range got {
			if err := a.add(r.hour, r.job, r.runs, r.durs, r.offs); err != nil {
				return err
			}
		}
		if !full {
			return nil
		}
	}
}

// jobRuns is one job's durations in the window: sorted segments, n values
// in all.
type jobRuns struct {
	segs [][]int64
	n    int
}

func (j *jobRuns) summarize(job string) kanade.ScanDuration {
	n := j.n
	segs := j.segs
	lo, hi := segs[0][0], segs[0][len(segs[0])-1]
	var sumHi, sumLo uint64
	for _, s := range segs {
		lo, hi = min(lo, s[0]), max(hi, s[len(s)-1])
	}
	for _, s := range segs {
		for _, v := range s {
			var c uint64
			sumLo, c = bits.Add64(sumLo, uint64(v), 0)
			sumHi += c
		}
	}
	mean, _ := bits.Div64(sumHi, sumLo, uint64(n)) // durations >= 0, so sum/n < 2^63
	var p [3]int64
	switch {
	case len(segs) == 1 || selectCost(segs, lo, hi) > sortCost(n):
		vals := segs[0]
		if len(segs) > 1 {
			vals = slices.Concat(segs...)
			slices.Sort(vals)
		}
		for i, q := range quantiles {
			p[i] = vals[rank(q.num, q.den, n)]
		}
	default:
		for i, q := range quantiles {
			p[i] = selectRank(segs, lo, hi, rank(q.num, q.den, n))
		}
	}
	return kanade.ScanDuration{JobID: job, Count: int64(n), MinMs: lo, P50Ms: p[0], P95Ms: p[1],
		P99Ms: p[2], MaxMs: hi, MeanMs: int64(mean)}
}

// selectCost estimates the comparisons of three selectRank calls; sortCost
// those of sorting n values. Many tiny segments make sorting cheaper.
func selectCost(segs [][]int64, lo, hi int64) int {
	per := 0
	for _, s := range segs {
		per += bits.Len(uint(len(s))) + 1
	}
	return 3 * bits.Len64(uint64(hi-lo)+1) * per
}

func sortCost(n int) int { return 2 * n * bits.Len(uint(n)) }

// selectRank returns the value of 0-based rank k among the union of the
// sorted segments, whose values lie in [lo, hi]: the smallest x with more
// than k values <= x, found by binary search on the value.
func selectRank(segs [][]int64, lo, hi int64, k int) int64 {
	for lo < hi {
		mid := lo + (hi-lo)/2
		if countLE(segs, mid) > k {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// countLE counts the values <= x in the sorted segments.
func countLE(segs [][]int64, x int64) int {
	c := 0
	for _, s := range segs {
		i, j := 0, len(s)
		for i < j {
			h := int(uint(i+j) >> 1)
			if s[h] <= x {
				i = h + 1
			} else {
				j = h
			}
		}
		c += i
	}
	return c
}

// slowestChunk bounds the (job_id, duration_ms) pairs of one statement.
const slowestChunk = 1000

// slowestRunsSQL finds, per job, the smallest result_id among the window's
// runs with the job's maximum duration. The covering index (job_id,
// duration_ms, finished_at, result_id) makes it one index range per job that
// holds exactly those runs, never touching the table. It needs no
// started_at test: the rows with job_id, finished_at and duration_ms are
// exactly the summarized ones (durations.go), and the write path sets
// duration_ms only when started_at is known.
func slowestRunsSQL(n int) string {
	return `SELECT job_id, MIN(result_id) FROM execution_results
		WHERE (job_id, duration_ms) IN (VALUES ` + strings.TrimSuffix(strings.Repeat("(?,?),", n), ",") + `)
		  AND finished_at >= ?
		GROUP BY job_id`
}

// slowestRuns fills MaxResultID of every summary.
func slowestRuns(ctx context.Context, q queryer, since time.Time, sums []kanade.ScanDuration) error {
	byJob := make(map[string]*kanade.ScanDuration, len(sums))
	for i := range sums {
		byJob[sums[i].JobID] = &sums[i]
	}
	for start := 0; start < len(sums); start += slowestChunk {
		chunk := sums[start:min(start+slowestChunk, len(sums))]
		args := make([]any, 0, 2*len(chunk)+1)
		for _, s := range chunk {
			args = append(args, s.JobID, s.MaxMs)
		}
		args = append(args, kanade.FormatTime(since))
		rows, err := q.QueryContext(ctx, slowestRunsSQL(len(chunk)), args...)
		if err != nil {
			return fmt.Errorf("scan durations: slowest runs: %w", err)
		}
		for rows.Next() {
			var job string
			var id *string
			if err := rows.Scan(&job, &id); err != nil {
				rows.Close()
				return fmt.Errorf("scan durations: slowest runs: %w", err)
			}
			if s := byJob[job]; s != nil {
				s.MaxResultID = id
			}
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("scan durations: slowest runs: %w", err)
		}
	}
	return nil
}
