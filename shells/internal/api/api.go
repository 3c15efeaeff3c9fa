// Package api assembles the one http.Handler the API shells serve (api.md):
// the API, the probes, /metrics and the dashboard, from the dependencies
// app opened. The HTTP shell mounts it on a listener, the Lambda shell behind
// its event adapter.
//
// It exists so that huma, handlers and the dashboard are linked only by the
// shells that serve them: the worker shell never imports it. It must never
// import the writing side (projection, schedule, sim) nor the embedded NATS
// server (bus/natsd), or the Lambda binary would link them again; what it
// learns of a worker in the same process comes in as a function.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/shells/internal/app"
	"github.com/kanade-fleet/backend/spa"
)

// New builds the handler on d's database, NATS link and clock, with
// authentication a and metrics m (nil: the fleet gauges alone, see
// handlers.Metrics). On a database without accounts it first
// creates the bootstrap admin when KANADE_BOOTSTRAP_ADMIN_PASSWORD is set
// (control.md §9.3); a password that breaks the rules stops the start.
//
// progress, when the worker runs in this process, is its view of the
// projections (the worker's Progress), so readiness and the fleet rollup see
// a stalled projection; nil otherwise.
//
// The routes are set up (milliseconds of reflection, BenchmarkNew) while
// the network is busy: d may come from app.Begin, its schema check and
// NATS dial still in flight, and the accounts check (another database
// round trip) follows the schema check. A Lambda cold start waits for the
// slower of the two paths, not their sum. An error of d.Wait is returned
// (d is closed then).
func New(ctx context.Context, d *app.Deps, a app.Auth, m handlers.Metrics, progress func() []kanade.ProjectionProgress) (http.Handler, error) {
	boot := make(chan error, 1)
	go func() {
		if err := d.Wait(); err != nil {
			boot <- err
			return
		}
		boot <- bootstrap(ctx, d)
	}()
	h, err := handlers.New(handlers.Config{
		DB:                 d.DB,
		Prober:             bus.Prober{Client: d.NATS.Client, Replicas: d.Config.NATSReplicas},
		NATSConnected:      d.NATS.Connected,
		Bus:                d.NATS.Client,
		StallAfter:         d.Config.ProjectionStall,
		ProbeMaxAge:        d.Config.ProbeMaxAge,
		Progress:           progress,
		Clock:              d.Clock,
		StaleThreshold:     d.Config.StaleThreshold,
		StaleDegradedRatio: d.Config.StaleDegradedRatio,
		Auth:               a.Config,
		Metrics:            m,
		SPA:                spa.FS(),
		CommandSigning:     d.Config.CommandSigner.Identity(),
		Logger:             d.Logger.With(slog.String("part", "http")),
	})
	if err := <-boot; err != nil {
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	return h, nil
}

// bootstrap creates the first admin from the configuration, or says in the
// log why nobody can log in yet. It logs the username, never the password.
func bootstrap(ctx context.Context, d *app.Deps) error {
	cfg, log := d.Config, d.Logger
	if cfg.BootstrapAdminPassword == "" {
		has, err := d.DB.HasAccounts(ctx)
		if err != nil {
			// Not fatal: the API serves without accounts, and the next
			// start checks again.
			log.Warn("accounts: cannot tell whether any exist", slog.Any("error", err))
			return nil
		}
		if !has && cfg.JWTSecret != "" {
			log.Warn("accounts: there are none, so nobody can log in; set KANADE_BOOTSTRAP_ADMIN_PASSWORD (and _USER) for a first admin, or create one with the static token (POST /api/accounts)")
		}
		return nil
	}
	created, err := handlers.BootstrapAdmin(ctx, d.DB, cfg.BootstrapAdminUser, cfg.BootstrapAdminPassword)
	if err != nil {
		return fmt.Errorf("KANADE_BOOTSTRAP_ADMIN_PASSWORD: %w", err)
	}
	if created {
		log.Warn("accounts: created the bootstrap admin; log in and change its password, then unset KANADE_BOOTSTRAP_ADMIN_PASSWORD",
			slog.String("username", cfg.BootstrapAdminUser))
	}
	if cfg.JWTSecret == "" {
		log.Warn("accounts: login needs KANADE_JWT_SECRET to sign tokens; until it is set, POST /api/auth/login answers 503")
	}
	return nil
}
