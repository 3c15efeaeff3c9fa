// Command telemetry measures the performance samples of observe.md §1
// against baselines measured in the same run, on fresh database files:
//
//   - queries: 1k PCs × one host sample a minute × 7 days (~10M raw
//     samples, seeded with batched inserts through the ingest's own write
//     path, so the rollups are built as ingest builds them) serve the 24 h
//     per-PC series, the 24 h fleet average and the top-10 by CPU over the
//     last hour through the HTTP handler; each is compared with the same
//     answer computed by a GROUP BY over the raw rows (upstream's way);
//   - ingest: the RESULTS projection's rate alone, and while the sample
//     subscriptions take a fleet's host samples at its real rate (the
//     results ratio must stay within 10%); and the samples' own rate
//     through NATS against raw multi-row INSERTs without rollups.
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
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bench/benchbus"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/internal/cli"
	"github.com/kanade-fleet/backend/projection"
	"github.com/kanade-fleet/backend/sim"
	"github.com/kanade-fleet/backend/storage"
	"github.com/prometheus/client_golang/prometheus"
)

func main() { cli.Main("telemetry", run) }

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("telemetry", flag.ContinueOnError)
	pcs := fs.Int("pcs", 1000, "PCs of the query data set")
	days := fs.Int("days", 7, "days of one sample a minute per PC")
	reps := fs.Int("reps", 30, "timed repetitions of each query")
	rawEvery := fs.Int("raw-every", 3, "time the raw baseline once every this many repetitions (a raw fleet scan takes seconds)")
	results := fs.Int("results", 50000, "results for the ingest comparison")
	agents := fs.Int("agents", 10000, "ingest: PCs sending a host sample a minute while results are projected")
	samples := fs.Int("samples", 200000, "ingest: host samples for the sample-rate comparison")
	rounds := fs.Int("rounds", 3, "ingest: runs with samples, each between two runs without")
	skipQueries := fs.Bool("skip-queries", false, "run only the ingest part")
	skipIngest := fs.Bool("skip-ingest", false, "run only the query part")
	keep := fs.String("keep", "", "keep the seeded query database in this folder, and reuse it when it is there (the seed takes minutes)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kanade-bench-telemetry-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if !*skipQueries {
		qdir := dir
		if *keep != "" {
			qdir = *keep
		}
		if err := queries(ctx, out, qdir, *pcs, *days, *reps, *rawEvery); err != nil {
			return err
		}
	}
	if !*skipIngest {
		if err := ingest(ctx, out, dir, *results, *agents, *samples, *rounds); err != nil {
			return err
		}
	}
	return nil
}

// ---- queries ---------------------------------------------------------------

