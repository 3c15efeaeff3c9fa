package onprem

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/shells/internal/app"
	"github.com/nats-io/nats.go"
)

func TestEmbeddedNATSRequiresTheConfiguredTokenAndIsBootstrapped(t *testing.T) {
	dir := t.TempDir()
	cfg := app.Config{DataDir: dir, DB: filepath.Join(dir, "k.db"), NATSListen: "127.0.0.1:-1", NATSToken: "nats-secret", NATSReplicas: 1}
	ctx := context.Background()
	d, err := Open(ctx, cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	url := d.NATS.Server.ClientURL()
	if !d.NATS.Connected() {
		t.Error("Connected() = false right after Open")
	}
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Error("a client without the token was let in")
	}
	nc, err := nats.Connect(url, nats.Token("nats-secret"))
	if err != nil {
		t.Fatalf("client with the token: %v", err)
	}
	nc.Close()
	// The bootstrap runs in the background once connected.
	probe := func() []kanade.ResourceStatus {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return bus.Prober{Client: d.NATS.Link.Client}.Probe(pctx)
	}
	deadline := time.Now().Add(30 * time.Second) // a guard against hangs, not a performance target
	for missing := true; missing; {
		missing = false
		for _, st := range probe() {
			if !st.Exists {
				missing = true
				if time.Now().After(deadline) {
					t.Fatalf("%s %s after Open with Bootstrap: %v", st.Kind, st.Name, st.Err)
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d.NATS.Connected() {
		t.Error("Connected() = true after Close")
	}
	if c, err := net.Dial("tcp", strings.TrimPrefix(url, "nats://")); err == nil {
		c.Close()
		t.Error("embedded server still listening after Close")
	}
	if err := d.DB.Ping(ctx); err == nil {
		t.Error("database still answers after Close")
	}
}
