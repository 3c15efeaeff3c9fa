package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// runBig publishes a backlog of ~900 KiB results (under nats-server's
// default 1 MB max_payload) before the worker starts, then starts one worker
// with a KANADE_PROJECTOR_MAX_BYTES smaller than the backlog, times the
// drain and bounds the worker's memory by the setting.
func runBig(ctx context.Context, e *Env, r *Result) error {
	n := e.Size.BigResults
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
	maxBytes := int64(e.Size.BigMaxBytesMiB) << 20
	w, err := e.StartWorker(ctx, "worker", e.shellOpts(db, ns.URL(), "data", fmt.Sprintf("KANADE_PROJECTOR_MAX_BYTES=%dMiB", e.Size.BigMaxBytesMiB)))
	if err != nil {
		return err
	}
	r.Do("then started one worker with KANADE_PROJECTOR_MAX_BYTES=%dMiB", e.Size.BigMaxBytesMiB)
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
	// Bound: the projector holds at most about MAX_BYTES of raw messages
	// (a quarter in the client's fetch buffer, an eighth in the batch being
	// assembled, half queued or being applied), and SQLite holds a copy of
	// the batch it is writing: 2 × MAX_BYTES. On top, 256 MiB for what does
	// not depend on the setting, measured: the Go runtime and the collector's
	// slack, the NATS client, SQLite's 64 MiB writer page cache and what its
	// allocator keeps after writing 900 KiB rows (a 16 MiB setting peaks at
	// about 240 MiB whether the backlog is 263 or 791 MiB). The backlog is
	// larger than the bound, so a projector that fetched by count (1,000 ×
	// 900 KiB at a time, as before the fix) or buffered the backlog fails.
	bound := 2*maxBytes + 256<<20
	backlog := int64(n*900) << 10
	r.Measure("worker peak RSS %d MiB (VmHWM %d MiB); the backlog was %d MiB", peak.RSS>>20, peak.HWM>>20, backlog>>20)
	r.Check(peak.HWM > 0 && peak.HWM <= bound && bound < backlog,
		"peak RSS (VmHWM) %d MiB ≤ %d MiB = 2 × KANADE_PROJECTOR_MAX_BYTES + 256 MiB, below the %d MiB backlog",
		peak.HWM>>20, bound>>20, backlog>>20)
	r.Note("RSS bound 2 × KANADE_PROJECTOR_MAX_BYTES + 256 MiB: at most MAX_BYTES of raw messages (fetch buffer, batch being assembled, queue) and SQLite's copy of the batch it writes; 256 MiB covers what does not depend on the setting (runtime and GC slack, NATS client, SQLite's 64 MiB writer cache and its allocator). Measured here: a 16 MiB setting peaks at about 240 MiB with a 263 MiB and with a 791 MiB backlog alike.")
	r.Figure("%d × 900 KiB drained in %s, VmHWM %d MiB, %d lost", n, round(drain), peak.HWM>>20, len(d.Missing))
	return nil
}

var _ = fmt.Sprint
