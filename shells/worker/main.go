// Command worker runs the writing side of the kanade backend alone (projector,
// scheduler) next to a separately deployed API (e.g. on Lambda). It serves
// only an admin address with /healthz, /readyz and /metrics. `-h` lists the
// settings.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/shells/internal/app"
	"github.com/kanade-fleet/backend/shells/internal/onprem"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() { onprem.Main("kanade-worker", app.ShellWorker, run) }

// run is the whole program (see app.RunFunc).
var run = onprem.Run(app.ShellWorker, "kanade-worker", serve)

// serve is the admin address: probes and metrics. /metrics is authenticated
// like the API's; the generated token is the same file the HTTP shell uses
// when both share a data folder.
func serve(_ context.Context, st *onprem.Started) (onprem.Part, error) {
	mux := http.NewServeMux()
	healthz, readyz := onprem.WorkerProbes(st.Deps, st.Worker)
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(st.Registry, promhttp.HandlerOpts{}))
	admin, err := auth.Middleware(st.Auth.Config, mux)
	return onprem.Part{Name: "admin", Addr: st.Config.AdminAddr, Handler: admin,
		Announce: func(stdout io.Writer, addr net.Addr) {
			fmt.Fprintf(stdout, "kanade-worker: admin on http://%s/ (/healthz, /readyz, /metrics)\n", addr)
			if st.Auth.Generated != "" {
				st.Logger.Info("/metrics needs the bearer token kept in the data folder", slog.String("data_dir", st.Config.DataDir))
			}
		},
	}, err
}
