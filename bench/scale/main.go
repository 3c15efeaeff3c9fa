// Command scale measures issue 16's targets at fleet scale, each beside a
// baseline measured in the same run, and prints one table:
//
//  1. scan_durations (storage.DB.ScanDurations) over -runs runs in the 24 h
//     window of 200 jobs, timed while a goroutine applies late results and
//     reaps overdue runs through the real write path (-late-rate writes a
//     second, 30 commits a second at the default); checked exact against
//     the row-pulling algorithm of kanade-backend 0.43.56 (seed.Baseline) on
//     the state the writer left, and compared with it at -compare runs.
//  2. GET /api/health/fleet through handlers.New with the real JetStream
//     prober of an embedded NATS server, over -agents agents and -runs runs;
//     the baseline is 0.43.56's two full-scan COUNT queries.
//  3. A per_pc "once" schedule dispatching to every PC of a fleet of each
//     -pcs size, from the KV put to the last command a subscriber counted
//     (each PC exactly once, and once in stream EXEC); the baselines are
//     the same messages published straight through PublishMsgAsync, and
//     as core publishes with one acknowledgement at the end (what it
//     costs the embedded server to store them at all).
//  4. The results projection's rate over ingestkit.RawInsert's into the same
//     database, at -compare and at -runs runs, and how long a result waits
//     while retention deletes -retention-rate runs a day for
//     -retention-time, paced as the worker's housekeeping loop paces it
//     (or, with -retention-rate 0, a backlog of -retention-rows runs at
//     once) (ingest.go).
//
// With -ci it runs at CI's size, 100k runs, in about 25 s of CPU.
//
// The -runs database is built once by seed.BulkCached (multi-row INSERTs,
// indexes after the load, journal off) and kept in the temp dir, keyed by
// schema hash, size and seed version.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bench/benchbus"
	"github.com/kanade-fleet/backend/bench/seed"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/internal/cli"
	"github.com/kanade-fleet/backend/internal/machine"
	"github.com/kanade-fleet/backend/schedule"
	"github.com/kanade-fleet/backend/storage"
)

func main() { cli.Main("scale", run) }

// Issue 16's targets.
const (
	targetScan     = 100 * time.Millisecond
	targetSpeedup  = 50.0
	targetHealth   = 2 * time.Millisecond
	targetDispatch = 200 * time.Millisecond // per 10k PCs
)

const benchToken = "bench-scale-token-0123456789abcdef"

