// Command faults is the fault suite of the kanade backend: it builds the real
// binaries (shells/http, shells/worker, the pinned nats-server), starts them
// as processes on loopback, injects faults from outside (kill -9, connection
// resets, a stopped NATS, a cluster node lost, an unwritable or full disk,
// hostile payloads, huge results, plain load) and checks that every result
// JetStream acknowledged ends up in the database exactly once, and that
// health and readiness tell the truth meanwhile. It writes RELIABILITY.md.
//
//	go run ./faults [-size ci|full] [-only name,name] [-out RELIABILITY.md]
//
// It must never leave a process behind: every child is killed and reaped on
// every exit path (a failed check, an error, a panic, Ctrl-C).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/kanade-fleet/backend/internal/cli"
	"github.com/kanade-fleet/backend/internal/machine"
)

func main() {
	cli.Main("faults", func(ctx context.Context, args []string, _ io.Writer) error { return run(ctx, args, os.Stderr) })
}

// Sizes are the loads of one -size.
type Sizes struct {
	Name            string
	ResetResults    int           // redelivery (a)
	MultiResults    int           // redelivery (b), per phase
	KillResults     int           // redelivery (c)
	Kill9Results    int           // kill9
	Kill9Kills      int           // kill9: at least this many kill -9
	Outage          time.Duration // nats-stop
	ClusterResults  int           // cluster
	ClusterOneShots int           // cluster: calendar one-shots, a minute apart
	Hostile         int           // hostile: hostile messages (and as many good)
	BigResults      int           // big
	BigMaxBytesMiB  int           // big: KANADE_PROJECTOR_MAX_BYTES in MiB
	IngestResults   int           // ingest
	Stall           time.Duration // give up waiting for rows after no progress this long
	FaultTests      time.Duration // budget of go test -run Fault ./projection/
	HTTPAgents      int           // http: seeded agents
	HTTPRuns        int           // http: seeded runs
	HTTPDuration    time.Duration // http: load phase
}

var sizes = map[string]Sizes{
	// ci keeps every scenario and every fault count of full, at sizes that
	// leave .ci/run well under 20 minutes on a busy 2-core machine.
	"ci": {Name: "ci", ResetResults: 15000, MultiResults: 20000, KillResults: 15000, Kill9Results: 20000, Kill9Kills: 10,
		Outage: 10 * time.Second, ClusterResults: 15000, ClusterOneShots: 1, Hostile: 10000, BigResults: 450, BigMaxBytesMiB: 16,
		IngestResults: 100000, Stall: 30 * time.Second, FaultTests: 0, // CI runs go test itself
		HTTPAgents: 10000, HTTPRuns: 50000, HTTPDuration: 10 * time.Second},
	"full": {Name: "full", ResetResults: 50000, MultiResults: 100000, KillResults: 100000, Kill9Results: 200000, Kill9Kills: 10,
		Outage: 30 * time.Second, ClusterResults: 100000, ClusterOneShots: 3, Hostile: 10000, BigResults: 1000, BigMaxBytesMiB: 64,
		IngestResults: 1000000, Stall: 60 * time.Second, FaultTests: 10 * time.Minute,
		HTTPAgents: 100000, HTTPRuns: 1000000, HTTPDuration: 30 * time.Second},
}

// Env is what a scenario runs with: the binaries, its own directory, its own
// process table, the size, and where progress goes.
type Env struct {
	Bins  string // kanade-http, kanade-worker, nats-server
	Root  string // the repository (for go test)
	Dir   string // this scenario's directory (logs, stores, databases)
	Size  Sizes
	Token string
	Procs *Procs
	name  string
	start time.Time
	log   io.Writer
}

// Logf prints progress on stderr.
func (e *Env) Logf(format string, a ...any) {
	fmt.Fprintf(e.log, "[%s +%5.1fs] %s\n", e.name, time.Since(e.start).Seconds(), fmt.Sprintf(format, a...))
}

// scenario is one entry of the suite.
type scenario struct {
	name  string
	title string
	run   func(ctx context.Context, e *Env, r *Result) error
}

