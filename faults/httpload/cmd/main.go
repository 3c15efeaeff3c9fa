// Command httpload runs the HTTP part of the reliability suite on its own and
// prints the report's Markdown; it exits 1 when a check fails and 2 when the
// measurement could not be made.
//
//	go run ./faults/httpload/cmd -agents 100000 -runs 1000000 -conns 50 -duration 30s
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kanade-fleet/backend/faults/httpload"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("httpload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o httpload.Options
	fs.IntVar(&o.Agents, "agents", 10_000, "agents to seed")
	fs.IntVar(&o.Runs, "runs", 100_000, "finished runs in the last 24 h to seed")
	fs.IntVar(&o.Conns, "conns", 50, "concurrent keep-alive connections")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "length of the load phase")
	fs.StringVar(&o.HTTPBinary, "http-binary", "", "a built ./shells/http; empty builds one")
	fs.StringVar(&o.WorkDir, "work-dir", "", "keep the database and server log under this directory; empty uses a temporary one")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !*quiet {
		o.Logf = func(format string, args ...any) {
			fmt.Fprintf(stderr, "httpload: "+format+"\n", args...)
		}
	}
	rep, err := httpload.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "httpload:", err)
		return 2
	}
	fmt.Fprint(stdout, rep.Markdown())
	if !rep.Pass() {
		return 1
	}
	return 0
}
