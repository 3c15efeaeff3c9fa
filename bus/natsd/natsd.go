// Package natsd runs a NATS JetStream server inside this process: the on-prem
// shells' default when no external NATS is configured, and the real server
// every test talks to (through bus/bustest).
//
// It is a package of its own because the server is most of a binary's size:
// whatever imports it links nats-server, so only the on-prem shells, tests and
// local tools (bench) import it; bus, handlers and the Lambda shell never do.
// It must never hold client-side code (streams, buckets, publishers: those
// are bus's).
package natsd

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an in-process NATS JetStream server.
type Options struct {
	// Listen is host:port; port -1 picks a free port. Empty means 127.0.0.1:-1.
	Listen string
	// StoreDir holds the JetStream files.
	StoreDir string
	// Token, when set, is required from every client.
	Token string
}

// Start starts a NATS server with JetStream enabled and waits until it
// accepts connections. Callers stop it with Shutdown and WaitForShutdown.
func Start(o Options) (*server.Server, error) {
	host, port := "127.0.0.1", -1
	if o.Listen != "" {
		h, p, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen %q: %w", o.Listen, err)
		}
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("embedded nats: listen %q: %w", o.Listen, err)
		}
		if h != "" {
			host = h
		}
	}
	opts := &server.Options{
		ServerName:         "kanade-embedded",
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           o.StoreDir,
		Authorization:      o.Token,
		NoSigs:             true,
		MaxPayload:         8 * 1024 * 1024,
		JetStreamMaxMemory: 256 * 1024 * 1024,
	}
	if port > 0 {
		// The server only logs a listen failure and then never gets ready;
		// try the address first so a taken port is reported as such.
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w (another NATS or kanade already running? set KANADE_NATS_LISTEN or KANADE_NATS_URL)", err)
		}
		ln.Close()
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats on %s: not ready after 10s", o.Listen)
	}
	return s, nil
}
