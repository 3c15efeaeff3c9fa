package handlers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
	"github.com/nats-io/nats.go"
)

// median sorts durations and returns the middle one.
func median(durations []time.Duration) time.Duration {
	slices.Sort(durations)
	return durations[len(durations)/2]
}

// BenchmarkAgentVersionsRoute measures GET /api/agents/versions through
// the whole handler over 100k agents of seven versions (a fresh SQLite
// file, or sqld with KANADE_TEST_SQLD), and reports the median.
func BenchmarkAgentVersionsRoute(b *testing.B) {
	now := time.Date(2026, 6, 20, 12, 0, 0, 0, time.UTC)
	db := storagetest.Open(b, func() time.Time { return now })
	ctx := b.Context()
	start := time.Now()
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, fmt.Sprintf(`WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 99999)
			INSERT INTO agents (pc_id, agent_version, last_heartbeat, updated_at)
			SELECT printf('PC-%%06d', i),
			       CASE WHEN i %% 97 = 0 THEN NULL ELSE '0.43.' || (50 + i %% 6) END,
			       strftime('%%Y-%%m-%%dT%%H:%%M:%%S', %d - (1 + (i * 7) %% 600), 'unixepoch') || printf('.%%09dZ', (i * 7919) %% 1000000000),
			       '2026-01-01T00:00:00.000000000Z'
			FROM s`, now.Unix()))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded 100000 agents in %v (remote: %v)", time.Since(start).Round(time.Millisecond), db.Remote())
	h, err := handlers.New(handlers.Config{DB: db, Clock: func() time.Time { return now },
		Auth: auth.Config{StaticToken: testToken}})
	if err != nil {
		b.Fatal(err)
	}
	serve := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/agents/versions", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := serve(); rec.Code != http.StatusOK || rec.Body.Len() < 100 {
		b.Fatalf("warm-up: %d %s", rec.Code, rec.Body)
	}
	durations := make([]time.Duration, 0, max(b.N, 1))
	for b.Loop() {
		t := time.Now()
		if rec := serve(); rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
		durations = append(durations, time.Since(t))
	}
	b.StopTimer()
	b.ReportMetric(float64(median(durations).Nanoseconds()), "median-ns/op")
}

// BenchmarkPing measures POST /api/agents/{pc_id}/ping over HTTP against an
// embedded NATS: an agent that answers; no agent connected, which must
// answer at once (NATS says there are no responders); and a connected
// agent that never answers, which must answer 408 at wait_secs=1, within
// 100 ms. It reports the median and the worst latency of each; for the
// silent agent also how far the worst one was from the 1 s timeout.
func BenchmarkPing(b *testing.B) {
	s := bustest.StartBootstrapped(b)
	h, err := handlers.New(handlers.Config{DB: storagetest.Open(b, nil), Bus: bus.Static(s.Bus),
		Auth: auth.Config{StaticToken: testToken}})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	agent, err := nats.Connect(s.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(agent.Close)
	if _, err := agent.Subscribe("agents.PC-UP.ping", func(m *nats.Msg) { _ = m.Respond([]byte(pingReply)) }); err != nil {
		b.Fatal(err)
	}
	if _, err := agent.Subscribe("agents.PC-SILENT.ping", func(*nats.Msg) {}); err != nil {
		b.Fatal(err)
	}
	if err := agent.Flush(); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, path string
		want       int
		timeout    time.Duration
	}{
		{"answering", "/api/agents/PC-UP/ping", http.StatusOK, 0},
		{"no-responders", "/api/agents/PC-OFF/ping?wait_secs=60", http.StatusRequestTimeout, 0},
		{"silent-1s", "/api/agents/PC-SILENT/ping?wait_secs=1", http.StatusRequestTimeout, time.Second},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var durations []time.Duration
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+bc.path, nil)
				req.Header.Set("Authorization", "Bearer "+testToken)
				t := time.Now()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				durations = append(durations, time.Since(t))
				if resp.StatusCode != bc.want {
					b.Fatalf("%s: %d, want %d", bc.path, resp.StatusCode, bc.want)
				}
			}
			b.StopTimer()
			worst := slices.Max(durations)
			b.ReportMetric(float64(median(durations).Microseconds())/1000, "median-ms")
			b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
			if bc.timeout > 0 {
				best := slices.Min(durations)
				b.ReportMetric(float64((worst-bc.timeout).Microseconds())/1000, "worst-overshoot-ms")
				if best < bc.timeout || worst > bc.timeout+100*time.Millisecond {
					b.Errorf("answered between %v and %v, want within [%v, %v]", best, worst, bc.timeout, bc.timeout+100*time.Millisecond)
				}
			}
		})
	}
}