type options struct {
	runs, compare, agents, jobs, reps, healthReps int
	pcs                                           []int
	only                                          map[string]bool
	cpuprofile                                    string
	lateRate                                      int
	// Section 4 (ingest.go).
	ingestN, ingestRounds, retentionRows, ingestRate int
	retentionRate                                    int
	retentionBase, hkTxTime                          time.Duration
	retentionTime, hkPeriod                          time.Duration
	hkRest                                           float64
	scratch                                          string
	retentionControl                                 bool
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// row is one line of the table.
type row struct {
	what, ours, base, target, verdict, note string
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.runs, "runs", 10_000_000, "runs in the scan_durations window (the cached database's size)")
	fs.IntVar(&o.compare, "compare", 1_000_000, "runs of the database where ours is timed against the 0.43.56 algorithm (at most -runs)")
	fs.IntVar(&o.agents, "agents", 100_000, "agents in the database (fleet health)")
	fs.IntVar(&o.jobs, "jobs", 200, "distinct jobs")
	fs.IntVar(&o.reps, "reps", 7, "timed scan_durations repetitions (median reported)")
	fs.IntVar(&o.healthReps, "health-reps", 300, "timed fleet health requests (median reported)")
	fs.IntVar(&o.lateRate, "late-rate", 60, "writes a second of the late writer beside the timed scans at -runs, in rounds of three commits (a run started, reaped and finished, 3 late results); 0: flat out, rounds of 20 runs and 50 late results 20 ms apart")
	pcs := fs.String("pcs", "10000,100000", "fleet sizes of the per_pc dispatch, comma-separated")
	only := fs.String("only", "scan,health,dispatch,ingest", "sections to run, comma-separated")
	fs.IntVar(&o.ingestN, "ingest-n", 100_000, "ingest: results per timed round, for the projector and for the raw insert each")
	fs.IntVar(&o.ingestRounds, "ingest-rounds", 6, "ingest: timed rounds per database size, the two orders alternating (an odd number is rounded up)")
	fs.IntVar(&o.retentionRate, "retention-rate", 1_000_000, "ingest: runs a day that expire while results arrive, deleted by housekeeping rounds every -hk-period, each spread over three quarters of it as the worker's loop does; 0: a backlog of -retention-rows runs, deleted by one round at once")
	fs.DurationVar(&o.retentionTime, "retention-time", 30*time.Minute, "ingest: how long the paced retention run lasts (with -retention-control, half of it in windows where runs expire at -retention-rate)")
	fs.BoolVar(&o.retentionControl, "retention-control", true, "ingest: in the paced run, every other -hk-period is a control window whose round finds nothing new expired, so the waits with retention are compared with waits without it over as long a time, interleaved in the same run")
	fs.DurationVar(&o.hkPeriod, "hk-period", 5*time.Minute, "ingest: the housekeeping period of the paced retention run (projection.Config.Housekeeping's default)")
	fs.IntVar(&o.retentionRows, "retention-rows", 1_000_000, "ingest: with -retention-rate 0, the runs retention deletes at once while results arrive (at most a tenth of -runs)")
	fs.IntVar(&o.ingestRate, "ingest-rate", 100, "ingest: results a second published while retention runs")
	fs.DurationVar(&o.retentionBase, "retention-base", 10*time.Second, "ingest: time at -ingest-rate with no retention (the stall's baseline)")
	fs.Float64Var(&o.hkRest, "hk-rest", 0, "ingest: projection.Config.HousekeepingRest of the retention run (0: its default; -1: no rest, as before it existed)")
	fs.DurationVar(&o.hkTxTime, "hk-tx-time", 0, "ingest: projection.Config.HousekeepingTxTime of the retention run (0: its default; 1h: every transaction 1000 rows, as before it existed)")
	fs.StringVar(&o.scratch, "scratch", "", "ingest: directory of the database copies written into (default the temp dir; a copy is as big as the -runs file)")
	ci := fs.Bool("ci", false, "CI's size, about 25 s of CPU with the seed: -runs 100000 -compare 100000 -agents 10000 -pcs 1000 -reps 3 -health-reps 50 "+
		"-ingest-n 5000 -ingest-rounds 1 -retention-rate 0 -retention-rows 10000 -ingest-rate 100 -retention-base 2s (flags given as well win)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "CPU profile of the timed scan_durations calls at -runs, of the dispatches, and of the retention run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ci {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]string{"runs": "100000", "compare": "100000", "agents": "10000", "pcs": "1000", "reps": "3",
			"health-reps": "50", "ingest-n": "5000", "ingest-rounds": "1", "retention-rate": "0", "retention-rows": "10000", "ingest-rate": "100", "retention-base": "2s"} {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return err
				}
			}
		}
	}
	for _, s := range strings.Split(*pcs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("bad -pcs entry %q", s)
		}
		o.pcs = append(o.pcs, n)
	}
	o.only = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		o.only[strings.TrimSpace(s)] = true
	}
	o.compare = min(o.compare, o.runs)

	began := time.Now()
	var rows []row
	load := []string{uptime()}
	if o.only["scan"] || o.only["health"] {
		start := time.Now()
		path, err := seed.BulkCached(ctx, o.runs, o.jobs, o.agents, logf)
		if err != nil {
			return err
		}
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "database: %d runs, %d agents: %s (%.2f GiB), ready in %v\n", o.runs, o.agents, path,
			float64(st.Size())/(1<<30), time.Since(start).Round(time.Millisecond))
		if o.only["scan"] {
			rs, err := scan(ctx, o, path, out)
			if err != nil {
				return err
			}
			rows = append(rows, rs...)
			load = append(load, uptime())
		}
		if o.only["health"] {
			r, err := health(ctx, o, path)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
			load = append(load, uptime())
		}
	}
	if o.only["dispatch"] {
		for _, n := range o.pcs {
			r, err := dispatch(ctx, o, n)
			if err != nil {
				return fmt.Errorf("dispatch to %d PCs: %w", n, err)
			}
			rows = append(rows, r)
			load = append(load, uptime())
		}
	}
	if o.only["ingest"] {
		r, err := ingest(ctx, o)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
		load = append(load, uptime())
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "measure\tours\tbaseline (same run)\ttarget\tverdict\tnote\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.what, r.ours, r.base, r.target, r.verdict, r.note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nload (uptime) at the start and after each section:\n  %s\n", strings.Join(load, "\n  "))
	fmt.Fprintf(out, "ran in %v\n", time.Since(began).Round(time.Millisecond))
	return nil
}

