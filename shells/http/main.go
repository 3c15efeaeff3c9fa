// Command http is the on-prem kanade backend: the API, the dashboard and the
// probes over HTTP, with the worker (projector, scheduler) in the same
// process unless KANADE_WORKER=off, and an embedded NATS JetStream server
// unless KANADE_NATS_URL names one. `go run ./shells/http -h` lists the
// settings.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/shells/internal/api"
	"github.com/kanade-fleet/backend/shells/internal/app"
	"github.com/kanade-fleet/backend/shells/internal/onprem"
)

func main() { app.Main("kanade", run) }

// run is the whole program (see app.RunFunc).
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	st, err := onprem.Start(ctx, app.ShellHTTP, "kanade-http", args, lookup, stderr)
	if st == nil || err != nil {
		return err
	}
	cfg, logger, a, deps := st.Config, st.Logger, st.Auth, st.Deps
	w, err := onprem.NewWorker(deps, cfg.Worker)
	if err != nil {
		return errors.Join(fmt.Errorf("worker: %w", err), deps.Close())
	}
	var progress func() []kanade.ProjectionProgress
	if w != nil {
		progress = w.Progress
	}
	h, err := api.New(deps, a, progress)
	if err != nil {
		return errors.Join(err, deps.Close())
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen: %w", err), deps.Close())
	}
	app.PrintDashboard(stdout, logger, ln.Addr(), a)
	return app.Run(ctx, app.RunParams{
		Logger:    logger,
		Listeners: []app.Listener{{Name: "http", Server: app.NewHTTPServer(h, logger), Listener: ln}},
		Worker:    w,
		Deps:      deps,
	})
}
