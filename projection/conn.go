package projection

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// conn is one NATS connection and the handles opened on it, shared by the
// loops of one RunWith. A connection that closes for good takes them with
// it; the next RunWith opens its own.
type conn struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	manifests *manifestCache

	objMu   sync.Mutex
	objects jetstream.ObjectStore

	// up is cancelled when the connection drops, and replaced. A request
	// whose reply went down with the connection would otherwise wait for
	// nothing but its deadline.
	upMu     sync.Mutex
	up       context.Context
	drop     context.CancelFunc
	statuses chan nats.Status
	done     chan struct{}
}

func newConn(nc *nats.Conn, js jetstream.JetStream, cfg Config) *conn {
	c := &conn{nc: nc, js: js, statuses: nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED), done: make(chan struct{})}
	c.manifests = newManifestCache(c, cfg.Clock, cfg.ManifestTTL, 1024)
	c.up, c.drop = context.WithCancel(context.Background())
	go func() {
		defer close(c.done)
		for range c.statuses {
			c.upMu.Lock()
			c.drop()
			c.up, c.drop = context.WithCancel(context.Background())
			c.upMu.Unlock()
		}
	}()
	return c
}

// close stops following the connection's status.
func (c *conn) close() {
	c.nc.RemoveStatusListener(c.statuses)
	<-c.done
	c.upMu.Lock()
	c.drop()
	c.upMu.Unlock()
}

// request bounds one JetStream request by timeout and by the connection
// staying up.
func (c *conn) request(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	c.upMu.Lock()
	up := c.up
	c.upMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	stop := context.AfterFunc(up, cancel)
	return ctx, func() { stop(); cancel() }
}

// objectStore opens the result_output store once it is first needed.
func (c *conn) objectStore(ctx context.Context) (jetstream.ObjectStore, error) {
	c.objMu.Lock()
	defer c.objMu.Unlock()
	if c.objects != nil {
		return c.objects, nil
	}
	os, err := c.js.ObjectStore(ctx, kanade.ObjectResultOutput)
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", kanade.ObjectResultOutput, err)
	}
	c.objects = os
	return os, nil
}

// ask runs one JetStream question with natsTimeout, asking again when the
// reply was lost (the connection dropped, the request timed out) for up to
// dbTimeout: a loop that restarted for every lost reply would throw away
// its consumer and everything it holds. An answer, including "not found",
// ends it.
func (c *conn) ask(ctx context.Context, fn func(ctx context.Context) error) error {
	wait := 20 * time.Millisecond
	giveUp := time.Now().Add(dbTimeout)
	for {
		rctx, cancel := c.request(ctx, natsTimeout)
		err := fn(rctx)
		lost := err != nil && rctx.Err() != nil
		cancel()
		if err == nil || !lost && !errors.Is(err, nats.ErrNoResponders) || ctx.Err() != nil || time.Now().After(giveUp) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}
