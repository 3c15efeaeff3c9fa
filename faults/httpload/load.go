package httpload

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// loadRequestTimeout bounds one request of the load phase; a request slower
// than this counts as an error (the server's WriteTimeout is 60 s).
const loadRequestTimeout = 30 * time.Second

// target is one endpoint of the load phase and the statuses that are
// correct for the seeded data.
type target struct {
	name, path string
	ok         func(code int) bool
}

// loadTargets are the three endpoints. For the seeded fleet every
// JetStream resource exists (the shell bootstraps them) and most agents are
// fresh, so api.md's fleet rule gives "ok", 200: a 503 "degraded" would
// mean a missing resource, an unreadable database or a total blackout, none
// of which the data allows, so it is an error here.
func loadTargets() []target {
	only := func(want int) func(int) bool { return func(c int) bool { return c == want } }
	return []target{
		{"GET /api/health/fleet", "/api/health/fleet", only(http.StatusOK)},
		{"GET /api/health/scan_durations", "/api/health/scan_durations", only(http.StatusOK)},
		{"GET /api/agents?limit=100", "/api/agents?limit=100", only(http.StatusOK)},
	}
}

// LoadInfo describes the load phase as a whole.
type LoadInfo struct {
	Conns    int
	Duration time.Duration // as asked
	Elapsed  time.Duration // until the last in-flight request finished
	// Dials is how many TCP connections the client opened; with keep-alive
	// working it equals Conns.
	Dials int64
}

// sample is one request's outcome, kept per worker and merged at the end so
// the hot loop takes no lock.
type sample struct {
	target  int
	latency time.Duration
	status  int // 0 on a transport error
	err     string
}

// runLoad runs conns keep-alive clients for d, each cycling through the
// targets from its own starting point, and returns one EndpointStats per
// target in loadTargets order.
func runLoad(ctx context.Context, base, token string, conns int, d time.Duration) ([]EndpointStats, LoadInfo) {
	targets := loadTargets()
	var dials atomic.Int64
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: loadRequestTimeout}

	start := time.Now()
	stop := start.Add(d)
	per := make([][]sample, conns)
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]sample, 0, 1024)
			for i := w; time.Now().Before(stop) && ctx.Err() == nil; i++ {
				t := i % len(targets)
				out = append(out, do(ctx, client, base+targets[t].path, token, t))
			}
			per[w] = out
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	stats := make([]EndpointStats, len(targets))
	lat := make([][]time.Duration, len(targets))
	errCounts := make([]map[string]int, len(targets))
	errOrder := make([][]string, len(targets)) // first occurrence order
	for i, t := range targets {
		stats[i] = EndpointStats{Name: t.name, Statuses: map[int]int{}}
		errCounts[i] = map[string]int{}
	}
	for _, out := range per {
		for _, s := range out {
			st := &stats[s.target]
			st.Requests++
			lat[s.target] = append(lat[s.target], s.latency)
			if s.status != 0 {
				st.Statuses[s.status]++
			}
			msg := s.err
			if msg == "" && !targets[s.target].ok(s.status) {
				msg = fmt.Sprintf("unexpected status %d", s.status)
			}
			if msg != "" {
				st.Errors++
				if errCounts[s.target][msg] == 0 {
					errOrder[s.target] = append(errOrder[s.target], msg)
				}
				errCounts[s.target][msg]++
			}
		}
	}
	for i := range stats {
		summarize(&stats[i], lat[i], elapsed)
		for j, msg := range errOrder[i] {
			if j == 5 {
				stats[i].ErrorSamples = append(stats[i].ErrorSamples, fmt.Sprintf("… and %d more kinds", len(errOrder[i])-5))
				break
			}
			stats[i].ErrorSamples = append(stats[i].ErrorSamples, fmt.Sprintf("%d× %s", errCounts[i][msg], msg))
		}
	}
	return stats, LoadInfo{Conns: conns, Duration: d, Elapsed: elapsed, Dials: dials.Load()}
}

// do sends one request and reads the whole body, which keep-alive needs
// and which is part of the latency a client sees.
func do(ctx context.Context, client *http.Client, url, token string, t int) sample {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return sample{target: t, err: err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		return sample{target: t, latency: time.Since(start), err: err.Error()}
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	s := sample{target: t, latency: time.Since(start), status: res.StatusCode}
	if err != nil {
		s.err = fmt.Sprintf("read body (status %d): %v", res.StatusCode, err)
	}
	return s
}
