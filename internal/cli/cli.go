// Package cli is the main function of the project's own tools (benchmarks,
// the fault suite): the shells have theirs in shells/internal/app, with
// configuration and shutdown these tools do not need.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Main runs run with the command line and stdout, cancelling its context on
// SIGINT or SIGTERM so a tool can stop its children and remove its temporary
// files; an error is printed after name and exits 1.
func Main(name string, run func(ctx context.Context, args []string, out io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
