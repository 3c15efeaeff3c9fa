// Command inventory measures the inventory read model at fleet scale
// (fleet.md §5): a fleet of -pcs PCs with about -apps installed apps each
// (the simulator's inventory job: 20k × 150 is 3M rows of the derived
// table and 3M "added" history events) is projected through the results
// write path into a real database, then it times, as medians over -samples
// runs:
//
//   - projecting one PC's new report (its own transaction, commit included),
//     with changed apps and with the same apps;
//   - GET /api/inventory/{job}/search/apps?name__contains=chrome and a few
//     other searches, through the HTTP handler (auth, KV read of the spec,
//     SQL, JSON) and through storage alone;
//   - GET …/history/search for one app across the fleet, and first_seen.
//
// The database is SQLite in a temporary directory, or the file -db (kept,
// and reused when it already holds the fleet), or a libSQL server -dsn.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bench/benchbus"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/internal/cli"
	"github.com/kanade-fleet/backend/sim"
	"github.com/kanade-fleet/backend/storage"
)

func main() { cli.Main("inventory", run) }

const token = "bench-inventory-token-0123456789abcdef"

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("inventory", flag.ContinueOnError)
	pcs := fs.Int("pcs", 20000, "PCs in the fleet")
	apps := fs.Int("apps", 150, "installed apps per PC")
	samples := fs.Int("samples", 31, "runs per measured operation (the median is reported)")
	dbPath := fs.String("db", "", "SQLite file to build (or reuse) the fleet in; default a temporary one")
	dsn := fs.String("dsn", "", "libSQL server URL (http://…) instead of SQLite")
	batch := fs.Int("batch", 100, "reports per transaction while building")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run here")
	only := fs.String("only", "", "run only this part: project or reads")
	commit := fs.Bool("commit", false, "reads: before each timed read, the writer commits (a consumer offset of its own), as a running projector does; SQLite then empties the read connection's page cache")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	dir, err := os.MkdirTemp("", "kanade-bench-inventory-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	target := *dsn
	if target == "" {
		target = *dbPath
		if target == "" {
			target = filepath.Join(dir, "inventory.db")
		}
	}
	clock := func() time.Time { return base.Add(48 * time.Hour) }
	db, err := storage.Open(ctx, target, storage.Options{Clock: clock})
	if err != nil {
		return err
	}
	defer db.Close()
	hint := sim.InventoryHint()
	inv := sim.NewInventory(42, *apps, 3000)

	have, err := count(ctx, target, `SELECT COUNT(*) FROM inventory_facts`)
	if err != nil {
		return err
	}
	if have == 0 {
		if err := build(ctx, out, db, hint, inv, *pcs, *batch); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "reusing %s: %d PCs already projected\n", storage.Redact(target), have)
		*pcs = int(have)
	}
	rows, _ := count(ctx, target, `SELECT COUNT(*) FROM `+sim.InventoryTable)
	events, _ := count(ctx, target, `SELECT COUNT(*) FROM inventory_history`)
	fmt.Fprintf(out, "fleet: %d PCs, %d rows in %s, %d history events\n\n", *pcs, rows, sim.InventoryTable, events)

	if *only != "reads" {
		if err := projectOne(ctx, out, db, hint, inv, *pcs, *samples); err != nil {
			return err
		}
	}
	if *only == "project" {
		return nil
	}
	before := func() error { return nil }
	if *commit {
		// Above any offset an earlier run left: an Advance that is not
		// further writes nothing, and a commit that changes nothing
		// empties no cache.
		seq := uint64(time.Now().UnixNano())
		before = func() error {
			seq++
			return db.Update(ctx, func(tx *storage.Tx) error { return tx.Advance(ctx, "bench-inventory-commit", seq, "") })
		}
		fmt.Fprintf(out, "each timed read follows a commit of the writer\n")
	}
	return reads(ctx, out, dir, db, *samples, before)
}

// base is the fleet's first report time.
var base = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// count runs a one-value query through a handle of its own.
func count(ctx context.Context, target, q string) (int64, error) {
	driver, dsn := "sqlite", "file:"+target+"?_pragma=busy_timeout(5000)"
	if strings.Contains(target, "://") {
		driver, dsn = "libsql", target
	}
	raw, err := sql.Open(driver, dsn)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	var n int64
	err = raw.QueryRowContext(ctx, q).Scan(&n)
	return n, err
}

