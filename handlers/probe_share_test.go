package handlers_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/handlers"
)

// gatedProber is the real prober, counting its probes; while gate is set,
// a probe reports on sent and then waits for gate to close.
type gatedProber struct {
	bus.Prober
	mu    sync.Mutex
	calls int
	gate  chan struct{}
	sent  chan struct{}
}

func (p *gatedProber) Probe(ctx context.Context) []kanade.ResourceStatus {
	p.mu.Lock()
	p.calls++
	gate, sent := p.gate, p.sent
	p.mu.Unlock()
	if gate != nil {
		sent <- struct{}{}
		<-gate
	}
	return p.Prober.Probe(ctx)
}

func (p *gatedProber) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// ages collects what Config.ProbeUsed is told.
type ages struct {
	mu  sync.Mutex
	got []time.Duration
}

func (a *ages) add(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, d)
}

func (a *ages) all() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Duration(nil), a.got...)
}

func newProbeEnv(t *testing.T, maxAge time.Duration) (*env, *gatedProber, *ages) {
	t.Helper()
	p := &gatedProber{}
	a := &ages{}
	e := newEnv(t, func(c *handlers.Config) {
		p.Prober = c.Prober.(bus.Prober)
		c.Prober, c.ProbeMaxAge, c.ProbeUsed = p, maxAge, a.add
	})
	return e, p, a
}

func TestFleetHealthProbesAfterEachRequestArrivesByDefault(t *testing.T) {
	e, p, a := newProbeEnv(t, 0)
	e.seed([]agent{freshAgent}, nil)
	const requests = 5
	for range requests {
		if rec := e.get("/api/health/fleet"); rec.Code != http.StatusOK {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	// One probe per request: the one before it was sent before it arrived.
	if got := p.count(); got != requests {
		t.Errorf("%d requests sent %d probes, want one each", requests, got)
	}
	for _, age := range a.all() {
		if age > 0 {
			t.Errorf("a request was answered from a probe sent %v before it arrived, with a budget of 0", age)
		}
	}
}

func TestFleetHealthSharesAProbeWithinItsBudget(t *testing.T) {
	e, p, a := newProbeEnv(t, time.Hour)
	e.seed([]agent{freshAgent}, nil)
	for range 3 {
		if rec := e.get("/api/health/fleet"); rec.Code != http.StatusOK {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	if got := p.count(); got != 1 {
		t.Errorf("3 requests within an hour's budget sent %d probes, want 1", got)
	}
	if got := a.all(); len(got) != 3 || got[0] > 0 || got[2] <= 0 || got[2] > time.Hour {
		t.Errorf("ages %v: want the first ≤ 0 (it sent the probe), the later ones > 0 and within the budget", got)
	}
}

// TestFleetHealthJoinsOnlyAProbeWithinItsBudget: a request arriving while a
// probe is in flight waits for that probe when it was sent within the
// budget, and sends its own when it was sent earlier.
func TestFleetHealthJoinsOnlyAProbeWithinItsBudget(t *testing.T) {
	for _, tt := range []struct {
		name      string
		maxAge    time.Duration
		wantCalls int
	}{
		{"budget 0: the second request sends its own", 0, 2},
		{"budget 1 h: the second request shares the first's", time.Hour, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, p, a := newProbeEnv(t, tt.maxAge)
			e.seed([]agent{freshAgent}, nil)
			gate := make(chan struct{})
			p.gate, p.sent = gate, make(chan struct{}, 2)
			codes := make(chan int, 2)
			go func() { codes <- e.get("/api/health/fleet").Code }()
			<-p.sent // the first probe is in flight
			time.Sleep(time.Millisecond)
			go func() { codes <- e.get("/api/health/fleet").Code }()
			// Wait for the second request's probe, if it sends one (a
			// request sharing the first's has nothing to send: the wait
			// only gives it time to send one wrongly).
			select {
			case <-p.sent:
			case <-time.After(map[int]time.Duration{1: 50 * time.Millisecond, 2: 10 * time.Second}[tt.wantCalls]):
			}
			close(gate)
			for range 2 {
				if code := <-codes; code != http.StatusOK {
					t.Fatalf("code %d", code)
				}
			}
			if got := p.count(); got != tt.wantCalls {
				t.Errorf("%d probes, want %d", got, tt.wantCalls)
			}
			for _, age := range a.all() {
				if age > tt.maxAge {
					t.Errorf("answered from a probe sent %v before the request, budget %v", age, tt.maxAge)
				}
			}
		})
	}
}
