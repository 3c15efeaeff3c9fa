// Command ingest measures the projector end to end against its baselines, in
// one run, on the same schema with fresh database files:
//
//	ours: N results published to RESULTS, then the projector timed from start
//	      until all N rows (with indexes, counters and summaries) are committed;
//	(a)   the same rows as raw multi-row INSERTs in big transactions;
//	(b)   one fetch, one transaction and one ack per message.
//
// With -heartbeats it instead runs the heartbeat load check: 100k agents
// beating every 30 s at the real rate, then a 10x burst, reporting drops and
// the lag until the agents table shows a beat.
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
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bench/benchbus"
	"github.com/kanade-fleet/backend/bench/ingestkit"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/internal/cli"
	"github.com/kanade-fleet/backend/internal/machine"
	"github.com/kanade-fleet/backend/projection"
	"github.com/kanade-fleet/backend/sim"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

func main() { cli.Main("ingest", run) }

// run parses the flags and runs one of the two measurements, writing the
// report to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	n := fs.Int("n", 200000, "results to ingest")
	subset := fs.Int("b-subset", 20000, "results for baseline (b) (one tx per message) when smaller than -n")
	batch := fs.Int("batch", 1000, "projector batch size")
	hb := fs.Bool("heartbeats", false, "run the heartbeat load check instead")
	agents := fs.Int("agents", 100000, "heartbeat mode: simulated agents")
	steady := fs.Duration("steady", 60*time.Second, "heartbeat mode: time at the normal rate")
	burst := fs.Duration("burst", 5*time.Second, "heartbeat mode: time at 10x the rate")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the projector run here (with -inventory: of its run)")
	inventory := fs.Float64("inventory", 0, "instead compare the ratio ours/(a) of a stream where this share of the results are inventory reports "+
		"(the simulator's job, ~150 apps; the fleet's previous reports projected untimed first) with the ratio of the same stream without them")
	rounds := fs.Int("rounds", 3, "with -inventory: runs with inventory, each between two runs without")
	seedCache := fs.String("seed-cache", "", "with -inventory: keep the seeded inventory database (over a gigabyte) in this directory and reuse it the same day")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kanade-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := benchbus.Start(ctx, filepath.Join(dir, "nats"))
	if err != nil {
		return err
	}
	defer b.Close()
	client, js := b.Client, b.JS
	if *hb {
		return heartbeats(ctx, out, dir, b.URL(), client, js, *agents, *steady, *burst)
	}
	if *inventory > 0 {
		return compareInventory(ctx, out, dir, client, js, *n, *batch, *inventory, max(1, *rounds), *cpuprofile, *seedCache)
	}
	return ingest(ctx, out, dir, client, js, *n, *subset, *batch, *cpuprofile)
}

func openDB(ctx context.Context, dir, name string) (*storage.DB, error) {
	return storage.Open(ctx, filepath.Join(dir, name+".db"), storage.Options{})
}

