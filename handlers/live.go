package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// The live agent actions of fleet.md §4: ask one agent, over core-NATS
// request/reply, for a heartbeat (ping), the tail of its log, or the output
// so far of a running job. Nothing is stored and nothing audited. Every
// request has its own bounded timeout, and an agent that is not connected
// answers at once: NATS says "no responders" instead of letting the request
// wait.

// The bounds of the live actions.
const (
	// pingDefaultSecs, pingMaxSecs: ?wait_secs when absent, and its cap
	// (upstream had none). Below 1 it is 1.
	pingDefaultSecs = 5
	pingMaxSecs     = 60
	// logsDefaultTail, logsMaxTail: ?tail when absent, and its cap.
	logsDefaultTail = 500
	logsMaxTail     = 10_000
)

// liveTimeouts bound the wait for an agent's log text (10 s), and for a
// running job's output (3 s: below the dashboard's 5 s poll, so a silent
// agent never stacks requests up). A variable only so that tests can
// shorten them.
var liveTimeouts = struct{ logs, tail time.Duration }{logs: 10 * time.Second, tail: 3 * time.Second}

type pingInput struct {
	PCID     string `path:"pc_id" doc:"The PC: 1–128 bytes of [A-Za-z0-9_=/-]."`
	WaitSecs string `query:"wait_secs" doc:"Seconds to wait for the answer: an unsigned integer, default 5; below 1 waits 1, above 60 waits 60."`
}

type pingOutput struct {
	Body struct {
		Heartbeat kanade.Heartbeat `json:"heartbeat" doc:"The agent's Heartbeat (wire.md), built when it got the ping; its self-perf, logon, key and protocol fields are absent."`
	}
}

type logsInput struct {
	PCID string `path:"pc_id" doc:"The PC: 1–128 bytes of [A-Za-z0-9_=/-]."`
	Tail string `query:"tail" doc:"How many of the last lines of the agent's newest log file: an unsigned integer, default 500, at most 10000 (more is 10000)."`
}

type textOutput struct {
	ContentType string `header:"Content-Type"`
	Body        []byte
}

type tailInput struct {
	ResultID string `path:"result_id" doc:"The run (execution_results row)."`
}

