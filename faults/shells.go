package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Shell is a running kanade shell process (worker or HTTP).
type Shell struct {
	Kind string // "worker" or "http"
	Name string
	Proc *Proc
	// URL is the admin address (worker) or the HTTP address, "http://host:port".
	URL string
	env []string
	e   *Env
}

// ShellOptions configure a shell process.
type ShellOptions struct {
	DB      string
	NATSURL string // empty: the HTTP shell starts its embedded NATS
	DataDir string
	// Env adds or overrides KANADE_* variables ("K=V").
	Env []string
}

func (e *Env) shellEnv(o ShellOptions) []string {
	env := []string{
		"KANADE_DB=" + o.DB,
		"KANADE_DATA_DIR=" + o.DataDir,
		"KANADE_AUTH_STATIC_TOKEN=" + e.Token,
		"KANADE_LOG_FORMAT=json",
	}
	if o.NATSURL != "" {
		env = append(env, "KANADE_NATS_URL="+o.NATSURL)
	}
	return append(env, o.Env...)
}

// StartWorker starts shells/worker and waits for its admin address.
func (e *Env) StartWorker(ctx context.Context, name string, o ShellOptions) (*Shell, error) {
	env := append(e.shellEnv(o), "KANADE_ADMIN_ADDR=127.0.0.1:0")
	s := &Shell{Kind: "worker", Name: name, env: env, e: e}
	return s, s.start(ctx)
}

// StartHTTP starts shells/http and waits for its listening address.
func (e *Env) StartHTTP(ctx context.Context, name string, o ShellOptions) (*Shell, error) {
	env := append(e.shellEnv(o), "KANADE_HTTP_ADDR=127.0.0.1:0")
	s := &Shell{Kind: "http", Name: name, env: env, e: e}
	return s, s.start(ctx)
}

