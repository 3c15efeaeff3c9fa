package spa_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/spa"
	"github.com/kanade-fleet/backend/storage"
)

// The fleet of the performance check (issue 13, Performance): 10k agents
// and 1M runs, seeded by one INSERT … SELECT each straight into the real
// SQLite file (not through NATS), and kept in os.TempDir between runs. The
// run-duration summaries the projection would have kept are then built
// from those rows (v2: v1 had none, so the overview's durations card, part
// of its "data on screen", never appeared).
const (
	perfAgents  = 10_000
	perfRuns    = 1_000_000
	perfSeedVer = "spa-perf-v2"
)

// perfNow is the clock of the seeded fleet and of the handler.
var perfNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func perfDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(os.TempDir(), "kanade-"+perfSeedVer+".db")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	ctx := context.Background()
	tmp := fmt.Sprintf("%s.seeding-%d", path, os.Getpid())
	db, err := storage.Open(ctx, tmp, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	base := perfNow.Unix()
	ts := func(sec string) string {
		return fmt.Sprintf(`strftime('%%Y-%%m-%%dT%%H:%%M:%%S', %d - (%s), 'unixepoch') || '.000000000Z'`, base, sec)
	}
	err = db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`
			WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
			INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at)
			SELECT printf('PC-%%05d', i), printf('desk-%%05d', i), CASE i %% 3 WHEN 0 THEN 'windows' WHEN 1 THEN 'macos' ELSE 'linux' END,
			       CASE i %% 4 WHEN 0 THEN '1.4.2' ELSE '1.5.0' END, %s, %s FROM n`,
			perfAgents-1, ts("CASE WHEN i % 50 = 0 THEN 7200 ELSE 1 + i % 60 END"), ts("0"))); err != nil {
			return fmt.Errorf("seed agents: %w", err)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(`
			WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
			INSERT INTO executions (exec_id, job_id, version, initiated_by, initiated_at, target_count, success_count, failure_count, status)
			SELECT printf('x-%%04d', i), printf('job-%%02d', i %% 12), 'v1', 'perf', %s, 100, 95, 5, 'completed' FROM n`,
			999, ts("i * 86"))); err != nil {
			return fmt.Errorf("seed executions: %w", err)
		}
		_, err := tx.Exec(ctx, fmt.Sprintf(`
			WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
			INSERT INTO execution_results (result_id, exec_id, pc_id, job_id, exit_code, skipped, stderr, started_at, finished_at, recorded_at, duration_ms)
			SELECT printf('r-%%07d', i), printf('x-%%04d', i / 1000), printf('PC-%%05d', i %% %d), printf('job-%%02d', i %% 12),
			       CASE i %% 20 WHEN 0 THEN 1 WHEN 1 THEN -1 WHEN 2 THEN NULL WHEN 3 THEN 126 ELSE 0 END,
			       i %% 20 = 3, CASE i %% 20 WHEN 0 THEN 'disk full' ELSE NULL END,
			       %s, %s, %s, 1000 + i %% 5000
			FROM n`,
			perfRuns-1, perfAgents, ts("(i * 173) % 172800 + 5"), ts("(i * 173) % 172800"), ts("(i * 173) % 172800")))
		if err != nil {
			return fmt.Errorf("seed runs: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RebuildDurations(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d agents and %d runs in %v into %s", perfAgents, perfRuns, time.Since(start).Round(time.Millisecond), path)
	return path
}

// perfSplit is where a page load's time went, from the browser's own
// timings: DOMContentLoaded after the navigation began (the page and its
// scripts), and the slowest /api/ read and the number of reads (the
// server's share, network included).
type perfSplit struct {
	DCL   float64 `json:"dcl"`
	API   float64 `json:"api"`
	Reads int     `json:"reads"`
}

const perfSplitJS = `(() => {
	const n = performance.getEntriesByType('navigation')[0];
	const api = performance.getEntriesByType('resource').filter((e) => new URL(e.name).pathname.startsWith('/api/'));
	return { dcl: n ? n.domContentLoadedEventEnd : 0, api: api.reduce((m, e) => Math.max(m, e.duration), 0), reads: api.length };
})()`

