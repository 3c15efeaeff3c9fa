// Package onprem is what only the shells that run the writing side share
// (shells/http and shells/worker): starting the embedded NATS server and
// bootstrapping JetStream at open, assembling the worker (projector,
// scheduler, demo simulator), the worker's probes, and running as a Windows
// service (install, uninstall, the service manager's stop, the event log).
//
// It exists so that the Lambda shell, which never imports it, links no NATS
// server, projection, scheduler or simulator. It must never import the API
// (handlers, huma, spa, shells/internal/api), or the worker shell would link
// them; and like app it keeps no state of its own: everything it builds is
// handed back to the shell that asked.
package onprem

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/kanade-fleet/backend/bus/natsd"
	"github.com/kanade-fleet/backend/shells/internal/app"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Started is what every on-prem shell sets up before its own part.
type Started struct {
	Config app.Config
	Logger *slog.Logger
	Auth   app.Auth
	Deps   *app.Deps
	// Registry holds the process's metrics (Go runtime, process, projector,
	// scheduler, and the HTTP shell's requests and fleet gauges).
	Registry *prometheus.Registry
	// Worker is nil when the shell runs none (KANADE_WORKER=off on the HTTP
	// shell); the worker shell always has one.
	Worker Worker
}

// Part is what an on-prem shell serves itself: one handler on one address.
type Part struct {
	// Name names the server in logs ("http", "admin").
	Name    string
	Addr    string
	Handler http.Handler
	// Announce, when set, tells the operator where to go once the address
	// is bound (with the port a :0 address was given).
	Announce func(stdout io.Writer, addr net.Addr)
}

// Main is app.Main for an on-prem shell, which may also run under the
// Windows service manager (see RunAsService); it exits 1 when the run fails.
func Main(name string, shell app.Shell, run app.RunFunc) {
	ran, err := RunAsService(ServiceOf(shell), run)
	if ran {
		if err != nil {
			os.Exit(1)
		}
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: cannot tell whether this is a Windows service: %v\n", name, err)
	}
	app.Main(name, run)
}

// Run is the whole program of an on-prem shell (an app.RunFunc): Start,
// then part builds what the shell serves, then app.Run serves it beside the
// worker until the signal. name identifies the process to NATS. Three
// subcommands do something else: keygen (app.Keygen) prints a
// command-signing key pair, healthcheck (app.Healthcheck) probes a running
// shell for a container's health check, and service (ServiceMain) installs
// or removes the Windows service.
func Run(shell app.Shell, name string, part func(ctx context.Context, st *Started) (Part, error)) app.RunFunc {
	return func(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
		switch {
		case app.IsKeygen(args):
			return app.Keygen(args, time.Now(), rand.Reader, stdout, stderr)
		case app.IsHealthcheck(args):
			return app.Healthcheck(ctx, shell, args, lookup, stdout)
		case IsService(args):
			return ServiceMain(ServiceOf(shell), args, stdout, stderr)
		}
		st, err := Start(ctx, shell, name, args, lookup, stderr)
		if st == nil || err != nil {
			return err
		}
		p, err := part(ctx, st)
		if err != nil {
			return errors.Join(err, st.Deps.Close())
		}
		ln, err := net.Listen("tcp", p.Addr)
		if err != nil {
			return errors.Join(fmt.Errorf("listen: %w", err), st.Deps.Close())
		}
		if p.Announce != nil {
			p.Announce(stdout, ln.Addr())
		}
		return app.Run(ctx, app.RunParams{
			Logger:    st.Logger,
			Listeners: []app.Listener{{Name: p.Name, Server: app.NewHTTPServer(p.Handler, st.Logger), Listener: ln}},
			Worker:    st.Worker,
			Deps:      st.Deps,
		})
	}
}

// Start parses the configuration, builds the logger, sets up authentication,
// opens the dependencies (see Open) and builds the worker (see NewWorker).
// It returns nil and no error when -h asked only for the usage.
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
	reg, err := newRegistry()
	if err != nil {
		return nil, errors.Join(err, deps.Close())
	}
	w, err := NewWorker(deps, reg, shell == app.ShellWorker || cfg.Worker)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("worker: %w", err), deps.Close())
	}
	return &Started{Config: cfg, Logger: logger, Auth: a, Deps: deps, Registry: reg, Worker: w}, nil
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

// newRegistry is the registry of an on-prem process: the Go runtime's and
// the process's collectors, and then whatever its parts register.
func newRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return reg, nil
}