func (s *Shell) start(ctx context.Context) error {
	bin, marker := "kanade-worker", "kanade-worker: admin on "
	if s.Kind == "http" {
		bin, marker = "kanade-http", "kanade: listening on "
	}
	p, err := s.e.Procs.Start(s.Name, filepath.Join(s.e.Bins, bin), nil, s.env)
	if err != nil {
		return err
	}
	s.Proc = p
	rest, err := p.WaitLine(ctx, marker, 60*time.Second)
	if err != nil {
		p.Kill()
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	url, _, _ := strings.Cut(rest, " ")
	s.URL = strings.TrimSuffix(url, "/")
	return nil
}

// Restart kills the process (if alive) and starts it again with the same
// settings.
func (s *Shell) Restart(ctx context.Context) error {
	s.Proc.Kill()
	return s.start(ctx)
}

// Logs are the stderr lines of every incarnation of the shell.
func (s *Shell) LogGrep(max int, needles ...string) []string {
	var out []string
	for _, p := range s.e.Procs.Named(s.Name) {
		out = append(out, p.LogGrep(max-len(out), needles...)...)
		if max > 0 && len(out) >= max {
			break
		}
	}
	return out
}

// Named returns every process started under name (all incarnations).
func (ps *Procs) Named(name string) []*Proc {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []*Proc
	for _, p := range ps.list {
		if p.Name == name || strings.HasPrefix(p.Name, name+".") {
			out = append(out, p)
		}
	}
	return out
}

// HTTPResult is one request's outcome.
type HTTPResult struct {
	Status  int
	Body    []byte
	Latency time.Duration
	Err     error
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// get requests url with the suite's bearer token.
func (e *Env) get(ctx context.Context, url string) HTTPResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return HTTPResult{Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+e.Token)
	start := time.Now()
	resp, err := httpClient.Do(req)
	if err != nil {
		return HTTPResult{Err: err, Latency: time.Since(start)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return HTTPResult{Status: resp.StatusCode, Body: body, Latency: time.Since(start), Err: err}
}

// Fleet is the part of /api/health/fleet the suite reads.
type Fleet struct {
	Status    string `json:"status"`
	JetStream struct {
		AllOK   bool     `json:"all_ok"`
		Missing []string `json:"missing"`
	} `json:"jetstream"`
	RecentResults struct {
		Total *int64 `json:"total"`
	} `json:"recent_results"`
	Errors     map[string]string `json:"errors"`
	Projection json.RawMessage   `json:"projection"`
}

// fleet reads /api/health/fleet of an HTTP shell.
func (e *Env) fleet(ctx context.Context, base string) (HTTPResult, Fleet) {
	r := e.get(ctx, base+"/api/health/fleet")
	var f Fleet
	if r.Err == nil {
		if err := json.Unmarshal(r.Body, &f); err != nil && r.Status != 0 {
			r.Err = fmt.Errorf("fleet body: %w", err)
		}
	}
	return r, f
}

// Readiness is the body of /readyz.
type Readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

func (e *Env) readyz(ctx context.Context, base string) (HTTPResult, Readiness) {
	r := e.get(ctx, base+"/readyz")
	var rd Readiness
	if r.Err == nil {
		_ = json.Unmarshal(r.Body, &rd)
	}
	return r, rd
}

// Sample is one Prometheus sample.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Metrics is a scraped Prometheus exposition.
type Metrics []Sample

// scrape reads /metrics (text format) of a shell.
func (e *Env) scrape(ctx context.Context, base string) (Metrics, error) {
	r := e.get(ctx, base+"/metrics")
	if r.Err != nil {
		return nil, fmt.Errorf("scrape %s: %w", base, r.Err)
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: HTTP %d", base, r.Status)
	}
	return parseMetrics(r.Body), nil
}

func parseMetrics(b []byte) Metrics {
	var out Metrics
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		name, rest := l, ""
		s := Sample{Labels: map[string]string{}}
		if i := strings.IndexByte(l, '{'); i >= 0 {
			j := strings.LastIndexByte(l, '}')
			if j < i {
				continue
			}
			name, rest = l[:i], strings.TrimSpace(l[j+1:])
			for _, kv := range splitLabels(l[i+1 : j]) {
				k, v, ok := strings.Cut(kv, "=")
				if ok {
					uq, err := strconv.Unquote(v)
					if err != nil {
						uq = strings.Trim(v, `"`)
					}
					s.Labels[k] = uq
				}
			}
		} else {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			name, rest = f[0], f[1]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s.Name, s.Value = name, v
		out = append(out, s)
	}
	return out
}

// splitLabels splits `a="x",b="y,z"` at the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	in, esc, start := false, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case c == '\\':
			esc = true
		case c == '"':
			in = !in
		case c == ',' && !in:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// Sum adds the samples of name whose labels pass keep (nil keeps all).
func (m Metrics) Sum(name string, keep func(map[string]string) bool) float64 {
	var t float64
	for _, s := range m {
		if s.Name == name && (keep == nil || keep(s.Labels)) {
			t += s.Value
		}
	}
	return t
}

// Has reports whether any sample of name exists.
func (m Metrics) Has(name string) bool {
	for _, s := range m {
		if s.Name == name {
			return true
		}
	}
	return false
}

// Killer restarts shells with SIGKILL at random moments until stopped: the
// crash half of the kill -9 scenarios.
type Killer struct {
	stop  context.CancelFunc
	done  chan struct{}
	kills atomic.Int64
	err   error // set before done closes
}

// StartKiller kills and restarts victim(i) for the i-th kill (from 0), a
// random time in [lo, hi] after the previous one.
func StartKiller(ctx context.Context, lo, hi time.Duration, victim func(i int) *Shell) *Killer {
	kctx, stop := context.WithCancel(ctx)
	k := &Killer{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		for i := 0; sleep(kctx, randDur(lo, hi)) == nil; i++ {
			k.kills.Add(1)
			if err := victim(i).Restart(ctx); err != nil {
				k.err = fmt.Errorf("restart after kill -9: %w", err)
				return
			}
		}
	}()
	return k
}

// WaitKills returns once n kills happened, the killer failed, or ctx ended.
func (k *Killer) WaitKills(ctx context.Context, n int) {
	for k.kills.Load() < int64(n) {
		select {
		case <-k.done:
			return
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop ends the kills and says how many there were, or why a restart failed.
func (k *Killer) Stop() (int, error) {
	k.stop()
	<-k.done
	return int(k.kills.Load()), k.err
}
