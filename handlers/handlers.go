// Package handlers is the stateless HTTP surface of the backend: huma v2
// operations over the read model, the probes, /metrics and the embedded SPA,
// assembled into one Server (an http.Handler) that every shell (on-prem HTTP,
// Lambda) mounts unchanged.
//
// New builds a Server from a Config. Handlers keep no process state between
// requests: everything they answer comes from the database, JetStream or the
// clock given in Config. They import no NATS consumer and no scheduler.
// The root package's validators return a *kanade.FieldError naming the
// field; invalid (manage.go) turns it into a 422 at body.<field>, the one
// place that does, found with errors.As and never by reading the message.
// Likewise roles (control.md §9.2) live in one table, routeRoles
// (roles.go): a gate in front of the routes refuses callers below a
// route's role before any handler runs, so no handler checks roles itself.
package handlers

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/auth/password"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/sign"
	"github.com/kanade-fleet/backend/storage"
)

// Prober asks JetStream what the fleet rollup needs from it. Probe must
// return one status per resource of kanade.Resources and Backlogs one
// answer per projection, both by ctx's deadline.
type Prober interface {
	Probe(ctx context.Context) []kanade.ResourceStatus
	Backlogs(ctx context.Context, projections []kanade.Projection, after map[string]uint64) []kanade.Backlog
}

// Config is everything a Server needs: plain values, read once by New. DB
// is required, and Auth must be a valid auth.Config.
type Config struct {
	DB *storage.DB
	// Prober checks JetStream; nil reports every resource missing.
	Prober Prober
	// NATSConnected reports whether the shell's NATS connection is up
	// (for /readyz); nil means "no NATS configured" and fails readiness.
	NATSConnected func() bool
	// Bus gives the current JetStream client for the manage endpoints
	// (/api/jobs, /api/schedules); an error (NATS not connected) makes them
	// answer 503 at once, and nil "NATS is not configured".
	Bus func() (*bus.Client, error)
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
	// ProbeTimeout bounds all JetStream probes of one request together
	// (default DefaultProbeTimeout).
	ProbeTimeout time.Duration
	// ProbeMaxAge is the fleet rollup's freshness budget: how long before a
	// request arrived the JetStream probe that answers it may have been
	// sent. Requests share a probe within it (one question to the server
	// for a burst of monitors) and never use an older one. Zero, the
	// default, is the freshest answer possible: only a probe sent after the
	// request arrived, so the rollup reflects JetStream at an instant
	// between the request's arrival and its answer.
	ProbeMaxAge time.Duration
	// ProbeUsed, when set, is told the age of the probe each fleet rollup
	// used: when the request arrived minus when the probe was sent (≤ 0:
	// sent after the request arrived). For benchmarks and tests.
	ProbeUsed func(age time.Duration)
	// Auth configures authentication of /api/* and /metrics.
	Auth auth.Config
	// Metrics records request durations and serves /metrics with the fleet
	// gauges. Nil serves the fleet gauges alone (see Metrics).
	Metrics Metrics
	// SPA is the dashboard's file tree (index.html at its root). Nil serves none.
	SPA fs.FS
	// CommandSigning is the key Bus's clients sign commands with, for GET
	// /api/command-signing (the zero value: they publish unsigned). The
	// shell sets both from the same configured signer.
	CommandSigning sign.Identity
	Logger         *slog.Logger
	// PasswordCost is the argon2id cost of the hashes this server writes,
	// and of the dummy hash a login for an unknown user burns; zero means
	// password.Default(). Stored hashes carry their own cost, so lowering
	// it (tests do: a default hash takes seconds under -race) never breaks
	// a login.
	PasswordCost password.Params
}

// DefaultProbeTimeout bounds the JetStream probes of one request when
// Config.ProbeTimeout is not set: well under a monitor's own timeout, and far
// above a healthy server's answer.
const DefaultProbeTimeout = 2 * time.Second

