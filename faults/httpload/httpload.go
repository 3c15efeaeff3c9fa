// Package httpload is the HTTP part of the reliability ("fault") suite: it
// seeds a realistic fleet into a fresh SQLite file, starts the real HTTP
// shell as a child process on it, measures the three read endpoints monitors
// and the dashboard hit hardest under concurrent keep-alive load, and then
// abuses the server the way a hostile or broken client would (slow headers,
// slow bodies, oversized bodies and headers, missing and wrong tokens,
// clients resetting mid-response), judging each against api.md and the
// server's configured limits.
//
// It is a library with no global state; Run may be called concurrently with
// different work directories. It never touches a database or server it did
// not create, and it always stops the child process it started.
package httpload

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Options configures Run. Agents, Runs, Conns and Duration must be positive.
type Options struct {
	// HTTPBinary is a built ./shells/http; empty builds one into the work
	// directory with `go build` (the current directory must be inside the
	// module).
	HTTPBinary string
	// WorkDir holds a fresh run-* directory per Run (SQLite file, NATS store,
	// the server's log), kept for inspection. Empty uses a temporary
	// directory that is removed afterwards.
	WorkDir  string
	Agents   int           // e.g. 100_000 (full) or 10_000 (CI)
	Runs     int           // finished runs in the last 24 h, e.g. 1_000_000 or 100_000
	Conns    int           // concurrent keep-alive connections, e.g. 50
	Duration time.Duration // of the load phase, e.g. 30 s (full) or 10 s (CI)
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Setup is what the report says about how the measurement was made.
type Setup struct {
	Agents, Conns int
	Seeded        Seeded
	DBBytes       int64
	Binary        string
	Built         bool
	BuildTook     time.Duration
	StartTook     time.Duration
	WorkDir       string // empty when it was a removed temporary directory
	GoVersion     string
	OS, Arch      string
	NumCPU        int
}

// Report is the outcome of Run.
type Report struct {
	Setup     Setup
	Load      LoadInfo
	Endpoints []EndpointStats
	Checks    []Check
}

// Pass reports whether every load request succeeded and every check passed.
func (r *Report) Pass() bool {
	if len(r.Endpoints) == 0 || len(r.Checks) == 0 {
		return false
	}
	for _, e := range r.Endpoints {
		if e.Errors > 0 || e.Requests == 0 {
			return false
		}
	}
	for _, c := range r.Checks {
		if !c.Pass {
			return false
		}
	}
	return true
}

// hangups is how many clients of the hang-up check reset mid-response.
const hangups = 50

// Run seeds, starts the server, loads it, abuses it and stops it. Failures of
// the server under test are in the Report (Pass false); an error means the
// measurement itself could not be made (bad options, build, seeding, start).
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Agents <= 0 || o.Runs <= 0 || o.Conns <= 0 || o.Duration <= 0 {
		return nil, fmt.Errorf("httpload: Agents (%d), Runs (%d), Conns (%d) and Duration (%v) must be positive",
			o.Agents, o.Runs, o.Conns, o.Duration)
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	rep := &Report{Setup: Setup{Agents: o.Agents, Conns: o.Conns, GoVersion: runtime.Version(),
		OS: runtime.GOOS, Arch: runtime.GOARCH, NumCPU: runtime.NumCPU()}}

	dir, cleanup, err := workDir(o.WorkDir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if o.WorkDir != "" {
		rep.Setup.WorkDir = dir
	}

	bin := o.HTTPBinary
	if bin == "" {
		logf("building ./shells/http")
		start := time.Now()
		if bin, err = buildServer(ctx, dir); err != nil {
			return nil, err
		}
		rep.Setup.Built, rep.Setup.BuildTook = true, time.Since(start)
	}
	rep.Setup.Binary = bin

	dbPath := filepath.Join(dir, "kanade.db")
	logf("seeding %d agents and %d runs into %s", o.Agents, o.Runs, dbPath)
	if rep.Setup.Seeded, err = seed(ctx, dbPath, o.Agents, o.Runs, time.Now); err != nil {
		return nil, err
	}
	rep.Setup.DBBytes = fileSizes(dbPath, dbPath+"-wal")
	logf("seeded in %s", round(rep.Setup.Seeded.Took))

	token, err := randomToken()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	srv, err := startChild(ctx, bin, dir, dbPath, token)
	if err != nil {
		return nil, err
	}
	rep.Setup.StartTook = time.Since(start)
	stopped := false
	defer func() {
		if !stopped {
			srv.stop()
		}
	}()
	u, err := url.Parse(srv.base)
	if err != nil {
		return nil, fmt.Errorf("server address %q: %w", srv.base, err)
	}
	addr := u.Host
	logf("server ready at %s after %s", srv.base, round(rep.Setup.StartTook))

	rep.Checks = append(rep.Checks, checkData(ctx, srv.base, token, rep.Setup.Seeded))

	logf("load: %d connections for %s", o.Conns, o.Duration)
	rep.Endpoints, rep.Load = runLoad(ctx, srv.base, token, o.Conns, o.Duration)
	for _, e := range rep.Endpoints {
		logf("  %s: %d requests, %d errors, p50 %s, p99 %s", e.Name, e.Requests, e.Errors, round(e.P50), round(e.P99))
	}

	logf("abuse checks")
	// The two slow clients take seconds of waiting each; they run beside
	// the others, as real slow clients would.
	var slow [2]Check
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); slow[0] = checkSlowHeaders(ctx, addr) }()
	go func() { defer wg.Done(); slow[1] = checkSlowBody(ctx, addr, token) }()
	rs, routesErr := fetchRoutes(ctx, srv.base, token)
	var others []Check
	if routesErr != nil {
		others = append(others, Check{Name: "OpenAPI document", Measured: routesErr.Error()})
	}
	others = append(others,
		checkOversizedBodies(ctx, addr, token, rs),
		checkOversizedHeaders(ctx, addr),
		checkAuth(ctx, srv.base, rs),
		checkHangups(ctx, addr, srv.base, token, hangups),
	)
	wg.Wait()
	rep.Checks = append(rep.Checks, slow[0], slow[1])
	rep.Checks = append(rep.Checks, others...)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	alive := srv.running()
	stopped = true
	stopErr := srv.stop()
	rep.Checks = append(rep.Checks, checkShutdown(alive, stopErr), checkServerLog(srv.stderrPath))
	return rep, nil
}

