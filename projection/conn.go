package projection

import "github.com/kanade-fleet/backend/bus"

// conn is one NATS connection's Client and the caches kept on it, shared
// by the loops of one RunWith.
type conn struct {
	bus      *bus.Client
	timeouts *bus.Timeouts
}

func newConn(c *bus.Client, cfg Config) *conn {
	return &conn{bus: c, timeouts: bus.NewTimeouts(c, cfg.Clock, cfg.ManifestTTL)}
}
