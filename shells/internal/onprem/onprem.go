// Package onprem is what only the shells that run the writing side share
// (shells/http and shells/worker): starting the embedded NATS server and
// bootstrapping JetStream at open, assembling the worker (projector,
// scheduler, demo simulator), and the worker's probes.
//
// It exists so that the Lambda shell, which never imports it, links no NATS
// server, projection, scheduler or simulator. It must never import the API
// (handlers, huma, spa, shells/internal/api), or the worker shell would link
// them; and like app it keeps no state of its own: everything it builds is
// handed back to the shell that asked.
package onprem

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/kanade-fleet/backend/bus/natsd"
	"github.com/kanade-fleet/backend/shells/internal/app"
)

// Started is what every on-prem shell sets up before its own part.
type Started struct {
	Config app.Config
	Logger *slog.Logger
	Auth   app.Auth
	Deps   *app.Deps
}

// Start parses the configuration, builds the logger, sets up authentication
// and opens the dependencies (see Open). It returns nil and no error when -h
// asked only for the usage.
func Start(ctx context.Context, shell app.Shell, name string, args []string, lookup func(string) (string, bool), stderr io.Writer) (*Started, error) {
	cfg, err := app.Parse(shell, args, lookup, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	logger := app.NewLogger(cfg, stderr)
	a, err := app.SetupAuth(cfg, logger)
	if err != nil {
		return nil, err
	}
	deps, err := Open(ctx, cfg, logger, name)
	if err != nil {
		return nil, err
	}
	return &Started{Config: cfg, Logger: logger, Auth: a, Deps: deps}, nil
}

// Open is app.Open for a shell that owns JetStream: it bootstraps the
// resources of wire.md §2 whenever the connection is (re)established, and
// starts the embedded server (store in <data-dir>/nats) when no
// KANADE_NATS_URL is configured. name identifies the process to NATS.
func Open(ctx context.Context, cfg app.Config, logger *slog.Logger, name string) (*app.Deps, error) {
	return app.Open(ctx, cfg, logger, app.OpenOptions{
		Name:      name,
		Bootstrap: true,
		StartNATS: func() (app.EmbeddedNATS, error) { return startEmbedded(cfg, logger) },
	})
}

func startEmbedded(cfg app.Config, logger *slog.Logger) (app.EmbeddedNATS, error) {
	store := filepath.Join(cfg.DataDir, "nats")
	s, err := natsd.Start(natsd.Options{Listen: cfg.NATSListen, StoreDir: store, Token: cfg.NATSToken})
	if err != nil {
		return nil, err
	}
	logger.Info("embedded NATS started", slog.String("url", s.ClientURL()), slog.String("store", store),
		slog.Bool("token_required", cfg.NATSToken != ""))
	return s, nil
}
