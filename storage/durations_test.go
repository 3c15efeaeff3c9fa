package storage_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// floatRank is kanade-backend 0.43.56's percentile index, verbatim:
// ceil(q·n) in float64, minus one, clamped.
func floatRank(q float64, n int) int {
	r := int(math.Ceil(q * float64(n)))
	return min(max(r-1, 0), n-1)
}

// TestRankMatchesFloatFormula proves the integer nearest rank equal to the
// float formula of the seed for every n up to 10^6. (It must be: q·n is an
// integer exactly when float64(q)·n rounds to that integer, since float64(0.95)
// and float64(0.99) lie just below the true values; otherwise the fractional
// part is at least 0.01, far above the rounding error.)
func TestRankMatchesFloatFormula(t *testing.T) {
	qs := []struct {
		q        float64
		num, den int64
	}{{0.50, 1, 2}, {0.95, 19, 20}, {0.99, 99, 100}}
	for _, q := range qs {
		for n := 1; n <= 1_000_000; n++ {
			if got, want := storage.RankForTest(q.num, q.den, n), floatRank(q.q, n); got != want {
				t.Fatalf("q=%v n=%d: integer rank %d, float rank %d", q.q, n, got, want)
			}
		}
	}
}

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func exitCode(v int64) *int64 { return &v }

// result builds a finished result of job that started at started and ran d.
func result(id, job string, started time.Time, d time.Duration) storage.Result {
	return storage.Result{ExecResult: kanade.ExecResult{ResultID: id, RequestID: "q-" + id, PcID: "pc", ExitCode: exitCode(0),
		StartedAt: kanade.Timestamp{Time: started}, FinishedAt: kanade.Timestamp{Time: started.Add(d)}, ManifestID: job},
		RecordedAt: started.Add(d)}
}

