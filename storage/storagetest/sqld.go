package storagetest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/internal/testkit"
)

// EnvSQLD names the sqld binary that switches every test database to a fresh
// libSQL server (see scripts/install-sqld.sh).
const EnvSQLD = "KANADE_TEST_SQLD"

// sqldStartTimeout bounds how long a sqld may take to answer /health.
const sqldStartTimeout = 20 * time.Second

// startSQLD starts a sqld for tb when KANADE_TEST_SQLD is set and returns its
// URL; it returns "" otherwise.
//
// Each call gets its own server and database directory, so tests stay
// independent exactly as they are with a fresh SQLite file. sqld listens only
// on loopback: its HTTP API on a free port, and nothing else (the gRPC, admin
// and legacy Hrana listeners are off unless asked for).
func startSQLD(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv(EnvSQLD)
	if bin == "" {
		return ""
	}
	// Picking a free port and handing it to another process is racy; a
	// second process may grab it in between. sqld then exits at once, so try
	// again a few times before giving up.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		url, err := trySQLD(tb, bin)
		if err == nil {
			return url
		}
		lastErr = err
	}
	tb.Fatalf("start sqld: %v", lastErr)
	return ""
}

func trySQLD(tb testing.TB, bin string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dir := filepath.Join(tb.TempDir(), "sqld")
	cmd := exec.Command(bin,
		"--http-listen-addr", addr,
		"--db-path", dir,
		"--no-welcome",
		"--disable-metrics",
	)
	var out testkit.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	url := "http://" + addr
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(sqldStartTimeout)
	for {
		select {
		case err := <-exited:
			return "", fmt.Errorf("sqld on %s exited before answering: %v\n%s", addr, err, out.String())
		default:
		}
		resp, err := client.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("sqld on %s: no answer on /health after %v\n%s", addr, sqldStartTimeout, out.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	tb.Cleanup(func() {
		stop()
		if tb.Failed() {
			tb.Logf("sqld output:\n%s", out.String())
		}
	})
	return url, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("find a free port: not a TCP address")
	}
	return addr.Port, nil
}