// TestPagesWithin1sAtScale opens every page of the dashboard over 10k
// agents and 1M runs and reports, per page, the median time from the
// navigation to its data on screen (3 loads each); a page over 1 s fails.
// It runs only with KANADE_PERF=1 (just perf-dashboard): seeding takes
// about a minute the first time, and a timing figure belongs to an
// explicit measurement, not to the default test run.
func TestPagesWithin1sAtScale(t *testing.T) {
	if os.Getenv("KANADE_PERF") == "" {
		t.Skip("set KANADE_PERF=1 (just perf-dashboard) to measure the pages at 10k agents and 1M runs")
	}
	path := perfDB(t)
	ctx := context.Background()
	db, err := storage.Open(ctx, path, storage.Options{Clock: func() time.Time { return perfNow }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	natsSrv := bustest.StartBootstrapped(t)
	kvSeed(t, natsSrv.JS, perfNow)
	h, err := handlers.New(handlers.Config{
		DB: db, Clock: func() time.Time { return perfNow }, Bus: busOf(natsSrv.Bus), SPA: spa.FS(),
		Logger: slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Auth:   auth.Config{StaticToken: browserToken},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b := newBrowser(t)
	b.do(t, "token", chromedp.Navigate(srv.URL+"/#token="+browserToken))
	b.waitFor(t, "the overview", `document.querySelector('#fleet-status')`)

	pages := []struct{ path, ready string }{
		{"/", `document.querySelector('#durations') && document.querySelector('#versions') && document.querySelector('#recent-execs')`},
		{"/agents", `document.querySelectorAll('table#agents tbody tr').length === 50`},
		{"/agents?status=offline", `document.querySelectorAll('table#agents tbody tr').length === 50`},
		{"/agents?q=desk-0999", `document.querySelectorAll('table#agents tbody tr').length >= 1`},
		{"/agents/PC-00042", `document.querySelector('#agent-config table')`},
		{"/results", `document.querySelectorAll('table#results tbody tr').length === 50`},
		{"/results?status=failure", `document.querySelector('table#triage-table tbody tr') && document.querySelectorAll('table#results tbody tr').length === 50`},
		{"/results?job_id=job-03", `document.querySelectorAll('table#results tbody tr').length === 50`},
		{"/results?pc_id=PC-00042", `document.querySelectorAll('table#results tbody tr').length >= 1`},
		{"/results/r-0000020", `document.querySelector('pre#stderr')`},
		{"/executions", `document.querySelectorAll('table#executions tbody tr').length === 50`},
		{"/executions/x-0001", `document.querySelector('#exec-runs tbody tr')`},
		{"/jobs", `document.querySelector('table#jobs tbody tr')`},
		{"/schedules", `document.querySelector('table#schedules tbody tr')`},
		{"/groups", `document.querySelector('#fleet-config')`},
		{"/releases", `document.querySelector('#versions')`},
		// The list's count is written once its first read has landed
		// (rows or the empty text); the heading is drawn before.
		{"/audit", `(document.querySelector('#list-count')?.textContent ?? '').trim() !== ''`},
	}
	var report strings.Builder
	fmt.Fprintf(&report, "%-28s %8s %8s %8s %8s %6s\n", "page", "median", "max", "dcl", "api max", "reads")
	for _, p := range pages {
		var took []time.Duration
		var split []perfSplit
		for range 3 {
			b.do(t, "blank", chromedp.Navigate("about:blank"))
			start := time.Now()
			b.do(t, "open "+p.path, chromedp.Navigate(srv.URL+p.path))
			// Bounded at 10 s so one slow page does not hide the others.
			pctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
			var err error
			for {
				_, err = chromedp.Run(pctx, chromedp.Poll[chromedp.Void](p.ready, chromedp.WithPollingInterval(20*time.Millisecond)))
				// A poll begun as about:blank went away loses its
				// execution context: poll again in the page's.
				if err == nil || pctx.Err() != nil || !lostContext(err) {
					break
				}
			}
			cancel()
			took = append(took, time.Since(start))
			if err != nil {
				t.Errorf("%s: no data after %v: %v", p.path, time.Since(start).Round(time.Millisecond), err)
				break
			}
			split = append(split, browserRun(t, b, "timings", chromedp.Evaluate[perfSplit](perfSplitJS)))
		}
		slices.Sort(took)
		med := took[len(took)/2]
		slices.SortFunc(split, func(a, b perfSplit) int { return int(a.DCL - b.DCL) })
		var s perfSplit
		if len(split) > 0 {
			s = split[len(split)/2]
		}
		fmt.Fprintf(&report, "%-28s %6dms %6dms %6.0fms %6.0fms %6d\n", p.path, med.Milliseconds(), took[len(took)-1].Milliseconds(), s.DCL, s.API, s.Reads)
		if med > time.Second {
			t.Errorf("%s shows its data after %v (median of 3), want within 1 s", p.path, med)
		}
	}
	t.Logf("data on screen at %d agents and %d runs (navigation to data, Chromium on loopback):\n%s", perfAgents, perfRuns, report.String())
}
