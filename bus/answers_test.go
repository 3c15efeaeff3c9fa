package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/kanade-fleet/backend/bus"
)

// TestAnAPIRequestIsAskedOnce: on a server without JetStream every
// question goes unanswered (no responders). The worker's reads ask again
// until their context ends; an API request's (bus.AnswersACaller) are
// asked once and fail at once, so its caller gets its 503 and can retry.
func TestAnAPIRequestIsAskedOnce(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := bus.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for _, api := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if api {
			ctx = bus.AnswersACaller(ctx)
		}
		start := time.Now()
		_, err := c.Get(ctx, "jobs", "nightly")
		took := time.Since(start)
		cancel()
		if err == nil {
			t.Fatalf("api %v: a read without JetStream succeeded", api)
		}
		switch {
		case api && took > time.Second:
			t.Errorf("an API read took %v (%v): it was asked again", took, err)
		case !api && took < 2*time.Second:
			t.Errorf("a worker read gave up after %v (%v), before its context ended", took, err)
		}
		t.Logf("api %v: %v after %v", api, err, took)
	}
}
