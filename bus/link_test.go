package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/natsd"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func startAt(t *testing.T, addr, store string) *server.Server {
	t.Helper()
	s, err := natsd.Start(natsd.Options{Listen: addr, StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a guard against hangs, not a performance target
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLogger writes to the test log, shown when the test fails.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func bootstrap(ctx context.Context, c *bus.Client) error { return c.Bootstrap(ctx, 1) }

// sessions records the connections Run handed to its function.
type sessions struct {
	mu    sync.Mutex
	conns []*nats.Conn
}

func (s *sessions) run(ctx context.Context, c *bus.Client) error {
	s.mu.Lock()
	s.conns = append(s.conns, c.Conn())
	s.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (s *sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func TestLinkStartsWithoutNATSAndConnectsWhenItAppears(t *testing.T) {
	addr := freeAddr(t)
	l, err := bus.Dial(bus.LinkOptions{URL: "nats://" + addr, Bootstrap: bootstrap, ReconnectWait: 20 * time.Millisecond,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Dial with NATS down: %v", err)
	}
	defer l.Close()
	if l.Connected() {
		t.Fatal("connected to nothing")
	}
	if _, err := l.Client(); !errors.Is(err, bus.ErrNotConnected) {
		t.Fatalf("Client() = %v, want ErrNotConnected", err)
	}
	// The prober answers every resource at once, well inside its deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	began := time.Now()
	for _, st := range (bus.Prober{Client: l.Client}).Probe(ctx) {
		if !errors.Is(st.Err, bus.ErrNotConnected) {
			t.Errorf("%s: %v, want ErrNotConnected", st.Name, st.Err)
		}
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("probing a disconnected link took %v", d)
	}
	var ss sessions
	runCtx, stop := context.WithCancel(t.Context())
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); l.Run(runCtx, ss.run) }()

	startAt(t, addr, t.TempDir())
	waitUntil(t, "the link to connect and run its work", func() bool { return l.Connected() && ss.count() == 1 })
	// Run started only after the bootstrap: every resource is there.
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range (bus.Prober{Client: bus.Static(c)}).Probe(ctx) {
		if !st.Exists {
			t.Errorf("%s missing after the bootstrap", st.Name)
		}
	}
	stop()
	<-done
}

func TestLinkReplacesAConnectionTheServerClosed(t *testing.T) {
	addr := freeAddr(t)
	startAt(t, addr, t.TempDir())
	l, err := bus.Dial(bus.LinkOptions{URL: "nats://" + addr, Bootstrap: bootstrap, MaxBackoff: 200 * time.Millisecond,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var ss sessions
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go l.Run(ctx, ss.run)
	waitUntil(t, "the first session", func() bool { return ss.count() == 1 })
	first := l.Conn()
	// A subject over the server's 4096-byte control line makes it cut the
	// client with -ERR, which nats.go treats as final: CLOSED for good.
	if err := first.Publish(strings.Repeat("x", 5000), nil); err != nil {
		t.Fatal(err)
	}
	first.Flush()
	waitUntil(t, "the first connection to close", first.IsClosed)
	waitUntil(t, "a new connection and a second session", func() bool { return ss.count() >= 2 && l.Connected() })
	if l.Conn() == first {
		t.Fatal("the closed connection is still the current one")
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.conns) != 2 || ss.conns[1] == first || ss.conns[1] != l.Conn() {
		t.Fatalf("work ran on %d connections; want the first, then the new one once", len(ss.conns))
	}
}

func TestLinkBootstrapsAgainWhenNATSComesBackEmpty(t *testing.T) {
	addr := freeAddr(t)
	s := startAt(t, addr, t.TempDir())
	l, err := bus.Dial(bus.LinkOptions{URL: "nats://" + addr, Bootstrap: bootstrap, ReconnectWait: 20 * time.Millisecond,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	waitUntil(t, "connected", l.Connected)
	s.Shutdown()
	s.WaitForShutdown()
	startAt(t, addr, t.TempDir()) // a new server with an empty store
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	waitUntil(t, "every resource to be back", func() bool {
		c, err := l.Client()
		if err != nil {
			return false
		}
		for _, st := range (bus.Prober{Client: bus.Static(c)}).Probe(ctx) {
			if !st.Exists {
				return false
			}
		}
		return true
	})
}

func TestBacklogsFindTheFirstWaitingMessage(t *testing.T) {
	addr := freeAddr(t)
	startAt(t, addr, t.TempDir())
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	c, err := bus.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	if err := c.Bootstrap(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// EVENTS holds other events besides started ones: only a started event
	// waits for the started projection.
	for i, subj := range []string{"events.started.e.PC-1", "events.other.x", "events.started.e.PC-2", "events.other.y", "results.q"} {
		if _, err := js.Publish(ctx, subj, fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	after := map[string]uint64{kanade.ProjectionStarted: 1, kanade.ProjectionResults: 1, kanade.ProjectionAudit: 0}
	got := (bus.Prober{Client: bus.Static(c)}).Backlogs(ctx, kanade.Projections(), after)
	type view struct {
		Name             string
		LastSeq, NextSeq uint64
		Waits, HasErr    bool
	}
	var views []view
	for _, b := range got {
		views = append(views, view{b.Name, b.LastSeq, b.NextSeq, !b.NextTime.IsZero(), b.Err != nil})
	}
	want := []view{
		{kanade.ProjectionResults, 1, 0, false, false},
		{kanade.ProjectionStarted, 4, 3, true, false},
		{kanade.ProjectionAudit, 0, 0, false, false},
		// EVENTS holds no acknowledgement: nothing waits for that one.
		{kanade.ProjectionNotificationAcks, 4, 0, false, false},
		// OBS_EVENTS is empty.
		{kanade.ProjectionObs, 0, 0, false, false},
	}
	if diff := cmp.Diff(want, views); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}
