package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
)

// The read endpoints of api.md "Read and manage endpoints": the agent roster,
// runs, executions and the audit log. Each list is keyset-paginated by
// storage (a page is {"items": [...], "next_cursor": "..."|null}); the
// handlers only turn query parameters into a filter and storage errors into
// problem responses, in readsProblem, so every endpoint answers alike.
//
// Limits and enums are declared on the input types, so huma documents them in
// the OpenAPI and refuses bad values (422, "validation failed") before a
// handler runs. The tag literals must stay equal to storage.MaxPageLimit
// (TestLimitTagsAreTheLimits checks them).

// readsPage is the input of a list with paging only. The other lists repeat
// its two fields: huma reads parameters of exported fields only, and an
// embedded unexported struct is not one.
type readsPage struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50" doc:"Page size."`
	Cursor string `query:"cursor" doc:"next_cursor of the previous page; omit for the first page."`
}

func (p readsPage) request() storage.PageRequest {
	return storage.PageRequest{Limit: p.Limit, Cursor: p.Cursor}
}

type readsAgentsInput struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50" doc:"Page size."`
	Cursor string `query:"cursor" doc:"next_cursor of the previous page; omit for the first page."`
	Status string `query:"status" enum:"online,offline" doc:"online: last heartbeat within the stale threshold of now; offline: the others. Omit for both."`
	Q      string `query:"q" maxLength:"256" doc:"Case-insensitive substring of pc_id or hostname; % and _ are literal."`
}

type readsResultsInput struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50" doc:"Page size."`
	Cursor string `query:"cursor" doc:"next_cursor of the previous page; omit for the first page."`
	JobID  string `query:"job_id" doc:"Only runs of this job (manifest id)."`
	PCID   string `query:"pc_id" doc:"Only runs on this PC."`
	Status string `query:"status" enum:"success,failure,running,skipped" doc:"success: exit 0, not skipped; failure: finished with a non-zero exit (reaped runs are -1), not skipped; running: not finished; skipped: skipped."`
}

type readsAgentsOutput struct{ Body kanade.Page[kanade.Agent] }
type readsAgentOutput struct{ Body kanade.Agent }
type readsResultsOutput struct{ Body kanade.Page[kanade.Run] }
type readsResultOutput struct{ Body kanade.RunDetail }
type readsExecutionsOutput struct {
	Body kanade.Page[kanade.Execution]
}
type readsExecutionOutput struct{ Body kanade.Execution }
type readsAuditOutput struct {
	Body kanade.Page[kanade.AuditEntry]
}

