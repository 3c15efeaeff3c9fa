//go:build unix

package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/groupmirror"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// groupsBenchAgents is the fleet of BenchmarkListGroups: 100k PCs in 10
// groups, every PC in one and half of them in a second (1.45 memberships
// per PC once the few pairs that coincide are merged).
const groupsBenchAgents = 100_000

// groupsBenchNow is the benchmark's clock: off the minute, so the stale
// cutoff splits a minute as a real request's would (on the minute, the
// part of the cutoff's own minute the summary cannot cover is empty).
var groupsBenchNow = time.Date(2026, 6, 20, 12, 0, 37, 123_000_000, time.UTC)

// BenchmarkListGroups measures GET /api/groups through the whole handler
// (auth, the KV state and group-scope reads on a real embedded NATS, the
// mirror's two queries, 1.4 MB of JSON) at 100k PCs, over a SQLite file
// and, when KANADE_TEST_SQLD names a sqld, over a libSQL server. The
// mirror is filled the way a worker fills it (groupmirror.Run from the
// KV). Two heartbeat distributions: "live", a fleet beating every 30 s
// with a fifth of it offline for up to a month (the case the per-minute
// summary is built for), and "spread", every beat uniform over the last
// ten minutes (a tenth of the fleet in the cutoff's minute, which the
// summary cannot cover and the query joins). Each reports the median, the
// process's CPU time per request (NATS runs in-process too; on a shared
// machine the wall time measures the neighbours as much as the route) and,
// as the baseline, what the route would cost reading the bucket instead
// (every value in one ordered pass, inverted in memory, alive PCs from
// SQL: upstream's way, minus its per-key reads), and the ratio.
func BenchmarkListGroups(b *testing.B) {
	backends := []struct{ name, dsn string }{{"sqlite", filepath.Join(b.TempDir(), "kanade.db")}}
	if os.Getenv(storagetest.EnvSQLD) != "" {
		backends = append(backends, struct{ name, dsn string }{"sqld", storagetest.DSN(b)})
	}
	nats := bustest.StartBootstrapped(b)
	ctx := context.Background()
	start := time.Now()
	if err := putBenchMemberships(ctx, nats.Bus); err != nil {
		b.Fatal(err)
	}
	b.Logf("stored %d memberships in KV in %v", groupsBenchAgents, time.Since(start).Round(time.Millisecond))
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db, err := storage.Open(ctx, be.dsn, storage.Options{Clock: func() time.Time { return groupsBenchNow }})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			start := time.Now()
			mirrorBench(b, nats, db)
			b.Logf("%s: worker mirrored %d memberships in %v", be.name, groupsBenchAgents, time.Since(start).Round(time.Millisecond))
			h, err := handlers.New(handlers.Config{DB: db, Bus: bus.Static(nats.Bus), Clock: func() time.Time { return groupsBenchNow },
				Auth: auth.Config{StaticToken: testToken}})
			if err != nil {
				b.Fatal(err)
			}
			for _, dist := range []struct {
				name string
				// beat is PC i's last heartbeat as seconds before benchNow.
				beat string
			}{
				{"live", "CASE WHEN i % 5 = 0 THEN 150 + (i * 7919) % 2592000 ELSE (i * 7) % 30 END"},
				{"spread", "(i * 7) % 600"},
			} {
				b.Run(dist.name, func(b *testing.B) {
					seedBenchBeats(b, db, dist.beat)
					median, rows := serveGroups(b, h)
					baseline := walkBaseline(b, nats.Bus, db)
					b.ReportMetric(float64(baseline.Nanoseconds()), "kv-walk-baseline-ns")
					b.ReportMetric(float64(baseline)/float64(median), "x-faster-than-kv-walk")
					var members, alive int64
					for _, r := range rows {
						members += int64(len(r.Members))
						alive += r.Alive
					}
					b.Logf("%s/%s: %d groups, %d memberships, %d alive; median request %v, KV walk %v (%.0fx)",
						be.name, dist.name, len(rows), members, alive, median, baseline, float64(baseline)/float64(median))
				})
			}
		})
	}
}

// benchGroups is PC i's groups.
func benchGroups(i int) []string {
	gs := []string{fmt.Sprintf("group-%02d", i%10)}
	if i%2 == 0 {
		gs = append(gs, fmt.Sprintf("group-%02d", (i/2+3)%10))
	}
	return kanade.NormalizeGroups(gs)
}

