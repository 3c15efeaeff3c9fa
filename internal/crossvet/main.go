// Command crossvet type-checks and vets packages as they build for another
// platform, from source, without compiling them:
//
//	go run ./internal/crossvet -goos windows -goarch amd64 ./shells/...
//
// CI checks that the Windows service code (shells/internal/onprem's
// service_windows.go) still builds. GOOS=windows go build and go vet did
// that by compiling the standard library and every dependency for Windows:
// another compiled world, over 100 s of a fresh 2-core CI machine, for an
// answer that type-checking alone gives. crossvet loads the packages and
// their dependencies with go/packages under the target's GOOS and GOARCH
// (cgo off, as the shells are built), type-checks them all from source and
// runs go vet's analyzers (the suite cmd/vet runs) over the named
// packages. It prints every type error and diagnostic and exits 1 if there
// is any.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/kanade-fleet/backend/internal/cli"
	"golang.org/x/tools/go/analysis/checker"
	"golang.org/x/tools/go/analysis/suite/vet"
	"golang.org/x/tools/go/packages"
)

func main() { cli.Main("crossvet", run) }

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("crossvet", flag.ContinueOnError)
	goos := fs.String("goos", "windows", "the target's GOOS")
	goarch := fs.String("goarch", "amd64", "the target's GOARCH")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: crossvet [-goos os] [-goarch arch] packages...\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no packages named")
	}
	n, err := check(ctx, *goos, *goarch, fs.Args())
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%d problem(s) for %s/%s", n, *goos, *goarch)
	}
	fmt.Fprintf(out, "crossvet: %s type-check and vet clean for %s/%s (with their dependencies)\n", fs.Args(), *goos, *goarch)
	return nil
}

// check loads patterns for goos/goarch, prints to stderr the type errors
// of every package loaded and vet's diagnostics for the packages named,
// and returns how many it printed.
func check(ctx context.Context, goos, goarch string, patterns []string) (int, error) {
	cfg := &packages.Config{
		Context: ctx,
		Mode:    packages.LoadAllSyntax,
		Env:     append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0", "GOFLAGS="),
	}
	pkgs, err := packages.Load(cfg, patterns...)
	if err != nil {
		return 0, fmt.Errorf("load %v for %s/%s: %w", patterns, goos, goarch, err)
	}
	if len(pkgs) == 0 {
		return 0, fmt.Errorf("no packages match %v", patterns)
	}
	if n := packages.PrintErrors(pkgs); n > 0 {
		return n, nil // the analyzers want well-typed packages
	}
	graph, err := checker.Analyze(vet.Suite, pkgs, nil)
	if err != nil {
		return 0, fmt.Errorf("analyze: %w", err)
	}
	n := 0
	for _, act := range graph.Roots {
		if act.Err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", act, act.Err)
			n++
		}
		for _, d := range act.Diagnostics {
			fmt.Fprintf(os.Stderr, "%s: %s (%s)\n", act.Package.Fset.Position(d.Pos), d.Message, act.Analyzer.Name)
			n++
		}
	}
	return n, nil
}
