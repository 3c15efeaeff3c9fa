// Package bustest starts a real embedded NATS JetStream server for tests.
package bustest

import (
	"testing"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/natsd"
	"github.com/kanade-fleet/backend/sign"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a running embedded server with one client connection: Bus is
// what the code under test uses, JS the raw library for a test that must
// damage or inspect the server behind the adapter's back.
type Server struct {
	*server.Server
	URL string
	NC  *nats.Conn
	JS  jetstream.JetStream
	Bus *bus.Client
}

// Start starts an embedded server on a free loopback port with its store in a
// temp dir; it is shut down when the test ends. It does not bootstrap the
// kanade resources: call Bus.Bootstrap or use StartBootstrapped.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := natsd.Start(natsd.Options{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := bus.NewClient(nc)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return &Server{Server: s, URL: s.ClientURL(), NC: nc, JS: js, Bus: c}
}

// Signing is another client on the server's connection that signs every
// command it publishes with signer, stamped by clock (nil: the wall clock),
// as a shell's Link makes it; it is closed when the test ends.
func (s *Server) Signing(tb testing.TB, signer *sign.Signer, clock kanade.Clock) *bus.Client {
	tb.Helper()
	c, err := bus.NewClient(s.NC, bus.WithSigner(signer, clock))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// StartBootstrapped is Start followed by bus.Bootstrap with one replica.
func StartBootstrapped(tb testing.TB) *Server {
	tb.Helper()
	s := Start(tb)
	if err := s.Bus.Bootstrap(tb.Context(), 1); err != nil {
		tb.Fatal(err)
	}
	return s
}
