package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// runRedelivery: (a) the workers' NATS connections reset every 2–5 s through
// a proxy; (b) two, then three worker processes on one database; (c) two
// workers, one of them killed -9 every few seconds; (d) the in-process fault
// tests of the projection package.
func runRedelivery(ctx context.Context, e *Env, r *Result) error {
	r.Note("The projector reads through ordered consumers without acks (the fix of the issue), so \"acks dropped\" and " +
		"\"AckWait shorter than a batch\" do not apply to it; abandoned fetches and consumers deleted mid-batch are covered " +
		"in-process by `go test -count=1 -run Fault ./projection/`, run as part (d).")
	var errs []error
	for _, part := range []struct {
		name string
		fn   func(context.Context, *Env, *Result) error
	}{{"a", redeliveryResets}, {"b", redeliveryWorkers}, {"c", redeliveryKills}, {"d", redeliveryFaultTests}} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.Logf("part (%s)", part.name)
		if err := part.fn(ctx, e, r); err != nil {
			errs = append(errs, fmt.Errorf("part (%s): %w", part.name, err))
		}
		e.Procs.KillAll()
	}
	if len(errs) > 0 {
		return fmt.Errorf("%v", errs)
	}
	return nil
}

// redeliveryResets is part (a).
func redeliveryResets(ctx context.Context, e *Env, r *Result) error {
	n := e.Size.ResetResults
	ns, err := e.StartNATS(ctx, NatsOptions{Name: "a-nats"})
	if err != nil {
		return err
	}
	px, err := NewProxy(fmt.Sprintf("127.0.0.1:%d", ns.Port))
	if err != nil {
		return err
	}
	defer px.Close()
	db := filepath.Join(e.Dir, "a.db")
	if _, err := e.StartWorker(ctx, "a-worker", e.shellOpts(db, "nats://"+px.Addr(), "a-data")); err != nil {
		return err
	}
	nc, err := connectNATS(ns.URL(), "faults-a")
	if err != nil {
		return err
	}
	defer nc.Close()
	// Paced over 20 s (60 s full) so that resets keep landing mid-stream.
	span := 20.0
	if e.Size.Name == "full" {
		span = 60
	}
	pub, err := NewPublisher(nc, PubOptions{Inflight: 1000, Rate: float64(n) / span})
	if err != nil {
		return err
	}
	rctx, stopResets := context.WithCancel(ctx)
	defer stopResets()
	var resets, cut int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for sleep(rctx, randDur(2*time.Second, 5*time.Second)) == nil {
			cut += px.ResetAll()
			resets++
		}
	}()
	g := Gen{Prefix: "a", Base: time.Now().Add(-time.Hour), StdoutBytes: 4096, Jobs: []string{"a-job"}}
	start := time.Now()
	acks, err := pub.Publish(ctx, n, okResults(g))
	if err != nil {
		return err
	}
	r.Do("(a) one worker whose NATS connection goes through a TCP proxy; %d results of 4 KB published (%s) while the proxy reset every worker connection (RST) every 2–5 s", n, round(time.Since(start)))
	want := wantIDs(g, acks, n)
	_, werr := waitRows(ctx, int64(len(want)), e.Size.Stall, func(ctx context.Context) (int64, error) { return finishedRows(ctx, db) })
	stopResets()
	wg.Wait()
	r.Measure("(a) %d resets (%d connections cut) over %s until the rows stopped moving; converged under resets: %v", resets, cut, round(time.Since(start)), werr == nil)
	d, err := checkLanded(ctx, e, r, "(a) resets", db, want, e.Size.Stall)
	if err != nil {
		return err
	}
	r.Figure("(a) %d/%d lost under %d resets", len(d.Missing), d.Want, resets)
	return nil
}

// redeliveryWorkers is part (b).
func redeliveryWorkers(ctx context.Context, e *Env, r *Result) error {
	n := e.Size.MultiResults
	ns, err := e.StartNATS(ctx, NatsOptions{Name: "b-nats"})
	if err != nil {
		return err
	}
	db := filepath.Join(e.Dir, "b.db")
	for i := 1; i <= 2; i++ {
		if _, err := e.StartWorker(ctx, fmt.Sprintf("b-worker%d", i), e.shellOpts(db, ns.URL(), "b-data")); err != nil {
			return err
		}
	}
	nc, err := connectNATS(ns.URL(), "faults-b")
	if err != nil {
		return err
	}
	defer nc.Close()
	pub, err := NewPublisher(nc, PubOptions{Inflight: 1000})
	if err != nil {
		return err
	}
	var want []string
	for phase, workers := range []int{2, 3} {
		if workers == 3 {
			if _, err := e.StartWorker(ctx, "b-worker3", e.shellOpts(db, ns.URL(), "b-data")); err != nil {
				return err
			}
		}
		g := Gen{Prefix: fmt.Sprintf("b%d", phase), Base: time.Now().Add(-time.Hour), StdoutBytes: 200, Jobs: []string{"b-job"}}
		start := time.Now()
		acks, err := pub.Publish(ctx, n, okResults(g))
		if err != nil {
			return err
		}
		r.Do("(b) %d worker processes on one database and one NATS; %d results published (%s)", workers, n, round(time.Since(start)))
		want = append(want, wantIDs(g, acks, n)...)
		d, err := checkLanded(ctx, e, r, fmt.Sprintf("(b) %d workers", workers), db, want, e.Size.Stall)
		if err != nil {
			return err
		}
		r.Figure("(b) %d workers: %d/%d lost", workers, len(d.Missing), d.Want)
	}
	return nil
}

