package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/sign"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Client is everything the backend does with JetStream, on one connection:
// streams and what they hold, KV buckets, the result_output object store,
// and the publishers of commands and audit events. The parts (projection,
// schedule, handlers, sim) call it and never the client library, so the
// library's sharp edges are handled here once: a request whose reply went
// down with the connection is cut short and asked again, a key that cannot
// exist is "not found" rather than an error, a list of an empty bucket is
// empty.
//
// A Client lives as long as its connection; the Link makes a new one for
// each connection it makes.
type Client struct {
	nc *nats.Conn
	js jetstream.JetStream

	// signer signs every Command (nil: published unsigned); clock stamps
	// the signing time.
	signer *sign.Signer
	clock  kanade.Clock

	mu      sync.Mutex
	buckets map[string]jetstream.KeyValue
	objects jetstream.ObjectStore

	// up is cancelled when the connection drops, and replaced: a request
	// whose reply was lost with the connection waits for nothing but its
	// deadline otherwise.
	upMu     sync.Mutex
	up       context.Context
	drop     context.CancelFunc
	statuses chan nats.Status
	done     chan struct{}
}

// Errors the parts can test for.
var (
	// ErrNotFound: no such key, message or object.
	ErrNotFound = errors.New("not found")
	// ErrExists: Create found the key there already.
	ErrExists = errors.New("already exists")
	// ErrChanged: the key's revision is not the one the caller read.
	ErrChanged = errors.New("changed since it was read")
)

// Timeouts of one JetStream request, and of asking again when its reply is
// lost.
const (
	requestTimeout = 10 * time.Second
	askFor         = 2 * time.Minute
)

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithSigner makes the Client sign every Command it publishes with s (see
// Commands), stamped with clock (nil: the wall clock). A nil s leaves
// Commands unsigned.
func WithSigner(s *sign.Signer, clock kanade.Clock) ClientOption {
	return func(c *Client) {
		c.signer = s
		if clock != nil {
			c.clock = clock
		}
	}
}

// NewClient wraps a connection. Close it when done with the connection.
func NewClient(nc *nats.Conn, opts ...ClientOption) (*Client, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c := &Client{nc: nc, js: js, buckets: map[string]jetstream.KeyValue{}, clock: kanade.SystemClock,
		statuses: nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED),
		done:     make(chan struct{})}
	for _, o := range opts {
		o(c)
	}
	c.up, c.drop = context.WithCancel(context.Background())
	if !nc.IsConnected() {
		c.drop()
	}
	go func() {
		defer close(c.done)
		for st := range c.statuses {
			c.upMu.Lock()
			switch {
			case st != nats.CONNECTED:
				c.drop()
			case c.up.Err() != nil:
				c.up, c.drop = context.WithCancel(context.Background())
			}
			c.upMu.Unlock()
		}
	}()
	// A connect between IsConnected above and the listener going up would
	// be missed; look again.
	if nc.IsConnected() {
		c.upMu.Lock()
		if c.up.Err() != nil {
			c.up, c.drop = context.WithCancel(context.Background())
		}
		c.upMu.Unlock()
	}
	return c, nil
}

// Close stops following the connection (it does not close it).
func (c *Client) Close() {
	c.nc.RemoveStatusListener(c.statuses)
	<-c.done
	c.upMu.Lock()
	c.drop()
	c.upMu.Unlock()
}

// Conn is the connection, for core NATS (heartbeats, kill, requests).
func (c *Client) Conn() *nats.Conn { return c.nc }

// Connected reports whether the connection is up.
func (c *Client) Connected() bool { return c.nc.IsConnected() }

// MaxPayload is the server's max_payload (0 before the first connect).
func (c *Client) MaxPayload() int64 { return c.nc.MaxPayload() }

// request bounds one JetStream request by timeout and by the connection
// staying up. A request made while the connection is down is not cut
// short: it waits (up to timeout) for the reconnect, which sends it.
func (c *Client) request(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	c.upMu.Lock()
	up := c.up
	if up.Err() != nil {
		up = context.Background()
	}
	c.upMu.Unlock()
	dropped, drop := context.WithCancelCause(ctx)
	ctx, cancel := context.WithTimeout(dropped, timeout)
	stop := context.AfterFunc(up, func() { drop(ErrDropped) })
	return ctx, func() { stop(); cancel(); drop(nil) }
}

// ErrDropped is why a request ended early: its connection dropped.
var ErrDropped = errors.New("the NATS connection dropped")

// why replaces the bare "context canceled" of a request its connection's
// drop ended with ErrDropped.
func why(ctx context.Context, err error) error {
	if err != nil && errors.Is(err, context.Canceled) && errors.Is(context.Cause(ctx), ErrDropped) {
		return fmt.Errorf("%w: %w", ErrDropped, err)
	}
	return err
}

// ask runs one JetStream question, asking again when the reply was lost
// (the connection dropped, the request timed out, nobody answered yet) for
// up to askFor: a loop that restarted for every lost reply would throw away
// everything it holds. An answer, "not found" included, ends it.
func (c *Client) ask(ctx context.Context, fn func(ctx context.Context) error) error {
	if ctx.Value(answersACallerKey{}) != nil {
		return c.once(ctx, fn)
	}
	wait := 20 * time.Millisecond
	giveUp := time.Now().Add(askFor)
	for {
		rctx, cancel := c.request(ctx, requestTimeout)
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

type answersACallerKey struct{}

// AnswersACaller marks ctx as an API request's: its JetStream questions
// are asked once, as once does, rather than again after a lost reply as
// ask does for the worker. An HTTP client can retry; one left waiting
// while NATS is down got its 503 only when its 30 s ran out (a request
// sent just before the client saw the connection close).
func AnswersACaller(ctx context.Context) context.Context {
	return context.WithValue(ctx, answersACallerKey{}, true)
}

// once runs one JetStream request bounded by requestTimeout and the
// connection, without asking again: for writes, where asking again could
// do it twice, and for the API, which answers a client that can retry.
func (c *Client) once(ctx context.Context, fn func(ctx context.Context) error) error {
	rctx, cancel := c.request(ctx, requestTimeout)
	defer cancel()
	return fn(rctx)
}
