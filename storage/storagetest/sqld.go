package storagetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/storage"
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
// independent exactly as they are with a fresh SQLite file. The directory
// starts as a copy of a migrated template (sqldTemplate) when one can be
// had: migrating over HTTP costs about 0.2 s of each of the several hundred
// tests CI runs on sqld, copying the directory a millisecond. sqld listens
// only on loopback: its HTTP API on a free port, and nothing else (the gRPC,
// admin and legacy Hrana listeners are off unless asked for).
func startSQLD(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv(EnvSQLD)
	if bin == "" {
		return ""
	}
	dir := filepath.Join(tb.TempDir(), "sqld")
	if tmpl, err := sqldTemplate(bin); err == nil {
		if err := copyTree(tmpl, dir); err != nil {
			tb.Logf("copy the sqld template %s: %v; migrating from empty", tmpl, err)
			os.RemoveAll(dir)
		}
	} else {
		tb.Logf("no sqld template: %v; migrating from empty", err)
	}
	s, err := runSQLD(bin, dir)
	if err != nil {
		tb.Fatalf("start sqld: %v", err)
	}
	tb.Cleanup(func() {
		s.kill()
		if tb.Failed() {
			tb.Logf("sqld output:\n%s", s.out.String())
		}
	})
	return s.url
}

// sqld is one running sqld process.
type sqld struct {
	url    string
	cmd    *exec.Cmd
	exited chan error
	out    *testkit.SyncBuffer
}

// kill stops the server at once; the test's database goes with it.
func (s *sqld) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// stop asks the server to shut down cleanly and waits for it, so its
// directory can be copied and opened again by another sqld.
func (s *sqld) stop() error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.kill()
		return fmt.Errorf("signal sqld: %w", err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			return fmt.Errorf("sqld exited with %v\n%s", err, s.out.String())
		}
		return nil
	case <-time.After(sqldStartTimeout):
		s.kill()
		return fmt.Errorf("sqld did not stop within %v of SIGTERM", sqldStartTimeout)
	}
}

// runSQLD starts bin on dir and waits until it answers. Picking a free port
// and handing it to another process is racy: a second process may grab it in
// between, and sqld then exits at once, so it tries a few times.
func runSQLD(bin, dir string) (*sqld, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := trySQLD(bin, dir)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func trySQLD(bin, dir string) (*sqld, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin,
		"--http-listen-addr", addr,
		"--db-path", dir,
		"--no-welcome",
		"--disable-metrics",
	)
	s := &sqld{url: "http://" + addr, cmd: cmd, exited: make(chan error, 1), out: &testkit.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { s.exited <- cmd.Wait() }()

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(sqldStartTimeout)
	for {
		select {
		case err := <-s.exited:
			return nil, fmt.Errorf("sqld on %s exited before answering: %v\n%s", addr, err, s.out.String())
		default:
		}
		resp, err := client.Get(s.url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("sqld on %s: no answer on /health after %v\n%s", addr, sqldStartTimeout, s.out.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// sqldTemplate returns the db-path directory of a sqld that storage.Open
// migrated and that then shut down cleanly: made once per schema and sqld
// binary in the temporary directory and shared by every test process of the
// machine, like the SQLite template. Making it is itself the migration from
// empty on sqld, so an error there fails every test that falls back to it.
func sqldTemplate(bin string) (string, error) {
	st, err := os.Stat(bin)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d", storage.SchemaHash(), bin, st.Size(), st.ModTime().UnixNano())
	path := filepath.Join(os.TempDir(), fmt.Sprintf("kanade-storagetest-sqld-%x", h.Sum(nil)[:8]))
	if _, err := os.Stat(filepath.Join(path, ".version")); err == nil {
		return path, nil
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "kanade-storagetest-sqld-making-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "sqld")
	s, err := runSQLD(bin, dir)
	if err != nil {
		return "", err
	}
	db, err := storage.Open(context.Background(), s.url, storage.Options{})
	if err != nil {
		s.kill()
		return "", fmt.Errorf("migrate the template: %w", err)
	}
	if err := db.Close(); err != nil {
		s.kill()
		return "", err
	}
	if err := s.stop(); err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, ".version")); err != nil {
		return "", fmt.Errorf("the template has no .version: %w", err)
	}
	// Processes racing to make it each rename a whole directory; the loser
	// finds the winner's in place (a directory is not renamed over a
	// non-empty one) and uses that.
	if err := os.Rename(dir, path); err != nil {
		if _, statErr := os.Stat(filepath.Join(path, ".version")); statErr == nil {
			return path, nil
		}
		return "", err
	}
	return path, nil
}

// copyTree copies the regular files under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyFile(path, filepath.Join(dst, rel))
	})
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
