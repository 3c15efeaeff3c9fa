// Command http is the on-prem kanade backend: the API, the dashboard and the
// probes over HTTP, with the worker (projector, scheduler) in the same
// process unless KANADE_WORKER=off, and an embedded NATS JetStream server
// unless KANADE_NATS_URL names one. `go run ./shells/http -h` lists the
// settings.
package main

import (
	"context"
	"io"
	"net"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/metrics"
	"github.com/kanade-fleet/backend/shells/internal/api"
	"github.com/kanade-fleet/backend/shells/internal/app"
	"github.com/kanade-fleet/backend/shells/internal/onprem"
)

func main() { onprem.Main("kanade", app.ShellHTTP, run) }

// run is the whole program (see app.RunFunc).
var run = onprem.Run(app.ShellHTTP, "kanade-http", serve)

// serve is the API and the dashboard, seeing the in-process worker's
// projections when there is one.
func serve(ctx context.Context, st *onprem.Started) (onprem.Part, error) {
	var progress func() []kanade.ProjectionProgress
	if st.Worker != nil {
		progress = st.Worker.Progress
	}
	m, err := metrics.New(st.Registry)
	if err != nil {
		return onprem.Part{}, err
	}
	h, err := api.New(ctx, st.Deps, st.Auth, m, progress)
	return onprem.Part{Name: "http", Addr: st.Config.HTTPAddr, Handler: h,
		Announce: func(stdout io.Writer, addr net.Addr) { app.PrintDashboard(stdout, st.Logger, addr, st.Auth) },
	}, err
}
