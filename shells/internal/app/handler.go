package app

import (
	"log/slog"
	"net/http"

	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/spa"
)

// Handler builds the one http.Handler every shell mounts (api.md): the API,
// the probes, /metrics and the dashboard.
func (d *Deps) Handler(a Auth) (http.Handler, error) {
	return handlers.New(handlers.Config{
		DB:                 d.DB,
		Prober:             bus.Prober{JS: d.NATS.JS, Replicas: d.Config.NATSReplicas},
		NATSConnected:      d.NATS.Connected,
		JS:                 d.NATS.JS,
		Clock:              d.Clock,
		StaleThreshold:     d.Config.StaleThreshold,
		StaleDegradedRatio: d.Config.StaleDegradedRatio,
		Auth:               a.Config,
		Registry:           d.Registry,
		SPA:                spa.FS(),
		Logger:             d.Logger.With(slog.String("part", "http")),
	})
}
