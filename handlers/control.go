package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// The control plane of control.md: what an operator does to the fleet
// (fan a job out, run a script, kill, revoke, freeze) beyond editing
// records. This file holds what those routes share: the body cap, the
// caller's source, the audit event and the fan-out.

// maxBodyBytes caps every request body (control.md §0.2: 2 MiB, 413 above;
// upstream relies on axum's 2 MB default).
const maxBodyBytes = 2 << 20

// operatorActor is the audit actor of every HTTP mutation (control.md
// §0.2): the caller goes into the payload as sub.
const operatorActor = "operator"

// register is huma.Register with the body cap every route shares.
func register[I, O any](api huma.API, op huma.Operation, h func(context.Context, *I) (*O, error)) {
	if op.MaxBodyBytes == 0 {
		op.MaxBodyBytes = maxBodyBytes
	}
	huma.Register(api, op, h)
}

type sourceKey struct{}

// withSource keeps the trimmed X-Kanade-Source header ("cli", "spa") in the
// request's context for the audit events (absent or blank: none).
func withSource(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := strings.TrimSpace(r.Header.Get("X-Kanade-Source")); s != "" {
			r = r.WithContext(context.WithValue(r.Context(), sourceKey{}, s))
		}
		next.ServeHTTP(w, r)
	})
}

// audit publishes audit.operator.<action>.<target> (control.md §0.2) with
// payload p plus the caller: sub (the authenticated subject) and source
// (X-Kanade-Source, when sent); keys p already has win. It runs after the
// change succeeded, so a failed publish must not turn the answer into an
// error (the client would retry a change that is done): it is logged,
// loudly, as the trail now misses an entry. The publish is detached from the
// request's cancellation so a client that hangs up does not cost the entry.
func (srv *Server) audit(ctx context.Context, action, target string, p map[string]any) {
	payload := callerKeys(ctx)
	for k, v := range p {
		payload[k] = v
	}
	log := func(err error) {
		srv.cfg.Logger.ErrorContext(ctx, "audit event lost after a successful change",
			slog.String("action", action), slog.String("target", kanade.Clip(target)), slog.Any("error", err))
	}
	data, err := json.Marshal(payload)
	if err != nil {
		log(err)
		return
	}
	ev := kanade.AuditEvent{Actor: operatorActor, Action: action, Target: &target, Payload: data,
		OccurredAt: kanade.Timestamp{Time: srv.cfg.Clock().UTC()}}
	c, err := srv.bus()
	if err != nil {
		log(err)
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), manageTimeout)
	defer cancel()
	if err := c.Audit(pctx, ev); err != nil {
		log(err)
	}
}

// badToken is the 400 of an id that must become a subject token or KV key
// and cannot (control.md §0.2: refused before any side effect).
func badToken(field, value, rule string) error { return badIn("path", field, value, rule) }

const (
	ruleToken = "must be a NATS subject token (no spaces, dots, * or >)"
	ruleKVKey = "must be a KV key (letters, digits and - / _ = ., not starting or ending with .)"
)

// isNoBucket reports a missing KV bucket or object store.
func isNoBucket(err error) bool {
	return errors.Is(err, bus.ErrNoBucket)
}

// dbProblem logs a database failure here (the edge) and answers 500
// without the database's words.
func (srv *Server) dbProblem(ctx context.Context, what string, err error) error {
	srv.cfg.Logger.ErrorContext(ctx, what, slog.Any("error", err))
	return huma.Error500InternalServerError(what + " failed")
}

func (srv *Server) registerControl(api huma.API) {
	srv.registerExec(api)
	srv.registerKill(api)
	srv.registerFreeze(api)
	srv.registerPreview(api)
	registerSchemas(api)
	srv.registerScripts(api)
	srv.registerSigning(api)
}
