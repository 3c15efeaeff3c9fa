// Command lambda serves the kanade API on AWS Lambda behind API Gateway (REST
// v1 or HTTP v2 payloads) or an Application Load Balancer (multi-value
// headers on or off); gateway tells them apart per event and answers each
// in its own shape. It is the same handler as the on-prem shell; only the
// way requests arrive differs.
//
// Configuration comes from the environment only. Nothing persists on Lambda,
// so the database must be remote (KANADE_DB, usually libsql://), NATS
// external (KANADE_NATS_URL), and authentication configured explicitly. It
// does not bootstrap JetStream (the worker or the on-prem shell does), so a
// cold start costs one database and one NATS connection. A NATS that is down
// at a cold start does not fail it: the API serves from the database and
// reports NATS as down until the connection comes up in the background.
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/kanade-fleet/backend/shells/internal/api"
	"github.com/kanade-fleet/backend/shells/internal/app"
)

func main() {
	// `bootstrap keygen` prints a command-signing key pair, as the on-prem
	// shells do, for whoever has only the Lambda binary at hand.
	if app.IsKeygen(os.Args) {
		if err := app.Keygen(os.Args, time.Now(), rand.Reader, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "kanade-lambda:", err)
			os.Exit(1)
		}
		return
	}
	h, cleanup, err := newHandler(context.Background(), os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kanade-lambda:", err)
		os.Exit(1)
	}
	// Lambda sends SIGTERM before it retires a sandbox only to a function
	// that registered an extension: WithEnableSIGTERM does, so the NATS
	// connection is flushed and closed rather than cut.
	lambda.StartWithOptions(newGateway(h), lambda.WithEnableSIGTERM(cleanup))
}

// newHandler builds the handler from the environment. cleanup closes NATS and
// the database.
func newHandler(ctx context.Context, lookup func(string) (string, bool)) (http.Handler, func(), error) {
	cfg, err := app.Parse(app.ShellLambda, nil, lookup, os.Stderr)
	if err != nil {
		return nil, nil, err
	}
	logger := app.NewLogger(cfg, os.Stderr).With(slog.String("shell", "lambda"))
	a, err := app.SetupAuth(cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	// Begin, not Open: the routes are set up while the schema check and the
	// NATS dial are in flight (api.New waits for the database), so a cold
	// start pays the slower of the two, not their sum; and the first
	// request waits for NATS only if it needs it (LazyNATS).
	deps, err := app.Begin(ctx, cfg, logger, app.OpenOptions{Name: "kanade-lambda", LazyNATS: true})
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		if err := deps.Close(); err != nil {
			logger.Error("close", slog.Any("err", err))
		}
	}
	h, err := api.New(ctx, deps, a, nil, nil)
	if err != nil {
		if deps.Wait() == nil {
			// A failed Wait closed everything already.
			cleanup()
		}
		return nil, nil, err
	}
	return h, cleanup, nil
}
