package handlers

import (
	"context"
	"fmt"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
)

// Kill (control.md §3): an empty message on kill.<exec_id> makes the agents
// running that execution stop its child process. Core NATS, so only agents
// connected now can act on it; a 204 means the server took every message.

type killJobInput struct {
	JobID string `path:"job_id" doc:"The job (manifest) id whose pending and running executions are signalled; not an exec id."`
}

type killExecInput struct {
	ExecID string `path:"exec_id" doc:"The execution to signal (an ad-hoc run's too, when it was given an exec_id)."`
}

func (srv *Server) registerKill(api huma.API) {
	register(api, huma.Operation{OperationID: "kill-job", Method: http.MethodPost, Path: "/api/jobs/{job_id}/kill",
		Summary: "Stop a job's running executions", Tags: []string{"control"}, DefaultStatus: http.StatusNoContent,
		Description: "Publishes an empty kill.<exec_id> for every execution of the job that is pending or running " +
			"(nothing to stop is a success), then the audit event kill with the exec_ids. " +
			"An execution already completed or expired is not signalled."},
		func(ctx context.Context, in *killJobInput) (*struct{}, error) {
			return nil, srv.killJob(ctx, in.JobID)
		})
	register(api, huma.Operation{OperationID: "kill-execution", Method: http.MethodPost, Path: "/api/executions/{exec_id}/kill",
		Summary: "Stop one execution", Tags: []string{"control"}, DefaultStatus: http.StatusNoContent,
		Description: "Publishes an empty kill.<exec_id> whatever the execution's recorded state (the CLI's `kanade kill <exec_id>` " +
			"over HTTP; an extension of this backend), then the audit event kill with the exec_id as its target."},
		func(ctx context.Context, in *killExecInput) (*struct{}, error) {
			return nil, srv.killExec(ctx, in.ExecID)
		})
}

func (srv *Server) killJob(ctx context.Context, jobID string) error {
	if !kanade.ValidKVKey(jobID) {
		return badToken("job_id", jobID, ruleKVKey)
	}
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	ids, err := srv.cfg.DB.ActiveExecIDs(ctx, jobID)
	if err != nil {
		return srv.dbProblem(ctx, "list the job's executions", err)
	}
	if len(ids) == 0 {
		return nil
	}
	c, err := srv.bus()
	if err != nil {
		return err
	}
	for i, id := range ids {
		if err := c.Kill(ctx, id); err != nil {
			if i == 0 {
				return srv.natsProblem(ctx, "publish kill."+id, err)
			}
			// The earlier ones went out: say so, and audit them.
			srv.audit(ctx, "kill", jobID, map[string]any{"exec_ids": ids[:i], "error": err.Error()})
			return huma.Error503ServiceUnavailable(fmt.Sprintf("publish kill.%s: NATS is unavailable (%d of %d sent; send the kill again)", id, i, len(ids)))
		}
	}
	srv.audit(ctx, "kill", jobID, map[string]any{"exec_ids": ids})
	return nil
}

func (srv *Server) killExec(ctx context.Context, execID string) error {
	if !kanade.ValidToken(execID) {
		return badToken("exec_id", execID, ruleToken)
	}
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return err
	}
	if err := c.Kill(ctx, execID); err != nil {
		return srv.natsProblem(ctx, "publish kill."+execID, err)
	}
	srv.audit(ctx, "kill", execID, map[string]any{"exec_ids": []string{execID}})
	return nil
}
