package storage_test

import (
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// benchFleet is the size of the fleet the agent benchmarks seed.
const benchFleet = 100_000

// seedVersionedFleet writes n agents in one statement: six versions in uneven
// shares plus a few without one, heartbeats spread over the ten minutes
// before now (a fifth within two minutes).
func seedVersionedFleet(b *testing.B, db *storage.DB, now time.Time, n int) {
	b.Helper()
	ctx := b.Context()
	start := time.Now()
	q := fmt.Sprintf(`WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < %d)
		INSERT INTO agents (pc_id, agent_version, last_heartbeat, updated_at)
		SELECT printf('PC-%%06d', i),
		       CASE WHEN i %% 97 = 0 THEN NULL ELSE '0.43.' || CASE WHEN i %% 100 < 40 THEN 56 WHEN i %% 100 < 65 THEN 55
		            WHEN i %% 100 < 80 THEN 54 WHEN i %% 100 < 90 THEN 53 WHEN i %% 100 < 96 THEN 52 ELSE 51 END END,
		       strftime('%%Y-%%m-%%dT%%H:%%M:%%S', %d - (1 + (i * 7) %% 600), 'unixepoch') || printf('.%%09dZ', (i * 7919) %% 1000000000),
		       '2026-01-01T00:00:00.000000000Z'
		FROM s`, n-1, now.Unix())
	err := db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, q)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d agents in %v", n, time.Since(start).Round(time.Millisecond))
}

// BenchmarkAgentVersions measures the version rollup of GET
// /api/agents/versions over 100k agents (SQLite, or sqld with
// KANADE_TEST_SQLD) and reports the median besides the mean, and as the
// baseline the plain GROUP BY over the agents table (best of three) that
// the summaries replace.
func BenchmarkAgentVersions(b *testing.B) {
	now := time.Date(2026, 6, 20, 12, 0, 0, 0, time.UTC)
	db := storagetest.Open(b, func() time.Time { return now })
	seedVersionedFleet(b, db, now, benchFleet)
	ctx := b.Context()
	first, err := db.AgentVersions(ctx, now.Add(-2*time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, v := range first {
		total += v.Total
	}
	if total != benchFleet || len(first) != 7 {
		b.Fatalf("warm-up: %d buckets, %d agents", len(first), total)
	}
	durations := make([]time.Duration, 0, max(b.N, 1))
	for b.Loop() {
		start := time.Now()
		if _, err := db.AgentVersions(ctx, now.Add(-2*time.Minute)); err != nil {
			b.Fatal(err)
		}
		durations = append(durations, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durations)
	median := durations[len(durations)/2]
	b.ReportMetric(float64(median.Nanoseconds()), "median-ns/op")
	baseline := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		n := 0
		if err := storage.QueryForTest(ctx, db, `SELECT agent_version, COUNT(*), SUM(last_heartbeat >= ?) FROM agents
			GROUP BY agent_version ORDER BY COUNT(*) DESC, agent_version`, []any{kanade.FormatTime(now.Add(-2 * time.Minute))},
			func(*sql.Rows) error { n++; return nil }); err != nil || n != len(first) {
			b.Fatalf("baseline: %d rows, %v", n, err)
		}
		baseline = min(baseline, time.Since(start))
	}
	b.ReportMetric(float64(baseline.Nanoseconds()), "groupby-baseline-ns")
	b.ReportMetric(float64(baseline)/float64(median), "x-faster-than-groupby")
}
