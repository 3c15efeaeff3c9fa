package handlers_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/handlers"
)

// serveOpen serves a request without a token, as a load balancer would.
func serveOpen(h http.Handler, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestLivenessTouchesNothing(t *testing.T) {
	e := newEnv(t, nil)
	// Liveness must hold while every dependency is down.
	e.db.Close()
	e.nats.Shutdown()
	for _, path := range []string{"/health", "/healthz"} {
		rec := serveOpen(e.h, path)
		got := []string{http.StatusText(rec.Code), rec.Header().Get("Content-Type"), rec.Body.String()}
		want := []string{"OK", "text/plain; charset=utf-8", "ok"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", path, diff)
		}
	}
}

func TestReadyz(t *testing.T) {
	tests := []struct {
		name     string
		tweak    func(*handlers.Config)
		breakIt  func(e *env)
		wantCode int
		want     handlers.Readiness
	}{
		{
			name:     "database and NATS up is ready",
			wantCode: http.StatusOK,
			want:     handlers.Readiness{Status: "ready", Checks: map[string]string{"database": "ok", "nats": "ok"}},
		},
		{
			name:     "a closed database is not ready and named",
			breakIt:  func(e *env) { e.db.Close() },
			wantCode: http.StatusServiceUnavailable,
			want:     handlers.Readiness{Status: "not_ready", Checks: map[string]string{"database": "database ping failed", "nats": "ok"}},
		},
		{
			name: "a NATS server that went away is not ready and named",
			breakIt: func(e *env) {
				e.nats.Shutdown()
				e.nats.WaitForShutdown()
				// The client notices the closed socket asynchronously;
				// readiness reports what the connection knows.
				for deadline := time.Now().Add(5 * time.Second); e.nats.NC.IsConnected() && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
				}
			},
			wantCode: http.StatusServiceUnavailable,
			want:     handlers.Readiness{Status: "not_ready", Checks: map[string]string{"database": "ok", "nats": "not connected"}},
		},
		{
			name:     "no NATS configured is not ready",
			tweak:    func(c *handlers.Config) { c.NATSConnected = nil },
			wantCode: http.StatusServiceUnavailable,
			want:     handlers.Readiness{Status: "not_ready", Checks: map[string]string{"database": "ok", "nats": "no NATS connection configured"}},
		},
		{
			name:     "a NATS check that hangs is bounded",
			tweak:    func(c *handlers.Config) { c.NATSConnected = func() bool { time.Sleep(5 * time.Second); return true } },
			wantCode: http.StatusServiceUnavailable,
			want:     handlers.Readiness{Status: "not_ready", Checks: map[string]string{"database": "ok", "nats": "no answer within 900ms"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.tweak)
			if tt.breakIt != nil {
				tt.breakIt(e)
			}
			start := time.Now()
			rec := serveOpen(e.h, "/readyz")
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("answered after %v", d)
			}
			if rec.Code != tt.wantCode {
				t.Errorf("code %d, want %d", rec.Code, tt.wantCode)
			}
			var got handlers.Readiness
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("%v: %s", err, rec.Body)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestVersionIsOpen(t *testing.T) {
	e := newEnv(t, nil)
	rec := serveOpen(e.h, "/api/version")
	if rec.Code != http.StatusOK {
		t.Fatalf("code %d: %s", rec.Code, rec.Body)
	}
	want := map[string]any{"version": kanade.Version, "commit": kanade.Commit}
	if diff := cmp.Diff(want, decode(t, rec)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}
