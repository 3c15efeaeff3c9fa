// Command worker runs the writing side of the kanade backend alone (projector,
// scheduler) next to a separately deployed API (e.g. on Lambda). It serves
// only an admin address with /healthz and /metrics. `-h` lists the settings.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/shells/internal/app"
	"github.com/kanade-fleet/backend/shells/internal/onprem"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() { app.Main("kanade-worker", run) }

// run is the whole program (see app.RunFunc).
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	// /metrics is authenticated like the API's; the generated token is the
	// same file the HTTP shell uses when both share a data folder.
	st, err := onprem.Start(ctx, app.ShellWorker, "kanade-worker", args, lookup, stderr)
	if st == nil || err != nil {
		return err
	}
	cfg, logger, a, deps := st.Config, st.Logger, st.Auth, st.Deps
	w, err := onprem.NewWorker(deps, true)
	if err != nil {
		return errors.Join(fmt.Errorf("worker: %w", err), deps.Close())
	}
	mux := http.NewServeMux()
	healthz, readyz := onprem.WorkerProbes(deps, w)
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(deps.Registry, promhttp.HandlerOpts{}))
	admin, err := auth.Middleware(a.Config, mux)
	if err != nil {
		return errors.Join(err, deps.Close())
	}
	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen: %w", err), deps.Close())
	}
	fmt.Fprintf(stdout, "kanade-worker: admin on http://%s/ (/healthz, /readyz, /metrics)\n", ln.Addr())
	if a.Generated != "" {
		logger.Info("/metrics needs the bearer token kept in the data folder", slog.String("data_dir", cfg.DataDir))
	}
	return app.Run(ctx, app.RunParams{
		Logger:    logger,
		Listeners: []app.Listener{{Name: "admin", Server: app.NewHTTPServer(admin, logger), Listener: ln}},
		Worker:    w,
		Deps:      deps,
	})
}
