// Package api assembles the one http.Handler the API shells serve (api.md):
// the API, the probes, /metrics and the dashboard, from the dependencies
// app opened. The HTTP shell mounts it on a listener, the Lambda shell behind
// algnhsa.
//
// It exists so that huma, handlers and the dashboard are linked only by the
// shells that serve them: the worker shell never imports it. It must never
// import the writing side (projection, schedule, sim) nor the embedded NATS
// server (bus/natsd), or the Lambda binary would link them again; what it
// learns of a worker in the same process comes in as a function.
package api

import (
	"log/slog"
	"net/http"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/shells/internal/app"
	"github.com/kanade-fleet/backend/spa"
)

// New builds the handler on d's database, NATS link, clock and metrics
// registry, with authentication a.
//
// progress, when the worker runs in this process, is its view of the
// projections (the worker's Progress), so readiness and the fleet rollup see
// a stalled projection; nil otherwise.
func New(d *app.Deps, a app.Auth, progress func() []kanade.ProjectionProgress) (http.Handler, error) {
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
		CommandSigning:     d.Config.CommandSigner.Identity(),
		Logger:             d.Logger.With(slog.String("part", "http")),
	})
}
