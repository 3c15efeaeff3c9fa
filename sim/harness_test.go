package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/sim"
	"github.com/nats-io/nats.go"
)

// fakeClock is the simulated fleet's clock: it moves only when a test moves it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// seenMsg is a result or a started event the fleet published.
type seenMsg struct {
	Started *kanade.EventStarted
	Result  *kanade.ExecResult
}

func (m seenMsg) String() string {
	if m.Started != nil {
		return fmt.Sprintf("started %s/%s", m.Started.PcID, m.Started.RequestID)
	}
	return fmt.Sprintf("result %s/%s exit %d skipped %v %q", m.Result.PcID, m.Result.RequestID, *m.Result.ExitCode, m.Result.Skipped, m.Result.Stderr)
}

// fleet is a simulated fleet on an embedded NATS server, on a fake clock,
// and a subscriber to everything it publishes about runs.
type fleet struct {
	t     *testing.T
	srv   *bustest.Server
	clock *fakeClock
	in    chan *nats.Msg
	syncs int
}

// startFleet runs sim.Run with cfg (its Clock replaced by a fake one, its
// Step shortened, its agents' own runs and random failures off) on its own
// connection, after prepare when given, and returns once the agents answer
// commands.
func startFleet(t *testing.T, cfg sim.Config, prepare ...func(*bustest.Server)) *fleet {
	t.Helper()
	srv := bustest.StartBootstrapped(t)
	for _, p := range prepare {
		p(srv)
	}
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := bus.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	clock := &fakeClock{t: time.Date(2026, 6, 20, 9, 0, 0, 0, time.UTC)}
	cfg.Clock, cfg.Step = clock.now, 5*time.Millisecond
	if cfg.RunInterval == 0 {
		cfg.RunInterval = 100_000 * time.Hour
	}
	if cfg.FailureRate == 0 {
		cfg.FailureRate = -1
	}
	if cfg.DuplicateRate == 0 {
		cfg.DuplicateRate = -1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx, c, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	f := &fleet{t: t, srv: srv, clock: clock, in: make(chan *nats.Msg, 1<<16)}
	for _, subject := range []string{"results.>", "events.started.>"} {
		sub, err := srv.NC.ChanSubscribe(subject, f.in) // one channel: the order they were published in
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	// The agents answer once Run has subscribed: ask until they do (the
	// same request_id, which they take once).
	probe := kanade.Command{ID: "probe", Version: "1", RequestID: "probe", Shell: "sh", Script: "true",
		DeadlineAt: &kanade.Timestamp{Time: clock.now().Add(-time.Hour)}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		f.send("commands.pc.SIM-000001", probe)
		select {
		case m := <-f.in:
			if got := decode(t, m); got.Result != nil && got.Result.RequestID == "probe" {
				return f
			}
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the simulated agents never answered the probe")
		}
	}
}

func decode(t *testing.T, m *nats.Msg) seenMsg {
	t.Helper()
	var out seenMsg
	var v any
	if strings.HasPrefix(m.Subject, "results.") {
		out.Result = &kanade.ExecResult{}
		v = out.Result
	} else {
		out.Started = &kanade.EventStarted{}
		v = out.Started
	}
	if err := json.Unmarshal(m.Data, v); err != nil {
		t.Fatalf("%s: %v", m.Subject, err)
	}
	return out
}

func (f *fleet) send(subject string, c kanade.Command) {
	f.t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.srv.NC.Publish(subject, b); err != nil {
		f.t.Fatal(err)
	}
}

// pin writes script_current[id] as a fan-out does before it publishes.
func (f *fleet) pin(id, version string) {
	f.t.Helper()
	if err := f.srv.Bus.SetScriptCurrent(context.Background(), id, version); err != nil {
		f.t.Fatal(err)
	}
}

// status writes script_status[id] as the revoke routes do.
func (f *fleet) status(id, value string) {
	f.t.Helper()
	if err := f.srv.Bus.SetScriptStatus(context.Background(), id, value); err != nil {
		f.t.Fatal(err)
	}
}

// kill publishes kill.<execID> as the backend does (bus.Client.Kill).
func (f *fleet) kill(execID string) {
	f.t.Helper()
	if err := f.srv.Bus.Kill(context.Background(), execID); err != nil {
		f.t.Fatal(err)
	}
}

// until returns what the fleet publishes up to and including the first
// message done accepts.
func (f *fleet) until(done func(seenMsg) bool) []seenMsg {
	f.t.Helper()
	var got []seenMsg
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-f.in:
			s := decode(f.t, m)
			got = append(got, s)
			if done(s) {
				return got
			}
		case <-timeout:
			f.t.Fatalf("timed out; got %v", got)
		}
	}
}

// sync returns everything the fleet published before it handled one more
// command, sent now: a command is handled after the runs that ended by the
// clock's time have ended, so sync also shows what a move of the clock did.
func (f *fleet) sync() []seenMsg {
	f.t.Helper()
	f.syncs++
	id := fmt.Sprintf("sync-%d", f.syncs)
	f.send("commands.pc.SIM-000001", kanade.Command{ID: "probe", Version: "1", RequestID: id, Shell: "sh", Script: "true",
		DeadlineAt: &kanade.Timestamp{Time: f.clock.now().Add(-time.Hour)}})
	got := f.until(func(m seenMsg) bool { return m.Result != nil && m.Result.RequestID == id })
	return got[:len(got)-1]
}

// after returns what the fleet publishes about the commands sent so far,
// handled at the clock's time, and then once the clock has moved by d.
func (f *fleet) after(d time.Duration) []seenMsg {
	f.t.Helper()
	got := f.sync()
	f.clock.add(d)
	return append(got, f.sync()...)
}

// logged waits until agent pc's log has a line containing text.
func (f *fleet) logged(pc, text string) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var log string
		m, err := f.srv.NC.Request("logs.fetch."+pc, []byte(`{"tail_lines":100}`), 5*time.Second)
		if err == nil {
			log = string(m.Data)
		}
		if strings.Contains(log, text) {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s never logged %q; its log (%v):\n%s", pc, text, err, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// setGroups writes pc's groups in KV agent_groups, as the backend's group
// routes do, and returns once the fleet has taken them.
func (f *fleet) setGroups(pc string, groups ...string) {
	f.t.Helper()
	if _, err := f.srv.Bus.Put(context.Background(), kanade.BucketAgentGroups, pc, kanade.EncodeAgentGroups(groups)); err != nil {
		f.t.Fatal(err)
	}
	b, err := json.Marshal(kanade.NormalizeGroups(groups))
	if err != nil {
		f.t.Fatal(err)
	}
	f.logged(pc, "groups changed groups="+string(b))
}