// uptime is the machine's load line, recorded with every figure.
func uptime() string {
	return time.Now().UTC().Format("15:04:05") + " load average: " + machine.LoadAvg()
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "MISSED"
}

func openBoth(ctx context.Context, path string) (*storage.DB, *sql.DB, error) {
	db, err := storage.Open(ctx, path, storage.Options{Clock: func() time.Time { return seed.Now }})
	if err != nil {
		return nil, nil, err
	}
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, raw, nil
}

// exact runs ours and the baseline once each on the current state and says
// whether they agree, with the baseline's time.
func exact(ctx context.Context, db *storage.DB, raw *sql.DB) (bool, time.Duration, error) {
	ours, err := db.ScanDurations(ctx, seed.Since())
	if err != nil {
		return false, 0, err
	}
	start := time.Now()
	base, err := seed.Baseline(ctx, raw, seed.Since(), 0)
	if err != nil {
		return false, 0, err
	}
	d := time.Since(start)
	if !cmp.Equal(base, ours) {
		diff := cmp.Diff(base, ours)
		if len(diff) > 4000 {
			diff = diff[:4000] + "…"
		}
		fmt.Fprintf(os.Stderr, "scan_durations answers differ (-baseline +ours):\n%s\n", diff)
		return false, d, nil
	}
	return true, d, nil
}

