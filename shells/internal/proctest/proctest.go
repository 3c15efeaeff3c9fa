//go:build unix

// Package proctest runs the shells as the operating system runs them, for
// tests that need a real process: a binary built from the module, started
// with its own environment, signalled, and waited for with a bound. It is
// for tests only.
//
// Every process it starts leads its own process group, and the group is
// killed when the test ends, so a child the process started itself (the
// bootstrap the Lambda emulator runs) goes with it.
package proctest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/internal/testkit"
)

// Build compiles the main package pkg (a path relative to the module root,
// such as "shells/http") into a temporary directory and returns the binary.
// When the environment variable env names a file, that prebuilt binary is
// used instead, so a CI script builds once for several tests.
func Build(t testing.TB, env, pkg string, flags ...string) string {
	t.Helper()
	if bin := os.Getenv(env); env != "" && bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s=%s: %v", env, bin, err)
		}
		return bin
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	args := append([]string{"build", "-trimpath", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, "./"+pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// moduleRoot asks the go command for the module of the test's working
// directory (go test runs a test in its package's directory). Not
// runtime.Caller: under -trimpath, which CI builds everything with, it
// names the file by import path, not by where it lies.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("proctest: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("proctest: the working directory is outside a module")
	}
	return filepath.Dir(gomod), nil
}

// Proc is a running process and what it wrote.
type Proc struct {
	Cmd            *exec.Cmd
	Stdout, Stderr *testkit.SyncBuffer
	// Started is when the process was started.
	Started time.Time
	exited  chan struct{}
	err     error
}

// Start runs bin with args and exactly env as its environment (plus PATH
// and HOME, which a Go binary or the emulator may want). The process group
// is killed when the test ends; its output is logged if the test failed.
func Start(t testing.TB, bin string, args []string, env map[string]string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &Proc{Cmd: cmd, Stdout: &testkit.SyncBuffer{}, Stderr: &testkit.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.killGroup()
		<-p.exited
		if t.Failed() {
			t.Logf("%s stdout:\n%s\n%s stderr:\n%s", filepath.Base(bin), p.Stdout, filepath.Base(bin), p.Stderr)
		}
	})
	return p
}

// Kill kills the process and whatever it started, and waits for it.
func (p *Proc) Kill() {
	p.killGroup()
	<-p.exited
}

// killGroup kills the process group the process leads (its own id).
func (p *Proc) killGroup() {
	if pid := p.Cmd.Process.Pid; pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// Signal sends sig to the process alone.
func (p *Proc) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Wait waits up to d for the process to exit and returns its exit code, or
// an error when it did not exit in time (it is then killed).
func (p *Proc) Wait(d time.Duration) (int, error) {
	select {
	case <-p.exited:
	case <-time.After(d):
		p.killGroup()
		<-p.exited
		return -1, fmt.Errorf("did not exit within %v", d)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0, nil
	case errors.As(p.err, &ee):
		return ee.ExitCode(), nil
	}
	return -1, p.err
}

// Exited says whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// WaitOutput waits up to d until re matches what the process wrote to
// stdout, and returns the match's submatches.
func (p *Proc) WaitOutput(t testing.TB, re *regexp.Regexp, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if m := re.FindStringSubmatch(p.Stdout.String()); m != nil {
			return m
		}
		if p.Exited() {
			t.Fatalf("exited before writing %q: %v\nstderr:\n%s", re, p.err, p.Stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on stdout after %v\nstdout:\n%s\nstderr:\n%s", re, d, p.Stdout, p.Stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreeAddr is a loopback address with a port nothing listens on right now.
// Another process may take it before the one it is meant for: callers that
// can, retry.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Lines returns the lines of s that contain every one of words.
func Lines(s string, words ...string) []string {
	var out []string
	for line := range strings.Lines(s) {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return out
}
