package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go"
)

// Requests to one agent over core NATS (fleet.md §4: ping, log tail, job
// tail). The server answers "no responders" at once when nobody subscribes
// to the subject, so an agent that is not connected costs a round trip, not
// the timeout.

// Why a Request got no reply.
var (
	// ErrNoResponders: nobody subscribes to the subject (the agent is not
	// connected, or too old to answer it).
	ErrNoResponders = errors.New("no responders")
	// ErrTimeout: somebody subscribes, but no reply came in time.
	ErrTimeout = errors.New("no reply in time")
)

// Request publishes data on subject (core NATS) and waits up to timeout for
// the first reply. Besides ctx's own error it fails with ErrNoResponders,
// ErrTimeout, ErrNotConnected (at once, without a connection: core NATS
// would buffer the request and wait out the timeout) or ErrDropped (the
// connection went down while waiting).
func (c *Client) Request(ctx context.Context, subject string, data []byte, timeout time.Duration) ([]byte, error) {
	if !c.nc.IsConnected() {
		return nil, fmt.Errorf("request %s: %w", kanade.Clip(subject), ErrNotConnected)
	}
	rctx, cancel := c.request(ctx, timeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(rctx, subject, data)
	switch {
	case err == nil:
		return m.Data, nil
	case errors.Is(err, nats.ErrNoResponders):
		err = ErrNoResponders
	case ctx.Err() != nil:
		err = ctx.Err()
	case errors.Is(context.Cause(rctx), ErrDropped):
		err = ErrDropped
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		err = ErrTimeout
	}
	return nil, fmt.Errorf("request %s: %w", kanade.Clip(subject), err)
}