// putBenchMemberships stores every PC's groups in KV agent_groups,
// pipelined: one PutAll per distinct value.
func putBenchMemberships(ctx context.Context, c *bus.Client) error {
	byValue := map[string][]string{}
	for i := range groupsBenchAgents {
		v := string(kanade.EncodeAgentGroups(benchGroups(i)))
		byValue[v] = append(byValue[v], fmt.Sprintf("PC-%06d", i))
	}
	for v, keys := range byValue {
		if err := c.PutAll(ctx, kanade.BucketAgentGroups, keys, []byte(v)); err != nil {
			return err
		}
	}
	return nil
}

// mirrorBench runs the worker's watch until the mirror holds the whole
// bucket with every member list built, then stops it.
func mirrorBench(b *testing.B, nats *bustest.Server, db *storage.DB) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = groupmirror.Run(ctx, nats.Bus, groupmirror.Config{DB: db, Logger: slog.New(slog.DiscardHandler)})
	}()
	defer func() { cancel(); <-done }()
	st, err := nats.Bus.KVState(ctx, kanade.BucketAgentGroups)
	if err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		m, err := db.GroupsMirror(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if m.Current(st.Created, st.Revision) && m.StaleLists == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the mirror never caught up: %+v, bucket %+v", m, st)
		}
	}
}

// seedBenchBeats gives every PC a heartbeat beat seconds before benchNow
// (a SQL expression of i), inserting or moving the agents rows in one
// statement, through the triggers.
func seedBenchBeats(b *testing.B, db *storage.DB, beat string) {
	b.Helper()
	ctx := context.Background()
	base := groupsBenchNow.Unix()
	err := db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, fmt.Sprintf(`
			WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
			INSERT INTO agents (pc_id, last_heartbeat, updated_at)
			SELECT printf('PC-%%06d', i), strftime('%%Y-%%m-%%dT%%H:%%M:%%S', %d - (%s), 'unixepoch') || printf('.%%09dZ', (i * 7919) %% 1000000000), 'seed'
			FROM n WHERE true
			ON CONFLICT (pc_id) DO UPDATE SET last_heartbeat = excluded.last_heartbeat`, groupsBenchAgents-1, base, beat))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.PruneGroupMinutes(ctx); err != nil {
		b.Fatal(err)
	}
}

// serveGroups times GET /api/groups b.N times and returns the median and
// the warm-up answer, checked for size.
func serveGroups(b *testing.B, h http.Handler) (time.Duration, []groupRow) {
	b.Helper()
	serve := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/groups", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	rec := serve()
	var body struct {
		Groups []groupRow `json:"groups"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusOK || len(body.Groups) != 10 {
		b.Fatalf("warm-up: %d %.300s (%v)", rec.Code, rec.Body, err)
	}
	durations := make([]time.Duration, 0, max(b.N, 1))
	cpu0 := processCPU(b)
	for b.Loop() {
		start := time.Now()
		if rec := serve(); rec.Code != http.StatusOK {
			b.Fatalf("%d %.300s", rec.Code, rec.Body)
		}
		durations = append(durations, time.Since(start))
	}
	b.StopTimer()
	cpu := (processCPU(b) - cpu0) / time.Duration(len(durations))
	slices.Sort(durations)
	median := durations[len(durations)/2]
	b.ReportMetric(float64(median.Nanoseconds()), "median-ns/op")
	b.ReportMetric(float64(cpu.Nanoseconds()), "cpu-ns/op")
	return median, body.Groups
}

// walkBaseline times (best of three) the answer built from the bucket: one
// ordered read of every value, decoded and inverted, alive PCs from SQL.
func walkBaseline(b *testing.B, c *bus.Client, db *storage.DB) time.Duration {
	b.Helper()
	ctx := context.Background()
	best := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		es, err := c.Entries(ctx, kanade.BucketAgentGroups)
		if err != nil {
			b.Fatal(err)
		}
		members := map[string][]string{}
		for _, e := range es {
			gs, err := kanade.DecodeAgentGroups(e.Value)
			if err != nil {
				continue
			}
			for _, g := range gs {
				members[g] = append(members[g], e.Key)
			}
		}
		alivePCs, err := db.AlivePCs(ctx, groupsBenchNow.Add(-kanade.DefaultStaleThreshold))
		if err != nil {
			b.Fatal(err)
		}
		isAlive := make(map[string]bool, len(alivePCs))
		for _, pc := range alivePCs {
			isAlive[pc] = true
		}
		var alive int
		for _, ms := range members {
			for _, pc := range ms {
				if isAlive[pc] {
					alive++
				}
			}
		}
		if _, err := json.Marshal(members); err != nil {
			b.Fatal(err)
		}
		best = min(best, time.Since(start))
		if len(es) != groupsBenchAgents || alive == 0 {
			b.Fatalf("baseline read %d keys, %d alive", len(es), alive)
		}
	}
	return best
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
