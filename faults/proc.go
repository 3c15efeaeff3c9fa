package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Procs owns every child process a scenario starts, so that each exit path
// (a pass, a failed check, an error, Ctrl-C) can kill and reap all of them.
type Procs struct {
	dir  string
	mu   sync.Mutex
	list []*Proc
	seq  map[string]int
}

// NewProcs keeps the children's logs under dir.
func NewProcs(dir string) *Procs { return &Procs{dir: dir, seq: map[string]int{}} }

// Proc is one child process. Its stdout and stderr go to log files; stdout
// lines are also scanned for the address announcements of the shells.
type Proc struct {
	Name    string
	LogPath string // stderr (the structured log)
	OutPath string // stdout
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error

	mu    sync.Mutex
	lines []string
	wake  chan struct{}
}

// Start runs bin with args and env (added to a minimal environment). Logs go
// to DIR/name[.n].stderr.log and .stdout.log.
func (ps *Procs) Start(name, bin string, args, env []string) (*Proc, error) {
	ps.mu.Lock()
	ps.seq[name]++
	n := ps.seq[name]
	ps.mu.Unlock()
	base := name
	if n > 1 {
		base = fmt.Sprintf("%s.%d", name, n)
	}
	p := &Proc{Name: base, LogPath: filepath.Join(ps.dir, base+".stderr.log"), OutPath: filepath.Join(ps.dir, base+".stdout.log"),
		done: make(chan struct{}), wake: make(chan struct{})}
	errf, err := os.Create(p.LogPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", base, err)
	}
	outf, err := os.Create(p.OutPath)
	if err != nil {
		errf.Close()
		return nil, fmt.Errorf("start %s: %w", base, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}, env...)
	cmd.Stderr = errf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		errf.Close()
		outf.Close()
		return nil, fmt.Errorf("start %s: %w", base, err)
	}
	// Own process group (a terminal's Ctrl-C reaches only the runner, which
	// then kills the children itself); SIGKILL if the runner dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		errf.Close()
		outf.Close()
		return nil, fmt.Errorf("start %s: %w", base, err)
	}
	p.cmd = cmd
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(outf, line)
			p.mu.Lock()
			p.lines = append(p.lines, line)
			close(p.wake)
			p.wake = make(chan struct{})
			p.mu.Unlock()
		}
		io.Copy(outf, stdout)
	}()
	go func() {
		<-scanned
		p.exitErr = cmd.Wait()
		errf.Close()
		outf.Close()
		close(p.done)
		p.mu.Lock()
		close(p.wake)
		p.wake = make(chan struct{})
		p.mu.Unlock()
	}()
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p, nil
}

// KillAll kills every child still running and waits for each.
func (ps *Procs) KillAll() {
	ps.mu.Lock()
	list := append([]*Proc(nil), ps.list...)
	ps.mu.Unlock()
	for _, p := range list {
		p.Kill()
	}
}

// PID is the child's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the child has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the child has ended and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitErr is the Wait error, once Done.
func (p *Proc) ExitErr() error { return p.exitErr }

// Kill sends SIGKILL to the child's process group and waits for the child.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop asks the child to shut down (SIGTERM) and kills it after timeout.
func (p *Proc) Stop(timeout time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill()
	}
}

// WaitLine waits for a stdout line containing marker and returns the text
// after it.
func (p *Proc) WaitLine(ctx context.Context, marker string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	seen := 0
	for {
		p.mu.Lock()
		lines, wake := p.lines[seen:], p.wake
		seen = len(p.lines)
		p.mu.Unlock()
		for _, l := range lines {
			if i := strings.Index(l, marker); i >= 0 {
				return l[i+len(marker):], nil
			}
		}
		if p.Exited() {
			return "", fmt.Errorf("%s exited (%v) before printing %q; log tail:\n%s", p.Name, p.exitErr, marker, strings.Join(p.LogTail(15), "\n"))
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return "", fmt.Errorf("%s: no %q on stdout within %v; log tail:\n%s", p.Name, marker, timeout, strings.Join(p.LogTail(15), "\n"))
		}
	}
}

// LogTail returns the last n lines of the child's stderr log.
func (p *Proc) LogTail(n int) []string {
	lines, _ := readLines(p.LogPath)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// LogGrep returns the stderr log lines containing any of the needles
// (case-insensitive), at most max of them.
func (p *Proc) LogGrep(max int, needles ...string) []string {
	lines, _ := readLines(p.LogPath)
	return grepLines(lines, max, needles...)
}

func grepLines(lines []string, max int, needles ...string) []string {
	var out []string
	for _, l := range lines {
		ll := strings.ToLower(l)
		for _, n := range needles {
			if strings.Contains(ll, strings.ToLower(n)) {
				out = append(out, l)
				break
			}
		}
		if max > 0 && len(out) >= max {
			break
		}
	}
	return out
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}

// Mem is a child's memory from /proc/PID/status, in bytes.
type Mem struct{ RSS, HWM int64 }

// Mem reads VmRSS and VmHWM.
func (p *Proc) Mem() (Mem, error) {
	return procMem(p.PID())
}

func procMem(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, fmt.Errorf("read status of %d: %w", pid, err)
	}
	var m Mem
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.RSS = kb * 1024
		case "VmHWM:":
			m.HWM = kb * 1024
		}
	}
	return m, nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP waits until addr accepts connections.
func waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %v: %w", addr, timeout, err)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

var errNoProgress = errors.New("no progress")
