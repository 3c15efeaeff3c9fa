package handlers_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/storage"
)

// benchSeedVersion names the cached benchmark database; bump it when the
// schema or the seed below changes, or the old file is reused.
const benchSeedVersion = "fleet-bench-v2"

const (
	benchAgents = 100_000
	benchRuns   = 1_000_000
)

// benchNow is the benchmark's clock: agents beat over the 10 minutes before
// it (a fifth within the 2-minute threshold), runs were recorded over the 48
// hours before it (about half inside the 24 h window).
var benchNow = time.Date(2026, 6, 20, 12, 0, 0, 0, time.UTC)

// benchDBPath returns a seeded database file, building it once per seed
// version in os.TempDir: seeding a million runs through the triggers takes
// far longer than the benchmark itself.
//
// The benchmark stays on SQLite on purpose, and so opens the file with
// storage.Open rather than storagetest: the seeded file is a cache kept
// between runs, which a fresh sqld per test cannot be, and its numbers
// compare against the SQLite baseline (bench/scandurations measures sqld).
func benchDBPath(b *testing.B) string {
	b.Helper()
	path := filepath.Join(os.TempDir(), "kanade-"+benchSeedVersion+".db")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	ctx := context.Background()
	tmp := fmt.Sprintf("%s.seeding-%d", path, os.Getpid())
	db, err := storage.Open(ctx, tmp, storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	base := benchNow.Unix()
	// Timestamps in kanade.TimeLayout, built in SQL from a Unix second and
	// a nanosecond part so one INSERT … SELECT writes every row.
	ts := func(sec, nsec string) string {
		return fmt.Sprintf(`strftime('%%Y-%%m-%%dT%%H:%%M:%%S', %d - (%s), 'unixepoch') || printf('.%%09dZ', %s)`, base, sec, nsec)
	}
	err = db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`
			WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
			INSERT INTO agents (pc_id, last_heartbeat, updated_at)
			SELECT printf('PC-%%06d', i), %s, %s FROM n`,
			benchAgents-1, ts("1 + (i * 7) % 600", "(i * 7919) % 1000000000"), ts("0", "0"))); err != nil {
			return fmt.Errorf("seed agents: %w", err)
		}
		// Exit codes: 0 mostly, 1 and -1 (failures), NULL (running),
		// 126 skipped.
		_, err := tx.Exec(ctx, fmt.Sprintf(`
			WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
			INSERT INTO execution_results (result_id, pc_id, job_id, exit_code, skipped, recorded_at)
			SELECT printf('r-%%07d', i), printf('PC-%%06d', i %% %d), printf('job-%%02d', i %% 12),
			       CASE i %% 20 WHEN 0 THEN 1 WHEN 1 THEN -1 WHEN 2 THEN NULL WHEN 3 THEN 126 ELSE 0 END,
			       i %% 20 = 3, %s
			FROM n`,
			benchRuns-1, benchAgents, ts("(i * 173) % 172800", "(i * 104729) % 1000000000")))
		if err != nil {
			return fmt.Errorf("seed runs: %w", err)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d agents and %d runs in %v into %s", benchAgents, benchRuns, time.Since(start).Round(time.Millisecond), path)
	return path
}

// BenchmarkFleetHealth measures GET /api/health/fleet through the whole
// handler (auth, huma, the two summary queries, JSON) over 100k agents and 1M
// runs. Sub-benchmark "nats" probes the resources of a real embedded
// server (which shares this process's CPU); "instant-prober" answers
// all-present at once, isolating the handler and database cost. Each reports
// the median besides the mean; "nats" also reports, as the baseline, the
// full-scan COUNT queries of kanade-backend 0.43.56 on the same file.
func BenchmarkFleetHealth(b *testing.B) {
	path := benchDBPath(b)
	ctx := context.Background()
	db, err := storage.Open(ctx, path, storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	nats := bustest.StartBootstrapped(b)
	for _, bc := range []struct {
		name   string
		prober handlers.Prober
	}{
		{"nats", bus.Prober{Client: bus.Static(nats.Bus), Replicas: 1}},
		{"instant-prober", allPresent{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h, err := handlers.New(handlers.Config{
				DB:     db,
				Prober: bc.prober,
				Clock:  func() time.Time { return benchNow },
				Auth:   auth.Config{StaticToken: testToken},
			})
			if err != nil {
				b.Fatal(err)
			}
			median, body := benchServe(b, h)
			if bc.name != "nats" {
				return
			}
			baseline := bruteForceFleetCounts(b, path)
			b.ReportMetric(float64(baseline.Nanoseconds()), "scan-baseline-ns")
			b.ReportMetric(float64(baseline)/float64(median), "x-faster-than-scan")
			b.Logf("agents=%d active=%d runs24h=%d failed=%d; median request %v, full-scan COUNT queries %v",
				*body.Agents.Known, *body.Agents.Active, *body.RecentResults.Total, *body.RecentResults.Failed, median, baseline)
		})
	}
}

// allPresent is a Prober whose resources all exist, answering at once.
type allPresent struct{}

func (allPresent) Backlogs(_ context.Context, ps []kanade.Projection, _ map[string]uint64) []kanade.Backlog {
	out := make([]kanade.Backlog, len(ps))
	for i, p := range ps {
		out[i] = kanade.Backlog{Name: p.Name}
	}
	return out
}

func (allPresent) Probe(context.Context) []kanade.ResourceStatus {
	var out []kanade.ResourceStatus
	for _, r := range kanade.Resources(1) {
		out = append(out, kanade.ResourceStatus{Kind: r.Kind, Name: r.Name, Exists: true})
	}
	return out
}

// benchServe times GET /api/health/fleet b.N times and returns the median
// and the warm-up body.
func benchServe(b *testing.B, h http.Handler) (time.Duration, handlers.FleetHealth) {
	b.Helper()
	serve := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/health/fleet", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	// The answer must be the real one, not a fast error.
	rec := serve()
	var body handlers.FleetHealth
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusOK || body.Agents.Known == nil ||
		*body.Agents.Known != benchAgents || body.RecentResults.Total == nil || *body.RecentResults.Total < benchRuns/3 {
		b.Fatalf("warm-up: %d %s (%v)", rec.Code, rec.Body, err)
	}
	durations := make([]time.Duration, 0, max(b.N, 1))
	for b.Loop() {
		start := time.Now()
		if rec := serve(); rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
		durations = append(durations, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durations)
	median := durations[len(durations)/2]
	b.ReportMetric(float64(median.Nanoseconds()), "median-ns/op")
	return median, body
}

// bruteForceFleetCounts times the two COUNT(*) scans kanade-backend 0.43.56
// ran per request (best of three), on a separate connection.
func bruteForceFleetCounts(b *testing.B, path string) time.Duration {
	b.Helper()
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	staleCutoff := kanade.FormatTime(benchNow.Add(-2 * time.Minute))
	since := kanade.FormatTime(benchNow.Add(-24 * time.Hour))
	best := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		var known, active, total, failed int64
		if err := raw.QueryRow(`SELECT COUNT(*), COALESCE(SUM(CASE WHEN last_heartbeat >= ? THEN 1 ELSE 0 END), 0) FROM agents`,
			staleCutoff).Scan(&known, &active); err != nil {
			b.Fatal(err)
		}
		if err := raw.QueryRow(`SELECT COUNT(*), COALESCE(SUM(CASE WHEN exit_code <> 0 THEN 1 ELSE 0 END), 0)
			FROM execution_results WHERE recorded_at >= ?`, since).Scan(&total, &failed); err != nil {
			b.Fatal(err)
		}
		best = min(best, time.Since(start))
	}
	return best
}
