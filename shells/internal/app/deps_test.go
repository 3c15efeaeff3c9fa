package app

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanade-fleet/backend/bus"
)

func TestOpenWithoutAURLNeedsAShellThatStartsAServer(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, DB: filepath.Join(dir, "k.db"), NATSReplicas: 1}
	d, err := Open(context.Background(), cfg, quiet(), OpenOptions{Name: "test"})
	if err == nil {
		d.Close()
		t.Fatal("Open with no NATS URL and no StartNATS succeeded")
	}
	if !strings.Contains(err.Error(), "KANADE_NATS_URL") {
		t.Errorf("error = %v, want it to name KANADE_NATS_URL", err)
	}
}

func TestOpenStopsTheEmbeddedServerWhenItCannotConnect(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, DB: filepath.Join(dir, "k.db"), NATSReplicas: 1}
	s := &fakeServer{url: "nats://127.0.0.1:not-a-port"}
	d, err := Open(context.Background(), cfg, quiet(), OpenOptions{
		Name: "test", StartNATS: func() (EmbeddedNATS, error) { return s, nil },
	})
	if err == nil {
		d.Close()
		t.Fatalf("Open with an unusable server URL succeeded")
	}
	if !s.stopped {
		t.Error("Open failed but left the embedded server running")
	}
}

// fakeServer is an EmbeddedNATS that records being stopped.
type fakeServer struct {
	url     string
	stopped bool
}

func (f *fakeServer) ClientURL() string { return f.url }
func (f *fakeServer) Shutdown()         { f.stopped = true }
func (f *fakeServer) WaitForShutdown()  {}

func TestOpenStartsWhenNATSIsUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a port nobody listens on
	dir := t.TempDir()
	cfg := Config{DataDir: dir, DB: filepath.Join(dir, "k.db"), NATSURL: "nats://" + addr, NATSReplicas: 1}
	d, err := Open(context.Background(), cfg, quiet(), OpenOptions{Name: "test", Bootstrap: true})
	if err != nil {
		t.Fatalf("Open with NATS down = %v, want it to start and connect later", err)
	}
	defer d.Close()
	if d.NATS.Connected() {
		t.Fatal("connected to nothing")
	}
	if _, err := d.NATS.Link.Client(); !errors.Is(err, bus.ErrNotConnected) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Client() = %v, want ErrNotConnected naming %s", err, addr)
	}
}

func TestOpenStopsTheEmbeddedServerWhenTheDatabaseFails(t *testing.T) {
	dir := t.TempDir()
	// A database under a regular file cannot be created.
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := Config{DataDir: dir, DB: filepath.Join(blocker, "k.db"), NATSReplicas: 1}
	s := &fakeServer{url: "nats://" + addr}
	d, err := Open(context.Background(), cfg, quiet(), OpenOptions{
		Name: "test", StartNATS: func() (EmbeddedNATS, error) { return s, nil },
	})
	if err == nil {
		d.Close()
		t.Fatal("Open with a database that cannot be created succeeded")
	}
	if !s.stopped {
		t.Error("the database failed but the embedded server NATS opened meanwhile was left running")
	}
}
