package app

import (
	"log/slog"
	"net/http"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/spa"
)

// Handler builds the one http.Handler every shell mounts (api.md): the API,
// the probes, /metrics and the dashboard.
//
// progress, when the worker runs in this process, is its view of the
// projections (Worker.Progress); nil otherwise.
func (d *Deps) Handler(a Auth, progress func() []kanade.ProjectionProgress) (http.Handler, error) {
	return handlers.New(handlers.Config{
		DB:                 d.DB,
		Prober:             bus.Prober{Client: d.NATS.Link.Client, Replicas: d.Config.NATSReplicas},
		NATSConnected:      d.NATS.Connected,
		Bus:                d.NATS.Link.Client,
		StallAfter:         d.Config.ProjectionStall,
		Progress:           progress,
		Clock:              d.Clock,
		StaleThreshold:     d.Config.StaleThreshold,
		StaleDegradedRatio: d.Config.StaleDegradedRatio,
		Auth:               a.Config,
		Registry:           d.Registry,
		SPA:                spa.FS(),
		Logger:             d.Logger.With(slog.String("part", "http")),
	})
}
