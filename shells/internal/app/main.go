package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// RunFunc is a shell's whole program; tests call it in-process with their
// own arguments, environment and a context they cancel.
type RunFunc func(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error

// Main runs a shell with the process's arguments, environment and streams,
// and exits 1 with "name: error" when it fails. SIGINT or SIGTERM starts the
// graceful shutdown; a second signal kills the process the default way.
func Main(name string, run RunFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }()
	if err := run(ctx, os.Args, os.LookupEnv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Started is what every on-prem shell sets up before its own part.
type Started struct {
	Config Config
	Logger *slog.Logger
	Auth   Auth
	Deps   *Deps
}

// Start parses the configuration, builds the logger, sets up authentication
// and opens the dependencies (bootstrapping JetStream). It returns nil and no
// error when -h asked only for the usage.
func Start(ctx context.Context, shell Shell, name string, args []string, lookup func(string) (string, bool), stderr io.Writer) (*Started, error) {
	cfg, err := Parse(shell, args, lookup, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	logger := NewLogger(cfg, stderr)
	a, err := SetupAuth(cfg, logger)
	if err != nil {
		return nil, err
	}
	deps, err := Open(ctx, cfg, logger, OpenOptions{Name: name, Bootstrap: true})
	if err != nil {
		return nil, err
	}
	return &Started{Config: cfg, Logger: logger, Auth: a, Deps: deps}, nil
}
