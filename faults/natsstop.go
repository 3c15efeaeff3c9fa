package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
)

// pollSample is one API request made during the outage.
type pollSample struct {
	at       time.Time
	endpoint string
	status   int
	latency  time.Duration
	err      error
}

// poller requests the API every 100 ms per endpoint and keeps every answer.
type poller struct {
	mu      sync.Mutex
	samples []pollSample
}

func (p *poller) run(ctx context.Context, e *Env, base string, endpoints []string) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, ep := range endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				at := time.Now()
				res := e.get(ctx, base+ep)
				if ctx.Err() != nil {
					return
				}
				p.mu.Lock()
				p.samples = append(p.samples, pollSample{at: at, endpoint: ep, status: res.Status, latency: res.Latency, err: res.Err})
				p.mu.Unlock()
			}
		}()
	}
	return &wg
}

func (p *poller) snapshot() []pollSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pollSample(nil), p.samples...)
}

// first is the first sample of endpoint at or after t matching ok.
func first(ss []pollSample, endpoint string, t time.Time, ok func(pollSample) bool) (pollSample, bool) {
	for _, s := range ss {
		if s.endpoint == endpoint && !s.at.Before(t) && ok(s) {
			return s, true
		}
	}
	return pollSample{}, false
}

const fleetPath = "/api/health/fleet"