func (srv *Server) registerReads(api huma.API) {
	get := func(id, path, summary, description string) huma.Operation {
		return huma.Operation{
			OperationID: id, Method: http.MethodGet, Path: path,
			Summary: summary, Description: description, Tags: []string{"reads"},
		}
	}
	// onlineSince is the cutoff of the online rule, the same as the fleet
	// rollup's: last_heartbeat >= now - StaleThreshold.
	onlineSince := func() storage.AgentFilter {
		return storage.AgentFilter{OnlineSince: srv.cfg.Clock().Add(-srv.cfg.StaleThreshold)}
	}

	huma.Register(api, get("list-agents", "/api/agents", "Agent roster",
		"Agents ordered by pc_id, with online computed from the stale threshold."),
		func(ctx context.Context, in *readsAgentsInput) (*readsAgentsOutput, error) {
			f := onlineSince()
			f.PageRequest = storage.PageRequest{Limit: in.Limit, Cursor: in.Cursor}
			f.Status, f.Query = storage.AgentStatus(in.Status), in.Q
			page, err := srv.cfg.DB.ListAgents(ctx, f)
			if err != nil {
				return nil, srv.readsProblem(ctx, "list agents", in.Cursor, err)
			}
			return &readsAgentsOutput{Body: page}, nil
		})

	huma.Register(api, get("get-agent", "/api/agents/{pc_id}", "One agent", ""),
		func(ctx context.Context, in *struct {
			PCID string `path:"pc_id"`
		}) (*readsAgentOutput, error) {
			a, err := srv.cfg.DB.GetAgent(ctx, in.PCID, onlineSince().OnlineSince)
			if err != nil {
				return nil, srv.readsProblem(ctx, "get agent", "", err)
			}
			return &readsAgentOutput{Body: a}, nil
		})

	huma.Register(api, get("list-results", "/api/results", "Runs",
		"Runs newest first (by started_at, then result_id; runs without a start time last), without stdout/stderr."),
		func(ctx context.Context, in *readsResultsInput) (*readsResultsOutput, error) {
			page, err := srv.cfg.DB.ListRuns(ctx, storage.RunFilter{
				PageRequest: storage.PageRequest{Limit: in.Limit, Cursor: in.Cursor},
				JobID:       in.JobID, PCID: in.PCID, Status: storage.RunStatus(in.Status)})
			if err != nil {
				return nil, srv.readsProblem(ctx, "list results", in.Cursor, err)
			}
			return &readsResultsOutput{Body: page}, nil
		})

	huma.Register(api, get("get-result", "/api/results/{result_id}", "One run with its output", ""),
		func(ctx context.Context, in *struct {
			ResultID string `path:"result_id"`
		}) (*readsResultOutput, error) {
			r, err := srv.cfg.DB.GetRun(ctx, in.ResultID)
			if err != nil {
				return nil, srv.readsProblem(ctx, "get result", "", err)
			}
			return &readsResultOutput{Body: r}, nil
		})

	huma.Register(api, get("list-executions", "/api/executions", "Executions",
		"Fan-outs with their counters, newest first (by initiated_at, then exec_id)."),
		func(ctx context.Context, in *readsPage) (*readsExecutionsOutput, error) {
			page, err := srv.cfg.DB.ListExecutions(ctx, in.request())
			if err != nil {
				return nil, srv.readsProblem(ctx, "list executions", in.Cursor, err)
			}
			return &readsExecutionsOutput{Body: page}, nil
		})

	huma.Register(api, get("get-execution", "/api/executions/{exec_id}", "One execution", ""),
		func(ctx context.Context, in *struct {
			ExecID string `path:"exec_id"`
		}) (*readsExecutionOutput, error) {
			e, err := srv.cfg.DB.GetExecution(ctx, in.ExecID)
			if err != nil {
				return nil, srv.readsProblem(ctx, "get execution", "", err)
			}
			return &readsExecutionOutput{Body: e}, nil
		})

	huma.Register(api, get("list-audit", "/api/audit", "Audit log", "Newest first (by occurred_at, then id)."),
		func(ctx context.Context, in *readsPage) (*readsAuditOutput, error) {
			page, err := srv.cfg.DB.ListAudit(ctx, in.request())
			if err != nil {
				return nil, srv.readsProblem(ctx, "list audit", in.Cursor, err)
			}
			return &readsAuditOutput{Body: page}, nil
		})
}

// readsProblem maps a storage error to the problem response: a missing row is
// 404, a cursor storage did not issue is 400 naming the parameter, anything
// else is logged here (the edge) and answered 500 without the database's
// words.
func (srv *Server) readsProblem(ctx context.Context, what, cursor string, err error) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return huma.Error404NotFound(err.Error())
	case errors.Is(err, storage.ErrInvalidCursor):
		detail := &huma.ErrorDetail{Location: "query.cursor", Message: "not a cursor of this list; pass next_cursor unchanged"}
		if len(cursor) <= 256 {
			detail.Value = cursor
		}
		return huma.Error400BadRequest("invalid cursor", detail)
	}
	srv.cfg.Logger.ErrorContext(ctx, what, slog.Any("error", err))
	return huma.Error500InternalServerError(what + " failed")
}