// scan is section 1.
func scan(ctx context.Context, o options, path string, out io.Writer) ([]row, error) {
	var rows []row
	// (a) ours against 0.43.56 at -compare runs, alternating, no writer.
	cpath := path
	if o.compare != o.runs {
		var err error
		if cpath, err = seed.BulkCached(ctx, o.compare, o.jobs, o.agents, logf); err != nil {
			return nil, err
		}
	}
	db, raw, err := openBoth(ctx, cpath)
	if err != nil {
		return nil, err
	}
	ok, _, err := exact(ctx, db, raw)
	if err != nil {
		db.Close()
		raw.Close()
		return nil, err
	}
	var tOurs, tBase []time.Duration
	for range o.reps {
		// Each timed call starts on a collected heap: the row pull leaves
		// hundreds of MB of garbage, whose collection would otherwise land
		// in the next call, whichever it is.
		runtime.GC()
		start := time.Now()
		if _, err = db.ScanDurations(ctx, seed.Since()); err != nil {
			break
		}
		tOurs = append(tOurs, time.Since(start))
		runtime.GC()
		start = time.Now()
		if _, err = seed.Baseline(ctx, raw, seed.Since(), 0); err != nil {
			break
		}
		tBase = append(tBase, time.Since(start))
	}
	db.Close()
	raw.Close()
	if err != nil {
		return nil, err
	}
	mo, mb := median(tOurs), median(tBase)
	speedup := float64(mb) / float64(mo)
	rows = append(rows, row{fmt.Sprintf("scan_durations, %d runs, %d jobs (median of %d)", o.compare, o.jobs, o.reps), ms(mo),
		"0.43.56 row pull " + ms(mb), fmt.Sprintf(">= %.0fx", targetSpeedup), verdict(speedup >= targetSpeedup && ok),
		fmt.Sprintf("%.1fx; exact: %v", speedup, ok)})
	logf("scan at %d: ours %v, baseline %v, exact %v", o.compare, mo, mb, ok)

	// (b) ours at -runs while late results arrive and runs are reaped.
	db, raw, err = openBoth(ctx, path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	defer raw.Close()
	if _, err := db.ScanDurations(ctx, seed.Since()); err != nil { // warm the page cache
		return nil, err
	}
	var writes atomic.Int64
	wctx, stop := context.WithCancel(ctx)
	werr := make(chan error, 1)
	var commits atomic.Int64
	wstart := time.Now()
	go func() { werr <- lateWriter(wctx, db, o.lateRate, &writes, &commits) }()
	var prof *os.File
	if o.cpuprofile != "" {
		if prof, err = os.Create(o.cpuprofile); err != nil {
			stop()
			return nil, err
		}
		if err := pprof.StartCPUProfile(prof); err != nil {
			stop()
			return nil, err
		}
	}
	var tN []time.Duration
	for range o.reps {
		start := time.Now()
		if _, err = db.ScanDurations(ctx, seed.Since()); err != nil {
			break
		}
		tN = append(tN, time.Since(start))
		time.Sleep(50 * time.Millisecond)
	}
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	stop()
	welapsed := time.Since(wstart)
	if werrv := <-werr; werrv != nil && !errors.Is(werrv, context.Canceled) {
		return nil, fmt.Errorf("late writer: %w", werrv)
	}
	if err != nil {
		return nil, err
	}
	ok, tb, err := exact(ctx, db, raw)
	if err != nil {
		return nil, err
	}
	var inWindow int64
	if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM execution_results WHERE finished_at >= ? AND duration_ms IS NOT NULL AND job_id IS NOT NULL`,
		kanade.FormatTime(seed.Since())).Scan(&inWindow); err != nil {
		return nil, err
	}
	mN := median(tN)
	writer := "flat out"
	if o.lateRate > 0 {
		writer = fmt.Sprintf("%d/s", o.lateRate)
	}
	rows = append(rows, row{fmt.Sprintf("scan_durations, %d runs, late writes %s (median of %d)", inWindow, writer, o.reps), ms(mN),
		"0.43.56 row pull " + ms(tb) + " (once)", "< " + ms(targetScan), verdict(mN < targetScan && ok),
		fmt.Sprintf("%.1fx; exact after %d writes (runs started, reaped, late results) in %d commits, %.0f writes/s, %.0f commits/s: %v",
			float64(tb)/float64(mN), writes.Load(), commits.Load(), float64(writes.Load())/welapsed.Seconds(), float64(commits.Load())/welapsed.Seconds(), ok)})
	logf("scan at %d: ours %v (max %v), baseline once %v, exact %v, %d writes in %d commits over %v", inWindow, mN, slices.Max(tN), tb, ok,
		writes.Load(), commits.Load(), welapsed.Round(time.Millisecond))
	return rows, nil
}

// lateWriter is the write load during the timed scans, through the
// projection's and the reaper's real code. Every round, runs start two
// hours before seed.Now with a one-minute timeout, the reaper reaps them
// (they enter the summaries with exit −1), then their real results arrive
// (replacing the reaped entries), and late results of other runs land in
// random hours of the window: three commits. Every write adds rows, so the
// cached file grows by a few thousand runs per benchmark; the exactness
// check runs on the state the writer leaves.
//
// At rate > 0 (writes a second) the rounds are small (a run started,
// reaped and finished, and 3 late results: 6 writes) and paced to the
// rate: at the default 60 a second the writer commits 30 times a second,
// so every scan starts after commits, with the page cache they emptied,
// and the volume is stated (60 late writes a second is 5.2M a day, half
// the runs of a fleet that runs 10M a day arriving after their hour
// closed). At rate 0 it runs flat out as it did before the rate existed
// (20 runs and 50 late results a round, 20 ms apart): a late write into a
// closed hour costs about 2 ms of CPU at 10M runs, so it takes most of a
// core from the scan, and its volume, and what it takes, grows as the
// writer gets cheaper or the machine quieter.
func lateWriter(ctx context.Context, db *storage.DB, rate int, writes, commits *atomic.Int64) error {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 16))
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	zero := int64(0)
	nStarted, nLate, pause := 20, 50, 20*time.Millisecond
	if rate > 0 {
		nStarted, nLate = 1, 3
	}
	began := time.Now()
	commit := func(n int) {
		writes.Add(int64(n))
		commits.Add(1)
	}
	for round := 0; ctx.Err() == nil; round++ {
		started := seed.Now.Add(-2 * time.Hour)
		var st []storage.Started
		var res []storage.Result
		for i := range nStarted {
			id := fmt.Sprintf("late-%s-%d-r%02d", tag, round, i)
			job := fmt.Sprintf("job-%03d", rng.IntN(200))
			pc := fmt.Sprintf("pc-%05d", rng.IntN(seed.Agents))
			st = append(st, storage.Started{EventStarted: kanade.EventStarted{ResultID: id, RequestID: id, PcID: pc, ManifestID: job,
				StartedAt: kanade.Timestamp{Time: started}}, RecordedAt: started, Timeout: time.Minute})
			fin := started.Add(time.Duration(rng.Int64N(int64(time.Hour))))
			res = append(res, storage.Result{ExecResult: kanade.ExecResult{ResultID: id, RequestID: id, PcID: pc, ManifestID: job, ExitCode: &zero,
				StartedAt: kanade.Timestamp{Time: started}, FinishedAt: kanade.Timestamp{Time: fin}}, RecordedAt: seed.Now})
		}
		for i := range nLate {
			id := fmt.Sprintf("late-%s-%d-l%02d", tag, round, i)
			fin := seed.Since().Add(time.Duration(rng.Int64N(int64(24 * time.Hour))))
			d := time.Duration(rng.Int64N(int64(10 * time.Minute)))
			res = append(res, storage.Result{ExecResult: kanade.ExecResult{ResultID: id, RequestID: id, PcID: fmt.Sprintf("pc-%05d", rng.IntN(seed.Agents)),
				ManifestID: fmt.Sprintf("job-%03d", rng.IntN(200)), ExitCode: &zero,
				StartedAt: kanade.Timestamp{Time: fin.Add(-d)}, FinishedAt: kanade.Timestamp{Time: fin}}, RecordedAt: seed.Now})
		}
		if err := db.Update(ctx, func(tx *storage.Tx) error {
			_, err := tx.ApplyStarted(ctx, st)
			return err
		}); err != nil {
			return err
		}
		commit(len(st))
		var reaped int
		if err := db.Update(ctx, func(tx *storage.Tx) error {
			var err error
			reaped, err = tx.Reap(ctx, seed.Now, 100)
			return err
		}); err != nil {
			return err
		}
		commit(reaped)
		if err := db.Update(ctx, func(tx *storage.Tx) error {
			_, err := tx.ApplyResults(ctx, res)
			return err
		}); err != nil {
			return err
		}
		commit(len(res))
		wait := pause
		if rate > 0 {
			// The next round is due when the writes so far (this writer
			// is the only one counting them) meet the rate.
			wait = time.Until(began.Add(time.Duration(float64(writes.Load()) / float64(rate) * float64(time.Second))))
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
	return ctx.Err()
}

// health is section 2.
func health(ctx context.Context, o options, path string) ([]row, error) {
	db, raw, err := openBoth(ctx, path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	defer raw.Close()
	dir, err := os.MkdirTemp("", "kanade-bench-scale-nats-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b, err := benchbus.Start(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	client := b.Client
	prober := bus.Prober{Client: bus.Static(client), Replicas: 1}
	// The age of the probe each answer used (request arrival − probe sent):
	// with the default budget (ProbeMaxAge 0) it must be ≤ 0, a probe sent
	// after the request arrived.
	var (
		agesMu sync.Mutex
		ages   []time.Duration
	)
	h, err := handlers.New(handlers.Config{DB: db, Prober: prober, Clock: func() time.Time { return seed.Now },
		Auth: auth.Config{StaticToken: benchToken}, Logger: slog.New(slog.DiscardHandler),
		ProbeUsed: func(age time.Duration) { agesMu.Lock(); ages = append(ages, age); agesMu.Unlock() }})
	if err != nil {
		return nil, err
	}
	serve := func() (*httptest.ResponseRecorder, time.Duration) {
		req := httptest.NewRequest(http.MethodGet, "/api/health/fleet", nil)
		req.Header.Set("Authorization", "Bearer "+benchToken)
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		return rec, time.Since(start)
	}
	rec, _ := serve()
	var body handlers.FleetHealth
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusOK || body.Agents.Known == nil ||
		*body.Agents.Known != int64(o.agents) || body.RecentResults.Total == nil {
		return nil, fmt.Errorf("fleet health warm-up: %d %s (%v)", rec.Code, rec.Body, err)
	}
	var tReq, tProbe []time.Duration
	agesMu.Lock()
	ages = ages[:0]
	agesMu.Unlock()
	for range o.healthReps {
		rec, d := serve()
		if rec.Code != http.StatusOK {
			return nil, fmt.Errorf("fleet health: %d %s", rec.Code, rec.Body)
		}
		tReq = append(tReq, d)
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		start := time.Now()
		st := prober.Probe(pctx)
		tProbe = append(tProbe, time.Since(start))
		cancel()
		for _, s := range st {
			if !s.Exists {
				return nil, fmt.Errorf("probe: %s %s missing: %v", s.Kind, s.Name, s.Err)
			}
		}
	}
	// 0.43.56: two full-scan COUNTs per request (best of three; of one past
	// 1M runs, where each takes tens of seconds).
	staleCutoff := kanade.FormatTime(seed.Now.Add(-kanade.DefaultStaleThreshold))
	since := kanade.FormatTime(seed.Since())
	best := time.Duration(1<<63 - 1)
	scans := 3
	if o.runs > 1_000_000 {
		scans = 1
	}
	for range scans {
		start := time.Now()
		var known, active, total, failed int64
		if err := raw.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN last_heartbeat >= ? THEN 1 ELSE 0 END), 0) FROM agents`,
			staleCutoff).Scan(&known, &active); err != nil {
			return nil, err
		}
		if err := raw.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN exit_code <> 0 THEN 1 ELSE 0 END), 0)
			FROM execution_results WHERE recorded_at >= ?`, since).Scan(&total, &failed); err != nil {
			return nil, err
		}
		best = min(best, time.Since(start))
	}
	mr, mp := median(tReq), median(tProbe)
	p95 := percentile(tReq, 0.95)
	agesMu.Lock()
	used := slices.Clone(ages)
	agesMu.Unlock()
	slices.Sort(used)
	if len(used) != o.healthReps || used[len(used)-1] > 0 {
		return nil, fmt.Errorf("fleet health: %d probe ages for %d requests, the oldest %v: an answer used a probe sent before its request arrived",
			len(used), o.healthReps, used[len(used)-1])
	}
	// Age is arrival − sent, so "sent after arrival" is its negation.
	after := func(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(-d)/float64(time.Microsecond)) }
	agesNote := fmt.Sprintf("every probe sent after its request arrived: %s (earliest) / %s (median) / %s (latest) after arrival",
		after(used[len(used)-1]), after(used[len(used)/2]), after(used[0]))
	logf("fleet health: median %v p95 %v (probes alone %v), 0.43.56 counts %v; known %d runs24h %d; %s", mr, p95, mp, best,
		*body.Agents.Known, *body.RecentResults.Total, agesNote)
	return []row{{fmt.Sprintf("GET /api/health/fleet, %d agents, %d runs24h (median of %d)", *body.Agents.Known, *body.RecentResults.Total, o.healthReps),
		ms(mr) + " (p95 " + ms(p95) + ")", "0.43.56 COUNT scans " + ms(best), "< " + ms(targetHealth), verdict(mr < targetHealth),
		fmt.Sprintf("%.0fx; one JetStream question for the %d resources, per request (budget 0: %s; probes alone %s)", float64(best)/float64(mr),
			len(kanade.Resources(1)), agesNote, ms(mp))}}, nil
}

// percentile is the q-quantile of ds (nearest rank).
func percentile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// cpuTime is the CPU time this process (the embedded server with it) has
// used: on a 2-core machine shared with other jobs, wall time says more
// about the neighbours than about the code.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// jstream is stream EXEC through the raw library.
func jstream(ctx context.Context, nc *nats.Conn) (jetstream.Stream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return js.Stream(ctx, kanade.StreamExec)
}

// dispatch is section 3: a fresh fleet of n alive PCs, a scheduler running
// on the wall clock, a subscriber counting commands.pc.> per subject.
func dispatch(ctx context.Context, o options, n int) (row, error) {
	dir, err := os.MkdirTemp("", "kanade-bench-scale-dispatch-")
	if err != nil {
		return row{}, err
	}
	defer os.RemoveAll(dir)
	db, err := storage.Open(ctx, filepath.Join(dir, "kanade.db"), storage.Options{})
	if err != nil {
		return row{}, err
	}
	defer db.Close()
	b, err := benchbus.Start(ctx, filepath.Join(dir, "nats"))
	if err != nil {
		return row{}, err
	}
	defer b.Close()
	nc, client := b.Conn, b.Client
	pcs := make([]string, n)
	now := time.Now()
	beats := make([]kanade.Heartbeat, n)
	for i := range pcs {
		pcs[i] = fmt.Sprintf("PC-%06d", i)
		beats[i] = kanade.Heartbeat{PcID: pcs[i], At: kanade.Timestamp{Time: now}, AgentVersion: "0.43.56"}
	}
	for chunk := range slices.Chunk(beats, 5000) {
		if err := db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, chunk) }); err != nil {
			return row{}, err
		}
	}
	job := `{"id":"bench","version":"1","execute":{"shell":"powershell","script":"Get-Date","timeout":"60s"}}`
	if _, err := client.Put(ctx, kanade.BucketJobs, "bench", []byte(job)); err != nil {
		return row{}, err
	}
	sched, err := schedule.New(schedule.Config{DB: db, Bus: client, Tick: 5 * time.Millisecond, Registerer: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return row{}, err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sched.Run(sctx) }()
	defer func() { stop(); <-done }()

	// The subscriber, on a connection of its own.
	lc, err := nats.Connect(b.URL())
	if err != nil {
		return row{}, err
	}
	defer lc.Close()
	var mu sync.Mutex
	seen := make(map[string]int, n)
	var total int
	var last time.Time
	sub, err := lc.Subscribe(kanade.SubjectCommandsPC+">", func(m *nats.Msg) {
		mu.Lock()
		seen[m.Subject]++
		total++
		last = time.Now()
		mu.Unlock()
	})
	if err != nil {
		return row{}, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return row{}, err
	}
	if err := lc.Flush(); err != nil {
		return row{}, err
	}
	for !sched.Loaded() {
		time.Sleep(5 * time.Millisecond)
	}
	var prof *os.File
	if o.cpuprofile != "" {
		if prof, err = os.Create(fmt.Sprintf("%s.dispatch-%d", o.cpuprofile, n)); err != nil {
			return row{}, err
		}
		if err := pprof.StartCPUProfile(prof); err != nil {
			return row{}, err
		}
	}
	cpu0 := cpuTime()
	start := time.Now()
	if _, err := client.Put(ctx, kanade.BucketSchedules, "each", []byte(`{"id":"each","when":{"per_pc":"once"},"job_id":"bench","target":{"all":true}}`)); err != nil {
		return row{}, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		got := total
		mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	cpuOurs := cpuTime() - cpu0
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	// A second of quiet: a duplicate would arrive within it (the scheduler
	// keeps ticking, so a second reconcile would too).
	time.Sleep(time.Second)
	mu.Lock()
	took := last.Sub(start)
	dup, missing := 0, 0
	for _, pc := range pcs {
		switch c := seen[kanade.SubjectCommandsPC+pc]; {
		case c == 0:
			missing++
		case c > 1:
			dup += c - 1
		}
	}
	gotTotal := total
	mu.Unlock()
	// What the stream holds: one message per PC (it keeps the last per
	// subject, so a duplicate would show as a deleted sequence).
	stored := -1
	if st, err := jstream(ctx, nc); err == nil {
		if info, err := st.Info(ctx); err == nil && info.State.NumDeleted == 0 {
			stored = int(info.State.Msgs)
		}
	}
	once := missing == 0 && dup == 0 && gotTotal == n && stored == n
	if err := sub.Unsubscribe(); err != nil { // the baseline is not watched
		return row{}, err
	}

	// Baselines, each into an emptied EXEC (ours wrote to empty subjects
	// too; replacing a subject's message costs the stream more): the same
	// messages with the same headers, (1) PublishMsgAsync, all in flight,
	// one acknowledgement each; (2) core publishes and one acknowledgement
	// at the end, the least it takes to have EXEC store them.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(n+1))
	if err != nil {
		return row{}, err
	}
	// The library's 5 s default is too short for a purge of 100k messages
	// or the storing of 100k queued ones on a loaded machine.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, kanade.StreamExec)
	if err != nil {
		return row{}, err
	}
	m, err := st.GetLastMsgForSubject(ctx, kanade.SubjectCommandsPC+pcs[0])
	if err != nil {
		return row{}, err
	}
	data, header := m.Data, m.Header
	msgs := make([]*nats.Msg, n)
	for i, pc := range pcs {
		h := nats.Header{}
		for k, v := range header {
			h[k] = v
		}
		subject := kanade.SubjectCommandsPC + pc
		h[jetstream.MsgIDHeader] = []string{fmt.Sprintf("raw-%d:%s", i, subject)}
		msgs[i] = &nats.Msg{Subject: subject, Data: data, Header: h}
	}
	if err := st.Purge(ctx); err != nil {
		return row{}, err
	}
	cpu0 = cpuTime()
	bstart := time.Now()
	for _, m := range msgs {
		if _, err := js.PublishMsgAsync(m); err != nil {
			return row{}, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return row{}, errors.New("raw publish: no acknowledgement within 2 minutes")
	}
	base, cpuBase := time.Since(bstart), cpuTime()-cpu0
	if err := st.Purge(ctx); err != nil {
		return row{}, err
	}
	for i, m := range msgs {
		m.Header[jetstream.MsgIDHeader] = []string{fmt.Sprintf("core-%d:%s", i, m.Subject)}
	}
	cpu0 = cpuTime()
	cstart := time.Now()
	for _, m := range msgs[:n-1] {
		if err := nc.PublishMsg(m); err != nil {
			return row{}, err
		}
	}
	ack, err := js.PublishMsg(ctx, msgs[n-1])
	if err != nil {
		return row{}, err
	}
	core, cpuCore := time.Since(cstart), cpuTime()-cpu0
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != uint64(n) || ack.Sequence != info.State.LastSeq {
		return row{}, fmt.Errorf("core publish baseline: %d stored of %d (%v)", info.State.Msgs, n, err)
	}
	// (3) The same without Nats-Msg-Id (wire.md lets it go; the stream's
	// duplicate tracking is part of what it costs to store each).
	if err := st.Purge(ctx); err != nil {
		return row{}, err
	}
	for _, m := range msgs {
		delete(m.Header, jetstream.MsgIDHeader)
	}
	cpu0 = cpuTime()
	nstart := time.Now()
	for _, m := range msgs[:n-1] {
		if err := nc.PublishMsg(m); err != nil {
			return row{}, err
		}
	}
	if _, err := js.PublishMsg(ctx, msgs[n-1]); err != nil {
		return row{}, err
	}
	noID, cpuNoID := time.Since(nstart), cpuTime()-cpu0
	target := targetDispatch * time.Duration((n+9999)/10000)
	logf("per_pc to %d: %v (%d commands, %d missing, %d duplicates, %d stored), raw publish %v, core publish + 1 ack %v (%v without Nats-Msg-Id)",
		n, took, gotTotal, missing, dup, stored, base, core, noID)
	logf("per_pc to %d, CPU time of this process (embedded server included): ours %v, raw %v, core %v, core without Nats-Msg-Id %v",
		n, cpuOurs, cpuBase, cpuCore, cpuNoID)
	return row{fmt.Sprintf("per_pc once dispatch to %d PCs (put -> last command)", n), ms(took) + " (CPU " + ms(cpuOurs) + ")",
		"raw PublishMsgAsync " + ms(base) + " (CPU " + ms(cpuBase) + "); core publish + 1 ack " + ms(core) + " (CPU " + ms(cpuCore) +
			"), without Nats-Msg-Id " + ms(noID) + " (CPU " + ms(cpuNoID) + ")",
		"< " + ms(target), verdict(took < target && once),
		fmt.Sprintf("%.2fx raw, %.2fx core; %d commands seen, %d missing, %d duplicates; %d stored in EXEC", float64(took)/float64(base),
			float64(took)/float64(core), gotTotal, missing, dup, stored)}, nil
}
