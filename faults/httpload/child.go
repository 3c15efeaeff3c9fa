package httpload

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// The server timeouts of shells/internal/app.NewHTTPServer, which this
// package cannot import (it is internal to shells/). The abuse checks judge
// the server against them; change both together.
const (
	serverReadHeaderTimeout = 5 * time.Second
	serverReadTimeout       = 30 * time.Second
	serverMaxHeaderBytes    = 1 << 20
)

const (
	// startTimeout bounds the child's start: opening the database, starting
	// and bootstrapping the embedded NATS server, and listening.
	startTimeout = 90 * time.Second
	// stopTimeout is how long a SIGTERM gets before SIGKILL: a little more
	// than the shell's own 10 s shutdown deadline.
	stopTimeout = 15 * time.Second
)

// buildServer compiles ./shells/http into dir. It names the package by
// import path, so it works from any directory inside the module.
func buildServer(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "kanade-http")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/kanade-fleet/backend/shells/http")
	// Without cgo, as the shells are built for deployment, whatever the
	// caller's environment: under scripts/test's race pass (cgo on for the
	// detector) the build compiled the module and every dependency again
	// with cgo, a minute of a cold CI.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./shells/http: %w\n%s", err, out)
	}
	return bin, nil
}

// child is the HTTP shell running as a separate process, as in production:
// the load and abuse checks cross a real socket, and its stderr is kept to
// scan for what net/http logs about misbehaving handlers.
type child struct {
	cmd        *exec.Cmd
	base       string // "http://127.0.0.1:PORT"
	stderrPath string
	done       chan struct{} // closed when the process has been waited for
	waitErr    error
}

var listeningLine = regexp.MustCompile(`^kanade: listening on (http://[^/\s]+)/`)

// startChild starts bin on an existing SQLite file with an embedded NATS on
// a free port, no worker (nothing writes while we measure) and a static
// token, and waits until /readyz answers 200. Inherited KANADE_* variables
// are dropped so the caller's environment cannot change what is measured.
// On error the process is already stopped.
func startChild(ctx context.Context, bin, dir, dbPath, token string) (*child, error) {
	stderrPath := filepath.Join(dir, "http-stderr.log")
	stderr, err := os.Create(stderrPath)
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	defer stderr.Close() // the child holds its own descriptor
	cmd := exec.Command(bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KANADE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"KANADE_DATA_DIR="+dir,
		"KANADE_DB="+dbPath,
		"KANADE_HTTP_ADDR=127.0.0.1:0",
		"KANADE_NATS_LISTEN=127.0.0.1:-1",
		"KANADE_WORKER=off",
		"KANADE_AUTH_STATIC_TOKEN="+token,
		"KANADE_LOG_FORMAT=json",
	)
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server %s: %w", bin, err)
	}
	c := &child{cmd: cmd, stderrPath: stderrPath, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		// Keep draining stdout for the child's whole life so it never
		// blocks on a full pipe.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listeningLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
		c.waitErr = cmd.Wait()
		close(c.done)
	}()

	fail := func(err error) (*child, error) {
		return nil, errors.Join(err, c.stop())
	}
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case c.base = <-addr:
	case <-c.done:
		return fail(fmt.Errorf("server exited before listening (%v): %s", c.waitErr, c.stderrTail()))
	case <-timer.C:
		return fail(fmt.Errorf("server printed no listening address within %v: %s", startTimeout, c.stderrTail()))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	probe := &http.Client{Timeout: 5 * time.Second}
	for {
		res, err := probe.Get(c.base + "/readyz")
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return c, nil
			}
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-c.done:
			return fail(fmt.Errorf("server exited before ready (%v): %s", c.waitErr, c.stderrTail()))
		case <-timer.C:
			return fail(fmt.Errorf("server not ready within %v: %s", startTimeout, c.stderrTail()))
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
}

// running reports whether the process is still alive.
func (c *child) running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// stop asks the child to shut down (SIGTERM), kills it after stopTimeout, and
// waits for it. It returns why the process did not exit cleanly, if it did
// not; calling it again returns the same.
func (c *child) stop() error {
	if c.running() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(stopTimeout):
			c.cmd.Process.Kill()
			<-c.done
			return fmt.Errorf("server did not stop within %v of SIGTERM; killed", stopTimeout)
		}
	}
	if c.waitErr != nil {
		return fmt.Errorf("server exit: %w", c.waitErr)
	}
	return nil
}

// stderrTail is the end of the child's log, for start-up errors.
func (c *child) stderrTail() string {
	b, err := os.ReadFile(c.stderrPath)
	if err != nil {
		return err.Error()
	}
	const keep = 2000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return strings.TrimSpace(string(b))
}

// suspiciousLog matches what must never appear in the server's log: net/http
// reporting a handler that wrote its header twice, and panics (recovered
// "http: panic serving" or a crash).
var suspiciousLog = regexp.MustCompile(`superfluous response\.WriteHeader|(?i)panic`)

// serverLog is what the scan of the child's stderr found.
type serverLog struct {
	// Suspicious holds the first lines matching suspiciousLog; Matches
	// counts them all.
	Suspicious []string
	Matches    int
	// Warnings counts the WARN and ERROR lines by message and error, so a
	// report can say why a request failed without a trip to the file.
	Warnings map[string]int
}

// scanLog reads the child's stderr (JSON lines from log/slog, or anything
// else a crash prints) and keeps at most limit suspicious lines.
func scanLog(path string, limit int) (serverLog, error) {
	out := serverLog{Warnings: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		return out, fmt.Errorf("scan server log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if suspiciousLog.MatchString(line) {
			out.Matches++
			if len(out.Suspicious) < limit {
				out.Suspicious = append(out.Suspicious, truncate(line, 300))
			}
		}
		var rec struct{ Level, Msg, Error string }
		if json.Unmarshal([]byte(line), &rec) == nil && (rec.Level == "WARN" || rec.Level == "ERROR") {
			key := rec.Level + " " + rec.Msg
			if rec.Error != "" {
				key += ": " + rec.Error
			}
			out.Warnings[truncate(key, 200)]++
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("scan server log %s: %w", path, err)
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
