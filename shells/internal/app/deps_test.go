package app

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestBeginReturnsWhileNATSIsStillDialing: a Lambda cold start sets up its
// routes while the NATS dial is in flight, so Begin must not wait for the
// dial; Client and Wait do. The NATS here accepts the connection and says
// nothing until the test lets it go.
func TestBeginReturnsWhileNATSIsStillDialing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	dir := t.TempDir()
	cfg := Config{DataDir: dir, DB: filepath.Join(dir, "k.db"), NATSURL: "nats://" + ln.Addr().String(), NATSReplicas: 1}
	begun := make(chan *Deps, 1)
	go func() {
		d, err := Begin(context.Background(), cfg, quiet(), OpenOptions{Name: "test"})
		if err != nil {
			t.Error(err)
		}
		begun <- d
	}()
	var conn net.Conn
	select {
	case conn = <-accepted:
	case <-time.After(30 * time.Second):
		t.Fatal("the dial never reached the listener")
	}
	var d *Deps
	select {
	case d = <-begun:
	case <-time.After(30 * time.Second):
		conn.Close()
		t.Fatal("Begin waited for the NATS dial")
	}
	if d == nil {
		conn.Close()
		t.FailNow()
	}
	select {
	case <-d.NATS.dialed:
		t.Error("the dial ended before the server said anything")
	default:
	}
	// The server hangs up: the dial ends, NATS down, and the start goes on.
	conn.Close()
	if err := d.Wait(); err != nil {
		t.Fatalf("Wait = %v, want nil with NATS down", err)
	}
	defer d.Close()
	if _, err := d.NATS.Client(); !errors.Is(err, bus.ErrNotConnected) {
		t.Errorf("Client() = %v, want ErrNotConnected", err)
	}
}

// TestLazyNATSDoesNotHoldUpTheStart: with LazyNATS (the Lambda), Wait
// returns once the database is ready though the NATS dial still hangs, and
// only what needs NATS waits for it.
func TestLazyNATSDoesNotHoldUpTheStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	dir := t.TempDir()
	cfg := Config{DataDir: dir, DB: filepath.Join(dir, "k.db"), NATSURL: "nats://" + ln.Addr().String(), NATSReplicas: 1}
	d, err := Begin(context.Background(), cfg, quiet(), OpenOptions{Name: "test", LazyNATS: true})
	if err != nil {
		t.Fatal(err)
	}
	conn := <-accepted
	waited := make(chan error, 1)
	go func() { waited <- d.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("Wait = %v", err)
		}
	case <-time.After(30 * time.Second):
		conn.Close()
		t.Fatal("Wait waited for the NATS dial")
	}
	select {
	case <-d.NATS.dialed:
		t.Error("the dial ended before the server said anything")
	default:
	}
	conn.Close()
	defer d.Close()
	if _, err := d.NATS.Client(); !errors.Is(err, bus.ErrNotConnected) {
		t.Errorf("Client() = %v, want ErrNotConnected", err)
	}
}