// withDefaults is c with every unset field at its default, or an error
// naming a required field that is missing. New applies it once; nothing
// downstream looks at a zero value again.
func (c Config) withDefaults() (Config, error) {
	if c.DB == nil {
		return c, errors.New("handlers: Config.DB is required")
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
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.StallAfter <= 0 {
		c.StallAfter = kanade.DefaultStallAfter
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.PasswordCost == (password.Params{}) {
		c.PasswordCost = password.Default()
	}
	return c, nil
}

// Server is the HTTP surface built from a Config: the operations hang off it
// and read their dependencies from its copy of the configuration, defaults
// applied. It is an http.Handler, safe for concurrent use, and holds no state
// beyond that configuration (the metrics live in Config.Metrics), the
// semaphore that bounds concurrent password hashes and the latest JetStream
// probe of the fleet rollup (shared within Config.ProbeMaxAge).
type Server struct {
	cfg     Config
	handler http.Handler // the routes behind instrumentation and auth
	probes  probeShare
	// kdf admits as many password hashes at once as there are cores: each
	// takes tens of MiB (password.Default), so a burst of logins queues
	// here rather than growing the heap by that much per request.
	kdf chan struct{}
	// pages are buffers for bodies storage encodes (agentsPage): a 500-row
	// roster page is 300 KB, and allocating one a request made the
	// garbage collector the page's tail under load.
	pages bufferPool
}

// New builds the Server of cfg: every route registered, wrapped in the
// role gate (routeRoles), the request metrics and the auth middleware. A
// route without a role is an error.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	srv := &Server{cfg: cfg, kdf: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))}
	roles := routeRoles()
	mux, api, err := srv.buildRoutes()
	if err != nil {
		return nil, err
	}
	if err := errors.Join(checkRoles(mux.patterns, roles), documentRoles(api.OpenAPI(), roles)); err != nil {
		return nil, err
	}
	mountApart(api.OpenAPI())

	// withSource sits outside instrument: it hands on a copy of the request,
	// and the route label is read from the request the mux matched.
	measured := instrument(cfg.Metrics, withRunDeadline(srv.gate(mux.ServeMux, roles)))
	// The users table is authoritative for every JWT (control.md §9.1),
	// and the public routes of the table are the paths open without one.
	ac := cfg.Auth
	ac.Accounts = srv.accountOf
	if ac.OpenPaths, err = openPaths(roles); err != nil {
		return nil, err
	}
	if ac.Clock == nil {
		ac.Clock = cfg.Clock
	}
	authed, err := auth.Middleware(ac, withSource(measured))
	if err != nil {
		return nil, err
	}
	if srv.handler, err = compressAPI(authed); err != nil {
		return nil, err
	}
	return srv, nil
}

// buildRoutes registers every route on a new mux: huma's operations, its
// OpenAPI document and docs, the probes, /metrics and the dashboard.
func (srv *Server) buildRoutes() (*routes, huma.API, error) {
	mux := &routes{ServeMux: http.NewServeMux()}
	hc := huma.DefaultConfig("kanade backend API", kanade.Version)
	hc.OpenAPIPath = "/api/openapi"
	// A URL rather than an SPDX identifier: the 3.0 downgrade served beside
	// the 3.1 document has no identifier field.
	hc.Info.License = &huma.License{Name: "MIT", URL: "https://opensource.org/license/mit"}
	// Relative: the document is served by the API it describes, on-prem
	// or behind API Gateway, so clients resolve it against where they
	// fetched the document.
	hc.Servers = []*huma.Server{{URL: "/", Description: "the server that serves this document"}}
	// The docs page is our own (docs.go): huma's loads a viewer from a
	// CDN and would sit behind the token.
	hc.DocsPath = ""
	// /api/schemas/*.json are the Manifest and Schedule schemas (control.md
	// §8.1); huma's own per-type schemas live under the OpenAPI document.
	hc.SchemasPath = "/api/openapi/schemas"
	// No "$schema" field in bodies and no Link header: the bodies are a
	// contract monitors parse, and must carry exactly the documented fields.
	hc.CreateHooks = nil
	// Bodies storage encodes (agentsPage) are written as they are.
	hc.Formats = map[string]huma.Format{"application/json": jsonFormat, "json": jsonFormat}
	api := humago.New(mux, hc)

	srv.registerProbes(mux)
	registerVersion(api)
	srv.registerHealth(api)
	srv.registerReads(api)
	srv.registerInventory(api)
	srv.registerAgents(api)
	srv.registerLive(api)
	srv.registerManage(api)
	srv.registerRecords(api)
	srv.registerControl(api)
	srv.registerReleases(api)
	srv.registerAccounts(api)
	srv.registerGroups(api)
	srv.registerAgentConfig(api)
	srv.registerContent(api)
	srv.registerObjects(api)
	srv.registerPerf(api)
	if err := srv.registerMetrics(mux); err != nil {
		return nil, nil, err
	}
	srv.registerDocs(mux)
	srv.registerSPA(mux)
	return mux, api, nil
}

// ServeHTTP serves one request through auth, the metrics and the routes.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	srv.handler.ServeHTTP(w, r.WithContext(bus.AnswersACaller(r.Context())))
}
