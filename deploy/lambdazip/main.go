// Command lambdazip packs a Lambda bootstrap into the zip the
// provided.al2023 runtime deploys: one entry named bootstrap, executable
// (mode 0755, which the runtime needs and a zip made on Windows loses), with
// a fixed time, so the same binary always gives the same zip and `sam deploy`
// uploads nothing new for an unchanged build.
//
//	go run ./deploy/lambdazip -o bin/lambda/arm64/bootstrap.zip bin/lambda/arm64/bootstrap
package main

import (
	"archive/zip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// epoch is the time of every entry: the zip format's own zero.
var epoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "lambdazip:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("lambdazip", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "bootstrap.zip", "the zip to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: lambdazip -o bootstrap.zip path/to/bootstrap")
	}
	return pack(fs.Arg(0), *out)
}

// pack writes bin into a new zip at out as the entry bootstrap.
func pack(bin, out string) (err error) {
	in, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(out)
		}
	}()
	zw := zip.NewWriter(f)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate, Modified: epoch}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return fmt.Errorf("zip %s: %w", out, err)
	}
	if _, err := io.Copy(w, in); err != nil {
		return fmt.Errorf("zip %s: %w", out, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("zip %s: %w", out, err)
	}
	return nil
}