func ingest(ctx context.Context, out io.Writer, dir string, client *bus.Client, js jetstream.JetStream, n, subset, batchSize int, cpuprofile string) error {
	fleet := sim.NewFleet(sim.Config{Agents: 10000, Seed: 42, LateRate: -1, DuplicateRate: -1})
	jobs := fleet.Config().Jobs
	base := time.Now().Add(-24 * time.Hour)
	fmt.Fprintf(out, "publishing %d results to RESULTS (untimed)...\n", n)
	rs := make([]kanade.ExecResult, n)
	for i := range rs {
		rs[i] = fleet.Run(sim.RunSpec{Agent: i % 10000, Job: jobs[i%len(jobs)], StartedAt: base.Add(time.Duration(i) * 400 * time.Millisecond)}).Result
	}
	results, last, err := publish(ctx, out, js, rs)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "load before ours (1, 5, 15 min): %s\n", machine.LoadAvg())

	// Ours.
	ours, err := runOurs(ctx, dir, "ours", client, batchSize, n, last, cpuprofile, nil)
	if err != nil {
		return err
	}
	oursRate := float64(n) / ours.Seconds()
	fmt.Fprintf(out, "ours (projector, batch %d):   %8d rows in %8v = %9.0f rows/s\n", batchSize, n, ours.Round(time.Millisecond), oursRate)

	// (a) raw batched INSERT.
	dbA, err := openDB(ctx, dir, "raw")
	if err != nil {
		return err
	}
	startA := time.Now()
	if err := ingestkit.RawInsert(ctx, dbA, results); err != nil {
		return err
	}
	rawDur := time.Since(startA)
	dbA.Close()
	rawRate := float64(n) / rawDur.Seconds()
	fmt.Fprintf(out, "(a) raw multi-row INSERT:       %8d rows in %8v = %9.0f rows/s\n", n, rawDur.Round(time.Millisecond), rawRate)

	// (b) one transaction and one ack per message.
	m := min(n, subset)
	dbB, err := openDB(ctx, dir, "onebyone")
	if err != nil {
		return err
	}
	durB, err := oneByOne(ctx, js, dbB, m)
	if err != nil {
		return err
	}
	dbB.Close()
	rateB := float64(m) / durB.Seconds()
	note := ""
	if m < n {
		note = fmt.Sprintf("  (measured on the first %d of %d messages: at this rate all %d would take %v)", m, n, n,
			time.Duration(float64(n)/rateB*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintf(out, "(b) one tx + one ack per msg:   %8d rows in %8v = %9.0f rows/s%s\n\n", m, durB.Round(time.Millisecond), rateB, note)
	fmt.Fprintf(out, "ours / (a) = %.2f  (goal >= 0.70)\n", oursRate/rawRate)
	fmt.Fprintf(out, "ours / (b) = %.1fx (goal >= 10x)\n", oursRate/rateB)
	return nil
}

// publish publishes rs to RESULTS (untimed) and returns them as stored
// results with the stream's last sequence.
func publish(ctx context.Context, out io.Writer, js jetstream.JetStream, rs []kanade.ExecResult) ([]storage.Result, uint64, error) {
	pubStart := time.Now()
	results, last, err := ingestkit.Publish(ctx, js, len(rs), func(i int) kanade.ExecResult { return rs[i] })
	if err != nil {
		return nil, 0, err
	}
	fmt.Fprintf(out, "published in %v (stream last seq %d)\n\n", time.Since(pubStart).Round(time.Millisecond), last)
	return results, last, nil
}

// runOurs runs the projector on a fresh database name until it has applied
// the stream up to last, and checks that n finished runs are there. seed,
// when set, writes to the database first (untimed).
func runOurs(ctx context.Context, dir, name string, client *bus.Client, batchSize, n int, last uint64, cpuprofile string,
	seed func(*storage.DB) error) (time.Duration, error) {
	db, err := openDB(ctx, dir, name)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if seed != nil {
		if err := seed(db); err != nil {
			return 0, err
		}
	}
	before, err := count(dir, name, `SELECT COUNT(*) FROM execution_results WHERE finished_at IS NOT NULL`)
	if err != nil {
		return 0, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	w, err := projection.New(projection.Config{DB: db, Bus: client, Logger: quiet, BatchSize: batchSize, Housekeeping: -1,
		Registerer: prometheus.NewRegistry()})
	if err != nil {
		return 0, err
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return 0, err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	done := make(chan struct{})
	go func() { defer close(done); w.Run(wctx) }()
	for {
		off, err := db.Offset(ctx, projection.ConsumerResults)
		if err != nil {
			return 0, err
		}
		if off.Seq >= last {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ours := time.Since(start)
	cancel()
	<-done
	rows, err := count(dir, name, `SELECT COUNT(*) FROM execution_results WHERE finished_at IS NOT NULL`)
	if err != nil {
		return 0, err
	}
	var b, r int
	fmt.Sscan(before, &b)
	fmt.Sscan(rows, &r)
	if r-b != n {
		return 0, fmt.Errorf("%s: %d rows committed, want %d", name, r-b, n)
	}
	return ours, nil
}

// compareInventory measures the results projection with and without
// inventory reports, interleaved: 2*rounds+1 runs, without inventory
// first, last and between every two runs with it, because the machine's
// load drifts over minutes and one pair of runs is not a measurement.
//
// Both streams hold the same n results of the same fleet and jobs, except
// that in the second one result in 1/share is replaced by a run of the
// simulator's inventory job (~150 apps) of the same PC. Each run purges
// RESULTS and publishes its stream (untimed), then times ours (the
// projector, from start until the offset reaches the stream's end) and
// baseline (a), raw multi-row INSERTs of the same rows into a fresh
// database (no projection of anything, so the reports cost it only their
// stdout bytes).
//
// "Today's ratio" is ours/(a) of the runs without inventory, the
// figure `bench/ingest` without -inventory prints, measured here in the
// same process between the runs with inventory. Ratios are of medians:
// median (a) time / median ours time of each kind. The runs with
// inventory start from a database where every PC's previous report (a
// day earlier) was projected, untimed, so they measure the steady state:
// reports that change a few apps, or none.
func compareInventory(ctx context.Context, out io.Writer, dir string, client *bus.Client, js jetstream.JetStream, n, batchSize int,
	share float64, rounds int, cpuprofile, seedCache string) error {
	const agents = 10000
	fleet := sim.NewFleet(sim.Config{Agents: agents, Seed: 42, LateRate: -1, DuplicateRate: -1})
	jobs := fleet.Config().Jobs
	if _, err := client.Put(ctx, kanade.BucketJobs, sim.InventoryJob.ID, sim.InventoryManifest()); err != nil {
		return err
	}
	base := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
	every := max(1, int(math.Round(1/share)))
	plain := make([]kanade.ExecResult, n)
	withInv := make([]kanade.ExecResult, n)
	reports := 0
	for i := range n {
		at := base.Add(time.Duration(i) * 400 * time.Millisecond)
		plain[i] = fleet.Run(sim.RunSpec{Agent: i % agents, Job: jobs[i%len(jobs)], StartedAt: at}).Result
		withInv[i] = plain[i]
		if i%every == every-1 {
			withInv[i] = fleet.Run(sim.RunSpec{Agent: i % agents, Job: sim.InventoryJob, StartedAt: at}).Result
			reports++
		}
	}
	fmt.Fprintf(out, "%d results per run; with inventory, one in %d (%d) is an inventory report (%s, ~150 apps) of the same PC\n",
		n, every, reports, sim.InventoryJob.ID)

	// The fleet's inventory as it was a day earlier, projected once
	// (untimed) into a database each run with inventory starts from a
	// copy of; with -seed-cache kept there and reused (it takes a quarter
	// of an hour on a busy machine), keyed by the schema and the day base
	// falls on.
	seedPath := filepath.Join(dir, "inventory-seed.db")
	if seedCache != "" {
		// Keyed by the schema too: a seed projected by older code lacks
		// what the projector keeps beside the rows (element digests).
		seedPath = filepath.Join(seedCache, fmt.Sprintf("kanade-bench-ingest-seed-%s-%s-%d.db", storage.SchemaHash(), base.Format("20060102"), agents))
	}
	if _, err := os.Stat(seedPath); err == nil {
		fmt.Fprintf(out, "reusing the seeded inventory of %d PCs in %s\n\n", agents, seedPath)
	} else if err := seedInventory(ctx, out, seedPath, fleet, agents, base); err != nil {
		return err
	}

	type run struct {
		ours, raw time.Duration
		load      string
	}
	var without, with []run
	var derived, events string
	profiled := false
	fmt.Fprintf(out, "%-4s %-17s %10s %10s %9s  %s\n", "run", "stream", "ours", "(a)", "ours/(a)", "load (1, 5, 15 min)")
	for i := range 2*rounds + 1 {
		inventory := i%2 == 1
		rs, kind, name := plain, "without inventory", fmt.Sprintf("ours-%d", i)
		if inventory {
			rs, kind = withInv, "with inventory"
			if err := copyDB(seedPath, filepath.Join(dir, name+".db")); err != nil {
				return err
			}
		}
		stream, err := js.Stream(ctx, kanade.StreamResults)
		if err != nil {
			return err
		}
		if err := stream.Purge(ctx); err != nil {
			return err
		}
		results, last, err := publish(ctx, io.Discard, js, rs)
		if err != nil {
			return err
		}
		prof := ""
		if inventory && !profiled {
			prof, profiled = cpuprofile, true
		}
		load := machine.LoadAvg()
		ours, err := runOurs(ctx, dir, name, client, batchSize, n, last, prof, nil)
		if err != nil {
			return err
		}
		if inventory {
			derived, _ = count(dir, name, `SELECT COUNT(*) FROM `+sim.InventoryTable)
			events, _ = count(dir, name, `SELECT COUNT(*) FROM inventory_history WHERE observed_at > '`+kanade.FormatTime(base.Add(-time.Hour))+`'`)
		}
		dbA, err := openDB(ctx, dir, fmt.Sprintf("raw-%d", i))
		if err != nil {
			return err
		}
		startA := time.Now()
		if err := ingestkit.RawInsert(ctx, dbA, results); err != nil {
			return err
		}
		raw := time.Since(startA)
		dbA.Close()
		removeDB(dir, name)
		removeDB(dir, fmt.Sprintf("raw-%d", i))
		r := run{ours, raw, load}
		if inventory {
			with = append(with, r)
		} else {
			without = append(without, r)
		}
		fmt.Fprintf(out, "%-4d %-17s %10v %10v %9.3f  %s\n", i+1, kind, ours.Round(time.Millisecond), raw.Round(time.Millisecond),
			raw.Seconds()/ours.Seconds(), load)
	}
	med := func(runs []run, f func(run) time.Duration) time.Duration {
		ds := make([]time.Duration, len(runs))
		for i, r := range runs {
			ds[i] = f(r)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		if len(ds)%2 == 0 {
			return (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
		}
		return ds[len(ds)/2]
	}
	ours := func(r run) time.Duration { return r.ours }
	raw := func(r run) time.Duration { return r.raw }
	oursWithout, rawWithout := med(without, ours), med(without, raw)
	oursWith, rawWith := med(with, ours), med(with, raw)
	today := rawWithout.Seconds() / oursWithout.Seconds()
	ratio := rawWith.Seconds() / oursWith.Seconds()
	fmt.Fprintf(out, "\nmedians of %d runs without inventory: ours %v, (a) %v: ours/(a) = %.3f (today's ratio)\n",
		len(without), oursWithout.Round(time.Millisecond), rawWithout.Round(time.Millisecond), today)
	fmt.Fprintf(out, "medians of %d runs with inventory:    ours %v, (a) %v: ours/(a) = %.3f  (%d reports; last run: %s derived rows, %s history events)\n",
		len(with), oursWith.Round(time.Millisecond), rawWith.Round(time.Millisecond), ratio, reports, derived, events)
	// Each run with inventory against the mean of the runs either side
	// of it, a check on the ratio of medians under drifting load.
	paired := make([]float64, len(with))
	for i, w := range with {
		a, b := without[i], without[i+1]
		paired[i] = (w.raw.Seconds() / w.ours.Seconds()) / ((a.raw.Seconds()/a.ours.Seconds() + b.raw.Seconds()/b.ours.Seconds()) / 2)
	}
	sort.Float64s(paired)
	fmt.Fprintf(out, "ratio with / ratio without = %.3f: %+.1f%% (goal: within 10%%); each run against the runs either side: %s\n",
		ratio/today, 100*(ratio/today-1), joined("%+.1f%%", paired, -1))
	fmt.Fprintf(out, "ours with inventory / ours without = %.3f: %+.1f%% (%.3f ms more per inventory report)\n",
		oursWith.Seconds()/oursWithout.Seconds(), 100*(oursWith.Seconds()/oursWithout.Seconds()-1),
		float64((oursWith-oursWithout).Microseconds())/1000/float64(reports))
	return nil
}

// seedInventory projects each PC's report of a day before base into a
// new database at path (written under a temporary name, so an interrupted
// seed is never reused).
func seedInventory(ctx context.Context, out io.Writer, path string, fleet *sim.Fleet, agents int, base time.Time) error {
	hint := sim.InventoryHint()
	inv := sim.NewInventory(42, 150, 3000)
	tmp := path + ".tmp"
	removeDBFile(tmp)
	db, err := storage.Open(ctx, tmp, storage.Options{})
	if err != nil {
		return err
	}
	start := time.Now()
	for i := 0; i < agents; i += 100 {
		var rs []storage.Result
		for j := i; j < min(i+100, agents); j++ {
			at := base.Add(-24 * time.Hour)
			stdout := inv.Report(fleet.PcID(j), j, at)
			exit := int64(0)
			rs = append(rs, storage.Result{ExecResult: kanade.ExecResult{ResultID: fmt.Sprintf("seed-%d", j), RequestID: fmt.Sprintf("seed-%d", j),
				PcID: fleet.PcID(j), ExitCode: &exit, Stdout: stdout, StartedAt: kanade.Timestamp{Time: at}, FinishedAt: kanade.Timestamp{Time: at},
				ManifestID: sim.InventoryJob.ID}, RecordedAt: at, Inventory: storage.PrepareInventory(hint, stdout)})
		}
		if err := db.Update(ctx, func(tx *storage.Tx) error { _, err := tx.ApplyResults(ctx, rs); return err }); err != nil {
			db.Close()
			return err
		}
	}
	if err := db.Close(); err != nil {
		return err
	}
	for _, suffix := range []string{"", "-wal"} {
		if err := os.Rename(tmp+suffix, path+suffix); err != nil && suffix == "" {
			return err
		}
	}
	fmt.Fprintf(out, "seeded the inventory of %d PCs (untimed, %v)\n\n", agents, time.Since(start).Round(time.Second))
	return nil
}

// joined prints xs side by side in format f, each first scaled to a
// percentage change when scale is -1.
func joined(f string, xs []float64, scale float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		if scale == -1 {
			x = 100 * (x - 1)
		}
		parts[i] = fmt.Sprintf(f, x)
	}
	return strings.Join(parts, ", ")
}

// copyDB copies a closed SQLite database (and its WAL, if one is left),
// streamed: the seeded inventory database is over a gigabyte.
func copyDB(from, to string) error {
	for _, suffix := range []string{"", "-wal"} {
		src, err := os.Open(from + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			return err
		}
		dst, err := os.Create(to + suffix)
		if err != nil {
			src.Close()
			return err
		}
		_, err = io.Copy(dst, src)
		src.Close()
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", from+suffix, err)
		}
	}
	return nil
}

// removeDB deletes a bench database's files (each run's hold hundreds of
// megabytes of stdout).
func removeDB(dir, name string) { removeDBFile(filepath.Join(dir, name+".db")) }

func removeDBFile(path string) {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
}

// oneByOne is baseline (b): fetch one message, apply it in its own
// transaction through the same write path, ack it.
func oneByOne(ctx context.Context, js jetstream.JetStream, db *storage.DB, n int) (time.Duration, error) {
	const name = "bench-one-by-one"
	cons, err := js.CreateOrUpdateConsumer(ctx, kanade.StreamResults, jetstream.ConsumerConfig{
		Durable: name, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	for i := 0; i < n; {
		mb, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return 0, err
		}
		for msg := range mb.Messages() {
			md, err := msg.Metadata()
			if err != nil {
				return 0, err
			}
			var r kanade.ExecResult
			if err := json.Unmarshal(msg.Data(), &r); err != nil {
				return 0, err
			}
			if err := r.Validate(); err != nil {
				return 0, err
			}
			err = db.Update(ctx, func(tx *storage.Tx) error {
				if _, err := tx.ApplyResults(ctx, []storage.Result{{ExecResult: r, RecordedAt: md.Timestamp}}); err != nil {
					return err
				}
				return tx.Advance(ctx, name, md.Sequence.Stream, "")
			})
			if err != nil {
				return 0, err
			}
			if err := msg.Ack(); err != nil {
				return 0, err
			}
			i++
		}
	}
	return time.Since(start), nil
}

// heartbeats is the load check: agents beat every 30 s at the real rate for
// `steady`, then at 10x for `burst`. Each beat carries its publish time in
// `at`; a poller watches MAX(last_heartbeat) to find when each publish
// instant became visible.
func heartbeats(ctx context.Context, out io.Writer, dir, url string, client *bus.Client, js jetstream.JetStream, agents int, steady, burst time.Duration) error {
	db, err := openDB(ctx, dir, "heartbeats")
	if err != nil {
		return err
	}
	defer db.Close()
	reg := prometheus.NewRegistry()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	w, err := projection.New(projection.Config{DB: db, Bus: client, Logger: quiet, Housekeeping: -1, Registerer: reg})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); w.Run(wctx) }()
	time.Sleep(500 * time.Millisecond) // let the subscription come up

	pub, err := nats.Connect(url)
	if err != nil {
		cancel()
		return err
	}
	defer pub.Close()
	fleet := sim.NewFleet(sim.Config{Agents: agents, Seed: 3})
	// Pre-render one template per agent; only `at` changes per beat.
	rate := float64(agents) / 30.0
	fmt.Fprintf(out, "heartbeat load: %d agents / 30 s = %.0f beats/s for %v, then %.0f beats/s for %v\n", agents, rate, steady, 10*rate, burst)

	type sample struct{ at time.Time }
	var mu sync.Mutex
	var samples []sample
	type seen struct {
		poll time.Time
		max  string
	}
	var polls []seen
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		for wctx.Err() == nil {
			maxHB, _ := count(dir, "heartbeats", `SELECT MAX(last_heartbeat) FROM agents`)
			mu.Lock()
			polls = append(polls, seen{time.Now(), maxHB})
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()

	published := 0
	next := 0
	phase := func(d time.Duration, perSec float64) error {
		const tick = 10 * time.Millisecond
		t := time.NewTicker(tick)
		defer t.Stop()
		end := time.Now().Add(d)
		began := time.Now()
		for now := range t.C {
			if now.After(end) {
				return nil
			}
			target := int(perSec * now.Sub(began).Seconds())
			for ; next < target; next++ {
				h := fleet.Heartbeat(published%agents, now)
				data, _ := json.Marshal(h)
				if err := pub.Publish("heartbeat."+h.PcID, data); err != nil {
					return err
				}
				published++
			}
			mu.Lock()
			samples = append(samples, sample{now})
			mu.Unlock()
		}
		return nil
	}
	if err := phase(steady, rate); err != nil {
		return err
	}
	next = 0
	if err := phase(burst, 10*rate); err != nil {
		return err
	}
	if err := pub.Flush(); err != nil {
		return err
	}
	time.Sleep(3 * time.Second) // let the last flush land
	cancel()
	<-done
	<-pollDone

	var maxLag time.Duration
	var lags []time.Duration
	for _, s := range samples {
		want := kanade.FormatTime(s.at)
		i := sort.Search(len(polls), func(i int) bool { return polls[i].max >= want })
		if i == len(polls) {
			return fmt.Errorf("beat published at %s never became visible", want)
		}
		lag := polls[i].poll.Sub(s.at)
		lags = append(lags, lag)
		maxLag = max(maxLag, lag)
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	received, dropped, err := hbCounters(reg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "published %d beats; received %.0f; dropped %.0f (goal 0)\n", published, received, dropped)
	fmt.Fprintf(out, "lag publish -> agents table: p50 %v, p99 %v, max %v (goal <= 2s; poll resolution 50ms)\n",
		lags[len(lags)/2].Round(time.Millisecond), lags[len(lags)*99/100].Round(time.Millisecond), maxLag.Round(time.Millisecond))
	return nil
}

// count runs a one-value query on a bench database through its own handle.
func count(dir, name, q string) (string, error) {
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, name+".db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return "", err
	}
	defer raw.Close()
	var v sql.NullString
	err = raw.QueryRow(q).Scan(&v)
	return v.String, err
}

func hbCounters(reg *prometheus.Registry) (received, dropped float64, err error) {
	fams, err := reg.Gather()
	if err != nil {
		return 0, 0, err
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case "kanade_projector_heartbeats_received_total":
				received = m.GetCounter().GetValue()
			case "kanade_projector_heartbeats_dropped_total":
				dropped = m.GetCounter().GetValue()
			}
		}
	}
	return received, dropped, nil
}