func queries(ctx context.Context, out io.Writer, dir string, pcs, days, reps, rawEvery int) error {
	now := time.Date(2026, 6, 27, 12, 0, 30, 0, time.UTC)
	_, statErr := os.Stat(filepath.Join(dir, "queries.db"))
	seeded := statErr == nil
	db, err := storage.Open(ctx, filepath.Join(dir, "queries.db"), storage.Options{Clock: func() time.Time { return now }})
	if err != nil {
		return err
	}
	defer db.Close()
	fleet := sim.NewFleet(sim.Config{Agents: pcs, Seed: 42})
	start := now.Add(-time.Duration(days) * 24 * time.Hour).Truncate(time.Minute)
	minutes := days * 24 * 60
	if seeded {
		fmt.Fprintf(out, "reusing the seeded database in %s\n\n", dir)
		return measureQueries(ctx, out, dir, db, fleet, pcs, now, reps, rawEvery)
	}
	fmt.Fprintf(out, "seeding %d PCs x %d minutes = %d host samples (batched inserts, rollups computed alongside)...\n", pcs, minutes, pcs*minutes)
	began := time.Now()
	if err := seed(ctx, out, db, fleet, pcs, start, minutes); err != nil {
		return err
	}
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		for i := range pcs {
			if _, err := tx.Exec(ctx, `INSERT INTO agents (pc_id, hostname, last_heartbeat, updated_at) VALUES (?, ?, ?, ?)`,
				fleet.PcID(i), fleet.PcID(i), kanade.FormatTime(now), kanade.FormatTime(now)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(out, "seeded in %v\n\n", time.Since(began).Round(time.Second))
	return measureQueries(ctx, out, dir, db, fleet, pcs, now, reps, rawEvery)
}

// measureQueries times each query through the HTTP handler and its raw
// baseline, alternating the two every repetition so a change of load on
// the machine weighs on both alike.
func measureQueries(ctx context.Context, out io.Writer, dir string, db *storage.DB, fleet *sim.Fleet, pcs int, now time.Time, reps, rawEvery int) error {

	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "queries.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer raw.Close()
	const token = "bench-telemetry-token-0123456789"
	h, err := handlers.New(handlers.Config{DB: db, Clock: func() time.Time { return now }, Auth: auth.Config{StaticToken: token},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	get := func(path string) func() error {
		return func() error {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				return fmt.Errorf("GET %s: %d %s", path, rec.Code, rec.Body.String())
			}
			return nil
		}
	}
	rawQuery := func(q string, args ...any) func() error {
		return func() error {
			rows, err := raw.QueryContext(ctx, q, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
			}
			return rows.Err()
		}
	}
	from := kanade.FormatTime(now.Add(-24 * time.Hour))
	to := kanade.FormatTime(now)
	pc := fleet.PcID(pcs / 2)
	var metricCols []string
	for _, m := range storage.PerfMetrics {
		metricCols = append(metricCols, "AVG("+m+")")
	}
	cases := []struct {
		name, budget string
		budgetD      time.Duration
		ours, base   func() error
	}{
		{"24 h per-PC series (step 5m)", "20 ms", 20 * time.Millisecond,
			get("/api/agents/" + pc + "/perf?from=" + from + "&to=" + to + "&step=5m"),
			rawQuery(`SELECT at_unix / 300 * 300 AS b, `+strings.Join(metricCols, ", ")+` FROM host_perf_samples
				WHERE pc_id = ? AND at >= ? AND at < ? GROUP BY b`, pc, from, to)},
		{"24 h fleet average (step 15m)", "200 ms", 200 * time.Millisecond,
			get("/api/perf/fleet?metric=cpu_pct&agg=avg&from=" + from + "&to=" + to + "&step=15m"),
			rawQuery(`SELECT at_unix / 900 * 900 AS b, AVG(cpu_pct) FROM host_perf_samples WHERE at >= ? AND at < ? GROUP BY b`, from, to)},
		{"top-10 by CPU, last hour", "100 ms", 100 * time.Millisecond,
			get("/api/perf/top?metric=cpu_pct&window=1h&limit=10"),
			rawQuery(`SELECT pc_id, AVG(cpu_pct) AS v FROM host_perf_samples WHERE at > ? AND cpu_pct IS NOT NULL
				GROUP BY pc_id ORDER BY v DESC, pc_id LIMIT 10`, kanade.FormatTime(now.Add(-time.Hour)))},
	}
	fmt.Fprintf(out, "%-32s %12s %12s %12s %12s %12s %9s  %s\n", "query", "ours p50", "ours p95", "ours cpu/op", "raw p50", "raw p95", "raw/ours", "budget (p95)")
	for _, c := range cases {
		o, b, err := timeBoth(c.ours, c.base, reps, max(rawEvery, 1))
		if err != nil {
			return err
		}
		verdict := "ok"
		if o.p95 > c.budgetD {
			verdict = "OVER"
		}
		fmt.Fprintf(out, "%-32s %12v %12v %12v %12v %12v %8.0fx  < %s %s\n", c.name, o.p50.Round(10*time.Microsecond),
			o.p95.Round(10*time.Microsecond), o.cpu.Round(10*time.Microsecond), b.p50.Round(10*time.Microsecond), b.p95.Round(10*time.Microsecond),
			float64(b.p50)/float64(o.p50), c.budget, verdict)
	}
	fmt.Fprintln(out)
	return nil
}

// seed writes the samples PC by PC (the tables' key order, so the inserts
// append), with the secondary indexes dropped meanwhile and built after, and
// the rollups computed here by the rule of storage (count, sum and max of
// the non-NULL values per PC and 5-minute slot, and per fleet minute).
// storage's tests check that rule against the ingest path.
func seed(ctx context.Context, out io.Writer, db *storage.DB, fleet *sim.Fleet, pcs int, start time.Time, minutes int) error {
	type agg struct {
		n    int64
		s, x float64
	}
	type roll [9]agg
	add := func(r *roll, vals [9]*float64) {
		for i, v := range vals {
			if v == nil {
				continue
			}
			if r[i].n == 0 || *v > r[i].x {
				r[i].x = *v
			}
			r[i].n++
			r[i].s += *v
		}
	}
	f := func(v *int64) *float64 {
		if v == nil {
			return nil
		}
		x := float64(*v)
		return &x
	}
	var cols []string
	for _, m := range storage.PerfMetrics {
		cols = append(cols, m+"_n", m+"_s", m+"_x")
	}
	rollArgs := func(args []any, r *roll) []any {
		for i := range r {
			var x any
			if r[i].n > 0 {
				x = r[i].x
			}
			args = append(args, r[i].n, r[i].s, x)
		}
		return args
	}
	ph := func(rows, n int) string {
		one := "(" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
		return strings.TrimSuffix(strings.Repeat(one+",", rows), ",")
	}
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		for _, q := range []string{`DROP INDEX host_perf_samples_by_at`, `DROP INDEX host_perf_5m_by_pc`} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	fleetRoll := map[int64]*roll{}
	began := time.Now()
	for i := range pcs {
		var hs []kanade.HostPerf
		pcRoll := map[int64]*roll{}
		var slots []int64
		for m := range minutes {
			h := fleet.HostPerf(i, start.Add(time.Duration(m)*time.Minute+time.Duration(i%60)*time.Second))
			hs = append(hs, h)
			vals := [9]*float64{h.CPUPct, f(h.MemUsedBytes), f(h.MemTotalBytes), f(h.SwapUsedBytes), f(h.SwapTotalBytes),
				h.DiskReadBytesPerSec, h.DiskWrittenBytesPerSec, h.NetRxBytesPerSec, h.NetTxBytesPerSec}
			u := h.At.Unix()
			ps, fs := u-u%storage.PCSlot, u-u%storage.FleetSlot
			if pcRoll[ps] == nil {
				pcRoll[ps] = &roll{}
				slots = append(slots, ps)
			}
			add(pcRoll[ps], vals)
			if fleetRoll[fs] == nil {
				fleetRoll[fs] = &roll{}
			}
			add(fleetRoll[fs], vals)
		}
		err := db.Update(ctx, func(tx *storage.Tx) error {
			for len(hs) > 0 {
				n := min(len(hs), 2000)
				args := make([]any, 0, n*13)
				for _, h := range hs[:n] {
					args = append(args, h.PcID, kanade.FormatTime(h.At.Time), h.At.Unix(), h.CPUPct, h.CPUCount, h.MemUsedBytes,
						h.MemTotalBytes, h.SwapUsedBytes, h.SwapTotalBytes, h.DiskReadBytesPerSec, h.DiskWrittenBytesPerSec,
						h.NetRxBytesPerSec, h.NetTxBytesPerSec)
				}
				hs = hs[n:]
				if _, err := tx.Exec(ctx, `INSERT INTO host_perf_samples (pc_id, at, at_unix, cpu_pct, cpu_count,
					mem_used_bytes, mem_total_bytes, swap_used_bytes, swap_total_bytes, disk_read_bytes_per_sec,
					disk_written_bytes_per_sec, net_rx_bytes_per_sec, net_tx_bytes_per_sec) VALUES `+ph(n, 13), args...); err != nil {
					return err
				}
			}
			for len(slots) > 0 {
				n := min(len(slots), 1000)
				args := make([]any, 0, n*29)
				for _, sl := range slots[:n] {
					args = rollArgs(append(args, fleet.PcID(i), sl), pcRoll[sl])
				}
				slots = slots[n:]
				if _, err := tx.Exec(ctx, `INSERT INTO host_perf_5m (pc_id, slot, `+strings.Join(cols, ", ")+`) VALUES `+ph(n, 29), args...); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if i%100 == 99 {
			fmt.Fprintf(out, "  %d PCs seeded (%v)\n", i+1, time.Since(began).Round(time.Second))
		}
	}
	return db.Update(ctx, func(tx *storage.Tx) error {
		keys := make([]int64, 0, len(fleetRoll))
		for k := range fleetRoll {
			keys = append(keys, k)
		}
		for len(keys) > 0 {
			n := min(len(keys), 1000)
			args := make([]any, 0, n*28)
			for _, k := range keys[:n] {
				args = rollArgs(append(args, k), fleetRoll[k])
			}
			keys = keys[n:]
			if _, err := tx.Exec(ctx, `INSERT INTO host_perf_fleet_1m (slot, `+strings.Join(cols, ", ")+`) VALUES `+ph(n, 28), args...); err != nil {
				return err
			}
		}
		fmt.Fprintf(out, "  building the indexes (%v)\n", time.Since(began).Round(time.Second))
		for _, q := range []string{`CREATE INDEX host_perf_samples_by_at ON host_perf_samples (at)`,
			`CREATE INDEX host_perf_5m_by_pc ON host_perf_5m (pc_id, slot)`} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

// timing is a query's wall-clock p50 and p95, and the CPU time this
// process spent per run on average (user + system): on a machine shared
// with other work the wall clock includes the waits for a core, the CPU
// time does not.
type timing struct{ p50, p95, cpu time.Duration }

// cpuTime is the CPU time this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timeBoth runs ours and base alternately, ours n times and base every
// `every` (a raw scan of the fleet takes seconds).
func timeBoth(ours, base func() error, n, every int) (timing, timing, error) {
	if err := ours(); err != nil {
		return timing{}, timing{}, err
	}
	if err := base(); err != nil {
		return timing{}, timing{}, err
	}
	var o, b []time.Duration
	var cpu time.Duration
	for i := range n {
		s, c := time.Now(), cpuTime()
		if err := ours(); err != nil {
			return timing{}, timing{}, err
		}
		o = append(o, time.Since(s))
		cpu += cpuTime() - c
		if i%every == 0 {
			s = time.Now()
			if err := base(); err != nil {
				return timing{}, timing{}, err
			}
			b = append(b, time.Since(s))
		}
	}
	to := percentiles(o)
	to.cpu = cpu / time.Duration(n)
	return to, percentiles(b), nil
}

func percentiles(ds []time.Duration) timing {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return timing{p50: ds[len(ds)/2], p95: ds[min(len(ds)-1, len(ds)*95/100)]}
}

// ---- ingest ----------------------------------------------------------------

func ingest(ctx context.Context, out io.Writer, dir string, results, agents, samples, rounds int) error {
	b, err := benchbus.Start(ctx, filepath.Join(dir, "nats"))
	if err != nil {
		return err
	}
	defer b.Close()
	nc, js, client := b.Conn, b.JS, b.Client
	fleet := sim.NewFleet(sim.Config{Agents: max(agents, 10000), Seed: 42, LateRate: -1, DuplicateRate: -1})
	jobs := fleet.Config().Jobs
	base := time.Now().Add(-24 * time.Hour)
	fmt.Fprintf(out, "publishing %d results to RESULTS (untimed)...\n", results)
	for i := range results {
		r := fleet.Run(sim.RunSpec{Agent: i % 10000, Job: jobs[i%len(jobs)], StartedAt: base.Add(time.Duration(i) * 400 * time.Millisecond)}).Result
		data, _ := json.Marshal(r)
		if _, err := js.PublishAsync("results."+r.RequestID, data); err != nil {
			return err
		}
		if i%5000 == 4999 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				return errors.New("publish stalled")
			}
		}
	}
	<-js.PublishAsyncComplete()
	st, err := js.Stream(ctx, kanade.StreamResults)
	if err != nil {
		return err
	}
	last := st.CachedInfo().State.LastSeq

	// One projector run over RESULTS on a fresh database; with rate > 0 a
	// publisher sends host samples of `agents` PCs at their real rate
	// (one a minute each) meanwhile. It returns the results' rate and the
	// samples sent and stored.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	round := 0
	project := func(withSamples bool) (rate float64, sent, stored int64, err error) {
		round++
		db, err := storage.Open(ctx, filepath.Join(dir, fmt.Sprintf("ingest%d.db", round)), storage.Options{})
		if err != nil {
			return 0, 0, 0, err
		}
		defer db.Close()
		w, err := projection.New(projection.Config{DB: db, Bus: client, Logger: quiet, Housekeeping: -1, Registerer: prometheus.NewRegistry()})
		if err != nil {
			return 0, 0, 0, err
		}
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); w.Run(wctx) }()
		time.Sleep(200 * time.Millisecond) // the subscriptions are up
		pubDone := make(chan struct{})
		var published atomic.Int64
		start := time.Now()
		if withSamples {
			go func() {
				defer close(pubDone)
				// agents per minute, spread evenly: one tick every 10 ms.
				per := max(agents*10/60000, 1)
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				i := 0
				for {
					select {
					case <-wctx.Done():
						return
					case t := <-tick.C:
						for range per {
							m := sim.HostPerfMessage(fleet.HostPerf(i%agents, t.Add(time.Duration(i/agents)*time.Minute)))
							if nc.Publish(m.Subject, m.Data) == nil {
								published.Add(1)
							}
							i++
						}
					}
				}
			}()
		} else {
			close(pubDone)
		}
		for {
			off, err := db.Offset(ctx, projection.ConsumerResults)
			if err != nil {
				cancel()
				return 0, 0, 0, err
			}
			if off.Seq >= last {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(start)
		cancel()
		<-pubDone
		<-done // the shutdown flush writes what was received
		var n int64
		if err := rawCount(dir, round, &n); err != nil {
			return 0, 0, 0, err
		}
		return float64(results) / took.Seconds(), published.Load(), n, nil
	}
	// Alone and with samples alternate, starting and ending alone, and
	// each run with samples is compared with the mean of the runs either
	// side of it: the machine's load drifts over minutes, and one pair of
	// runs differed by 10% at load 15.
	alone := make([]float64, 0, rounds+1)
	with := make([]float64, 0, rounds)
	var sent, stored int64
	for i := range 2*rounds + 1 {
		rate, s, n, err := project(i%2 == 1)
		if err != nil {
			return err
		}
		if i%2 == 1 {
			with = append(with, rate)
			sent, stored = sent+s, stored+n
		} else {
			alone = append(alone, rate)
		}
	}
	ratios := make([]float64, rounds)
	for i := range with {
		ratios[i] = with[i] / ((alone[i] + alone[i+1]) / 2)
	}
	fmt.Fprintf(out, "results projection alone:                  %s rows/s\n", joined("%.0f", alone))
	fmt.Fprintf(out, "results projection with %6d PCs' samples: %s rows/s (%d samples sent, %d stored)\n", agents, joined("%.0f", with), sent, stored)
	fmt.Fprintf(out, "with / alone (each against the runs either side) = %s, median %.3f  (goal >= 0.90)\n\n", joined("%.3f", ratios), median(ratios))

	// The samples' own rate: as fast as NATS delivers them, against raw
	// multi-row INSERTs of the same rows without rollups.
	round++
	db, err := storage.Open(ctx, filepath.Join(dir, fmt.Sprintf("ingest%d.db", round)), storage.Options{})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	w, err := projection.New(projection.Config{DB: db, Bus: client, Logger: quiet, Housekeeping: -1, Registerer: reg})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(wctx) }()
	time.Sleep(200 * time.Millisecond)
	msgs := make([]sim.Message, samples)
	t0 := time.Now().Truncate(time.Minute).Add(-24 * time.Hour)
	hs := make([]kanade.HostPerf, samples)
	for i := range msgs {
		hs[i] = fleet.HostPerf(i%1000, t0.Add(time.Duration(i/1000)*time.Minute))
		msgs[i] = sim.HostPerfMessage(hs[i])
	}
	start := time.Now()
	for _, m := range msgs {
		if err := nc.Publish(m.Subject, m.Data); err != nil {
			cancel()
			return err
		}
	}
	if err := nc.Flush(); err != nil {
		cancel()
		return err
	}
	var storedN int64
	for {
		if err := rawCount(dir, round, &storedN); err != nil {
			cancel()
			return err
		}
		if storedN >= int64(samples) || time.Since(start) > 5*time.Minute {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	oursD := time.Since(start)
	cancel()
	<-done
	db.Close()
	round++
	rawDB, err := sql.Open("sqlite", "file:"+filepath.Join(dir, fmt.Sprintf("ingest%d.db", round))+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return err
	}
	defer rawDB.Close()
	dbr, err := storage.Open(ctx, filepath.Join(dir, fmt.Sprintf("ingest%d.db", round)), storage.Options{}) // the schema
	if err != nil {
		return err
	}
	dbr.Close()
	rawStart := time.Now()
	if err := rawInsert(ctx, rawDB, hs); err != nil {
		return err
	}
	rawD := time.Since(rawStart)
	oursRate := float64(storedN) / oursD.Seconds()
	rawRate := float64(samples) / rawD.Seconds()
	fmt.Fprintf(out, "host samples via NATS (rows + rollups):   %8d rows in %8v = %9.0f rows/s\n", storedN, oursD.Round(time.Millisecond), oursRate)
	fmt.Fprintf(out, "(a) raw multi-row INSERT, no rollups:     %8d rows in %8v = %9.0f rows/s\n", samples, rawD.Round(time.Millisecond), rawRate)
	fmt.Fprintf(out, "ours / (a) = %.2f; a fleet of 1k PCs sends 17 samples/s, so the headroom is %.0fx\n", oursRate/rawRate, oursRate/(1000.0/60))
	return nil
}

// joined prints figures side by side in format f.
func joined(f string, xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(f, x)
	}
	return strings.Join(parts, ", ")
}

// median is the middle value (the mean of the two middle ones for an
// even count).
func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rawCount(dir string, round int, n *int64) error {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, fmt.Sprintf("ingest%d.db", round))+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	return db.QueryRow(`SELECT COUNT(*) FROM host_perf_samples`).Scan(n)
}

func rawInsert(ctx context.Context, db *sql.DB, hs []kanade.HostPerf) error {
	const cols = 13
	for len(hs) > 0 {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for range 10 {
			n := min(len(hs), 2000)
			if n == 0 {
				break
			}
			args := make([]any, 0, n*cols)
			for _, h := range hs[:n] {
				args = append(args, h.PcID, kanade.FormatTime(h.At.Time), h.At.Unix(), h.CPUPct, h.CPUCount, h.MemUsedBytes,
					h.MemTotalBytes, h.SwapUsedBytes, h.SwapTotalBytes, h.DiskReadBytesPerSec, h.DiskWrittenBytesPerSec,
					h.NetRxBytesPerSec, h.NetTxBytesPerSec)
			}
			hs = hs[n:]
			one := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
			if _, err := tx.ExecContext(ctx, `INSERT INTO host_perf_samples (pc_id, at, at_unix, cpu_pct, cpu_count,
				mem_used_bytes, mem_total_bytes, swap_used_bytes, swap_total_bytes, disk_read_bytes_per_sec,
				disk_written_bytes_per_sec, net_rx_bytes_per_sec, net_tx_bytes_per_sec) VALUES `+
				strings.TrimSuffix(strings.Repeat(one+",", n), ","), args...); err != nil {
				tx.Rollback()
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}
