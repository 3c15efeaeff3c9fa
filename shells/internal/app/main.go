package app

import (
	"context"
	"fmt"
	"io"
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
