// Package handlers is the stateless HTTP surface of the backend: huma v2
// operations over the read model, the probes, /metrics and the embedded SPA,
// assembled into one http.Handler that every shell (on-prem HTTP, Lambda)
// mounts unchanged.
//
// Handlers keep no process state between requests: everything they answer
// comes from the database, JetStream or the clock given in Config. They import
// no NATS consumer and no scheduler.
package handlers

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Prober asks JetStream what the fleet rollup needs from it. Probe must
// return one status per resource of kanade.Resources and Backlogs one
// answer per projection, both by ctx's deadline.
type Prober interface {
	Probe(ctx context.Context) []kanade.ResourceStatus
	Backlogs(ctx context.Context, projections []kanade.Projection, after map[string]uint64) []kanade.Backlog
}

// Config is everything the handler needs. DB and Auth are required.
type Config struct {
	DB *storage.DB
	// Prober checks JetStream; nil reports every resource missing.
	Prober Prober
	// NATSConnected reports whether the shell's NATS connection is up
	// (for /readyz); nil means "no NATS configured" and fails readiness.
	NATSConnected func() bool
	// JetStream gives the current connection for the manage endpoints
	// (/api/jobs, /api/schedules); an error (NATS not connected) makes them
	// answer 503 at once, and nil "NATS is not configured".
	JetStream func() (jetstream.JetStream, error)
	// StallAfter: a projection whose offset has not moved for this long while
	// a message waited as long degrades the fleet (default
	// kanade.DefaultStallAfter).
	StallAfter time.Duration
	// Progress, when the shell runs the worker in-process, reports its view
	// of each projection: the rollup takes a newer last error from it (when
	// the database is what fails, the worker cannot write its error there).
	Progress func() []kanade.ProjectionProgress
	// Clock is the one "now" of every cutoff. Defaults to the wall clock.
	Clock kanade.Clock
	// StaleThreshold: an agent is active when its last heartbeat is within it
	// (default kanade.DefaultStaleThreshold).
	StaleThreshold time.Duration
	// StaleDegradedRatio: stale/known at or above it degrades the fleet
	// (default kanade.DefaultStaleDegradedRatio).
	StaleDegradedRatio float64
	// ProbeTimeout bounds all JetStream probes of one request together. Default 2s.
	ProbeTimeout time.Duration
	// Auth configures authentication of /api/* and /metrics.
	Auth auth.Config
	// Registry receives the handler's metrics and is served on /metrics.
	// Nil gets a fresh registry.
	Registry *prometheus.Registry
	// SPA is the dashboard's file tree (index.html at its root). Nil serves none.
	SPA    fs.FS
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.DB == nil {
		return errors.New("handlers: Config.DB is required")
	}
	if c.Clock == nil {
		c.Clock = kanade.SystemClock
	}
	if c.StaleThreshold <= 0 {
		c.StaleThreshold = kanade.DefaultStaleThreshold
	}
	if c.StaleDegradedRatio <= 0 {
		c.StaleDegradedRatio = kanade.DefaultStaleDegradedRatio
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = 2 * time.Second
	}
	if c.StallAfter <= 0 {
		c.StallAfter = kanade.DefaultStallAfter
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// New builds the handler. The result is safe for concurrent use and holds no
// state beyond cfg.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	hc := huma.DefaultConfig("kanade backend API", kanade.Version)
	hc.OpenAPIPath = "/api/openapi"
	hc.DocsPath = "/api/docs"
	hc.SchemasPath = "/api/schemas"
	// No "$schema" field in bodies and no Link header: the bodies are a
	// contract monitors parse, and must carry exactly the documented fields.
	hc.CreateHooks = nil
	api := humago.New(mux, hc)

	registerProbes(mux, &cfg)
	registerVersion(api)
	registerHealth(api, &cfg)
	registerReads(api, &cfg)
	registerManage(api, &cfg)
	if err := registerMetrics(mux, &cfg); err != nil {
		return nil, err
	}
	registerSPA(mux, &cfg)

	measured, err := instrument(cfg.Registry, mux)
	if err != nil {
		return nil, err
	}
	authed, err := auth.Middleware(cfg.Auth, measured)
	if err != nil {
		return nil, err
	}
	return authed, nil
}