// checkShutdown: the server must have survived everything and then stop
// cleanly on SIGTERM within its shutdown deadline.
func checkShutdown(alive bool, stopErr error) Check {
	c := Check{Name: "server survives and stops cleanly on SIGTERM", Pass: alive && stopErr == nil}
	switch {
	case !alive:
		c.Measured = fmt.Sprintf("the server had exited before the end: %v", stopErr)
	case stopErr != nil:
		c.Measured = stopErr.Error()
	default:
		c.Measured = "alive after the checks; exit status 0 after SIGTERM"
	}
	return c
}

// checkServerLog fails on any "superfluous response.WriteHeader" or panic in
// the server's stderr over the whole run, and lists the warnings and errors
// it logged (by message) as the explanation of any failed request.
func checkServerLog(path string) Check {
	c := Check{Name: "server log: no superfluous WriteHeader, no panic"}
	l, err := scanLog(path, 5)
	if err != nil {
		c.Measured = err.Error()
		return c
	}
	c.Pass, c.Details = l.Matches == 0, l.Suspicious
	warned := 0
	for _, key := range slices.Sorted(maps.Keys(l.Warnings)) {
		warned += l.Warnings[key]
		c.Details = append(c.Details, fmt.Sprintf("%d× %s", l.Warnings[key], key))
	}
	c.Measured = fmt.Sprintf("%d matching lines in the server's stderr; %d warnings or errors logged (listed below)", l.Matches, warned)
	if warned == 0 {
		c.Measured = fmt.Sprintf("%d matching lines in the server's stderr; no warnings or errors logged", l.Matches)
	}
	return c
}

// workDir makes the run's directory: a fresh run-* under base, or a
// temporary directory that cleanup removes.
func workDir(base string) (dir string, cleanup func(), err error) {
	if base == "" {
		dir, err = os.MkdirTemp("", "httpload-")
		if err != nil {
			return "", nil, fmt.Errorf("httpload: %w", err)
		}
		return dir, func() { os.RemoveAll(dir) }, nil
	}
	if err := os.MkdirAll(base, 0o750); err != nil {
		return "", nil, fmt.Errorf("httpload: %w", err)
	}
	dir, err = os.MkdirTemp(base, "run-")
	if err != nil {
		return "", nil, fmt.Errorf("httpload: %w", err)
	}
	return dir, func() {}, nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("httpload: token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func fileSizes(paths ...string) int64 {
	var n int64
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		} else if !errors.Is(err, os.ErrNotExist) {
			return -1
		}
	}
	return n
}
