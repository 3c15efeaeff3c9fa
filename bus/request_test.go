package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/nats-io/nats.go"
)

// responder subscribes to subject on a connection of its own (as an agent
// would), answering each request with answer(request) unless it is nil.
func responder(t *testing.T, s *bustest.Server, subject string, answer func([]byte) []byte) {
	t.Helper()
	nc, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) {
		if reply := answer(m.Data); reply != nil {
			_ = m.Respond(reply)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestRequestReturnsTheReply(t *testing.T) {
	s := bustest.Start(t)
	responder(t, s, "agents.PC-1.ping", func(b []byte) []byte { return append([]byte("pong:"), b...) })
	got, err := s.Bus.Request(t.Context(), "agents.PC-1.ping", []byte("x"), 5*time.Second)
	if err != nil || string(got) != "pong:x" {
		t.Fatalf("Request = %q, %v", got, err)
	}
}

func TestRequestWithoutRespondersFailsAtOnce(t *testing.T) {
	s := bustest.Start(t)
	start := time.Now()
	_, err := s.Bus.Request(t.Context(), "agents.PC-1.ping", nil, 30*time.Second)
	if !errors.Is(err, bus.ErrNoResponders) {
		t.Fatalf("err = %v, want ErrNoResponders", err)
	}
	// Far below the timeout: the server said so, nobody waited.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestRequestToASilentSubscriberTimesOut(t *testing.T) {
	s := bustest.Start(t)
	responder(t, s, "agents.PC-1.ping", func([]byte) []byte { return nil })
	_, err := s.Bus.Request(t.Context(), "agents.PC-1.ping", nil, 200*time.Millisecond)
	if !errors.Is(err, bus.ErrTimeout) || errors.Is(err, bus.ErrNoResponders) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
}

func TestRequestEndsWithItsContext(t *testing.T) {
	s := bustest.Start(t)
	responder(t, s, "agents.PC-1.ping", func([]byte) []byte { return nil })
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := s.Bus.Request(ctx, "agents.PC-1.ping", nil, time.Minute)
	if !errors.Is(err, context.Canceled) || errors.Is(err, bus.ErrTimeout) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestRequestWithoutAConnectionFailsAtOnce(t *testing.T) {
	s := bustest.Start(t)
	s.NC.Close()
	_, err := s.Bus.Request(t.Context(), "agents.PC-1.ping", nil, time.Minute)
	if !errors.Is(err, bus.ErrNotConnected) {
		t.Fatalf("err = %v, want ErrNotConnected", err)
	}
}

func TestRequestWhoseConnectionDropsSaysSo(t *testing.T) {
	s := bustest.Start(t)
	responder(t, s, "agents.PC-1.ping", func([]byte) []byte { return nil })
	time.AfterFunc(200*time.Millisecond, func() { s.Shutdown() })
	start := time.Now()
	_, err := s.Bus.Request(t.Context(), "agents.PC-1.ping", nil, time.Minute)
	if !errors.Is(err, bus.ErrDropped) {
		t.Fatalf("err = %v, want ErrDropped", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v: the drop did not end the wait", d)
	}
}