func result(hint *kanade.InventoryHint, id, pc, stdout string, at time.Time) storage.Result {
	exit := int64(0)
	return storage.Result{ExecResult: kanade.ExecResult{ResultID: id, RequestID: id, PcID: pc, ExitCode: &exit, Stdout: stdout,
		StartedAt: kanade.Timestamp{Time: at.Add(-5 * time.Second)}, FinishedAt: kanade.Timestamp{Time: at},
		ManifestID: sim.InventoryJob.ID}, RecordedAt: at.Add(time.Second), Inventory: storage.PrepareInventory(hint, stdout)}
}

func pcID(i int) string { return fmt.Sprintf("SIM-%06d", i) }

// build projects every PC's first report, batch reports per transaction.
func build(ctx context.Context, out io.Writer, db *storage.DB, hint *kanade.InventoryHint, inv *sim.Inventory, pcs, batch int) error {
	fmt.Fprintf(out, "building: %d PCs' first reports through ApplyResults, %d per transaction...\n", pcs, batch)
	start := time.Now()
	var rows int
	for i := 0; i < pcs; i += batch {
		var rs []storage.Result
		for j := i; j < min(i+batch, pcs); j++ {
			at := base.Add(time.Duration(j) * 100 * time.Millisecond)
			r := result(hint, fmt.Sprintf("build-%d", j), pcID(j), inv.Report(pcID(j), j, at), at)
			rs = append(rs, r)
		}
		err := db.Update(ctx, func(tx *storage.Tx) error {
			st, err := tx.ApplyResults(ctx, rs)
			if err == nil && (st.Inventory.Projected != len(rs) || st.Inventory.Failed > 0) {
				err = fmt.Errorf("batch at %d: %+v", i, st.Inventory)
			}
			rows += st.Inventory.Events
			return err
		})
		if err != nil {
			return err
		}
		if (i/batch)%20 == 19 {
			fmt.Fprintf(out, "  %d PCs in %v\n", i+batch, time.Since(start).Round(time.Second))
		}
	}
	d := time.Since(start)
	fmt.Fprintf(out, "built in %v: %.0f reports/s, %.0f history events/s\n\n", d.Round(time.Millisecond),
		float64(pcs)/d.Seconds(), float64(rows)/d.Seconds())
	return nil
}

// sample is one measured operation: its wall-clock time, and the CPU time
// (user and system) the whole process spent meanwhile. On a shared, busy
// machine the wall time is mostly waiting for a core; the CPU time is the
// operation's own cost (plus whatever else the process did, such as its
// garbage collection), and says what it would take on an idle core.
type sample struct{ wall, cpu time.Duration }

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs fn once and returns its sample.
func measure(fn func() error) (sample, error) {
	c0, t0 := cpuTime(), time.Now()
	err := fn()
	return sample{time.Since(t0), cpuTime() - c0}, err
}

// stats are the median, 90th percentile and maximum of the wall times of
// ss, and the median of their CPU times.
func stats(ss []sample) string {
	ws := make([]time.Duration, len(ss))
	cs := make([]time.Duration, len(ss))
	for i, s := range ss {
		ws[i], cs[i] = s.wall, s.cpu
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i] < ws[j] })
	sort.Slice(cs, func(i, j int) bool { return cs[i] < cs[j] })
	r := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
	return fmt.Sprintf("median %8s  p90 %8s  max %8s  cpu median %8s  (n=%d)", r(ws[len(ws)/2]), r(ws[len(ws)*9/10]), r(ws[len(ws)-1]),
		r(cs[len(cs)/2]), len(ss))
}

// projectOne times single-report transactions: a report with changed apps
// (a later epoch in which the PC's apps differ) and the same report again
// under a new run (same apps, new collected_at).
func projectOne(ctx context.Context, out io.Writer, db *storage.DB, hint *kanade.InventoryHint, inv *sim.Inventory, pcs, samples int) error {
	var changed, same []sample
	var events, applied int
	seq := time.Now().UnixNano()
	for s := 0; len(changed) < samples && s < samples*50; s++ {
		i := (s * 7919) % pcs
		pc := pcID(i)
		prev := inv.Report(pc, i, base)
		var at time.Time
		var stdout string
		for e := 1; e < 24*30; e++ {
			at = base.Add(time.Duration(e) * sim.InventoryEpoch)
			stdout = inv.Report(pc, i, at)
			if appsOf(stdout) != appsOf(prev) {
				break
			}
		}
		seq++
		r := result(hint, fmt.Sprintf("one-%d", seq), pc, stdout, at.Add(time.Duration(s)*time.Millisecond))
		var st storage.ApplyStats
		d, err := measure(func() error {
			return db.Update(ctx, func(tx *storage.Tx) error {
				var err error
				st, err = tx.ApplyResults(ctx, []storage.Result{r})
				return err
			})
		})
		if err != nil {
			return err
		}
		if st.Inventory.Projected != 1 || st.Inventory.Unchanged != 0 {
			continue // this PC was measured already at that epoch
		}
		changed = append(changed, d)
		events += st.Inventory.Events
		applied++

		seq++
		again := result(hint, fmt.Sprintf("one-%d", seq), pc, stdout, at.Add(time.Duration(s)*time.Millisecond+time.Minute))
		d, err = measure(func() error {
			return db.Update(ctx, func(tx *storage.Tx) error {
				var err error
				st, err = tx.ApplyResults(ctx, []storage.Result{again})
				return err
			})
		})
		if err != nil {
			return err
		}
		if st.Inventory.Unchanged == 1 {
			same = append(same, d)
		}
	}
	if len(changed) == 0 || len(same) == 0 {
		return errors.New("no report measured")
	}
	fmt.Fprintf(out, "project one PC's report, own transaction (goal < 20ms):\n")
	fmt.Fprintf(out, "  apps changed (%.1f events each): %s\n", float64(events)/float64(applied), stats(changed))
	fmt.Fprintf(out, "  same apps, new facts:            %s\n\n", stats(same))
	return nil
}

