package app

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go"
)

func TestEmbeddedNATSRequiresTheConfiguredTokenAndIsBootstrapped(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, DB: filepath.Join(dir, "k.db"), NATSListen: "127.0.0.1:-1", NATSToken: "nats-secret", NATSReplicas: 1}
	ctx := context.Background()
	d, err := Open(ctx, cfg, quiet(), OpenOptions{Name: "test", Bootstrap: true})
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
	for _, r := range kanade.Resources(1) {
		var err error
		switch r.Kind {
		case kanade.KindStream:
			_, err = d.NATS.JS.Stream(ctx, r.Name)
		case kanade.KindKeyValue:
			_, err = d.NATS.JS.KeyValue(ctx, r.Name)
		case kanade.KindObjectStore:
			_, err = d.NATS.JS.ObjectStore(ctx, r.Name)
		}
		if err != nil {
			t.Errorf("%s %s after Open with Bootstrap: %v", r.Kind, r.Name, err)
		}
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

func TestOpenFailsClearlyWhenNATSIsUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a port nobody listens on
	dir := t.TempDir()
	cfg := Config{DataDir: dir, DB: filepath.Join(dir, "k.db"), NATSURL: "nats://" + addr, NATSReplicas: 1}
	_, err = Open(context.Background(), cfg, quiet(), OpenOptions{Name: "test"})
	if err == nil || !strings.Contains(err.Error(), "connect to NATS nats://"+addr) {
		t.Fatalf("Open = %v, want an error naming the NATS URL", err)
	}
}
