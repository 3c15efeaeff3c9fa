// Package benchbus starts what every benchmark that goes through NATS
// needs, the same way each time: an embedded JetStream server (bus/natsd)
// storing in a folder of the benchmark's, one connection to it, and kanade's
// streams and buckets bootstrapped on it with one replica.
package benchbus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/natsd"
)

// Bus is a running embedded server with a bootstrapped client on it.
type Bus struct {
	Server *server.Server
	Conn   *nats.Conn
	// JS is a JetStream context of its own on Conn, for the benchmark's
	// publishers and baselines (made with Start's options).
	JS     jetstream.JetStream
	Client *bus.Client
}

// Start starts the server with its JetStream files in storeDir, connects,
// and bootstraps the resources. The caller closes the Bus; on an error
// Start has closed what it opened.
func Start(ctx context.Context, storeDir string, jsOpts ...jetstream.JetStreamOpt) (_ *Bus, err error) {
	b := &Bus{}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if b.Server, err = natsd.Start(natsd.Options{StoreDir: storeDir}); err != nil {
		return nil, err
	}
	if b.Conn, err = nats.Connect(b.Server.ClientURL()); err != nil {
		return nil, fmt.Errorf("connect to the embedded server: %w", err)
	}
	if b.JS, err = jetstream.New(b.Conn, jsOpts...); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if b.Client, err = bus.NewClient(b.Conn); err != nil {
		return nil, err
	}
	if err := b.Client.Bootstrap(ctx, 1); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

// URL is the server's client address, for the benchmark's other
// connections.
func (b *Bus) URL() string { return b.Server.ClientURL() }

// Close closes the client and the connection and stops the server.
func (b *Bus) Close() {
	if b.Client != nil {
		b.Client.Close()
	}
	if b.Conn != nil {
		b.Conn.Close()
	}
	if b.Server != nil {
		b.Server.Shutdown()
		b.Server.WaitForShutdown()
	}
}