// redeliveryKills is part (c).
func redeliveryKills(ctx context.Context, e *Env, r *Result) error {
	n := e.Size.KillResults
	ns, err := e.StartNATS(ctx, NatsOptions{Name: "c-nats"})
	if err != nil {
		return err
	}
	db := filepath.Join(e.Dir, "c.db")
	workers := make([]*Shell, 2)
	for i := range workers {
		if workers[i], err = e.StartWorker(ctx, fmt.Sprintf("c-worker%d", i+1), e.shellOpts(db, ns.URL(), "c-data")); err != nil {
			return err
		}
	}
	nc, err := connectNATS(ns.URL(), "faults-c")
	if err != nil {
		return err
	}
	defer nc.Close()
	pub, err := NewPublisher(nc, PubOptions{Inflight: 1000, Rate: float64(n) / 20})
	if err != nil {
		return err
	}
	killer := StartKiller(ctx, 2*time.Second, 4*time.Second, func(i int) *Shell { return workers[i%2] })
	g := Gen{Prefix: "c", Base: time.Now().Add(-time.Hour), StdoutBytes: 200, Jobs: []string{"c-job"}}
	start := time.Now()
	acks, err := pub.Publish(ctx, n, okResults(g))
	if err != nil {
		return err
	}
	want := wantIDs(g, acks, n)
	// Keep killing while the backlog drains, a few more rounds at least.
	_, _ = waitRows(ctx, int64(len(want)), 10*time.Second, func(ctx context.Context) (int64, error) { return finishedRows(ctx, db) })
	kills, err := killer.Stop()
	if err != nil {
		return err
	}
	r.Do("(c) two worker processes on one database; %d results published over %s while one worker or the other was killed -9 every 2–4 s and restarted (%d kills)", n, round(time.Since(start)), kills)
	d, err := checkLanded(ctx, e, r, "(c) kill -9", db, want, e.Size.Stall)
	if err != nil {
		return err
	}
	r.Figure("(c) %d/%d lost under %d kills", len(d.Missing), d.Want, kills)
	return nil
}

// redeliveryFaultTests is part (d): the projection package's own fault
// tests (abandoned fetches, consumers deleted mid-batch).
func redeliveryFaultTests(ctx context.Context, e *Env, r *Result) error {
	if e.Size.FaultTests <= 0 {
		r.Note("(d) the in-process fault tests (`go test -run Fault ./projection/`) are not run at this size: CI runs the whole test suite, them included, before this suite.")
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, e.Size.FaultTests)
	defer cancel()
	cmd := exec.CommandContext(tctx, "go", "test", "-count=1", "-run", "Fault", "-v", "./projection/")
	cmd.Dir = e.Root
	start := time.Now()
	out, err := cmd.CombinedOutput()
	text := string(out)
	var ran []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "--- PASS: ") || strings.HasPrefix(l, "--- FAIL: ") || strings.HasPrefix(l, "--- SKIP: ") {
			ran = append(ran, strings.TrimPrefix(l, "--- "))
		}
	}
	switch {
	case err == nil && len(ran) == 0:
		r.Note("(d) `go test -count=1 -run Fault ./projection/` matched no test yet (\"no tests to run\"): skipped, not counted.")
		r.Measure("(d) go test -run Fault ./projection/: no test matches (%s)", round(time.Since(start)))
	case err == nil:
		r.Measure("(d) go test -count=1 -run Fault ./projection/: ok in %s: %s", round(time.Since(start)), joinMax(ran, 8))
		r.Check(true, "(d) the in-process fault tests of ./projection/ pass (%d tests)", len(ran))
	default:
		lines := strings.Split(strings.TrimSpace(text), "\n")
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		r.Check(false, "(d) go test -count=1 -run Fault ./projection/ failed after %s: %v", round(time.Since(start)), err)
		r.Quote("(d) go test output (tail)", lines)
	}
	return nil
}
