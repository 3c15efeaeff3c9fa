package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bus/natsd"
	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/shells/internal/app"
)

func TestAdminServesHealthAndAuthenticatedMetricsThenStops(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"KANADE_DATA_DIR": dir, "KANADE_NATS_LISTEN": "127.0.0.1:-1", "KANADE_ADMIN_ADDR": "127.0.0.1:0"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &testkit.SyncBuffer{}, &testkit.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"kanade-worker"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, stdout, stderr)
	}()
	line := regexp.MustCompile(`admin on (http://127\.0\.0\.1:\d+/)`)
	var base string
	deadline := time.Now().Add(30 * time.Second)
	for base == "" {
		if m := line.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\n%s", err, stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no admin line\n%s", stderr)
		}
	}
	// The worker keeps the same generated token as the HTTP shell would.
	token, created, err := auth.LoadOrCreateToken(dir)
	if err != nil || created {
		t.Fatalf("token after start: created=%v err=%v, want the worker's existing token", created, err)
	}

	status := func(path, tok string) int {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		path, tok string
		want      int
	}{
		{"healthz", "", http.StatusOK},
		{"metrics", "", http.StatusUnauthorized},
		{"metrics", token, http.StatusOK},
	} {
		if got := status(c.path, c.tok); got != c.want {
			t.Errorf("GET /%s (token %v) = %d, want %d", c.path, c.tok != "", got, c.want)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel = %v, want nil\n%s", err, stderr)
		}
	case <-time.After(app.ShutdownTimeout + 2*time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestWorkerStartsWithoutNATSAndSaysWhyItIsNotReady(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{"KANADE_DATA_DIR": t.TempDir(), "KANADE_NATS_URL": "nats://" + addr,
		"KANADE_ADMIN_ADDR": "127.0.0.1:0", "KANADE_AUTH_STATIC_TOKEN": "t"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &testkit.SyncBuffer{}, &testkit.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"kanade-worker"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, stdout, stderr)
	}()
	line := regexp.MustCompile(`admin on (http://127\.0\.0\.1:\d+/)`)
	var base string
	deadline := time.Now().Add(30 * time.Second)
	for base == "" {
		if m := line.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("run returned with NATS down: %v\n%s", err, stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no admin line\n%s", stderr)
		}
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("healthz"); code != http.StatusOK || !strings.Contains(body, "not ready") || !strings.Contains(body, "nats: not connected") {
		t.Errorf("/healthz = %d %q, want 200 saying NATS is not connected", code, body)
	}
	if code, body := get("readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"nats":"not connected`) {
		t.Errorf("/readyz = %d %s, want 503 naming NATS", code, body)
	}
	srv, err := natsd.Start(natsd.Options{Listen: addr, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	for {
		code, body := get("readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("/readyz after NATS appeared: %d %s\n%s", code, body, stderr)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if code, body := get("healthz"); code != http.StatusOK || body != "ok" {
		t.Errorf("/healthz when ready = %d %q", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after cancel = %v", err)
	}
}
