// Command http is the on-prem kanade backend: the API, the dashboard and the
// probes over HTTP, with the worker (projector, scheduler) in the same
// process unless KANADE_WORKER=off, and an embedded NATS JetStream server
// unless KANADE_NATS_URL names one. `go run ./shells/http -h` lists the
// settings.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/kanade-fleet/backend/shells/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal starts the graceful shutdown, a second one
	// kills the process the default way.
	go func() { <-ctx.Done(); stop() }()
	if err := run(ctx, os.Args, os.LookupEnv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kanade:", err)
		os.Exit(1)
	}
}

// run is the whole program; tests call it in-process with their own
// arguments, environment and a context they cancel.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	cfg, err := app.Parse(app.ShellHTTP, args, lookup, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	logger := app.NewLogger(cfg, stderr)
	a, err := app.SetupAuth(cfg, logger)
	if err != nil {
		return err
	}
	deps, err := app.Open(ctx, cfg, logger, app.OpenOptions{Name: "kanade-http", Bootstrap: true})
	if err != nil {
		return err
	}
	h, err := deps.Handler(a)
	if err != nil {
		return errors.Join(err, deps.Close())
	}
	w, err := deps.Worker(cfg.Worker)
	if err != nil {
		return errors.Join(fmt.Errorf("worker: %w", err), deps.Close())
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