func apply(t *testing.T, db *storage.DB, fn func(ctx context.Context, tx *storage.Tx) error) {
	t.Helper()
	ctx := t.Context()
	if err := db.Update(ctx, func(tx *storage.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatal(err)
	}
}

func applyResults(t *testing.T, db *storage.DB, batch ...storage.Result) {
	t.Helper()
	apply(t, db, func(ctx context.Context, tx *storage.Tx) error {
		_, err := tx.ApplyResults(ctx, batch)
		return err
	})
}

func ptr(s string) *string { return &s }

// TestScanDurationsSeedCases runs the percentile cases of kanade-backend
// 0.43.56 (and a few more) through the write path and ScanDurations.
func TestScanDurationsSeedCases(t *testing.T) {
	ms := func(v ...int64) []int64 { return v }
	seq := func(a, b int64) []int64 {
		var out []int64
		for v := a; v <= b; v++ {
			out = append(out, v)
		}
		return out
	}
	tests := []struct {
		name string
		durs []int64 // ms; negative = finished that long before started
		want kanade.ScanDuration
	}{
		{"1..10", seq(1, 10), kanade.ScanDuration{Count: 10, MinMs: 1, P50Ms: 5, P95Ms: 10, P99Ms: 10, MaxMs: 10, MeanMs: 5, MaxResultID: ptr("r09")}},
		{"single element", ms(42), kanade.ScanDuration{Count: 1, MinMs: 42, P50Ms: 42, P95Ms: 42, P99Ms: 42, MaxMs: 42, MeanMs: 42, MaxResultID: ptr("r00")}},
		{"1..20 p95 is the 19th", seq(1, 20), kanade.ScanDuration{Count: 20, MinMs: 1, P50Ms: 10, P95Ms: 19, P99Ms: 20, MaxMs: 20, MeanMs: 10, MaxResultID: ptr("r19")}},
		{"1..100", seq(1, 100), kanade.ScanDuration{Count: 100, MinMs: 1, P50Ms: 50, P95Ms: 95, P99Ms: 99, MaxMs: 100, MeanMs: 50, MaxResultID: ptr("r99")}},
		{"two elements", ms(7, 3), kanade.ScanDuration{Count: 2, MinMs: 3, P50Ms: 3, P95Ms: 7, P99Ms: 7, MaxMs: 7, MeanMs: 5, MaxResultID: ptr("r00")}},
		{"ties pick the smallest result_id", ms(5, 9, 9, 1, 9), kanade.ScanDuration{Count: 5, MinMs: 1, P50Ms: 9, P95Ms: 9, P99Ms: 9, MaxMs: 9, MeanMs: 6, MaxResultID: ptr("r01")}},
		{"clock skew clamps to zero", ms(-1500, -1, 0), kanade.ScanDuration{Count: 3, MinMs: 0, P50Ms: 0, P95Ms: 0, P99Ms: 0, MaxMs: 0, MeanMs: 0, MaxResultID: ptr("r00")}},
		{"mean truncates", ms(1, 2), kanade.ScanDuration{Count: 2, MinMs: 1, P50Ms: 1, P95Ms: 2, P99Ms: 2, MaxMs: 2, MeanMs: 1, MaxResultID: ptr("r01")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := storagetest.Open(t, nil)
			var batch []storage.Result
			for i, d := range tt.durs {
				started := t0.Add(time.Duration(i) * time.Minute)
				batch = append(batch, result(fmt.Sprintf("r%02d", i), "job", started, time.Duration(d)*time.Millisecond+time.Duration(i)*time.Microsecond))
			}
			// One run per transaction: many segments, then a compaction.
			for _, r := range batch {
				applyResults(t, db, r)
			}
			got, err := db.ScanDurations(t.Context(), t0.Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			tt.want.JobID = "job"
			if diff := gocmp.Diff([]kanade.ScanDuration{tt.want}, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestScanDurationsEmptyWindow(t *testing.T) {
	db := storagetest.Open(t, nil)
	got, err := db.ScanDurations(t.Context(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || len(got) != 0 {
		t.Fatalf("got %#v, want a non-nil empty slice", got)
	}
	applyResults(t, db, result("r1", "job", t0, time.Second))
	if got, err = db.ScanDurations(t.Context(), t0.Add(time.Second+1)); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("window after the only run: got %#v, %v; want a non-nil empty slice", got, err)
	}
}

// TestScanDurationsQueryPlans proves the reads use their indexes: a range of
// the segments' primary key (no sort), the first hour's blobs and a
// bucket's by the index of their key, one range of duration_bins' per
// wanted bin (no sort either), and one covering (job_id, duration_ms,
// finished_at, result_id) index range per job for the slowest run; on SQLite
// and, with KANADE_TEST_SQLD, on sqld's older SQLite, which plans some
// statements otherwise.
func TestScanDurationsQueryPlans(t *testing.T) {
	db := storagetest.Open(t, nil)
	plans, err := storage.ScanQueryPlansForTest(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"segments":    "SEARCH duration_segments USING PRIMARY KEY (hour>?)",
		"first hour":  "SEARCH r USING INDEX sqlite_autoindex_duration_runs_1 (hour=?)",
		"first blobs": "SEARCH s USING PRIMARY KEY (hour=? AND job_id=? AND seg=?)",
		"load":        "SEARCH r USING INDEX sqlite_autoindex_duration_runs_1 (hour=? AND job_id=?)",
		"load blobs":  "SEARCH s USING PRIMARY KEY (hour=? AND job_id=? AND seg=?)",
		"delete runs": "SEARCH duration_runs USING COVERING INDEX sqlite_autoindex_duration_runs_1 (hour=? AND job_id=?)",
		"bins":        "SEARCH b USING PRIMARY KEY (job_id=? AND bin=? AND hour>?)",
		"bins raw":    "SEARCH b USING PRIMARY KEY (job_id=? AND bin=? AND hour>?)",
		"delete bins": "SEARCH duration_bins USING PRIMARY KEY (job_id=? AND bin=? AND hour=?)",
		"slowest":     "SEARCH execution_results USING COVERING INDEX execution_results_job_duration (job_id=? AND duration_ms=? AND finished_at>?)",
		"meta":        "SEARCH duration_segments USING PRIMARY KEY (hour=? AND job_id=?)",
		"delete":      "SEARCH duration_segments USING PRIMARY KEY (hour=? AND job_id=?)",
		"marks":       "SEARCH duration_buckets USING PRIMARY KEY (hour>?)",
		"bucket segs": "SEARCH s USING PRIMARY KEY (hour=? AND job_id=?)",
		"bucket runs": "SEARCH r USING INDEX sqlite_autoindex_duration_runs_1 (hour=? AND job_id=? AND seg=?)",
		"later segs":  "SEARCH duration_segments USING PRIMARY KEY (hour>?)",
		"first runs":  "SEARCH r USING INDEX sqlite_autoindex_duration_runs_1 (hour=?)",
		"first segs":  "SEARCH s USING PRIMARY KEY (hour=? AND job_id=? AND seg=?)",
		"bins hour":   "SEARCH b USING PRIMARY KEY (job_id=? AND bin=? AND hour=?)",
		"bins walk":   "SEARCH b USING PRIMARY KEY (job_id=? AND bin=? AND hour>?)",
	}
	for name, w := range want {
		if db.Remote() && (name == "delete bins" || name == "meta" || name == "delete" || name == "load" || name == "load blobs" || name == "delete runs") {
			// sqld's SQLite 3.45 plans these write-path row-value INs on
			// their first column only (not yet rewritten as the slowest
			// lookup was); the read statements are checked there too.
			continue
		}
		if !slices.Contains(plans[name], w) {
			t.Errorf("%s: plan %q lacks %q", name, plans[name], w)
		}
		for _, line := range plans[name] {
			// The VALUES lists may be scanned, and json_each's pairs.
			values := strings.Contains(line, "VALUES") || strings.Contains(line, "CONSTANT ROWS") || strings.HasPrefix(line, "SCAN v VIRTUAL TABLE")
			// A temporary B-tree is a sort: of the bins' joined durations,
			// when step 3 grouped a join by pair. The write path's meta
			// groups the few segments of the buckets a batch touched.
			sorts := strings.Contains(line, "FOR ORDER BY") || strings.Contains(line, "TEMP B-TREE") && name != "meta"
			if strings.HasPrefix(line, "SCAN ") && !values || sorts {
				t.Errorf("%s: plan scans or sorts: %q", name, plans[name])
			}
		}
	}
}

// reference computes scan_durations the brute-force way of 0.43.56: every
// finished row straight from execution_results, durations in Go, a sort per
// job and the float nearest rank; the slowest run is the smallest result_id
// among the runs with the maximum duration.
func reference(t *testing.T, db *storage.DB, since time.Time) []kanade.ScanDuration {
	t.Helper()
	rows, err := storage.FinishedRunsForTest(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	type run struct {
		ms int64
		id string
	}
	byJob := map[string][]run{}
	for _, r := range rows {
		started, err := kanade.ParseTime(r.StartedAt)
		if err != nil {
			t.Fatal(err)
		}
		finished, err := kanade.ParseTime(r.FinishedAt)
		if err != nil {
			t.Fatal(err)
		}
		if finished.Before(since) {
			continue
		}
		byJob[r.JobID] = append(byJob[r.JobID], run{kanade.DurationMillis(started, finished), r.ResultID})
	}
	out := []kanade.ScanDuration{}
	for job, runs := range byJob {
		slices.SortFunc(runs, func(a, b run) int {
			return cmp.Or(cmp.Compare(a.ms, b.ms), -strings.Compare(a.id, b.id))
		})
		n := len(runs)
		var sum int64
		for _, r := range runs {
			sum += r.ms
		}
		at := func(q float64) int64 { return runs[floatRank(q, n)].ms }
		slowest := runs[n-1]
		out = append(out, kanade.ScanDuration{JobID: job, Count: int64(n), MinMs: runs[0].ms, P50Ms: at(0.50),
			P95Ms: at(0.95), P99Ms: at(0.99), MaxMs: slowest.ms, MeanMs: sum / int64(n), MaxResultID: ptr(slowest.id)})
	}
	slices.SortFunc(out, func(a, b kanade.ScanDuration) int {
		return cmp.Or(cmp.Compare(b.P95Ms, a.P95Ms), strings.Compare(a.JobID, b.JobID))
	})
	return out
}

// simRun is one run of the random history.
type simRun struct {
	id, job        string
	started        time.Time // the agent's started_at
	resultStarted  time.Time // started_at as the result reports it (may differ)
	finished       time.Time
	hasStarted     bool // a started event is published
	hasResult      bool // a result is published (else it stays running or is reaped)
	timeout        time.Duration
	startedEventAt time.Time
	resultAt       time.Time
}

// event is one thing the history does, at a time.
type event struct {
	at   time.Time
	kind int // evStarted, evResult, evReap, evRetention
	run  *simRun
}

const (
	evStarted = iota
	evResult
	evReap
	evRetention
)

// history draws a random fleet history: ties, skewed clocks, runs without a
// job, results before and after their started events, redeliveries, lost
// results that get reaped and then a late result, and a retention delete.
func history(rng *rand.Rand) []event {
	jobs := []string{"backup", "inventory", "patch", "scan", "", "a"}[:2+rng.IntN(5)]
	n := 1 + rng.IntN(250)
	span := time.Duration(1+rng.IntN(6)) * time.Hour
	var evs []event
	for i := 0; i < n; i++ {
		r := &simRun{id: fmt.Sprintf("r%04x", rng.IntN(1<<16)*256+i), job: jobs[rng.IntN(len(jobs))]}
		r.started = t0.Add(time.Duration(rng.Int64N(int64(span))))
		var d time.Duration
		switch rng.IntN(6) {
		case 0: // ties
			d = []time.Duration{0, time.Second, time.Second, 2500 * time.Millisecond}[rng.IntN(4)]
		case 1: // clock skew
			d = -time.Duration(rng.Int64N(int64(5 * time.Second)))
		case 2: // long: started before the window, finished inside
			d = time.Duration(rng.Int64N(int64(3 * time.Hour)))
		default:
			d = time.Duration(rng.Int64N(int64(2 * time.Minute)))
		}
		r.finished = r.started.Add(d)
		r.resultStarted = r.started
		if rng.IntN(8) == 0 {
			r.resultStarted = r.started.Add(time.Duration(rng.Int64N(int64(time.Second))))
		}
		r.hasStarted = rng.IntN(2) == 0
		r.hasResult = rng.IntN(8) != 0 || !r.hasStarted
		if rng.IntN(3) > 0 {
			r.timeout = time.Duration(1+rng.IntN(30)) * time.Minute
		}
		r.startedEventAt = r.started.Add(time.Duration(rng.Int64N(int64(time.Second))))
		r.resultAt = r.finished.Add(time.Duration(rng.Int64N(int64(time.Second))))
		if rng.IntN(10) == 0 { // late: after a reap
			r.resultAt = r.resultAt.Add(time.Duration(rng.IntN(40)) * time.Hour)
		}
		if r.hasStarted {
			evs = append(evs, event{at: r.startedEventAt, kind: evStarted, run: r})
		}
		if r.hasResult {
			evs = append(evs, event{at: r.resultAt, kind: evResult, run: r})
			if rng.IntN(10) == 0 { // redelivery
				evs = append(evs, event{at: r.resultAt.Add(time.Duration(rng.IntN(1000)) * time.Second), kind: evResult, run: r})
			}
		}
	}
	for i := rng.IntN(5); i > 0; i-- {
		evs = append(evs, event{at: t0.Add(time.Duration(rng.Int64N(int64(span + 30*time.Hour)))), kind: evReap})
	}
	if rng.IntN(3) == 0 {
		evs = append(evs, event{at: t0.Add(span + 50*time.Hour), kind: evRetention})
	}
	slices.SortStableFunc(evs, func(a, b event) int { return a.at.Compare(b.at) })
	return evs
}

// play applies the history through the real write path in random batches:
// consecutive events of a kind share a transaction, and sometimes a reap or
// a started batch shares one with the results that follow.
func play(t *testing.T, db *storage.DB, rng *rand.Rand, evs []event, check func(after int)) {
	t.Helper()
	for i := 0; i < len(evs); {
		var started []storage.Started
		var results []storage.Result
		var reapAt, retentionAt *time.Time
		size := 1 + rng.IntN(12)
		j := i
		for ; j < len(evs) && j-i < size; j++ {
			e := evs[j]
			if j > i && e.kind != evs[j-1].kind && rng.IntN(3) > 0 {
				break
			}
			switch e.kind {
			case evStarted:
				started = append(started, storage.Started{EventStarted: kanade.EventStarted{ResultID: e.run.id, RequestID: "q-" + e.run.id,
					PcID: "pc", StartedAt: kanade.Timestamp{Time: e.run.started}, ManifestID: e.run.job},
					RecordedAt: e.at, Timeout: e.run.timeout})
			case evResult:
				r := e.run
				results = append(results, storage.Result{ExecResult: kanade.ExecResult{ResultID: r.id, RequestID: "q-" + r.id, PcID: "pc",
					ExitCode: exitCode(int64(rng.IntN(2))), StartedAt: kanade.Timestamp{Time: r.resultStarted},
					FinishedAt: kanade.Timestamp{Time: r.finished}, ManifestID: r.job}, RecordedAt: e.at})
			case evReap:
				at := e.at
				reapAt = &at
			case evRetention:
				at := e.at
				retentionAt = &at
			}
		}
		apply(t, db, func(ctx context.Context, tx *storage.Tx) error {
			if reapAt != nil {
				if _, err := tx.Reap(ctx, *reapAt, 1000); err != nil {
					return err
				}
			}
			if _, err := tx.ApplyStarted(ctx, started); err != nil {
				return err
			}
			if _, err := tx.ApplyResults(ctx, results); err != nil {
				return err
			}
			if retentionAt != nil {
				// Everything recorded before the middle of the history.
				if _, err := tx.DeleteOldResults(ctx, t0.Add(2*time.Hour), 1+rng.IntN(100)); err != nil {
					return err
				}
			}
			return nil
		})
		i = j
		if check != nil && rng.IntN(20) == 0 {
			check(i)
		}
	}
}

// sinces returns the windows worth checking for the rows now stored.
func sinces(t *testing.T, db *storage.DB, rng *rand.Rand) []time.Time {
	rows, err := storage.FinishedRunsForTest(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	out := []time.Time{
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), // far past, before 1970
		t0.Add(-1000 * time.Hour),
		t0.Add(1000 * time.Hour),                       // future: empty
		t0.Add(time.Duration(rng.IntN(8)) * time.Hour), // on an hour boundary
		t0.Add(time.Duration(rng.Int64N(int64(8 * time.Hour)))).In(time.FixedZone("JST", 9*3600)),            // non-UTC offset
		t0.Add(time.Duration(rng.Int64N(int64(8 * time.Hour)))).In(time.FixedZone("NST", -(3*3600 + 30*60))), // half-hour offset
	}
	for i := 0; i < 3 && len(rows) > 0; i++ {
		f, err := kanade.ParseTime(rows[rng.IntN(len(rows))].FinishedAt)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f, f.Add(1), f.Add(-1), f.Truncate(time.Hour))
	}
	return out
}

// TestScanDurationsMatchesBruteForce compares ScanDurations with the
// brute-force reference on random histories.
func TestScanDurationsMatchesBruteForce(t *testing.T) {
	storagetest.AnswersOnly(t)
	t.Parallel() // beside the other brute-force tests (storagetest.AnswersOnly)
	// 10 histories in the default run, 8 against sqld (a round trip per
	// statement); KANADE_TEST_SEEDS=N runs more when the summaries change.
	seeds := 10
	if testing.Short() || os.Getenv(storagetest.EnvSQLD) != "" {
		seeds = 8
	}
	if n, err := strconv.Atoi(os.Getenv("KANADE_TEST_SEEDS")); err == nil && n > 0 {
		seeds = n
	}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			db := storagetest.Open(t, nil)
			compare := func(when string) {
				t.Helper()
				checkSummaryInvariants(t, db)
				for _, since := range sinces(t, db, rng) {
					got, err := db.ScanDurations(t.Context(), since)
					if err != nil {
						t.Fatal(err)
					}
					if got == nil {
						t.Fatalf("%s, since %s: nil slice", when, since)
					}
					if diff := gocmp.Diff(reference(t, db, since), got); diff != "" {
						t.Fatalf("%s, since %s: (-reference +ScanDurations):\n%s", when, since.Format(time.RFC3339Nano), diff)
					}
					paged, err := storage.ScanDurationsAggregatedForTest(t.Context(), db, since)
					if err != nil {
						t.Fatal(err)
					}
					if diff := gocmp.Diff(got, paged); diff != "" {
						t.Fatalf("%s, since %s: (-one query +aggregated in SQL):\n%s", when, since.Format(time.RFC3339Nano), diff)
					}
					uncached, err := storage.ScanDurationsUncachedForTest(t.Context(), db, since)
					if err != nil {
						t.Fatal(err)
					}
					if diff := gocmp.Diff(got, uncached); diff != "" {
						t.Fatalf("%s, since %s: (-with kept hours +every hour read):\n%s", when, since.Format(time.RFC3339Nano), diff)
					}
				}
			}
			play(t, db, rng, history(rng), func(after int) { compare(fmt.Sprintf("after %d events", after)) })
			compare("at the end")
		})
	}
}

// checkSummaryInvariants checks that the summaries hold one entry per row
// with job_id, finished_at and duration_ms, each segment has its blobs and
// its bins, and no bucket has more than 8 segments.
func checkSummaryInvariants(t *testing.T, db *storage.DB) {
	t.Helper()
	ctx := t.Context()
	entries, err := storage.CountForTest(ctx, db, `SELECT COALESCE(SUM(runs), 0) FROM duration_segments`)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := storage.CountForTest(ctx, db, `SELECT COUNT(*) FROM execution_results
		WHERE job_id IS NOT NULL AND finished_at IS NOT NULL AND duration_ms IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	if entries != rows {
		t.Fatalf("summaries hold %d entries, execution_results %d summarized rows", entries, rows)
	}
	// Every segment's bins are rows of duration_bins, and no others.
	binRows, err := storage.CountForTest(ctx, db, `SELECT COALESCE(SUM(runs), 0) FROM duration_bins`)
	if err != nil {
		t.Fatal(err)
	}
	orphans, err := storage.CountForTest(ctx, db, `SELECT COUNT(*) FROM duration_bins AS b
		WHERE NOT EXISTS (SELECT 1 FROM duration_segments AS s WHERE (s.hour, s.job_id, s.seg) = (b.hour, b.job_id, b.seg))`)
	if err != nil {
		t.Fatal(err)
	}
	if binRows != rows || orphans != 0 {
		t.Fatalf("duration_bins hold %d entries (%d rows without a segment), execution_results %d summarized rows", binRows, orphans, rows)
	}
	// Every segment has its row of blobs in duration_runs, and no others.
	segs, err := storage.CountForTest(ctx, db, `SELECT COUNT(*) FROM duration_segments`)
	if err != nil {
		t.Fatal(err)
	}
	paired, err := storage.CountForTest(ctx, db, `SELECT COUNT(*) FROM duration_segments JOIN duration_runs USING (hour, job_id, seg)`)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := storage.CountForTest(ctx, db, `SELECT COUNT(*) FROM duration_runs`)
	if err != nil {
		t.Fatal(err)
	}
	if paired != segs || blobs != segs {
		t.Fatalf("%d segments, %d rows of duration_runs, %d of them a segment's", segs, blobs, paired)
	}
	// The head of each bins blob is the segment's runs, lo, hi and total.
	heads, err := storage.CountForTest(ctx, db, `SELECT COUNT(*) FROM duration_segments WHERE typeof(bins) = 'blob'
		AND substr(bins, 1, 32) = unhex(printf('%016x%016x%016x%016x', runs, lo, hi, total))`)
	if err != nil {
		t.Fatal(err)
	}
	if heads != segs {
		t.Fatalf("%d of %d segments have a bins head equal to their columns", heads, segs)
	}
	most, err := storage.CountForTest(ctx, db, `SELECT COALESCE(MAX(c), 0) FROM (SELECT COUNT(*) AS c FROM duration_segments GROUP BY hour, job_id)`)
	if err != nil {
		t.Fatal(err)
	}
	if most > 8 {
		t.Fatalf("a bucket has %d segments", most)
	}
}

// TestReap checks the reaper's row changes and that the reaped run enters the
// summaries once, and that its late result moves that entry, without
// counting the failure twice.
func TestReap(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := t.Context()
	apply(t, db, func(ctx context.Context, tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO executions (exec_id, job_id, target_count) VALUES ('e1', 'job', 3)`)
		return err
	})
	start := func(id string, at time.Time, timeout time.Duration) storage.Started {
		return storage.Started{EventStarted: kanade.EventStarted{ResultID: id, RequestID: "q", ExecID: "e1", PcID: "pc",
			StartedAt: kanade.Timestamp{Time: at}, ManifestID: "job"}, RecordedAt: at, Timeout: timeout}
	}
	apply(t, db, func(ctx context.Context, tx *storage.Tx) error {
		_, err := tx.ApplyStarted(ctx, []storage.Started{
			start("expired", t0, time.Minute),              // expires at t0+3m
			start("young", t0, time.Hour),                  // expires at t0+1h30m
			start("no-deadline", t0.Add(-25*time.Hour), 0), // no expires_at, started over 24 h ago
			start("no-deadline-young", t0.Add(-23*time.Hour), 0),
		})
		return err
	})
	now := t0.Add(10*time.Minute + 123456789)
	var reaped int
	apply(t, db, func(ctx context.Context, tx *storage.Tx) error {
		var err error
		reaped, err = tx.Reap(ctx, now, 100)
		return err
	})
	if reaped != 2 {
		t.Fatalf("reaped %d rows, want 2", reaped)
	}
	type row struct {
		ID       string
		Exit     *int64
		Reaped   int
		Finished *string
		Dur      *int64
		Stderr   *string
	}
	read := func() []row {
		var out []row
		for _, id := range []string{"expired", "young", "no-deadline", "no-deadline-young"} {
			r := row{ID: id}
			if err := storage.QueryRowForTest(ctx, db, `SELECT exit_code, reaped, finished_at, duration_ms, stderr FROM execution_results WHERE result_id = '`+id+`'`,
				&r.Exit, &r.Reaped, &r.Finished, &r.Dur, &r.Stderr); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	i64 := func(v int64) *int64 { return &v }
	at := kanade.FormatTime(now)
	note := "[kanade] reaped: no result arrived before the run's deadline"
	want := []row{
		{ID: "expired", Exit: i64(-1), Reaped: 1, Finished: &at, Dur: i64(10*60*1000 + 123), Stderr: &note},
		{ID: "young"},
		{ID: "no-deadline", Exit: i64(-1), Reaped: 1, Finished: &at, Dur: i64((25*3600+10*60)*1000 + 123), Stderr: &note},
		{ID: "no-deadline-young"},
	}
	if diff := gocmp.Diff(want, read()); diff != "" {
		t.Fatalf("after reap (-want +got):\n%s", diff)
	}
	failures, err := storage.CountForTest(ctx, db, `SELECT failure_count FROM executions WHERE exec_id = 'e1'`)
	if err != nil || failures != 2 {
		t.Fatalf("failure_count %d (%v), want 2", failures, err)
	}
	got, err := db.ScanDurations(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	wantSum := []kanade.ScanDuration{{JobID: "job", Count: 2, MinMs: 600123, P50Ms: 600123, P95Ms: 90600123, P99Ms: 90600123,
		MaxMs: 90600123, MeanMs: (600123 + 90600123) / 2, MaxResultID: ptr("no-deadline")}}
	if diff := gocmp.Diff(wantSum, got); diff != "" {
		t.Fatalf("after reap (-want +got):\n%s", diff)
	}
	// A second round reaps nothing more.
	apply(t, db, func(ctx context.Context, tx *storage.Tx) error {
		n, err := tx.Reap(ctx, now, 100)
		if n != 0 {
			return fmt.Errorf("second reap: %d rows", n)
		}
		return err
	})
	// The late real result replaces the reaped entry.
	late := result("expired", "job", t0, 90*time.Second)
	late.ExecID = "e1"
	applyResults(t, db, late, late)
	got, err = db.ScanDurations(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	wantSum = []kanade.ScanDuration{{JobID: "job", Count: 2, MinMs: 90000, P50Ms: 90000, P95Ms: 90600123, P99Ms: 90600123,
		MaxMs: 90600123, MeanMs: (90000 + 90600123) / 2, MaxResultID: ptr("no-deadline")}}
	if diff := gocmp.Diff(wantSum, got); diff != "" {
		t.Fatalf("after the late result (-want +got):\n%s", diff)
	}
	if failures, err := storage.CountForTest(ctx, db, `SELECT failure_count + success_count FROM executions WHERE exec_id = 'e1'`); err != nil || failures != 2 {
		t.Fatalf("counted %d (%v), want 2: a late result must not count again", failures, err)
	}
	checkSummaryInvariants(t, db)
}

// TestDurationSegmentsCompact feeds one bucket a run per transaction and
// checks the segment count stays bounded, closed hours end as one segment,
// and every answer stays exact.
func TestDurationSegmentsCompact(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := t.Context()
	segments := func(hour time.Time) int64 {
		n, err := storage.CountForTest(ctx, db, `SELECT COUNT(*) FROM duration_segments WHERE hour = ?`, hour.Unix()/3600)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	var most int64
	for i := 0; i < 30; i++ {
		applyResults(t, db, result(fmt.Sprintf("r%02d", i), "job", t0.Add(time.Duration(i)*time.Minute), time.Duration(30-i)*time.Second))
		most = max(most, segments(t0))
		if diff := gocmp.Diff(reference(t, db, t0), mustScan(t, db, t0)); diff != "" {
			t.Fatalf("after run %d (-want +got):\n%s", i, diff)
		}
	}
	if most != 8 || segments(t0) > 8 {
		t.Fatalf("at most %d segments, now %d; want a compaction at 8", most, segments(t0))
	}
	before := segments(t0)
	applyResults(t, db, result("next-hour", "job", t0.Add(time.Hour), time.Second))
	if before < 2 || segments(t0) != 1 {
		t.Fatalf("closed hour has %d segments (before %d), want 1 once the next hour began", segments(t0), before)
	}
	if diff := gocmp.Diff(reference(t, db, t0.Add(17*time.Minute+1)), mustScan(t, db, t0.Add(17*time.Minute+1))); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	// Late results for the closed hour, one per transaction: each
	// compacts it.
	most = 0
	for i := 0; i < 12; i++ {
		applyResults(t, db, result(fmt.Sprintf("late%02d", i), "job", t0.Add(time.Duration(i)*4*time.Minute+time.Second), time.Duration(i+1)*time.Second))
		most = max(most, segments(t0))
		since := t0.Add(time.Duration(i) * 3 * time.Minute)
		if diff := gocmp.Diff(reference(t, db, since), mustScan(t, db, since)); diff != "" {
			t.Fatalf("after late run %d (-want +got):\n%s", i, diff)
		}
	}
	if most != 1 {
		t.Fatalf("a closed hour reached %d segments under late results, want 1", most)
	}
	// An hour is closed too when its job moves on in the same transaction.
	h5 := t0.Add(5 * time.Hour)
	applyResults(t, db, result("h5-a", "job", h5.Add(time.Minute), time.Second))
	applyResults(t, db, result("h5-b", "job", h5.Add(2*time.Minute), time.Second))
	if n := segments(h5); n != 2 {
		t.Fatalf("open hour: %d segments, want 2", n)
	}
	applyResults(t, db, result("h5-c", "job", h5.Add(3*time.Minute), time.Second), result("h6", "job", h5.Add(time.Hour), time.Second))
	if n := segments(h5); n != 1 {
		t.Fatalf("hour closed by the same transaction: %d segments, want 1", n)
	}
	if diff := gocmp.Diff(reference(t, db, h5.Add(90*time.Second)), mustScan(t, db, h5.Add(90*time.Second))); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	checkSummaryInvariants(t, db)
}

func mustScan(t *testing.T, db *storage.DB, since time.Time) []kanade.ScanDuration {
	t.Helper()
	got, err := db.ScanDurations(t.Context(), since)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestScanDurationsLargeJobs covers the selection over many sorted segments
// (used when sorting would cost more): thousands of runs per job, spread over
// a day and a half, in batches, with heavy ties in one job.
func TestScanDurationsLargeJobs(t *testing.T) {
	storagetest.AnswersOnly(t)
	t.Parallel() // beside the other brute-force tests (storagetest.AnswersOnly)
	db := storagetest.Open(t, nil)
	rng := rand.New(rand.NewPCG(3, 4))
	var batch []storage.Result
	for i := 0; i < 12000; i++ {
		job := []string{"spread", "ties", "skewed"}[i%3]
		started := t0.Add(time.Duration(i) * 11 * time.Second)
		var d time.Duration
		switch job {
		case "spread":
			d = time.Duration(rng.Int64N(int64(10 * time.Minute)))
		case "ties":
			d = time.Duration(rng.IntN(4)) * time.Second
		default:
			d = time.Duration(math.Exp(rng.Float64()*12)) * time.Millisecond
		}
		batch = append(batch, result(fmt.Sprintf("r%05d", rng.IntN(100000)*10+i%10), job, started, d))
		if len(batch) == 150 {
			applyResults(t, db, batch...)
			batch = batch[:0]
		}
	}
	applyResults(t, db, batch...)
	for _, since := range []time.Time{t0, t0.Add(90*time.Minute + 7), t0.Add(20 * time.Hour), t0.Add(36*time.Hour + 30*time.Minute)} {
		if diff := gocmp.Diff(reference(t, db, since), mustScan(t, db, since)); diff != "" {
			t.Fatalf("since %s (-want +got):\n%s", since, diff)
		}
	}
}

// TestScanDurationsManyJobsWideRange drives the histogram summaries the way a
// big fleet does: 60 jobs over 30 hours, durations spread over six orders of
// magnitude (1 ms to 20 minutes), plus values on and beside bin edges (powers
// of two, 15/16/17, negatives from clock skew, ties), runs started and then
// reaped, late results for some of them, results landing in old hours, and
// retention deleting the oldest rows; after each phase every window start
// (hour edges, mid-hour, before and after everything) must match the brute
// force, in both read modes.
func TestScanDurationsManyJobsWideRange(t *testing.T) {
	storagetest.AnswersOnly(t)
	t.Parallel() // beside the other brute-force tests (storagetest.AnswersOnly)
	db := storagetest.Open(t, nil)
	rng := rand.New(rand.NewPCG(16, 1))
	const jobs, hours = 60, 30
	edges := []int64{0, 1, 15, 16, 17, 31, 32, 33, 1023, 1024, 1025, 65535, 65536, -1, -15, -16, -17, -999}
	dur := func() time.Duration {
		if rng.IntN(8) == 0 {
			return time.Duration(edges[rng.IntN(len(edges))]) * time.Millisecond
		}
		return time.Duration(math.Pow(10, 6*rng.Float64())*1.2) * time.Millisecond
	}
	job := func() string { return fmt.Sprintf("job-%02d", rng.IntN(jobs)) }
	check := func(when string) {
		t.Helper()
		checkSummaryInvariants(t, db)
		for _, since := range []time.Time{t0.Add(-time.Hour), t0, t0.Add(90*time.Minute + 7), t0.Add(17 * time.Hour),
			t0.Add(time.Duration(rng.Int64N(int64(hours * time.Hour)))), t0.Add(40 * time.Hour)} {
			want := reference(t, db, since)
			if diff := gocmp.Diff(want, mustScan(t, db, since)); diff != "" {
				t.Fatalf("%s, since %s (-want +got):\n%s", when, since, diff)
			}
			paged, err := storage.ScanDurationsAggregatedForTest(t.Context(), db, since)
			if err != nil {
				t.Fatal(err)
			}
			if diff := gocmp.Diff(want, paged); diff != "" {
				t.Fatalf("%s, since %s, aggregated in SQL (-want +got):\n%s", when, since, diff)
			}
		}
	}
	var batch []storage.Result
	for i := 0; i < 9000; i++ {
		started := t0.Add(time.Duration(i) * hours * time.Hour / 9000)
		batch = append(batch, result(fmt.Sprintf("r%05d", i), job(), started, dur()))
		if len(batch) == 400 {
			applyResults(t, db, batch...)
			batch = batch[:0]
		}
	}
	applyResults(t, db, batch...)
	check("after the load")

	// Runs that start, are reaped, and then (most of them) report late.
	var st []storage.Started
	var late []storage.Result
	for i := range 300 {
		id := fmt.Sprintf("s%04d", i)
		j := job()
		started := t0.Add(time.Duration(rng.Int64N(int64(hours * time.Hour))))
		st = append(st, storage.Started{EventStarted: kanade.EventStarted{ResultID: id, RequestID: "q-" + id, PcID: "pc",
			ManifestID: j, StartedAt: kanade.Timestamp{Time: started}}, RecordedAt: started, Timeout: time.Minute})
		if i%4 != 0 {
			r := result(id, j, started, dur())
			r.RecordedAt = t0.Add(50 * time.Hour)
			late = append(late, r)
		}
	}
	apply(t, db, func(ctx context.Context, tx *storage.Tx) error {
		_, err := tx.ApplyStarted(ctx, st)
		return err
	})
	apply(t, db, func(ctx context.Context, tx *storage.Tx) error {
		n, err := tx.Reap(ctx, t0.Add(48*time.Hour), 1000)
		if err == nil && n != len(st) {
			err = fmt.Errorf("reaped %d, want %d", n, len(st))
		}
		return err
	})
	check("after the reap")
	applyResults(t, db, late...)
	// Late results of runs never seen, in random old hours.
	batch = batch[:0]
	for i := range 500 {
		batch = append(batch, result(fmt.Sprintf("l%04d", i), job(), t0.Add(time.Duration(rng.Int64N(int64(hours*time.Hour)))), dur()))
	}
	applyResults(t, db, batch...)
	check("after the late results")
	apply(t, db, func(ctx context.Context, tx *storage.Tx) error {
		_, err := tx.DeleteOldResults(ctx, t0.Add(10*time.Hour), 100000)
		return err
	})
	check("after retention")
}

// TestScanDurationsJobNamesInJSON: the wanted bins and the slowest runs
// are asked for with the job names inside a JSON argument; names that JSON
// must escape (quotes, backslashes, control characters, non-ASCII, a name
// that is itself JSON) are answered exactly, slowest run included.
func TestScanDurationsJobNamesInJSON(t *testing.T) {
	db := storagetest.Open(t, nil)
	names := []string{`a"b`, `c\d`, "tab\tand\nnewline", "ctl\x01", "é✓ジョブ", `["x",1]`, "\u2028", "plain"}
	var batch []storage.Result
	for i := range 400 {
		batch = append(batch, result(fmt.Sprintf("r%03d", i), names[i%len(names)], t0.Add(time.Duration(i)*time.Minute),
			time.Duration(1+i%37)*time.Second))
	}
	applyResults(t, db, batch...)
	since := t0.Add(90*time.Minute + 7*time.Second)
	got := mustScan(t, db, since)
	if len(got) != len(names) {
		t.Fatalf("%d jobs, want %d", len(got), len(names))
	}
	for _, s := range got {
		if s.MaxResultID == nil {
			t.Errorf("job %q: no slowest run", s.JobID)
		}
	}
	if diff := gocmp.Diff(reference(t, db, since), got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

// TestLateResultRewritesOneBinRow: a late result in a closed hour (one
// segment) rewrites the bucket, but of duration_bins only the row of the bin
// it joins; the other bins' rows, unchanged, stay as they are. The answers
// stay exact and the summaries whole.
func TestLateResultRewritesOneBinRow(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := t.Context()
	var batch []storage.Result
	for i := range 200 { // durations over many bins
		batch = append(batch, result(fmt.Sprintf("r%03d", i), "job", t0.Add(time.Duration(i)*15*time.Second),
			time.Duration(1+i*i)*time.Millisecond*37))
	}
	applyResults(t, db, batch...)
	applyResults(t, db, result("next", "job", t0.Add(time.Hour), time.Second)) // closes t0's hour
	bins, err := storage.CountForTest(ctx, db, `SELECT COUNT(*) FROM duration_bins WHERE hour = ?`, t0.Unix()/3600)
	if err != nil {
		t.Fatal(err)
	}
	if bins < 20 {
		t.Fatalf("%d bins in the closed hour; the test wants many", bins)
	}
	for _, q := range []string{
		`CREATE TABLE bin_writes (n INTEGER NOT NULL)`,
		`INSERT INTO bin_writes VALUES (0)`,
		`CREATE TRIGGER count_bin_inserts AFTER INSERT ON duration_bins BEGIN UPDATE bin_writes SET n = n + 1; END`,
		`CREATE TRIGGER count_bin_deletes AFTER DELETE ON duration_bins BEGIN UPDATE bin_writes SET n = n + 1; END`,
	} {
		if err := storage.ExecForTest(ctx, db, q); err != nil {
			t.Fatal(err)
		}
	}
	// 37 ms · (1+4) = 185 ms lies in a bin that already holds r002.
	applyResults(t, db, result("late", "job", t0.Add(20*time.Minute+time.Second), 185*time.Millisecond))
	writes, err := storage.CountForTest(ctx, db, `SELECT n FROM bin_writes`)
	if err != nil {
		t.Fatal(err)
	}
	if writes != 2 { // the one bin's row deleted and inserted again
		t.Errorf("%d writes to duration_bins for one late result; want 2", writes)
	}
	checkSummaryInvariants(t, db)
	for _, since := range []time.Time{t0, t0.Add(20 * time.Minute), t0.Add(20*time.Minute + 2*time.Second)} {
		if diff := gocmp.Diff(reference(t, db, since), mustScan(t, db, since)); diff != "" {
			t.Fatalf("since %s (-want +got):\n%s", since, diff)
		}
	}
}

// TestScanDurationsKeptHoursFollowTheirRows keeps every hour of a window
// (a first call), then changes the rows of kept hours each way the write
// path does: appends to the open hour, a late result into a closed one,
// and retention deleting whole hours. Each next call must answer from the
// rows, as a call that reads every hour again does, while keeping the hours
// nothing changed.
func TestScanDurationsKeptHoursFollowTheirRows(t *testing.T) {
	ctx := t.Context()
	db := storagetest.Open(t, nil)
	rng := rand.New(rand.NewPCG(8, 9))
	var batch []storage.Result
	for i := range 1200 {
		d := time.Duration(math.Exp(rng.Float64()*9)) * time.Millisecond
		batch = append(batch, result(fmt.Sprintf("r%05d", i), fmt.Sprintf("job-%d", i%4), t0.Add(time.Duration(i)*18*time.Second), d))
	}
	applyResults(t, db, batch...) // six hours
	since := t0.Add(-time.Hour)   // every hour with runs is a later hour
	check := func(when string) {
		t.Helper()
		got := mustScan(t, db, since)
		if diff := gocmp.Diff(reference(t, db, since), got); diff != "" {
			t.Fatalf("%s: (-reference +got):\n%s", when, diff)
		}
		uncached, err := storage.ScanDurationsUncachedForTest(ctx, db, since)
		if err != nil {
			t.Fatal(err)
		}
		if diff := gocmp.Diff(uncached, got); diff != "" {
			t.Fatalf("%s: (-every hour read +with kept hours):\n%s", when, diff)
		}
	}
	check("first call")
	// Over libSQL nothing is kept: the server sums the later hours.
	if buckets, first, bins := storage.ScanCacheForTest(db); !db.Remote() && (buckets != 24 || first != 0 || bins == 0) {
		t.Fatalf("%d buckets kept (%d with their runs) with %d bins, want 24 (none) and their wanted bins", buckets, first, bins)
	}
	check("nothing changed")
	applyResults(t, db, result("open", "job-1", t0.Add(6*time.Hour-2*time.Minute), time.Minute))
	check("a run appended to the last hour")
	applyResults(t, db, result("late", "job-2", t0.Add(2*time.Hour), 2*time.Hour)) // finished in hour 4
	check("a late result in a closed hour")
	apply(t, db, func(ctx context.Context, tx *storage.Tx) error {
		_, err := tx.DeleteOldResults(ctx, t0.Add(3*time.Hour), 10000)
		return err
	})
	check("retention deleted the first three hours")
}

// TestScanDurationsConcurrentCallsBesideAWriter runs scan_durations on
// four goroutines while late results land in closed hours, so that calls
// share, replace and grow what is kept at the same time (the race detector
// watches; a call that read a kept bucket at the wrong mark would fail
// summarize's counts), then checks the answer against the rows.
func TestScanDurationsConcurrentCallsBesideAWriter(t *testing.T) {
	db := storagetest.Open(t, nil)
	rng := rand.New(rand.NewPCG(10, 11))
	var batch []storage.Result
	for i := range 2000 {
		d := time.Duration(math.Exp(rng.Float64()*9)) * time.Millisecond
		batch = append(batch, result(fmt.Sprintf("r%05d", i), fmt.Sprintf("job-%d", i%5), t0.Add(time.Duration(i)*11*time.Second), d))
	}
	applyResults(t, db, batch...)
	since := t0.Add(100 * time.Minute)
	ctx, stop := context.WithCancel(t.Context())
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for ctx.Err() == nil {
				if _, err := db.ScanDurations(ctx, since.Add(time.Duration(g)*time.Minute)); err != nil && ctx.Err() == nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for i := range 30 {
		started := t0.Add(time.Duration(rng.Int64N(int64(6 * time.Hour))))
		applyResults(t, db, result(fmt.Sprintf("late%02d", i), fmt.Sprintf("job-%d", i%5), started, time.Duration(rng.Int64N(int64(time.Hour)))))
	}
	stop()
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if diff := gocmp.Diff(reference(t, db, since), mustScan(t, db, since)); diff != "" {
		t.Fatalf("(-reference +got):\n%s", diff)
	}
}