func runNATSStop(ctx context.Context, e *Env, r *Result) error {
	ns, err := e.StartNATS(ctx, NatsOptions{Name: "nats"})
	if err != nil {
		return err
	}
	db := filepath.Join(e.Dir, "http.db")
	sh, err := e.StartHTTP(ctx, "http", e.shellOpts(db, ns.URL(), "data", "KANADE_WORKER=on"))
	if err != nil {
		return err
	}
	nc, err := connectNATS(ns.URL(), "faults-nats-stop")
	if err != nil {
		return err
	}
	defer nc.Close()
	const pubRate = 400
	n := int(pubRate * (5*time.Second + e.Size.Outage + 10*time.Second).Seconds())
	pub, err := NewPublisher(nc, PubOptions{Inflight: 1000, Rate: pubRate})
	if err != nil {
		return err
	}
	pctx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	var p poller
	pwg := p.run(pctx, e, sh.URL, []string{fleetPath, "/api/agents", "/api/results?limit=10"})
	g := Gen{Prefix: "nats-stop", Base: time.Now().Add(-time.Hour), StdoutBytes: 200, Jobs: []string{"ns-job"}}
	pubDone := pub.Background(ctx, n, okResults(g))
	if err := sleep(ctx, 5*time.Second); err != nil {
		return err
	}
	ns.Kill()
	stopAt := time.Now()
	if err := sleep(ctx, e.Size.Outage); err != nil {
		return err
	}
	if err := ns.Restart(ctx, true); err != nil {
		return err
	}
	backAt := time.Now()
	r.Do("external nats-server, shells/http with KANADE_WORKER=on; a publisher at %d results/s (%d in all) and a poller (every 100 ms: %s, /api/agents, /api/results?limit=10)", pubRate, n, fleetPath)
	r.Do("nats-server killed (SIGKILL) for %s, then restarted on the same port and store", e.Size.Outage)
	var recovered pollSample
	okAgain := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if recovered, okAgain = first(p.snapshot(), fleetPath, backAt, func(s pollSample) bool { return s.status == http.StatusOK }); okAgain {
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	var po Published
	select {
	case po = <-pubDone:
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("publisher not done 2 min after NATS returned (%d retries, last error %s)", pub.Retries(), pub.LastError())
	}
	if po.Err != nil {
		return po.Err
	}
	sleep(ctx, time.Second)
	stopPoll()
	pwg.Wait()
	ss := p.snapshot()

	down, downOK := first(ss, fleetPath, stopAt, func(s pollSample) bool { return s.status == http.StatusServiceUnavailable })
	if downOK {
		r.Measure("fleet health answered 503 %s after the stop", round(down.at.Add(down.latency).Sub(stopAt)))
	}
	r.Check(downOK && down.at.Add(down.latency).Sub(stopAt) <= 3*time.Second, "fleet health 503 within 3 s of the stop")
	var slow []string
	var maxLat time.Duration
	perEP := map[string]int{}
	for _, s := range ss {
		perEP[s.endpoint]++
		maxLat = max(maxLat, s.latency)
		if s.latency > 3*time.Second || s.err != nil {
			slow = append(slow, fmt.Sprintf("%s at +%s: %s (HTTP %d, %v)", s.endpoint, round(s.at.Sub(stopAt)), round(s.latency), s.status, s.err))
		}
	}
	sort.Strings(slow)
	r.Measure("%d requests (%v); slowest %s", len(ss), perEP, round(maxLat))
	r.Check(len(slow) == 0, "no request slower than 3 s or failed (%d%s)", len(slow), suffix(slow))
	if okAgain {
		r.Measure("fleet health back to 200 %s after NATS was restarted (same shell process)", round(recovered.at.Add(recovered.latency).Sub(backAt)))
		r.Figure("503 after %s, 200 again %s after restart", round(down.at.Add(down.latency).Sub(stopAt)), round(recovered.at.Add(recovered.latency).Sub(backAt)))
	}
	r.Check(okAgain && !sh.Proc.Exited(), "fleet health back to 200 after NATS returned, without restarting the shell (shell alive: %v)", !sh.Proc.Exited())
	r.Measure("publisher: %d acked, %d retries during the outage", po.Acks.Count(), pub.Retries())
	if _, err := checkLanded(ctx, e, r, "results", db, wantIDs(g, po.Acks, n), e.Size.Stall); err != nil {
		return err
	}
	return natsDownStart(ctx, e, r, ns)
}

// natsDownStart starts an HTTP shell while NATS is down: it must come up
// (liveness), say not ready, name every JetStream resource as missing, and
// become ready once NATS starts.
func natsDownStart(ctx context.Context, e *Env, r *Result, ns *NatsServer) error {
	ns.Kill()
	db := filepath.Join(e.Dir, "down.db")
	start := time.Now()
	sh, err := e.StartHTTP(ctx, "http-nats-down", e.shellOpts(db, ns.URL(), "down-data", "KANADE_WORKER=on"))
	r.Do("second part: nats-server stopped, a fresh shells/http started against it")
	if !r.Check(err == nil, "the HTTP shell starts while NATS is down (%s)", errText(err)) {
		return nil
	}
	r.Measure("the shell listened %s after its start with NATS down", round(time.Since(start)))
	h := e.get(ctx, sh.URL+"/health")
	r.Check(h.Status == http.StatusOK, "/health answers 200 (got %d)", h.Status)
	rd, rdBody := e.readyz(ctx, sh.URL)
	r.Check(rd.Status == http.StatusServiceUnavailable, "/readyz answers 503 while NATS is down (got %d: %s)", rd.Status, strings.TrimSpace(string(rd.Body)))
	_ = rdBody
	fr, f := e.fleet(ctx, sh.URL)
	var absent []string
	missing := map[string]bool{}
	for _, m := range f.JetStream.Missing {
		missing[m] = true
	}
	for _, res := range kanade.Resources(1) {
		if !missing[res.Name] {
			absent = append(absent, res.Name)
		}
	}
	r.Check(fr.Status == http.StatusServiceUnavailable && len(absent) == 0, "fleet health 503 naming every resource in jetstream.missing (HTTP %d, %d named, not named: %s)",
		fr.Status, len(f.JetStream.Missing), joinMax(absent, 5))
	if err := ns.Restart(ctx, true); err != nil {
		return err
	}
	back := time.Now()
	ready := false
	for time.Since(back) < 60*time.Second {
		if rr, _ := e.readyz(ctx, sh.URL); rr.Status == http.StatusOK {
			ready = true
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	r.Check(ready, "/readyz turns 200 once NATS starts (after %s)", round(time.Since(back)))
	return nil
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return oneLine(err.Error(), 300)
}
