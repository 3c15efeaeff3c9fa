package handlers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// BenchmarkAgentsPage measures GET /api/agents?limit=500 through the whole
// handler, gzipped as a browser asks for it, over 20k agents with every
// column filled as a 0.43.56 agent fills it (issue 13: a 500-row page cost
// about ten times a plain one). The figure to watch is ns/op and allocs/op:
// CPU per request is what decides the p99 under bench/agents's 50
// connections on two cores.
func BenchmarkAgentsPage(b *testing.B) {
	now := time.Date(2026, 6, 20, 12, 0, 0, 0, time.UTC)
	db := storagetest.Open(b, func() time.Time { return now })
	ctx := b.Context()
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, fmt.Sprintf(`WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 19999)
			INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, agent_cpu_pct, agent_rss_bytes,
				agent_disk_read_bytes, agent_disk_written_bytes, quarantined_versions, last_logon_user, last_logon_display_name,
				command_keys, command_protocols, enforcing, updated_at)
			SELECT printf('PC-%%06d', i), printf('host-%%06d.corp.example', i), CASE i %% 3 WHEN 0 THEN 'windows' WHEN 1 THEN 'linux' ELSE 'darwin' END,
			       '0.43.' || (50 + i %% 6),
			       strftime('%%Y-%%m-%%dT%%H:%%M:%%S', %d - (1 + (i * 7) %% 600), 'unixepoch') || printf('.%%09dZ', (i * 7919) %% 1000000000),
			       (i %% 1000) / 7.0, 50000000 + i * 1013, i * 4096, i * 8192, '[]', printf('user%%04d', i %% 5000), printf('User %%04d', i %% 5000),
			       '["k-2026-01"]', '["v1","v2"]', i %% 2,
			       '2026-06-20T11:50:00.000000000Z'
			FROM s`, now.Unix()))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	h, err := handlers.New(handlers.Config{DB: db, Clock: func() time.Time { return now },
		StaleThreshold: 2 * time.Minute, Auth: auth.Config{StaticToken: testToken}})
	if err != nil {
		b.Fatal(err)
	}
	for _, q := range []string{"limit=500", "limit=50"} {
		b.Run(q, func(b *testing.B) {
			serve := func() *httptest.ResponseRecorder {
				req := httptest.NewRequest(http.MethodGet, "/api/agents?"+q, nil)
				req.Header.Set("Authorization", "Bearer "+testToken)
				req.Header.Set("Accept-Encoding", "gzip")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec
			}
			if rec := serve(); rec.Code != http.StatusOK || rec.Header().Get("Content-Encoding") != "gzip" {
				b.Fatalf("warm-up: %d %q", rec.Code, rec.Header().Get("Content-Encoding"))
			}
			b.ReportAllocs()
			for b.Loop() {
				serve()
			}
		})
	}
}