// tailBody is the one shape of GET /api/results/{result_id}/tail.
type tailBody struct {
	Running         bool   `json:"running" doc:"false once the run finished"`
	Live            bool   `json:"live" doc:"true when the text comes from the agent now; false for a finished run (stored text) or when the agent did not answer (empty text)"`
	Stdout          string `json:"stdout" doc:"the output so far; a suffix of it when stdout_truncated"`
	Stderr          string `json:"stderr" doc:"the error output so far; a suffix of it when stderr_truncated"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	ExitCode        *int64 `json:"exit_code" doc:"the stored exit code of a finished run; null otherwise"`
}

type tailOutput struct {
	Body tailBody
}

func (srv *Server) registerLive(api huma.API) {
	register(api, huma.Operation{OperationID: "ping-agent", Method: http.MethodPost, Path: "/api/agents/{pc_id}/ping",
		Summary: "Ask an agent for a heartbeat now", Tags: []string{"agents"},
		Description: "Requests agents.<pc_id>.ping (core NATS, empty body) and answers {\"heartbeat\": …} with the agent's reply; " +
			"the agents table is not touched. 408 when no agent answers within wait_secs, and at once when none is connected " +
			"(NATS has no responders); 400 for a bad pc_id or wait_secs; 500 for an undecodable reply or another NATS error; " +
			"503 when NATS is down.",
		Responses: map[string]*huma.Response{"408": {Description: "No agent answered: none is connected, or it did not answer within wait_secs."}}},
		func(ctx context.Context, in *pingInput) (*pingOutput, error) {
			return srv.ping(ctx, in)
		})
	register(api, huma.Operation{OperationID: "agent-logs", Method: http.MethodGet, Path: "/api/agents/{pc_id}/logs",
		Summary: "The tail of an agent's log", Tags: []string{"agents"},
		Description: "Requests logs.fetch.<pc_id> with {\"tail_lines\": tail} and answers the agent's reply verbatim as " +
			"text/plain. 504 when the agent does not answer within 10 s; 502 for any other request error, no connected agent " +
			"included (answered at once); 400 for a bad pc_id or tail; 503 when NATS is down.",
		Responses: map[string]*huma.Response{
			"200": {Description: "The last lines of the agent's newest log file, as the agent sent them.",
				Content: map[string]*huma.MediaType{"text/plain; charset=utf-8": {Schema: &huma.Schema{Type: huma.TypeString}}}},
			"502": {Description: "The request failed: no agent is connected, or NATS failed."},
			"504": {Description: "The agent did not answer within 10 s."},
		}},
		func(ctx context.Context, in *logsInput) (*textOutput, error) {
			return srv.agentLogs(ctx, in)
		})
	register(api, huma.Operation{OperationID: "result-tail", Method: http.MethodGet, Path: "/api/results/{result_id}/tail",
		Summary: "The output so far of a run", Tags: []string{"reads"},
		Description: "A finished run (reaped ones included) answers its stored output without asking anyone (live false). " +
			"A running one asks its agent on job.tail.<pc_id> for up to 3 s: live true with the agent's text when it knows the run, " +
			"else the \"waiting\" answer (running true, live false, empty texts). 404 when there is no such run."},
		func(ctx context.Context, in *tailInput) (*tailOutput, error) {
			return srv.resultTail(ctx, in.ResultID)
		})
}

// uintParam parses an optional unsigned integer query parameter: def when
// absent, 400 naming it when it is not an unsigned integer.
func uintParam(name, v string, def uint64) (uint64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		msg := "must be an unsigned integer"
		return 0, huma.Error400BadRequest("query parameter "+name+" "+msg,
			&huma.ErrorDetail{Location: "query." + name, Message: msg, Value: kanade.Clip(v)})
	}
	return n, nil
}

// pingWait is the timeout of a ping asked to wait secs seconds: at least
// 1 s, at most pingMaxSecs.
func pingWait(secs uint64) time.Duration {
	return time.Duration(min(max(secs, 1), pingMaxSecs)) * time.Second
}

func (srv *Server) ping(ctx context.Context, in *pingInput) (*pingOutput, error) {
	if err := checkPCID(in.PCID); err != nil {
		return nil, err
	}
	secs, err := uintParam("wait_secs", in.WaitSecs, pingDefaultSecs)
	if err != nil {
		return nil, err
	}
	wait := pingWait(secs)
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	subject := kanade.SubjectPing(in.PCID)
	raw, err := c.Request(ctx, subject, nil, wait)
	switch {
	case errors.Is(err, bus.ErrNoResponders):
		return nil, huma.NewError(http.StatusRequestTimeout, fmt.Sprintf("agent %s did not answer: no agent is listening on %s", in.PCID, subject))
	case errors.Is(err, bus.ErrTimeout), ctx.Err() != nil:
		return nil, huma.NewError(http.StatusRequestTimeout, fmt.Sprintf("agent %s did not answer within %v", in.PCID, wait))
	case err != nil:
		srv.cfg.Logger.ErrorContext(ctx, "ping", slog.String("subject", subject), slog.Any("error", err))
		return nil, huma.Error500InternalServerError("ping " + in.PCID + ": " + err.Error())
	}
	out := &pingOutput{}
	hb := &out.Body.Heartbeat
	err = json.Unmarshal(raw, hb)
	if err == nil {
		err = hb.Validate()
	}
	if err != nil {
		srv.cfg.Logger.WarnContext(ctx, "ping: undecodable reply", slog.String("subject", subject), slog.String("error", kanade.Clip(err.Error())))
		return nil, huma.Error500InternalServerError("ping " + in.PCID + ": the reply is not a heartbeat: " + kanade.Clip(err.Error()))
	}
	return out, nil
}

func (srv *Server) agentLogs(ctx context.Context, in *logsInput) (*textOutput, error) {
	if err := checkPCID(in.PCID); err != nil {
		return nil, err
	}
	tail, err := uintParam("tail", in.Tail, logsDefaultTail)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(kanade.LogsRequest{TailLines: min(tail, logsMaxTail)})
	if err != nil {
		return nil, huma.Error500InternalServerError("encode the request: " + err.Error())
	}
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	subject := kanade.SubjectLogsFetch(in.PCID)
	raw, err := c.Request(ctx, subject, body, liveTimeouts.logs)
	switch {
	case errors.Is(err, bus.ErrTimeout):
		return nil, huma.NewError(http.StatusGatewayTimeout, fmt.Sprintf("agent %s did not send its log within %v", in.PCID, liveTimeouts.logs))
	case errors.Is(err, bus.ErrNoResponders):
		return nil, huma.NewError(http.StatusBadGateway, fmt.Sprintf("agent %s did not answer: no agent is listening on %s", in.PCID, subject))
	case err != nil:
		if ctx.Err() == nil {
			srv.cfg.Logger.ErrorContext(ctx, "agent logs", slog.String("subject", subject), slog.Any("error", err))
		}
		return nil, huma.NewError(http.StatusBadGateway, "request "+subject+": "+err.Error())
	}
	return &textOutput{ContentType: "text/plain; charset=utf-8", Body: raw}, nil
}

func (srv *Server) resultTail(ctx context.Context, resultID string) (*tailOutput, error) {
	r, err := srv.cfg.DB.GetRun(ctx, resultID)
	if err != nil {
		return nil, srv.readsProblem(ctx, "read the run", "", err)
	}
	if r.FinishedAt != nil {
		return &tailOutput{Body: tailBody{Stdout: deref(r.Stdout), Stderr: deref(r.Stderr), ExitCode: r.ExitCode}}, nil
	}
	waiting := &tailOutput{Body: tailBody{Running: true}}
	if r.PCID == nil || !kanade.ValidPCID(*r.PCID) {
		return waiting, nil // nobody to ask
	}
	reply, err := srv.askTail(ctx, *r.PCID, resultID)
	if err != nil {
		if ctx.Err() == nil {
			srv.cfg.Logger.DebugContext(ctx, "result tail: waiting", slog.String("result_id", kanade.Clip(resultID)), slog.Any("error", err))
		}
		return waiting, nil
	}
	if !reply.Found {
		return waiting, nil
	}
	return &tailOutput{Body: tailBody{Running: reply.Running, Live: true, Stdout: reply.Stdout, Stderr: reply.Stderr,
		StdoutTruncated: reply.StdoutTruncated, StderrTruncated: reply.StderrTruncated}}, nil
}

// askTail asks the agent running resultID for its output so far.
func (srv *Server) askTail(ctx context.Context, pcID, resultID string) (kanade.JobTailReply, error) {
	var reply kanade.JobTailReply
	if srv.cfg.Bus == nil {
		return reply, errors.New("NATS is not configured")
	}
	c, err := srv.cfg.Bus()
	if err != nil {
		return reply, err
	}
	body, err := json.Marshal(kanade.JobTailRequest{ResultID: resultID})
	if err != nil {
		return reply, err
	}
	raw, err := c.Request(ctx, kanade.SubjectJobTail(pcID), body, liveTimeouts.tail)
	if err != nil {
		return reply, err
	}
	if err := json.Unmarshal(raw, &reply); err != nil {
		return reply, fmt.Errorf("decode the reply: %w", err)
	}
	return reply, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
