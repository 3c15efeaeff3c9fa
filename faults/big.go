package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// runBig publishes a backlog of ~900 KiB results (under nats-server's
// default 1 MB max_payload) before the worker starts, then starts one worker
// with KANADE_PROJECTOR_MAX_BYTES=64MiB and times the drain.
func runBig(ctx context.Context, e *Env, r *Result) error {
	n := e.Size.BigResults
	const maxBytes = 64 << 20
	ns, err := e.StartNATS(ctx, NatsOptions{Name: "nats"})
	if err != nil {
		return err
	}
	if err := bootstrap(ctx, ns.URL(), 1); err != nil {
		return err
	}
	nc, err := connectNATS(ns.URL(), "faults-big")
	if err != nil {
		return err
	}
	defer nc.Close()
	pub, err := NewPublisher(nc, PubOptions{Inflight: 16})
	if err != nil {
		return err
	}
	g := Gen{Prefix: "big", Base: time.Now().Add(-time.Hour), StdoutBytes: 900 << 10, Jobs: []string{"big-job"}}
	start := time.Now()
	acks, err := pub.Publish(ctx, n, okResults(g))
	if err != nil {
		return err
	}
	r.Do("published a backlog of %d results with 900 KiB of stdout each (%d MiB) to a nats-server with the default 1 MB max_payload, in %s", n, (n*900)>>10, round(time.Since(start)))
	db := e.Dir + "/big.db"
	w, err := e.StartWorker(ctx, "worker", e.shellOpts(db, ns.URL(), "data", "KANADE_PROJECTOR_MAX_BYTES=64MiB"))
	if err != nil {
		return err
	}
	r.Do("then started one worker with KANADE_PROJECTOR_MAX_BYTES=64MiB")
	wstart := time.Now()
	var peak Mem
	mctx, stopMem := context.WithCancel(ctx)
	defer stopMem()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for sleep(mctx, 200*time.Millisecond) == nil {
			if m, err := w.Proc.Mem(); err == nil {
				peak.RSS, peak.HWM = max(peak.RSS, m.RSS), max(peak.HWM, m.HWM)
			}
		}
	}()
	want := wantIDs(g, acks, n)
	_, werr := waitRows(ctx, int64(len(want)), e.Size.Stall, func(ctx context.Context) (int64, error) { return finishedRows(ctx, db) })
	drain := time.Since(wstart)
	if m, err := w.Proc.Mem(); err == nil {
		peak.HWM = max(peak.HWM, m.HWM)
	}
	stopMem()
	wg.Wait()
	if werr == nil {
		r.Measure("drain: %d results (%d MiB) in %s after the worker started (%.1f MiB/s)", n, (n*900)>>10, round(drain), float64(n*900)/1024/drain.Seconds())
	} else {
		r.Measure("drain: %v after %s", werr, round(drain))
	}
	d, err := checkLanded(ctx, e, r, "results", db, want, 5*time.Second)
	if err != nil {
		return err
	}
	slow := w.LogGrep(3, "slow consumer")
	r.Check(len(slow) == 0, "no \"slow consumer\" in the worker's log (%d lines)", len(slow))
	r.Quote("worker log: slow consumer", slow)
	// Bound: the buffered raw messages (≤ MAX_BYTES), their decoded copies
	// in the batch being applied (≤ MAX_BYTES), the copies handed to SQLite
	// for that batch (≤ MAX_BYTES), plus a 128 MiB allowance for the Go
	// runtime, SQLite's page cache and heap slack between collections.
	const bound = 3*maxBytes + 128<<20
	r.Measure("worker peak RSS %d MiB (VmHWM %d MiB)", peak.RSS>>20, peak.HWM>>20)
	r.Check(peak.HWM > 0 && peak.HWM <= bound, "peak RSS (VmHWM) %d MiB ≤ %d MiB = 3 × KANADE_PROJECTOR_MAX_BYTES + 128 MiB", peak.HWM>>20, bound>>20)
	r.Note("RSS bound 3 × 64 MiB + 128 MiB: at most KANADE_PROJECTOR_MAX_BYTES of raw messages are buffered, the batch being applied holds its decoded strings (no more than the raw bytes) and the driver's copies of the same for the INSERT; 128 MiB covers the runtime, SQLite's cache and GC slack. Without the bound the projector would fetch a whole batch of 1,000 × 900 KiB (≈ 880 MiB) at once.")
	r.Figure("%d × 900 KiB drained in %s, VmHWM %d MiB, %d lost", n, round(drain), peak.HWM>>20, len(d.Missing))
	return nil
}

var _ = fmt.Sprint
