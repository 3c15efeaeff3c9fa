package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/shells/internal/app"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestAdminServesHealthAndAuthenticatedMetricsThenStops(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"KANADE_DATA_DIR": dir, "KANADE_NATS_LISTEN": "127.0.0.1:-1", "KANADE_ADMIN_ADDR": "127.0.0.1:0"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
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
