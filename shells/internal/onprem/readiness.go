package onprem

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/kanade-fleet/backend/shells/internal/app"
)

// readyCheckTimeout bounds the database check, so an orchestrator's probe
// gets an answer before its own timeout (Kubernetes defaults to 1 s).
const readyCheckTimeout = 900 * time.Millisecond

// WorkerReadiness is the body of the worker shell's GET /readyz.
type WorkerReadiness struct {
	Status string            `json:"status"` // "ready" or "not_ready"
	Checks map[string]string `json:"checks"`
}

// workerReadiness checks what the worker needs to do its job: the database
// answers, NATS is connected, and no projection is stalled (its offset has
// not moved for the stall threshold while messages waited as long).
func workerReadiness(ctx context.Context, d *app.Deps, w Worker) WorkerReadiness {
	out := WorkerReadiness{Status: "ready", Checks: map[string]string{"database": "ok", "nats": "ok", "projection": "ok"}}
	dctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
	defer cancel()
	if err := d.DB.Ping(dctx); err != nil {
		out.Checks["database"] = err.Error()
	}
	if !d.NATS.Connected() {
		reason := "not connected"
		if err := d.NATS.Link.Err(); err != nil {
			reason += ": " + err.Error()
		}
		out.Checks["nats"] = reason
	}
	now := d.Clock()
	var stalls []string
	for _, p := range w.Progress() {
		if !p.Stalled(now, d.Config.ProjectionStall) {
			continue
		}
		why := fmt.Sprintf("%s: no progress for %s while messages wait", p.Name, now.Sub(p.LastProgress).Round(time.Second))
		if p.LastError != "" {
			why += "; last error: " + p.LastError
		}
		stalls = append(stalls, why)
	}
	if len(stalls) > 0 {
		out.Checks["projection"] = "stalled: " + strings.Join(stalls, "; ")
	}
	for _, v := range out.Checks {
		if v != "ok" {
			out.Status = "not_ready"
		}
	}
	return out
}

// WorkerProbes are the worker shell's probes, on d and the worker w:
// /healthz answers 200 while the process serves (a NATS or database outage
// is no reason to restart it) and says why it is not ready, if it is not;
// /readyz answers 503 with the failing checks.
func WorkerProbes(d *app.Deps, w Worker) (healthz, readyz http.HandlerFunc) {
	healthz = func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Header().Set("Cache-Control", "no-store")
		st := workerReadiness(r.Context(), d, w)
		if st.Status == "ready" {
			io.WriteString(rw, "ok")
			return
		}
		var failing []string
		for name, v := range st.Checks {
			if v != "ok" {
				failing = append(failing, name+": "+v)
			}
		}
		sort.Strings(failing)
		io.WriteString(rw, "ok (alive; not ready: "+strings.Join(failing, "; ")+")")
	}
	readyz = func(rw http.ResponseWriter, r *http.Request) {
		st := workerReadiness(r.Context(), d, w)
		rw.Header().Set("Content-Type", "application/json")
		rw.Header().Set("Cache-Control", "no-store")
		if st.Status != "ready" {
			rw.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(rw).Encode(st)
	}
	return healthz, readyz
}