func appsOf(stdout string) string { return stdout[strings.Index(stdout, `"apps":`):] }

// reads times the read routes through the handler and storage.
func reads(ctx context.Context, out io.Writer, dir string, db *storage.DB, samples int, before func() error) error {
	b, err := benchbus.Start(ctx, filepath.Join(dir, "nats"))
	if err != nil {
		return err
	}
	defer b.Close()
	client := b.Client
	if _, err := client.Put(ctx, kanade.BucketJobs, sim.InventoryJob.ID, sim.InventoryManifest()); err != nil {
		return err
	}
	h, err := handlers.New(handlers.Config{DB: db, Bus: bus.Static(client), Auth: auth.Config{StaticToken: token},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	get := func(path string) (int, int, error) {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return 0, 0, fmt.Errorf("%s: %d %s", path, rec.Code, rec.Body)
		}
		return rec.Body.Len(), strings.Count(rec.Body.String(), `"pc_id"`), nil
	}
	// timed is measure after before (a commit, with -commit), which is not timed.
	timed := func(fn func() error) (sample, error) {
		if err := before(); err != nil {
			return sample{}, err
		}
		return measure(fn)
	}
	job := "/api/inventory/" + sim.InventoryJob.ID
	fmt.Fprintf(out, "reads through the HTTP handler (goal: median < 100ms for the first and the history search):\n")
	for _, path := range []string{
		job + "/search/apps?name__contains=chrome",
		job + "/search/apps?name__contains=chrome&limit=5000",
		job + "/search/apps?name=Zoom%20Workplace&limit=50",
		job + "/search/apps?name__prefix=Vendor123&version__ge=1.5",
		job + "/search/apps?publisher__contains=videolan",
		job + "/history/search?field=apps&identity.name=Google%20Chrome",
		job + "/history/search?field=apps&identity.name=Google%20Chrome&kind=changed&limit=5000",
		job + "/history/first_seen?field=apps&identity.name=Chrome%20Remote%20Desktop%20Host",
		job + "/history/pc/SIM-000123",
		job + "/search-scalars?ram_bytes__ge=34359738368",
	} {
		var ds []sample
		var size, n int
		for range samples {
			d, err := timed(func() error {
				var err error
				size, n, err = get(path)
				return err
			})
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		fmt.Fprintf(out, "  %-96s %s  %5d objects, %7d bytes\n", strings.TrimPrefix(path, job), stats(ds), n, size)
	}

	spec := &sim.InventoryHint().Explode[0]
	var ds []sample
	for range samples {
		d, err := timed(func() error {
			_, err := db.SearchInventory(ctx, sim.InventoryJob.ID, spec, []storage.InventoryFilter{{Column: "name", Op: "contains", Value: "chrome"}}, 1000, 0)
			return err
		})
		if err != nil {
			return err
		}
		ds = append(ds, d)
	}
	fmt.Fprintf(out, "\nstorage alone: SearchInventory name contains chrome: %s\n", stats(ds))
	ds = nil
	for range samples {
		d, err := timed(func() error {
			_, err := db.InventoryHistory(ctx, storage.HistoryQuery{JobID: sim.InventoryJob.ID, Field: "apps",
				Identity: []storage.IdentityMatch{{Key: "name", Value: "Google Chrome"}}, Limit: 500})
			return err
		})
		if err != nil {
			return err
		}
		ds = append(ds, d)
	}
	fmt.Fprintf(out, "storage alone: InventoryHistory of Google Chrome:      %s\n", stats(ds))
	return nil
}
