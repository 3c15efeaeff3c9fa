package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// Worker is the writing side of the backend (projector, scheduler, demo
// simulator): it runs until ctx is cancelled and returns nil then, or returns
// an error when it cannot go on, which stops the whole shell. It waits for
// NATS by itself and starts over on a new connection when one closes.
type Worker interface {
	Run(ctx context.Context) error
	// Progress is the projector's view of each projected stream, for
	// readiness and the fleet rollup.
	Progress() []kanade.ProjectionProgress
}

// WorkerDeps is everything a worker may need, opened by the shell.
type WorkerDeps struct {
	DB       *storage.DB
	Link     *bus.Link
	Clock    kanade.Clock
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// StaleThreshold is the configured agent freshness (for gauges).
	StaleThreshold time.Duration
	// StallAfter is the projection stall threshold.
	StallAfter time.Duration
	// MaxBytes bounds the projector's in-memory message bytes per stream.
	MaxBytes int64
	// Demo is the number of simulated agents to run (0 = none).
	Demo int
}

// NewWorker builds the worker (projector.go sets it), so both the HTTP and
// the worker shell pick up the same one. Shells call it only through
// Deps.Worker.
var NewWorker func(deps WorkerDeps) (Worker, error)

// Worker returns the worker to run beside the servers, or nil when the
// worker is switched off or not available yet.
func (d *Deps) Worker(enabled bool) (Worker, error) {
	if d.Config.Demo > 0 && !enabled {
		d.Logger.Info("KANADE_DEMO needs the worker; ignored with KANADE_WORKER=off",
			slog.Int("agents", d.Config.Demo))
	}
	if !enabled {
		d.Logger.Info("worker off (KANADE_WORKER=off): no projection or scheduling in this process")
		return nil, nil
	}
	if NewWorker == nil {
		d.Logger.Info("worker not available yet: the projector and scheduler are coming; serving reads only")
		return nil, nil
	}
	return NewWorker(WorkerDeps{
		DB:             d.DB,
		Link:           d.NATS.Link,
		Clock:          d.Clock,
		Logger:         d.Logger.With(slog.String("part", "worker")),
		Registry:       d.Registry,
		StaleThreshold: d.Config.StaleThreshold,
		StallAfter:     d.Config.ProjectionStall,
		MaxBytes:       d.Config.ProjectorMaxBytes,
		Demo:           d.Config.Demo,
	})
}
