package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

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
	Limit   int    `query:"limit" minimum:"1" maximum:"500" default:"50" doc:"Page size."`
	Cursor  string `query:"cursor" doc:"next_cursor of the previous page, with the same sort and order; omit for the first page."`
	Status  string `query:"status" doc:"online: last heartbeat within the stale threshold of now; offline (or stale, the same): the others. Omit for all."`
	Q       string `query:"q" maxLength:"256" doc:"Case-insensitive substring of pc_id or hostname; % and _ are literal."`
	OS      string `query:"os" maxLength:"256" doc:"Only agents of this os_family (exact)."`
	Version string `query:"version" maxLength:"256" doc:"Only agents of this agent_version (exact)."`
	Group   string `query:"group" maxLength:"256" doc:"Only members of this group (the agent_groups mirror)."`
	Sort    string `query:"sort" doc:"pc_id (default), hostname, os, agent_version, last_heartbeat or status (offline first, then by heartbeat); ties by pc_id. A missing value sorts first."`
	Order   string `query:"order" doc:"asc (default) or desc."`
	Total   bool   `query:"total" doc:"Also count the agents matching the filters, in the X-Total-Count header."`
}

// readsAgentsOutput is a roster page and, when asked for, the count of
// every matching agent.
type readsAgentsOutput struct {
	TotalCount *int64 `header:"X-Total-Count" doc:"Agents matching the filters (with total=true)."`
	Body       agentsPage
}

// encodedPage is a roster page storage encoded into a buffer of srv.pages,
// which goes back once the page is written.
func (srv *Server) encodedPage(b []byte) agentsPage {
	return agentsPage{json: b, done: func() { srv.pages.put(b) }}
}

// filter checks the roster's enumerated parameters (a 400 naming the
// parameter, as for a bad cursor: the documented values are in the
// parameter's doc) and returns the storage filter.
func (in *readsAgentsInput) filter(onlineSince time.Time) (storage.AgentFilter, error) {
	f := storage.AgentFilter{
		PageRequest: storage.PageRequest{Limit: in.Limit, Cursor: in.Cursor}, OnlineSince: onlineSince,
		Status: storage.AgentStatus(in.Status), Query: in.Q, OS: in.OS, Version: in.Version, Group: in.Group,
		Sort: storage.AgentSort(in.Sort),
	}
	if in.Status != "" && !slices.Contains(storage.AgentStatuses, f.Status) {
		return f, badIn("query", "status", in.Status, "must be online, offline or stale")
	}
	if in.Sort != "" && !slices.Contains(storage.AgentSorts, f.Sort) {
		return f, badIn("query", "sort", in.Sort, "must be pc_id, hostname, os, agent_version, last_heartbeat or status")
	}
	switch in.Order {
	case "", "asc":
	case "desc":
		f.Desc = true
	default:
		return f, badIn("query", "order", in.Order, "must be asc or desc")
	}
	return f, nil
}

type readsResultsInput struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50" doc:"Page size."`
	Cursor string `query:"cursor" doc:"next_cursor of the previous page; omit for the first page."`
	JobID  string `query:"job_id" doc:"Only runs of this job (manifest id), exactly."`
	PCID   string `query:"pc_id" doc:"Only runs on this PC, exactly."`
	ExecID string `query:"exec_id" maxLength:"256" doc:"Only runs of this execution."`
	Job    string `query:"job" maxLength:"256" doc:"Only runs of jobs whose id contains this text, case-insensitively (% and _ are literal)."`
	PC     string `query:"pc" maxLength:"256" doc:"Only runs of PCs on the roster whose pc_id or hostname contains this text, case-insensitively, like the agents search (q=)."`
	Since  string `query:"since" doc:"RFC 3339 instant, any offset: only runs started at or after it. Runs without a start time are left out when since or until is given." example:"2026-06-20T10:00:00+09:00"`
	Until  string `query:"until" doc:"RFC 3339 instant, any offset: only runs started before it."`
	Status string `query:"status" enum:"success,failure,running,skipped" doc:"success: exit 0, not skipped; failure: finished with a non-zero exit (reaped runs are -1), not skipped; running: not finished; skipped: skipped."`
}

// ruleTime is the rule of a time query parameter.
const ruleTime = "must be an RFC 3339 time with an offset, such as 2026-06-20T10:00:00Z"

// queryTime parses an optional RFC 3339 query parameter; a malformed value
// is a 400 naming it.
func queryTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badIn("query", name, v, ruleTime)
	}
	return t, nil
}

// cursor is the ?cursor= a list was asked for, which readsProblem names when
// storage refuses it.
func (p *readsPage) cursor() string         { return p.Cursor }
func (p *readsResultsInput) cursor() string { return p.Cursor }

// readsOutput is the output of every read: the value storage returned is the
// body (its type names the schema: PageAgent, RunDetail, …).
type readsOutput[T any] struct{ Body T }

