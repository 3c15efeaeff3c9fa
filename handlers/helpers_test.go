package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/auth/password"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/metrics"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
	"github.com/prometheus/client_golang/prometheus"
)

// testToken is the static bearer token of every test handler: the tests go
// through the real auth middleware.
const testToken = "handlers-test-token-0123456789abcdef"

// testNow is the fake clock's start; its milliseconds show that observed_at
// keeps sub-second precision.
var testNow = time.Date(2026, 6, 20, 1, 2, 3, 456_000_000, time.UTC)

// fakeClock is a settable kanade.Clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// env is one handler over a real database (storagetest: SQLite, or sqld
// when KANADE_TEST_SQLD is set) and a real embedded NATS.
type env struct {
	t       testing.TB
	db      *storage.DB
	nats    *bustest.Server
	clock   *fakeClock
	metrics *metrics.Prometheus
	cfg     handlers.Config
	h       http.Handler
}

// newEnv opens a fresh database and a bootstrapped NATS server; tweak edits
// the Config before the handler is built.
func newEnv(t testing.TB, tweak func(*handlers.Config)) *env {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, clock: &fakeClock{t: testNow}, metrics: m}
	db := storagetest.Open(t, e.clock.Now)
	e.db = db
	e.nats = bustest.StartBootstrapped(t)
	e.cfg = handlers.Config{
		DB:            db,
		Prober:        bus.Prober{Client: bus.Static(e.nats.Bus), Replicas: 1},
		NATSConnected: e.nats.NC.IsConnected,
		Clock:         e.clock.Now,
		Auth:          auth.Config{StaticToken: testToken},
		Metrics:       e.metrics,
		PasswordCost:  testPasswordCost,
	}
	if tweak != nil {
		tweak(&e.cfg)
	}
	if e.h, err = handlers.New(e.cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// testPasswordCost keeps each hash under a millisecond: the accounts
// tests hash and verify hundreds of passwords, and at the default cost
// (BenchmarkHash measures it) they took minutes of a race run.
var testPasswordCost = password.Params{Time: 1, MemoryKiB: 64, Threads: 1}

// get serves GET path with the bearer token and the given header pairs.
func (e *env) get(path string, header ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// agent is a row of agents as the projection would write it.
type agent struct {
	pc   string
	beat time.Time
}

// run is a row of execution_results as the projection would write it.
type run struct {
	id       string
	exitCode any // nil while running
	skipped  bool
	recorded time.Time
}

// seed writes agents and runs in one transaction (the triggers keep the
// fleet summaries as the projection's writes would).
func (e *env) seed(agents []agent, runs []run) {
	e.t.Helper()
	ctx := context.Background()
	err := e.db.Update(ctx, func(tx *storage.Tx) error {
		for _, a := range agents {
			if _, err := tx.Exec(ctx, `INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES (?, ?, ?)
				ON CONFLICT (pc_id) DO UPDATE SET last_heartbeat = excluded.last_heartbeat`,
				a.pc, kanade.FormatTime(a.beat), kanade.FormatTime(a.beat)); err != nil {
				return err
			}
		}
		for _, r := range runs {
			if _, err := tx.Exec(ctx, `INSERT INTO execution_results (result_id, exit_code, skipped, recorded_at) VALUES (?, ?, ?, ?)`,
				r.id, r.exitCode, r.skipped, kanade.FormatTime(r.recorded)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// decode parses a JSON body into generic values, so tests see the exact
// field names on the wire.
func decode(t testing.TB, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	if _, ok := m["$schema"]; ok {
		t.Fatalf("body carries huma's $schema link; the contract has exactly the documented fields")
	}
	return m
}
