//go:build unix

package main

import (
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/shells/internal/app"
	"github.com/kanade-fleet/backend/shells/internal/proctest"
)

// envShell names a prebuilt worker binary; the process test runs only with
// it (scripts/ci-deploy.sh builds it).
const envShell = "KANADE_TEST_WORKER_SHELL"

// TestSIGTERMStopsTheWorkerAndExitsZero runs the real binary with a demo
// fleet, so the projector and the scheduler are busy, and requires SIGTERM
// to end it cleanly with status 0 within the shutdown bound.
func TestSIGTERMStopsTheWorkerAndExitsZero(t *testing.T) {
	if os.Getenv(envShell) == "" {
		t.Skipf("set %s to a built shells/worker (scripts/ci-deploy.sh does)", envShell)
	}
	bin := proctest.Build(t, envShell, "shells/worker")
	p := proctest.Start(t, bin, nil, map[string]string{
		"KANADE_DATA_DIR": t.TempDir(), "KANADE_ADMIN_ADDR": "127.0.0.1:0", "KANADE_NATS_LISTEN": "127.0.0.1:-1",
		"KANADE_DEMO": "40", "KANADE_LOG_LEVEL": "info"})
	p.WaitOutput(t, regexp.MustCompile(`admin on http://`), 60*time.Second)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.Stderr.String(), `msg="worker running"`) {
		if time.Now().After(deadline) {
			t.Fatal("the worker did not start running in 60 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // the demo fleet publishes; the projector applies

	began := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(app.ShutdownTimeout + 5*time.Second)
	if err != nil || code != 0 {
		t.Fatalf("after SIGTERM: exit %d, %v", code, err)
	}
	t.Logf("SIGTERM to exit 0: %v", time.Since(began))
	logs := p.Stderr.String()
	if !strings.Contains(logs, `msg=stopped`) {
		t.Error("no msg=stopped in the log")
	}
	for _, bad := range []string{"shutdown incomplete", "projector loop failed", "level=ERROR"} {
		if lines := proctest.Lines(logs, bad); len(lines) > 0 {
			t.Errorf("%s at shutdown:\n%s", bad, strings.Join(lines, "\n"))
		}
	}
}