func scenarios() []scenario {
	return []scenario{
		{"redelivery", "Connections reset, several workers, workers killed: every acked result lands exactly once.", runRedelivery},
		{"kill9", "kill -9 of the worker at random moments; the end state equals the expectation and a clean replay.", runKill9},
		{"nats-stop", "NATS stopped and restarted under the HTTP shell; a shell started while NATS is down.", runNATSStop},
		{"cluster", "Three-node JetStream cluster, two workers, a node killed mid-ingest, the scheduler firing.", runCluster},
		{"db-unwritable", "The database turns read-only (chattr +i) and then full (ENOSPC) during ingest.", runDBUnwritable},
		{"hostile", "Hostile payloads interleaved with good ones on every subject the projector reads.", runHostile},
		{"big", "A backlog of ~900 KiB results drained under KANADE_PROJECTOR_MAX_BYTES.", runBig},
		{"ingest", "The issue's acceptance check: publish N results, the database holds exactly N rows.", runIngest},
		{"http", "The HTTP API under load on a seeded fleet, then abused like a hostile client would.", runHTTP},
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("faults", flag.ContinueOnError)
	fs.SetOutput(stderr)
	size := fs.String("size", "ci", "ci (CI-sized, all scenarios in a few minutes) or full (the issue's sizes)")
	only := fs.String("only", "", "comma-separated scenario names to run (default all)")
	out := fs.String("out", "RELIABILITY.md", "report file")
	bins := fs.String("bins", "", "use prebuilt binaries from this directory instead of building them")
	keep := fs.Bool("keep", false, "keep the work directory (logs, stores, databases)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sz, ok := sizes[*size]
	if !ok {
		return fmt.Errorf("-size: want ci or full, got %q", *size)
	}
	all := scenarios()
	selected := all
	if *only != "" {
		selected = nil
		for _, n := range strings.Split(*only, ",") {
			n = strings.TrimSpace(n)
			found := false
			for _, s := range all {
				if s.name == n {
					selected = append(selected, s)
					found = true
				}
			}
			if !found {
				return fmt.Errorf("-only: unknown scenario %q", n)
			}
		}
	}
	root, err := repoRoot(ctx)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "kanade-faults-")
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	if *keep {
		fmt.Fprintf(stderr, "faults: keeping %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	wallStart := time.Now()
	h := Header{Date: wallStart, Size: sz.Name, NProc: runtime.NumCPU(), LoadStart: machine.LoadAvg(), GoVersion: runtime.Version(),
		Command: "go run ./faults -size " + sz.Name}
	h.Commit = gitDescribe(ctx, root)
	binDir := *bins
	if binDir == "" {
		binDir = filepath.Join(work, "bin")
		t := time.Now()
		if err := build(ctx, root, binDir); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "faults: built binaries in %v\n", time.Since(t).Round(time.Second))
	}
	var results []*Result
	for _, s := range selected {
		r := &Result{Name: s.name, Title: s.title}
		results = append(results, r)
		if ctx.Err() != nil {
			r.Err = fmt.Errorf("not run: %w", context.Cause(ctx))
			continue
		}
		runOne(ctx, s, r, Env{Bins: binDir, Root: root, Dir: filepath.Join(work, s.name), Size: sz,
			Token: "faults-" + uuidFor("token", int(time.Now().UnixNano()%1e9)), name: s.name, log: stderr})
		fmt.Fprintf(stderr, "faults: %s %s in %v\n", s.name, r.Status(), round(r.Duration))
		// The report so far, so an interrupted run still leaves one.
		if err := writeReport(*out, h, results, wallStart); err != nil {
			return err
		}
	}
	if err := writeReport(*out, h, results, wallStart); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "faults: wrote %s (wall %v)\n", *out, round(time.Since(wallStart)))
	var failed []string
	for _, r := range results {
		if r.Status() == Fail {
			failed = append(failed, r.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d scenario(s) failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return ctx.Err()
}

func writeReport(path string, h Header, results []*Result, wallStart time.Time) error {
	h.LoadEnd = machine.LoadAvg()
	h.Wall = time.Since(wallStart)
	var buf bytes.Buffer
	if err := Render(&buf, h, results); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// runOne runs a scenario in its own directory and process table, and kills
// every child it started whatever happens.
func runOne(ctx context.Context, s scenario, r *Result, e Env) {
	start := time.Now()
	e.start = start
	defer func() { r.Duration = time.Since(start) }()
	if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		r.Err = err
		return
	}
	e.Procs = NewProcs(e.Dir)
	defer e.Procs.KillAll()
	defer func() {
		if p := recover(); p != nil {
			r.Err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	fmt.Fprintf(e.log, "faults: === %s (%s)\n", s.name, e.Size.Name)
	if err := s.run(ctx, &e, r); err != nil {
		r.Err = err
	}
	if r.Status() == Fail {
		quoteFailureLogs(&e, r)
	}
}

// quoteFailureLogs adds the error-level lines of every child's log to a
// failed scenario's report.
func quoteFailureLogs(e *Env, r *Result) {
	e.Procs.mu.Lock()
	list := append([]*Proc(nil), e.Procs.list...)
	e.Procs.mu.Unlock()
	for _, p := range list {
		lines := p.LogGrep(0, `"level":"ERROR"`, `"level":"WARN"`, "panic", "fatal", "[ERR]", "slow consumer", "maximum control line")
		if len(lines) == 0 {
			continue
		}
		if len(lines) > 8 {
			lines = append(lines[:4], append([]string{fmt.Sprintf("… %d more …", len(lines)-8)}, lines[len(lines)-4:]...)...)
		}
		r.Quote(fmt.Sprintf("%s (%s), warnings and errors", p.Name, filepath.Base(p.LogPath)), lines)
	}
}

func build(ctx context.Context, root, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, b := range [][2]string{
		{"kanade-http", "./shells/http"},
		{"kanade-worker", "./shells/worker"},
		{"nats-server", "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, b[0]), b[1])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b[1], err, out)
		}
	}
	return nil
}

func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("find the module root (run from inside the repository): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func gitDescribe(ctx context.Context, root string) string {
	cmd := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}
