// Command http is the on-prem kanade backend: the API, the dashboard and the
// probes over HTTP, with the worker (projector, scheduler) in the same
// process unless KANADE_WORKER=off, and an embedded NATS JetStream server
// unless KANADE_NATS_URL names one. `go run ./shells/http -h` lists the
// settings.
package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/handlers"
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
	if err == nil {
		go warmScanDurations(ctx, st.Deps, st.Logger)
	}
	return onprem.Part{Name: "http", Addr: st.Config.HTTPAddr, Handler: h,
		Announce: func(stdout io.Writer, addr net.Addr) { app.PrintDashboard(stdout, st.Logger, addr, st.Auth) },
	}, err
}

// warmScanDurations asks for scan_durations' default window once, in the
// background, so that the first caller after a start (a monitor, the
// dashboard's overview) finds what the database keeps of the window's
// buckets instead of reading all of them: at 10M runs a first call takes a
// quarter of a second and a later one a tenth of that (storage's
// scan_cache.go). A libSQL server keeps nothing for this process, so there
// is nothing to warm. A failure costs only that first caller the time, so
// it is logged, not fatal.
func warmScanDurations(ctx context.Context, deps *app.Deps, logger *slog.Logger) {
	if deps.DB.Remote() {
		return
	}
	began := time.Now()
	rows, err := deps.DB.ScanDurations(ctx, deps.Clock().Add(-handlers.RecentWindow))
	if err != nil {
		if ctx.Err() == nil {
			logger.WarnContext(ctx, "scan_durations warm-up failed", slog.Any("error", err))
		}
		return
	}
	logger.InfoContext(ctx, "scan_durations warmed", slog.Int("jobs", len(rows)),
		slog.Duration("took", time.Since(began).Round(time.Millisecond)))
}
