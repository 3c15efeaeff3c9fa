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
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bench/ingestkit"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/natsd"
	"github.com/kanade-fleet/backend/internal/cli"
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
	inventory := fs.Float64("inventory", 0, "also measure a second stream where this share of the results are inventory reports "+
		"(the simulator's job, ~150 apps; the fleet's previous reports projected untimed first) and compare its ratio")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kanade-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := natsd.Start(natsd.Options{StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return err
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	client, err := bus.NewClient(nc)
	if err != nil {
		return err
	}
	defer client.Close()
	if err := client.Bootstrap(ctx, 1); err != nil {
		return err
	}
	if *hb {
		return heartbeats(ctx, out, dir, srv.ClientURL(), client, js, *agents, *steady, *burst)
	}
	// With -inventory the profile is of the run with inventory reports.
	first := *cpuprofile
	if *inventory > 0 {
		first = ""
	}
	oursRatio, err := ingest(ctx, out, dir, client, js, *n, *subset, *batch, first)
	if err != nil || *inventory <= 0 {
		return err
	}
	return ingestInventory(ctx, out, dir, client, js, *n, *batch, *inventory, oursRatio, *cpuprofile)
}

func openDB(ctx context.Context, dir, name string) (*storage.DB, error) {
	return storage.Open(ctx, filepath.Join(dir, name+".db"), storage.Options{})
}

func ingest(ctx context.Context, out io.Writer, dir string, client *bus.Client, js jetstream.JetStream, n, subset, batchSize int, cpuprofile string) (float64, error) {
	fleet := sim.NewFleet(sim.Config{Agents: 10000, Seed: 42, LateRate: -1, DuplicateRate: -1})
	jobs := fleet.Config().Jobs
	base := time.Now().Add(-24 * time.Hour)
	fmt.Fprintf(out, "publishing %d results to RESULTS (untimed)...\n", n)
	results, last, err := publish(ctx, out, js, n, func(i int) kanade.ExecResult {
		return fleet.Run(sim.RunSpec{Agent: i % 10000, Job: jobs[i%len(jobs)], StartedAt: base.Add(time.Duration(i) * 400 * time.Millisecond)}).Result
	})
	if err != nil {
		return 0, err
	}

	// Ours.
	ours, err := runOurs(ctx, dir, "ours", client, batchSize, n, last, cpuprofile, nil)
	if err != nil {
		return 0, err
	}
	oursRate := float64(n) / ours.Seconds()
	fmt.Fprintf(out, "ours (projector, batch %d):   %8d rows in %8v = %9.0f rows/s\n", batchSize, n, ours.Round(time.Millisecond), oursRate)

	// (a) raw batched INSERT.
	dbA, err := openDB(ctx, dir, "raw")
	if err != nil {
		return 0, err
	}
	startA := time.Now()
	if err := ingestkit.RawInsert(ctx, dbA, results); err != nil {
		return 0, err
	}
	rawDur := time.Since(startA)
	dbA.Close()
	rawRate := float64(n) / rawDur.Seconds()
	fmt.Fprintf(out, "(a) raw multi-row INSERT:       %8d rows in %8v = %9.0f rows/s\n", n, rawDur.Round(time.Millisecond), rawRate)

	// (b) one transaction and one ack per message.
	m := min(n, subset)
	dbB, err := openDB(ctx, dir, "onebyone")
	if err != nil {
		return 0, err
	}
	durB, err := oneByOne(ctx, js, dbB, m)
	if err != nil {
		return 0, err
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
	return oursRate / rawRate, nil
}

// publish publishes n results made by gen to RESULTS (untimed) and returns
// them with the stream's last sequence.
func publish(ctx context.Context, out io.Writer, js jetstream.JetStream, n int, gen func(i int) kanade.ExecResult) ([]storage.Result, uint64, error) {
	pubStart := time.Now()
	results, last, err := ingestkit.Publish(ctx, js, n, gen)
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
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return 0, err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ours, err := ingestkit.Project(ctx, db, client, projection.Config{BatchSize: batchSize}, last)
	if err != nil {
		return 0, err
	}
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

// ingestInventory is the run with inventory reports: the same fleet and
// jobs, a share of the results replaced by runs of the simulator's
// inventory job, published after the first stream was purged. Each PC's
// previous report is projected first, untimed, so the run measures the
// steady state (reports that change a few apps, or none), not a fleet's
// first inventory. Baseline (a) inserts the same rows without projecting
// inventory; the ratio is compared with the one measured above.
func ingestInventory(ctx context.Context, out io.Writer, dir string, client *bus.Client, js jetstream.JetStream, n, batchSize int,
	share, plainRatio float64, cpuprofile string) error {
	const agents = 10000
	fleet := sim.NewFleet(sim.Config{Agents: agents, Seed: 42, LateRate: -1, DuplicateRate: -1})
	jobs := fleet.Config().Jobs
	if _, err := client.Put(ctx, kanade.BucketJobs, sim.InventoryJob.ID, sim.InventoryManifest()); err != nil {
		return err
	}
	stream, err := js.Stream(ctx, kanade.StreamResults)
	if err != nil {
		return err
	}
	if err := stream.Purge(ctx); err != nil {
		return err
	}
	base := time.Now().Add(-24 * time.Hour)
	every := int(math.Round(1 / share))
	reports := 0
	fmt.Fprintf(out, "\nwith inventory: one result in %d is an inventory report (%s, ~150 apps)\n", every, sim.InventoryJob.ID)
	results, last, err := publish(ctx, out, js, n, func(i int) kanade.ExecResult {
		job := jobs[i%len(jobs)]
		if i%every == every-1 {
			job = sim.InventoryJob
			reports++
		}
		return fleet.Run(sim.RunSpec{Agent: i % agents, Job: job, StartedAt: base.Add(time.Duration(i) * 400 * time.Millisecond)}).Result
	})
	if err != nil {
		return err
	}
	// The fleet's inventory as it was a day earlier, projected untimed.
	hint := sim.InventoryHint()
	inv := sim.NewInventory(42, 150, 3000)
	seed := func(db *storage.DB) error {
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
				return err
			}
		}
		fmt.Fprintf(out, "seeded the inventory of %d PCs (untimed, %v)\n", agents, time.Since(start).Round(time.Second))
		return nil
	}
	ours, err := runOurs(ctx, dir, "ours-inventory", client, batchSize, n, last, cpuprofile, seed)
	if err != nil {
		return err
	}
	derived, _ := count(dir, "ours-inventory", `SELECT COUNT(*) FROM `+sim.InventoryTable)
	events, _ := count(dir, "ours-inventory", `SELECT COUNT(*) FROM inventory_history WHERE observed_at > '`+kanade.FormatTime(base.Add(-time.Hour))+`'`)
	oursRate := float64(n) / ours.Seconds()
	fmt.Fprintf(out, "ours (projector, batch %d):   %8d rows in %8v = %9.0f rows/s  (%d inventory reports; %s derived rows; %s history events written)\n",
		batchSize, n, ours.Round(time.Millisecond), oursRate, reports, derived, events)
	dbA, err := openDB(ctx, dir, "raw-inventory")
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
	ratio := oursRate / rawRate
	fmt.Fprintf(out, "ours / (a) = %.2f with inventory, %.2f without: %+.1f%% (goal: within 10%%)\n", ratio, plainRatio, 100*(ratio/plainRatio-1))
	return nil
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
