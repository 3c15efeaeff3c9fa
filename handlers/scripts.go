package handlers

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// Revoke (control.md §4): KV script_status[<command id>] = REVOKED makes
// agents skip that job's commands, also those already published or retained
// in EXEC; ACTIVE (or no key) lets them run. Values are raw bytes, exactly
// as agents and the CLI read and write them.

type scriptInput struct {
	CmdID string `path:"cmd_id" doc:"The command id, which is the job (manifest) id. Revoking an id no job has yet is allowed."`
}

type scriptStatusOutput struct {
	Body map[string]string
}

func (srv *Server) registerScripts(api huma.API) {
	for _, s := range []struct{ verb, status, action, doc string }{
		{"revoke", bus.ScriptRevoked, "script_revoke", "Agents skip the job's commands from now on, queued and retained ones included (exit code 126)."},
		{"unrevoke", bus.ScriptActive, "script_unrevoke", "Agents run the job's commands again; commands skipped meanwhile are not sent again."},
	} {
		register(api, huma.Operation{OperationID: s.verb + "-script", Method: http.MethodPost, Path: "/api/scripts/{cmd_id}/" + s.verb,
			Summary: "Set a script " + s.status, Tags: []string{"control"}, DefaultStatus: http.StatusNoContent,
			Description: s.doc + " Writes KV script_status[cmd_id] = " + s.status + ", then the audit event " + s.action + ". " +
				"503 when the bucket does not exist."},
			func(ctx context.Context, in *scriptInput) (*struct{}, error) {
				return nil, srv.setScript(ctx, in.CmdID, s.status, s.action)
			})
	}
	register(api, huma.Operation{OperationID: "script-statuses", Method: http.MethodGet, Path: "/api/scripts/status",
		Summary: "Every script status", Tags: []string{"control"},
		Description: `One object mapping every key of KV script_status to its value as stored, e.g. {"inventory-hw":"ACTIVE","cleanup-temp":"REVOKED"}. ` +
			"An absent key means active. A missing or empty bucket answers {}."},
		func(ctx context.Context, _ *struct{}) (*scriptStatusOutput, error) {
			return srv.scriptStatuses(ctx)
		})
}

func (srv *Server) setScript(ctx context.Context, cmdID, status, action string) error {
	if !kanade.ValidKVKey(cmdID) {
		return badToken("cmd_id", cmdID, ruleKVKey)
	}
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return err
	}
	if err := c.SetScriptStatus(ctx, cmdID, status); err != nil {
		if isNoBucket(err) {
			return srv.natsProblem(ctx, "set script status", err)
		}
		srv.cfg.Logger.ErrorContext(ctx, "set script status", "error", err)
		return huma.Error500InternalServerError("set script status: " + err.Error())
	}
	srv.audit(ctx, action, cmdID, nil)
	return nil
}

func (srv *Server) scriptStatuses(ctx context.Context) (*scriptStatusOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	m, err := c.ScriptStatuses(ctx)
	switch {
	case isNoBucket(err):
		m = map[string]string{}
	case err != nil:
		return nil, srv.natsProblem(ctx, "list script status", err)
	}
	return &scriptStatusOutput{Body: m}, nil
}
