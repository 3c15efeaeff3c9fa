package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
)

// readyCheckTimeout bounds each readiness check, so an orchestrator's probe
// gets an answer before its own timeout (Kubernetes defaults to 1 s).
const readyCheckTimeout = 900 * time.Millisecond

// Readiness is the body of GET /readyz.
type Readiness struct {
	Status string `json:"status"` // "ready" or "not_ready"
	// Checks maps each check to "ok" or a short reason. Reasons are generic on
	// purpose: /readyz is unauthenticated, so details go to the log only.
	Checks map[string]string `json:"checks"`
}

// registerProbes serves the unauthenticated probes of api.md: /health and
// /healthz prove only that the process serves HTTP (they touch nothing, so a
// slow database never gets a healthy process restarted); /readyz checks the
// database and NATS, each under a short timeout.
func (srv *Server) registerProbes(mux *routes) {
	alive := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte("ok"))
	}
	mux.HandleFunc("GET /health", alive)
	mux.HandleFunc("GET /healthz", alive)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		body := srv.readiness(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if body.Status != "ready" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(body)
	})
}

// readiness runs the database and NATS checks concurrently.
func (srv *Server) readiness(ctx context.Context) Readiness {
	ctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
	defer cancel()
	dbDone := make(chan string, 1)
	go func() {
		err := srv.cfg.DB.Ping(ctx)
		switch {
		case err == nil:
			dbDone <- "ok"
			return
		case errors.Is(err, context.DeadlineExceeded):
			dbDone <- "database did not answer within " + readyCheckTimeout.String()
		default:
			dbDone <- "database ping failed"
		}
		srv.cfg.Logger.WarnContext(ctx, "readyz: database", slog.Any("error", err))
	}()
	natsDone := make(chan string, 1)
	go func() {
		switch {
		case srv.cfg.NATSConnected == nil:
			natsDone <- "no NATS connection configured"
		case srv.cfg.NATSConnected():
			natsDone <- "ok"
		default:
			natsDone <- "not connected"
		}
	}()
	wait := func(ch chan string) string {
		select {
		case s := <-ch:
			return s
		case <-ctx.Done():
			return "no answer within " + readyCheckTimeout.String()
		}
	}
	out := Readiness{Status: "ready", Checks: map[string]string{"database": wait(dbDone), "nats": wait(natsDone)}}
	for _, v := range out.Checks {
		if v != "ok" {
			out.Status = "not_ready"
		}
	}
	return out
}

// VersionInfo is the body of GET /api/version.
type VersionInfo struct {
	Version string `json:"version" example:"0.1.0"`
	Commit  string `json:"commit"`
}

type versionOutput struct{ Body VersionInfo }

// registerVersion serves GET /api/version, open without a token (api.md) so
// an operator can tell which build answers before configuring credentials.
func registerVersion(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "get-version",
		Method:      http.MethodGet,
		Path:        "/api/version",
		Summary:     "Build version and commit",
		Tags:        []string{"health"},
		// The one 4xx this route can answer comes from net/http, before
		// any handler: it takes no parameters, body or credentials.
		Responses: map[string]*huma.Response{
			"400": {Description: "A malformed request (request line, Host or headers), refused by the HTTP server before routing.",
				Content: map[string]*huma.MediaType{"text/plain": {Schema: &huma.Schema{Type: huma.TypeString}}}},
		},
	}, func(context.Context, *struct{}) (*versionOutput, error) {
		return &versionOutput{Body: VersionInfo{Version: kanade.Version, Commit: kanade.Commit}}, nil
	})
}
