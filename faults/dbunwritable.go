package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// runDBUnwritable makes the database unwritable under a running worker: (a)
// chattr +i on the SQLite file and its WAL; (b) the database on a small
// tmpfs filled up to ENOSPC. Both need root; without it the scenario is
// SKIPPED, never passed.
func runDBUnwritable(ctx context.Context, e *Env, r *Result) error {
	var skips []string
	probe := filepath.Join(e.Dir, "chattr-probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "chattr", "+i", probe).CombinedOutput(); err != nil {
		skips = append(skips, fmt.Sprintf("(a) chattr +i impossible here: %v %s", err, strings.TrimSpace(string(out))))
	} else {
		exec.Command("chattr", "-i", probe).Run()
		if err := unwritablePhase(ctx, e, r, "a", filepath.Join(e.Dir, "a.db"), chattrFault); err != nil {
			return err
		}
	}
	e.Procs.KillAll()
	mnt := filepath.Join(e.Dir, "tmpfs")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		skips = append(skips, fmt.Sprintf("(b) mount -t tmpfs impossible here: %v %s", err, strings.TrimSpace(string(out))))
	} else {
		// Lazy: the children may still hold files open; they are killed
		// right after.
		defer exec.Command("umount", "-l", mnt).Run()
		if err := unwritablePhase(ctx, e, r, "b", filepath.Join(mnt, "b.db"), fullFault(mnt)); err != nil {
			return err
		}
	}
	if len(skips) > 0 {
		r.SkipReason = strings.Join(skips, "; ")
	}
	return nil
}

// fault makes db unwritable and returns how to undo it.
type fault func(ctx context.Context, db string) (desc string, heal func() error, err error)

func chattrFault(ctx context.Context, db string) (string, func() error, error) {
	files := []string{db, db + "-wal"}
	for _, f := range files {
		if out, err := exec.CommandContext(ctx, "chattr", "+i", f).CombinedOutput(); err != nil {
			return "", nil, fmt.Errorf("chattr +i %s: %w %s", f, err, out)
		}
	}
	heal := func() error {
		var errs []error
		for _, f := range files {
			if out, err := exec.Command("chattr", "-i", f).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("chattr -i %s: %w %s", f, err, out))
			}
		}
		return errors.Join(errs...)
	}
	return "chattr +i on the SQLite file and its -wal", heal, nil
}

func fullFault(mnt string) fault {
	return func(ctx context.Context, db string) (string, func() error, error) {
		filler := filepath.Join(mnt, "filler")
		f, err := os.Create(filler)
		if err != nil {
			return "", nil, err
		}
		buf := make([]byte, 1<<20)
		var n int64
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					f.Close()
					return "", nil, fmt.Errorf("fill %s: %w", filler, err)
				}
				break
			}
		}
		// Smaller writes take the last pages too.
		for _, err := f.Write(buf[:4096]); err == nil; _, err = f.Write(buf[:4096]) {
			n += 4096
		}
		f.Close()
		heal := func() error { return os.Remove(filler) }
		return fmt.Sprintf("the 64 MiB tmpfs holding the database filled with a %d MiB file until ENOSPC", n>>20), heal, nil
	}
}