// registerRead registers one read endpoint: load's value is the body, and
// its error goes through readsProblem, so every read answers alike.
func registerRead[I, T any](srv *Server, api huma.API, op huma.Operation, load func(context.Context, *I) (T, error)) {
	what := strings.ReplaceAll(op.OperationID, "-", " ") // "list agents": the log's words
	huma.Register(api, op, func(ctx context.Context, in *I) (*readsOutput[T], error) {
		v, err := load(ctx, in)
		if err != nil {
			cursor := ""
			if c, ok := any(in).(interface{ cursor() string }); ok {
				cursor = c.cursor()
			}
			return nil, srv.readsProblem(ctx, what, cursor, err)
		}
		return &readsOutput[T]{Body: v}, nil
	})
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
	onlineSince := func() time.Time { return srv.cfg.Clock().Add(-srv.cfg.StaleThreshold) }
	db := srv.cfg.DB

	huma.Register(api, get("list-agents", "/api/agents", "Agent roster",
		"Agents in the order asked for (pc_id by default), with online computed from the stale threshold, "+
			"filtered by status, OS, version, group and a search; with total=true, X-Total-Count is the number of matches."),
		func(ctx context.Context, in *readsAgentsInput) (*readsAgentsOutput, error) {
			f, err := in.filter(onlineSince())
			if err != nil {
				return nil, err
			}
			out := &readsAgentsOutput{}
			buf := srv.pages.get()
			var page []byte
			if in.Total {
				// One call: a search's candidates are read once for both.
				var n int64
				page, n, err = db.ListAndCountAgentsJSON(ctx, buf, f)
				out.TotalCount = &n
			} else {
				page, err = db.ListAgentsJSON(ctx, buf, f)
			}
			if err != nil {
				srv.pages.put(buf)
				return nil, srv.readsProblem(ctx, "list agents", in.Cursor, err)
			}
			out.Body = srv.encodedPage(page)
			return out, nil
		})
	registerRead(srv, api, get("get-agent", "/api/agents/{pc_id}", "One agent", ""),
		func(ctx context.Context, in *struct {
			PCID string `path:"pc_id"`
		}) (kanade.Agent, error) {
			return db.GetAgent(ctx, in.PCID, onlineSince())
		})
	registerRead(srv, api, get("list-results", "/api/results", "Runs",
		"Runs newest first (by started_at, then result_id; runs without a start time last), without stdout/stderr."),
		func(ctx context.Context, in *readsResultsInput) (kanade.Page[kanade.Run], error) {
			since, err := queryTime("since", in.Since)
			if err != nil {
				return kanade.Page[kanade.Run]{}, err
			}
			until, err := queryTime("until", in.Until)
			if err != nil {
				return kanade.Page[kanade.Run]{}, err
			}
			if !since.IsZero() && !until.IsZero() && !since.Before(until) {
				return kanade.Page[kanade.Run]{}, badIn("query", "until", in.Until, "must be after since")
			}
			return db.ListRuns(ctx, storage.RunFilter{
				PageRequest: storage.PageRequest{Limit: in.Limit, Cursor: in.Cursor},
				JobID:       in.JobID, PCID: in.PCID, ExecID: in.ExecID, Job: in.Job, PC: in.PC,
				Since: since, Until: until, Status: storage.RunStatus(in.Status)})
		})
	registerRead(srv, api, get("get-result", "/api/results/{result_id}", "One run with its output", ""),
		func(ctx context.Context, in *struct {
			ResultID string `path:"result_id"`
		}) (kanade.RunDetail, error) {
			return db.GetRun(ctx, in.ResultID)
		})
	registerRead(srv, api, get("list-executions", "/api/executions", "Executions",
		"Fan-outs with their counters, newest first (by initiated_at, then exec_id)."),
		func(ctx context.Context, in *readsPage) (kanade.Page[kanade.Execution], error) {
			return db.ListExecutions(ctx, in.request())
		})
	registerRead(srv, api, get("get-execution", "/api/executions/{exec_id}", "One execution", ""),
		func(ctx context.Context, in *struct {
			ExecID string `path:"exec_id"`
		}) (kanade.Execution, error) {
			return db.GetExecution(ctx, in.ExecID)
		})
	registerRead(srv, api, get("list-audit", "/api/audit", "Audit log", "Newest first (by occurred_at, then id)."),
		func(ctx context.Context, in *readsPage) (kanade.Page[kanade.AuditEntry], error) {
			return db.ListAudit(ctx, in.request())
		})
}

// readsProblem maps a storage error to the problem response: a missing row is
// 404, a cursor storage did not issue is 400 naming the parameter, anything
// else is logged here (the edge) and answered 500 without the database's
// words.
func (srv *Server) readsProblem(ctx context.Context, what, cursor string, err error) error {
	switch {
	case errors.As(err, new(huma.StatusError)):
		return err // already a problem (a malformed parameter)
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
