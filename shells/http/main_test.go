package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/shells/internal/app"
	"github.com/kanade-fleet/backend/storage"
)

// shell is one in-process run of the HTTP shell.
type shell struct {
	base    string // http://127.0.0.1:port/
	token   string
	created bool
	stdout  *testkit.SyncBuffer
	stderr  *testkit.SyncBuffer
	cancel  context.CancelFunc
	done    chan struct{} // closed when run returned
	err     error         // run's result, valid after done
}

var dashboardLine = regexp.MustCompile(`kanade: dashboard (http://127\.0\.0\.1:\d+/)#token=(\S+) \(token (new|kept)`)

// start runs the shell with env as its whole environment, waits for the
// dashboard line and for /healthz to answer.
func start(t *testing.T, env map[string]string, args ...string) *shell {
	t.Helper()
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &testkit.SyncBuffer{}
	s := &shell{stdout: &testkit.SyncBuffer{}, stderr: stderr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = run(ctx, append([]string{"kanade-http"}, args...), lookup, s.stdout, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(app.ShutdownTimeout + 5*time.Second):
		}
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", s.stdout, stderr)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := dashboardLine.FindStringSubmatch(s.stdout.String()); m != nil {
			s.base, s.token, s.created = m[1], m[2], m[3] == "new"
			break
		}
		select {
		case <-s.done:
			t.Fatalf("run returned before serving: %v\nstderr:\n%s", s.err, stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dashboard line after 30s\nstdout:\n%s\nstderr:\n%s", s.stdout, stderr)
		}
	}
	for {
		resp, err := http.Get(s.base + "healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz not ready after 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitBootstrapped waits until the shell has created every JetStream
// resource: it does that in the background once NATS answers.
func (s *shell) waitBootstrapped(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a guard against hangs, not a performance target
	for {
		code, body := get(t, s.base+"api/jetstream/status", s.token)
		if code == http.StatusOK && !strings.Contains(body, `"exists":false`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream not bootstrapped after 30s: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop cancels the run and requires a clean return within the shutdown bound.
func (s *shell) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	began := time.Now()
	select {
	case <-s.done:
		if s.err != nil {
			t.Fatalf("run returned %v after cancel, want nil", s.err)
		}
		t.Logf("shutdown took %v", time.Since(began))
	case <-time.After(app.ShutdownTimeout + 2*time.Second):
		t.Fatalf("run did not return within %v of cancel", app.ShutdownTimeout+2*time.Second)
	}
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func freshEnv(t *testing.T) map[string]string {
	return map[string]string{
		"KANADE_DATA_DIR":    t.TempDir(),
		"KANADE_NATS_LISTEN": "127.0.0.1:-1",
	}
}

func TestFreshInstallServesProbesAndAuthenticatedFleetHealth(t *testing.T) {
	env := freshEnv(t)
	s := start(t, env, "-addr", "127.0.0.1:0")
	if !s.created {
		t.Errorf("first start on an empty data folder did not report a new token")
	}

	for _, probe := range []string{"health", "healthz", "readyz"} {
		if code, body := get(t, s.base+probe, ""); code != http.StatusOK {
			t.Errorf("GET /%s = %d %q, want 200", probe, code, body)
		}
	}

	if code, body := get(t, s.base, ""); code != http.StatusOK || !strings.Contains(strings.ToLower(body), "<html") {
		t.Errorf("GET / = %d %.80q, want the dashboard's index.html", code, body)
	}

	code, body := get(t, s.base+"api/health/fleet", s.token)
	if code != http.StatusOK {
		t.Fatalf("GET /api/health/fleet with the printed token = %d %s, want 200", code, body)
	}
	var fleet struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(body), &fleet); err != nil {
		t.Fatalf("fleet body %q: %v", body, err)
	}
	if fleet.Status != "unknown" {
		t.Errorf("fresh install fleet status = %q, want unknown (no agents, every JetStream resource bootstrapped)", fleet.Status)
	}

	if code, body := get(t, s.base+"api/health/fleet", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /api/health/fleet without a token = %d %s, want 401", code, body)
	}
	if code, _ := get(t, s.base+"api/health/fleet", s.token+"x"); code != http.StatusUnauthorized {
		t.Errorf("GET /api/health/fleet with a wrong token = %d, want 401", code)
	}

	code, body = get(t, s.base+"metrics", s.token)
	if code != http.StatusOK || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "kanade_fleet_") {
		t.Errorf("GET /metrics with the token = %d, want 200 with process and fleet metrics:\n%.300s", code, body)
	}
	if code, _ := get(t, s.base+"metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /metrics without a token = %d, want 401", code)
	}

	s.stop(t)
	if _, err := os.Stat(filepath.Join(env["KANADE_DATA_DIR"], "kanade.db")); err != nil {
		t.Errorf("default database not in the data folder: %v", err)
	}
}

func TestSecondStartReusesTheGeneratedToken(t *testing.T) {
	env := freshEnv(t)
	first := start(t, env, "-addr", "127.0.0.1:0")
	first.stop(t)

	second := start(t, env, "-addr", "127.0.0.1:0")
	defer second.stop(t)
	if second.created {
		t.Errorf("second start created a new token instead of reusing the saved one")
	}
	if second.token != first.token {
		t.Fatalf("second start printed token %q, want the first start's %q", second.token, first.token)
	}
	if code, body := get(t, second.base+"api/health/fleet", first.token); code != http.StatusOK {
		t.Errorf("first start's token on the second start: GET /api/health/fleet = %d %s, want 200", code, body)
	}
}

func TestConfiguredStaticTokenIsNotPrinted(t *testing.T) {
	env := freshEnv(t)
	env["KANADE_AUTH_STATIC_TOKEN"] = "s3cret-static-token"
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &testkit.SyncBuffer{}, &testkit.SyncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"kanade-http", "-addr", "127.0.0.1:0"}, lookup, stdout, stderr) }()
	listening := regexp.MustCompile(`kanade: dashboard (http://127\.0\.0\.1:\d+/)\n`)
	deadline := time.Now().Add(30 * time.Second)
	var base string
	for base == "" {
		if m := listening.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		} else if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no dashboard line\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get(t, base+"api/health/fleet", "s3cret-static-token"); code != http.StatusOK {
		t.Errorf("static token: GET /api/health/fleet = %d %s, want 200", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	for name, out := range map[string]string{"stdout": stdout.String(), "stderr": stderr.String()} {
		if strings.Contains(out, "s3cret-static-token") {
			t.Errorf("%s shows the configured static token:\n%s", name, out)
		}
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"kanade-http", "-h"}, func(string) (string, bool) { return "", false }, io.Discard, &stderr)
	if err != nil {
		t.Fatalf("run -h = %v, want nil", err)
	}
	for _, want := range []string{"KANADE_HTTP_ADDR", "-addr", `"127.0.0.1:8080"`, "KANADE_DB", "KANADE_NATS_URL",
		"KANADE_AUTH_DISABLE", "KANADE_STALE_DEGRADED_RATIO", "KANADE_WORKER", "KANADE_DEMO", "-demo", "KANADE_DEMO_RUNS", "-demo-runs job=duration,..."} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("-h output lacks %q:\n%s", want, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "KANADE_ADMIN_ADDR") {
		t.Errorf("-h of the HTTP shell lists the worker's KANADE_ADMIN_ADDR")
	}
}

func TestBadConfigurationFailsBeforeOpeningAnything(t *testing.T) {
	env := freshEnv(t)
	env["KANADE_STALE_DEGRADED_RATIO"] = "1.5"
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	err := run(context.Background(), []string{"kanade-http"}, lookup, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "KANADE_STALE_DEGRADED_RATIO") {
		t.Fatalf("run with ratio 1.5 = %v, want an error naming KANADE_STALE_DEGRADED_RATIO", err)
	}
	if entries, _ := os.ReadDir(env["KANADE_DATA_DIR"]); len(entries) != 0 {
		t.Errorf("a rejected configuration still wrote into the data folder: %v", entries)
	}
}

// TestStartWarmsScanDurations: a start reads scan_durations' default window
// once in the background (warmScanDurations), so the first caller finds it
// kept; the log says so, with the jobs it found in the database the shell
// opened.
func TestStartWarmsScanDurations(t *testing.T) {
	env := freshEnv(t)
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(env["KANADE_DATA_DIR"], "kanade.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	exit := int64(0)
	var rs []storage.Result
	for i, job := range []string{"job-a", "job-b", "job-a"} {
		done := time.Now().Add(-time.Duration(i+1) * time.Hour)
		rs = append(rs, storage.Result{ExecResult: kanade.ExecResult{ResultID: fmt.Sprintf("r%d", i), RequestID: fmt.Sprintf("q%d", i),
			PcID: "PC-1", ExitCode: &exit, ManifestID: job,
			StartedAt: kanade.Timestamp{Time: done.Add(-time.Minute)}, FinishedAt: kanade.Timestamp{Time: done}}, RecordedAt: done})
	}
	if err := db.Update(ctx, func(tx *storage.Tx) error { _, err := tx.ApplyResults(ctx, rs); return err }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := start(t, env, "-addr", "127.0.0.1:0")
	warmed := regexp.MustCompile(`msg="scan_durations warmed" jobs=(\d+)`)
	deadline := time.Now().Add(30 * time.Second) // a guard against hangs, not a performance target
	for {
		if m := warmed.FindStringSubmatch(s.stderr.String()); m != nil {
			if m[1] != "2" {
				t.Errorf("warmed %s jobs, want the 2 of the window", m[1])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no scan_durations warm-up logged after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop(t)
}