// unwritablePhase runs one fault: a worker (stall threshold 10 s) and an
// HTTP shell without worker on the same database, a steady publisher, the
// fault for ~20 s, then recovery.
func unwritablePhase(ctx context.Context, e *Env, r *Result, label, db string, inject fault) error {
	ns, err := e.StartNATS(ctx, NatsOptions{Name: label + "-nats"})
	if err != nil {
		return err
	}
	stall := "KANADE_PROJECTION_STALL=10s"
	w, err := e.StartWorker(ctx, label+"-worker", e.shellOpts(db, ns.URL(), label+"-worker-data", stall))
	if err != nil {
		return err
	}
	sh, err := e.StartHTTP(ctx, label+"-http", e.shellOpts(db, ns.URL(), label+"-http-data", "KANADE_WORKER=off", stall))
	if err != nil {
		return err
	}
	nc, err := connectNATS(ns.URL(), "faults-"+label)
	if err != nil {
		return err
	}
	defer nc.Close()
	const pubRate = 150
	n := pubRate * 35
	pub, err := NewPublisher(nc, PubOptions{Inflight: 500, Rate: pubRate})
	if err != nil {
		return err
	}
	g := Gen{Prefix: "unwritable-" + label, Base: time.Now().Add(-time.Hour), StdoutBytes: 200, Jobs: []string{"u-job"}}
	pubDone := pub.Background(ctx, n, okResults(g))
	if err := sleep(ctx, 5*time.Second); err != nil {
		return err
	}
	m0, err := e.scrape(ctx, w.URL)
	if err != nil {
		return err
	}
	applyErrs := func(m Metrics) float64 { return m.Sum("kanade_projector_apply_errors_total", nil) }
	desc, heal, err := inject(ctx, db)
	if err != nil {
		return err
	}
	faultAt := time.Now()
	healed := false
	defer func() {
		if !healed {
			heal()
		}
	}()
	r.Do("(%s) worker (KANADE_PROJECTION_STALL=10s) and shells/http (KANADE_WORKER=off) on one database, results published at %d/s; fault: %s, for 20 s", label, pubRate, desc)
	var fleet503, ready503 time.Duration
	var fleetBody, readyBody string
	for time.Since(faultAt) < 20*time.Second {
		if fleet503 == 0 {
			if res, f := e.fleet(ctx, sh.URL); res.Status == http.StatusServiceUnavailable && f.Errors["projection"] != "" {
				fleet503, fleetBody = time.Since(faultAt), "errors.projection: "+f.Errors["projection"]
			}
		}
		if ready503 == 0 {
			if res, rd := e.readyz(ctx, w.URL); res.Status == http.StatusServiceUnavailable && rd.Checks["projection"] != "" && rd.Checks["projection"] != "ok" {
				ready503, readyBody = time.Since(faultAt), strings.TrimSpace(string(res.Body))
			}
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	m1, err := e.scrape(ctx, w.URL)
	if err != nil {
		return err
	}
	if err := heal(); err != nil {
		return err
	}
	healed = true
	healAt := time.Now()
	var fleetOK, readyOK time.Duration
	for time.Since(healAt) < e.Size.Stall && (fleetOK == 0 || readyOK == 0) {
		if fleetOK == 0 {
			if res, _ := e.fleet(ctx, sh.URL); res.Status == http.StatusOK {
				fleetOK = time.Since(healAt)
			}
		}
		if readyOK == 0 {
			if res, _ := e.readyz(ctx, w.URL); res.Status == http.StatusOK {
				readyOK = time.Since(healAt)
			}
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	po := <-pubDone
	if po.Err != nil {
		return po.Err
	}
	logged := errorLines(w, 3)
	r.Measure("(%s) kanade_projector_apply_errors_total %.0f before the fault, %.0f at its end", label, applyErrs(m0), applyErrs(m1))
	r.Check(applyErrs(m1) > applyErrs(m0), "(%s) kanade_projector_apply_errors_total rises during the fault (%.0f → %.0f)", label, applyErrs(m0), applyErrs(m1))
	r.Check(len(logged) > 0, "(%s) the worker logs the failure as errors (%d lines quoted)", label, len(logged))
	r.Quote(fmt.Sprintf("(%s) worker log, first errors", label), logged)
	r.Check(fleet503 >= 10*time.Second && fleet503 <= 20*time.Second, "(%s) /api/health/fleet turns 503 with errors.projection once the 10 s stall threshold passes (after %s)", label, durOrNever(fleet503))
	if fleetBody != "" {
		r.Measure("(%s) fleet: %s", label, oneLine(fleetBody, 300))
	}
	r.Check(ready503 > 0, "(%s) worker /readyz answers 503 naming the projection (after %s)", label, durOrNever(ready503))
	if readyBody != "" {
		r.Measure("(%s) worker /readyz: %s", label, oneLine(readyBody, 300))
	}
	r.Check(fleetOK > 0 && readyOK > 0, "(%s) after recovery fleet health is 200 again (after %s) and /readyz is 200 again (after %s)", label, durOrNever(fleetOK), durOrNever(readyOK))
	d, err := checkLanded(ctx, e, r, "("+label+") results", db, wantIDs(g, po.Acks, n), e.Size.Stall)
	if err != nil {
		return err
	}
	r.Figure("(%s) 503 after %s, recovered in %s, %d lost", label, durOrNever(fleet503), durOrNever(max(fleetOK, readyOK)), len(d.Missing))
	return nil
}

func durOrNever(d time.Duration) string {
	if d == 0 {
		return "never"
	}
	return round(d)
}
