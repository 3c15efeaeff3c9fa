//go:build unix

package shells_test

// The shells as the operating system runs them: SIGTERM to the real
// binaries. They run only with prebuilt binaries (scripts/ci-deploy.sh builds
// them), since building them here would double the suite's time.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/shells/internal/app"
	"github.com/kanade-fleet/backend/shells/internal/proctest"
)

// The variables naming the prebuilt binaries.
const (
	envHTTPShell   = "KANADE_TEST_HTTP_SHELL"
	envWorkerShell = "KANADE_TEST_WORKER_SHELL"
)

// TestSIGTERMDrainsTheHTTPShellThenExitsZero runs the real binary with the worker and a
// demo fleet (so the projector has batches in flight and the scheduler
// ticks), sends SIGTERM while a request is half uploaded, and requires the
// request answered, the worker stopped cleanly and exit status 0 within the
// shutdown bound.
func TestSIGTERMDrainsTheHTTPShellThenExitsZero(t *testing.T) {
	if os.Getenv(envHTTPShell) == "" {
		t.Skipf("set %s to a built shells/http (scripts/ci-deploy.sh does)", envHTTPShell)
	}
	bin := proctest.Build(t, envHTTPShell, "shells/http")
	const tok = "graceful-token"
	p := proctest.Start(t, bin, nil, map[string]string{
		"KANADE_DATA_DIR": t.TempDir(), "KANADE_HTTP_ADDR": "127.0.0.1:0", "KANADE_NATS_LISTEN": "127.0.0.1:-1",
		"KANADE_AUTH_STATIC_TOKEN": tok, "KANADE_DEMO": "40", "KANADE_LOG_LEVEL": "info"})
	base := p.WaitOutput(t, regexp.MustCompile(`kanade: listening on (http://\S+)/`), 60*time.Second)[1]

	// Wait until the projector has committed results of the demo fleet:
	// from then on, batches are in flight.
	deadline := time.Now().Add(60 * time.Second)
	applied := regexp.MustCompile(`"name":"kanade-projector-results"[^}]*?"applied_seq":([1-9][0-9]*)`)
	for {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/health/fleet", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if applied.Match(b) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the projector applied no result of the demo fleet in 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A request whose body is still arriving when the signal comes.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"id":"graceful","version":"1","execute":{"shell":"powershell","script":"Get-Date"}}`
	fmt.Fprintf(conn, "POST /api/jobs HTTP/1.1\r\nHost: kanade\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", tok, len(body), body[:10])
	time.Sleep(200 * time.Millisecond) // the server has read the headers: the connection is active

	began := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if p.Exited() {
		t.Fatal("exited with a request half uploaded")
	}
	io.WriteString(conn, body[10:])
	conn.SetReadDeadline(time.Now().Add(app.ShutdownTimeout))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the request in flight at SIGTERM got no answer: %v", err)
	}
	resp.Body.Close()
	t.Logf("request in flight at SIGTERM answered %s", resp.Status)

	code, err := p.Wait(app.ShutdownTimeout + 5*time.Second)
	took := time.Since(began)
	if err != nil || code != 0 {
		t.Fatalf("after SIGTERM: exit %d, %v (took %v)", code, err, took)
	}
	t.Logf("SIGTERM to exit 0: %v", took)
	logs := p.Stderr.String()
	for _, want := range []string{`msg="shutting down"`, `msg=stopped`} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %s in the log", want)
		}
	}
	for _, bad := range []string{"shutdown incomplete", "projector loop failed", "level=ERROR"} {
		if lines := proctest.Lines(logs, bad); len(lines) > 0 {
			t.Errorf("%s at shutdown:\n%s", bad, strings.Join(lines, "\n"))
		}
	}
}

// TestSIGTERMStopsTheWorkerAndExitsZero runs the real binary with a demo
// fleet, so the projector and the scheduler are busy, and requires SIGTERM
// to end it cleanly with status 0 within the shutdown bound.
func TestSIGTERMStopsTheWorkerAndExitsZero(t *testing.T) {
	if os.Getenv(envWorkerShell) == "" {
		t.Skipf("set %s to a built shells/worker (scripts/ci-deploy.sh does)", envWorkerShell)
	}
	bin := proctest.Build(t, envWorkerShell, "shells/worker")
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
