package projection

import (
	"log/slog"

	"github.com/kanade-fleet/backend/bus"
)

// conn is one NATS connection's Client and the caches kept on it, shared
// by the loops of one RunWith.
type conn struct {
	bus      *bus.Client
	timeouts *bus.Timeouts
	specs    *specs
}

func newConn(c *bus.Client, cfg Config, log *slog.Logger) *conn {
	return &conn{bus: c, timeouts: bus.NewTimeouts(c, cfg.Clock, cfg.ManifestTTL),
		specs: newSpecs(c, cfg.Clock, cfg.ManifestTTL, log)}
}
