// Command scandurations measures GET /api/health/scan_durations' storage
// query against the row-pulling baseline of kanade-backend 0.43.56, in one
// run, on the same data:
//
//	ours:     storage.DB.ScanDurations (duration summaries + one lookup);
//	baseline: every finished row of the window pulled, durations computed in
//	          Go, one sort per job (seed.Baseline).
//
// For each -sizes N it uses a cached SQLite file seeded through the real
// write path (seed.Cached), then, with -sqld, a fresh sqld on loopback seeded
// with -sqld-n runs over HTTP. It prints the median of -reps timings of each
// and whether both give identical answers.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kanade-fleet/backend/bench/seed"
	"github.com/kanade-fleet/backend/internal/cli"
	"github.com/kanade-fleet/backend/storage"
)

func main() { cli.Main("scandurations", run) }

// run parses the flags, seeds (or reuses) the databases and prints one table
// row per size and backend.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("scandurations", flag.ContinueOnError)
	sizes := fs.String("sizes", "12000,100000,1000000", "runs in the window, comma-separated")
	jobs := fs.Int("jobs", 200, "distinct jobs")
	reps := fs.Int("reps", 7, "timed repetitions of each query (the median is reported)")
	sqld := fs.String("sqld", "", "sqld binary: also measure over a fresh libSQL server on loopback")
	sqldN := fs.Int("sqld-n", 100000, "runs seeded into the sqld database")
	sqldBulk := fs.Bool("sqld-bulk", false, "give sqld a copy of seed.BulkCached's file of -sqld-n runs (100k agents) instead of seeding it over HTTP")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("bad -sizes entry %q", s)
		}
		ns = append(ns, n)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "backend\tN\tjobs\tbaseline ms\tours ms\tspeedup\tidentical\t\n")
	for _, n := range ns {
		start := time.Now()
		path, err := seed.Cached(ctx, n, *jobs)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "sqlite N=%d: %s ready in %v\n", n, path, time.Since(start).Round(time.Millisecond))
		db, err := storage.Open(ctx, path, storage.Options{Clock: func() time.Time { return seed.Now }})
		if err != nil {
			return err
		}
		raw, err := sql.Open("sqlite", path)
		if err != nil {
			db.Close()
			return err
		}
		row, err := compare(ctx, db, raw, *reps)
		db.Close()
		raw.Close()
		if err != nil {
			return fmt.Errorf("sqlite N=%d: %w", n, err)
		}
		fmt.Fprintf(tw, "sqlite\t%d\t%d\t%s\t\n", n, *jobs, row)
		fmt.Fprintf(os.Stderr, "sqlite N=%d: %s\n", n, strings.ReplaceAll(row, "\t", " "))
	}
	if *sqld != "" {
		row, err := remote(ctx, *sqld, *sqldN, *jobs, *reps, *sqldBulk)
		if err != nil {
			return fmt.Errorf("sqld: %w", err)
		}
		fmt.Fprintf(tw, "sqld\t%d\t%d\t%s\t\n", *sqldN, *jobs, row)
	}
	return tw.Flush()
}

// compare times both computations, alternating, after one warm-up each, and
// returns the table cells.
func compare(ctx context.Context, db *storage.DB, raw *sql.DB, reps int) (string, error) {
	since := seed.Since()
	ours, err := db.ScanDurations(ctx, since)
	if err != nil {
		return "", err
	}
	page := 0
	base, err := seed.Baseline(ctx, raw, since, page)
	if err != nil && db.Remote() {
		fmt.Fprintf(os.Stderr, "baseline as in 0.43.56 (one query) fails over libSQL: %v\nbaseline falls back to keyset pages of 20000 rows\n", err)
		page = 20000
		base, err = seed.Baseline(ctx, raw, since, page)
	}
	if err != nil {
		return "", err
	}
	identical := cmp.Equal(base, ours)
	if !identical {
		fmt.Fprintf(os.Stderr, "answers differ (-baseline +ours):\n%s\n", cmp.Diff(base, ours))
	}
	var tOurs, tBase []time.Duration
	for i := 0; i < reps; i++ {
		start := time.Now()
		if _, err := db.ScanDurations(ctx, since); err != nil {
			return "", err
		}
		tOurs = append(tOurs, time.Since(start))
		start = time.Now()
		if _, err := seed.Baseline(ctx, raw, since, page); err != nil {
			return "", err
		}
		tBase = append(tBase, time.Since(start))
	}
	mb, mo := median(tBase), median(tOurs)
	return fmt.Sprintf("%.1f\t%.1f\t%.1fx\t%v", ms(mb), ms(mo), float64(mb)/float64(mo), identical), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// remote starts sqld on a free loopback port with a fresh directory, seeds
// it over HTTP through the write path (or, with bulk, starts it on a copy of
// the bulk-loaded SQLite file, which sqld takes as its database), and
// compares there.
func remote(ctx context.Context, bin string, n, jobs, reps int, bulk bool) (string, error) {
	dir, err := os.MkdirTemp("", "kanade-bench-sqld-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if bulk {
		path, err := seed.BulkCached(ctx, n, jobs, 100_000, func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, format+"\n", args...)
		})
		if err != nil {
			return "", err
		}
		data := filepath.Join(dir, "db", "dbs", "default")
		if err := os.MkdirAll(data, 0o755); err != nil {
			return "", err
		}
		if err := seed.CopyFile(path, filepath.Join(data, "data")); err != nil {
			return "", err
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--http-listen-addr", addr, "--db-path", filepath.Join(dir, "db"), "--no-welcome", "--disable-metrics")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	url := "http://" + addr
	if err := waitHealthy(url); err != nil {
		return "", fmt.Errorf("%w\n%s", err, logs.String())
	}
	db, err := storage.Open(ctx, url, storage.Options{Clock: func() time.Time { return seed.Now }})
	if err != nil {
		return "", err
	}
	defer db.Close()
	if !bulk {
		start := time.Now()
		if err := seed.Seed(ctx, db, n, jobs); err != nil {
			return "", err
		}
		fmt.Fprintf(os.Stderr, "sqld N=%d: seeded over HTTP in %v\n", n, time.Since(start).Round(time.Millisecond))
	}
	raw, err := sql.Open("libsql", url)
	if err != nil {
		return "", err
	}
	defer raw.Close()
	return compare(ctx, db, raw, reps)
}

// waitHealthy waits for sqld's /health; a server given a large database
// file first builds its replication log from it.
func waitHealthy(url string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(url + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("sqld did not answer /health within 5 minutes")
}
