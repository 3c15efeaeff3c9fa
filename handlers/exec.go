package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/fanout"
)

// POST /api/exec/{job_id} (control.md §1) and POST /api/run (§2): an
// operator sends a registered job, or an inline script, to PCs now. Freeze
// does not apply to either: it stops automation, not an operator.

type execInput struct {
	JobID       string `path:"job_id" doc:"The job (manifest id in KV jobs) to send."`
	ContentType string `header:"Content-Type" doc:"application/json"`
	RawBody     []byte `doc:"A FanoutPlan: {\"target\":{\"all\":bool,\"groups\":[…],\"pcs\":[…]},\"rollout\":{\"strategy\":\"wave\",\"waves\":[{\"group\":\"canary\",\"delay\":\"0s\"},…]},\"jitter\":\"5m\",\"deadline_at\":\"RFC 3339\"}; unknown keys are ignored."`
}

type execBody struct {
	ExecID      string   `json:"exec_id" doc:"The new execution (GET /api/executions/{exec_id}); kill.<exec_id> stops it."`
	JobID       string   `json:"job_id"`
	Version     string   `json:"version" doc:"The manifest version sent (agents skip a command whose version is not script_current's)."`
	TargetCount int64    `json:"target_count" doc:"PCs expected to answer: alive members of the target (pcs verbatim), at least 1; the execution completes when that many answered."`
	Subjects    []string `json:"subjects" doc:"Every subject of the execution in order, delayed waves included."`
}

type execOutput struct {
	Body execBody
}

type runInput struct {
	ContentType string `header:"Content-Type" doc:"application/json"`
	RawBody     []byte `doc:"{\"pc_id\":\"PC-1\",\"script\":\"hostname\",\"shell\":\"powershell|ps|cmd|pwsh|sh\",\"timeout_secs\":60,\"exec_id\":\"optional\",\"jitter_secs\":0,\"run_as\":\"system|user|system_gui\"}; unknown keys are ignored."`
}

func (srv *Server) registerExec(api huma.API) {
	register(api, huma.Operation{OperationID: "exec-job", Method: http.MethodPost, Path: "/api/exec/{job_id}",
		Summary: "Send a registered job to PCs now", Tags: []string{"control"},
		Description: "Validates the FanoutPlan (nothing is published on any error), counts the PCs expected to answer, " +
			"pins script_current to the job's version, records the execution, publishes one command per subject through " +
			"JetStream (Nats-Msg-Id <exec_id>:<subject>, so a retried publish is stored once) and audits exec. " +
			"Waves with a delay are stored and sent by the worker when due, also after a restart. " +
			"404 unknown job or script object; 400 invalid plan or manifest; 415 not JSON; 502 publish failed; 503 NATS down."},
		func(ctx context.Context, in *execInput) (*execOutput, error) {
			return srv.exec(ctx, in)
		})
	register(api, huma.Operation{OperationID: "run-script", Method: http.MethodPost, Path: "/api/run",
		Summary: "Run an inline script on one PC and wait for its result", Tags: []string{"control"},
		Description: "Publishes an adhoc-run command on commands.pc.<pc_id> and answers the agent's result as it sent it " +
			"(output moved to the object store is fetched back), waiting timeout_secs + 10 s at most (408 after). " +
			"timeout_secs is capped at 3600. No execution row; the audit event run keeps the first 500 characters of the script."},
		func(ctx context.Context, in *runInput) (*manageValueOutput, error) {
			return srv.run(ctx, in)
		})
}

// withRunDeadline lifts the server's write timeout for the requests that
// wait on an agent longer than it allows: POST /api/run holds the request
// for up to timeout_secs + 10 s, POST /api/agents/{pc_id}/ping for up to
// 60 s (the shells' servers cut a response after 60 s, which would end
// them with a reset connection instead of their answer or a 408). Where
// the writer cannot change its deadline (a test recorder, Lambda) nothing
// changes.
func withRunDeadline(next http.Handler) http.Handler {
	runLimit := time.Duration(kanade.MaxRunTimeoutSecs)*time.Second + kanade.RunGrace + 30*time.Second
	pingLimit := pingMaxSecs*time.Second + 30*time.Second
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			switch p := r.URL.Path; {
			case p == "/api/run":
				_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(runLimit))
			case strings.HasPrefix(p, "/api/agents/") && strings.HasSuffix(p, "/ping"):
				_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(pingLimit))
			}
		}
		next.ServeHTTP(w, r)
	})
}

// requireJSON answers 415 for a body that is not declared JSON, as
// upstream's JSON extractor does.
func requireJSON(contentType string) error {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return huma.NewError(http.StatusUnsupportedMediaType,
			fmt.Sprintf("Content-Type %q: the body must be application/json", kanade.Clip(contentType)))
	}
	return nil
}

// bodyProblem turns a decode or validation error of a body into 400 (as
// upstream answers a body that fails validation), naming the field when
// the error does.
func bodyProblem(prefix string, err error) error {
	var fe *kanade.FieldError
	msg := prefix + err.Error()
	if errors.As(err, &fe) {
		return huma.Error400BadRequest(msg, &huma.ErrorDetail{Location: "body." + fe.Field, Message: fe.Error(), Value: fe.Excerpt})
	}
	return huma.Error400BadRequest(msg)
}

// callerKeys are the sub and source of the audit payloads (control.md §0.2).
func callerKeys(ctx context.Context) map[string]any {
	p := map[string]any{}
	if caller, ok := auth.CallerFrom(ctx); ok {
		p["sub"] = caller.Subject
	}
	if s, ok := ctx.Value(sourceKey{}).(string); ok {
		p["source"] = s
	}
	return p
}

func (srv *Server) exec(ctx context.Context, in *execInput) (*execOutput, error) {
	id := in.JobID
	if !kanade.ValidKVKey(id) {
		return nil, badToken("job_id", id, ruleKVKey)
	}
	if err := requireJSON(in.ContentType); err != nil {
		return nil, err
	}
	plan, err := kanade.DecodeFanoutPlan(in.RawBody)
	if err != nil {
		return nil, bodyProblem("", err)
	}
	ctx, cancel := context.WithTimeout(ctx, execTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	// §1.2 step 1: the job.
	e, err := srv.get(ctx, kanade.BucketJobs, id)
	if err != nil {
		if errors.Is(err, errNoSuchKey) {
			return nil, huma.Error404NotFound(fmt.Sprintf("job '%s' not found in catalog — register it first", id))
		}
		return nil, err
	}
	// Steps 2, 5 (jitter, delays) and 6.
	if err := plan.Validate(); err != nil {
		return nil, bodyProblem("", err)
	}
	// Step 3: the stored manifest is checked again (a value put behind the
	// API's back, or by an older backend).
	m, err := kanade.ParseManifest(id, e.Value)
	if err != nil {
		return nil, huma.Error400BadRequest("stored job '" + id + "' is invalid: " + err.Error())
	}
	opts := plan.CommandOptions()
	// Step 4: a script object is sent with its digest, so agents refuse a
	// different body.
	if name := m.Execute.ScriptObject; name != "" {
		digest, err := c.ScriptDigest(ctx, name)
		switch {
		case errors.Is(err, bus.ErrNoBucket):
			return nil, huma.Error503ServiceUnavailable("object store " + kanade.ObjectScripts + " does not exist")
		case errors.Is(err, bus.ErrNotFound):
			return nil, huma.Error404NotFound(fmt.Sprintf("script object '%s' not found in %s", name, kanade.ObjectScripts))
		case err != nil:
			return nil, srv.natsProblem(ctx, "read script object "+name, err)
		}
		opts.ScriptObjectSHA256 = digest
	}
	// A dry build of the command catches what only it checks, before the
	// execution is recorded.
	if _, err := m.Command(opts); err != nil {
		return nil, huma.Error400BadRequest("job '" + id + "': " + err.Error())
	}

	f, err := fanout.New(fanout.Config{DB: srv.cfg.DB, Bus: c, StaleThreshold: srv.cfg.StaleThreshold,
		Clock: srv.cfg.Clock, Logger: srv.cfg.Logger})
	if err != nil {
		return nil, err
	}
	now := srv.cfg.Clock()
	subjects := plan.Subjects()
	count, err := f.TargetCount(ctx, plan.ExpectedTarget(), now)
	if err != nil {
		// §1.3: fall back to the subjects, and say so.
		count = max(int64(len(subjects)), 1)
		srv.cfg.Logger.WarnContext(ctx, "exec: target_count falls back to the subject count", slog.String("job", kanade.Clip(id)),
			slog.Int64("target_count", count), slog.Any("error", err))
	}
	o, err := f.Send(ctx, fanout.Exec{Manifest: m, Subjects: subjects, Rollout: plan.Rollout, At: now, Options: opts,
		TargetCount: count, Actor: operatorActor, Audit: callerKeys(ctx)})
	if err != nil {
		if errors.Is(err, fanout.ErrPublish) {
			srv.cfg.Logger.ErrorContext(ctx, "exec: publish failed", slog.String("job", kanade.Clip(id)),
				slog.String("exec_id", o.ExecID), slog.Int("published", o.Published), slog.Any("error", err))
			return nil, huma.NewError(http.StatusBadGateway, "publish to "+strings.Join(firstN(o.Subjects, 3), ", ")+": "+err.Error())
		}
		return nil, srv.dbProblem(ctx, "record the execution", err)
	}
	return &execOutput{Body: execBody{ExecID: o.ExecID, JobID: m.ID, Version: m.Version, TargetCount: count, Subjects: o.Subjects}}, nil
}

const (
	// execTimeout bounds an exec request: the reads, the record and up to
	// 10k publishes.
	execTimeout = 30 * time.Second
	// runOutputLimit caps the output of a run fetched back from the object
	// store into the answer.
	runOutputLimit = 1 << 20
)

func (srv *Server) run(ctx context.Context, in *runInput) (*manageValueOutput, error) {
	if err := requireJSON(in.ContentType); err != nil {
		return nil, err
	}
	r, err := kanade.DecodeRunRequest(in.RawBody)
	if err != nil {
		return nil, bodyProblem("", err)
	}
	requestID := kanade.NewUUID()
	cmd, err := r.Command(requestID)
	if err != nil {
		return nil, bodyProblem("", err)
	}
	data, err := json.Marshal(cmd)
	if err != nil {
		return nil, huma.Error500InternalServerError("encode the command: " + err.Error())
	}
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	// Subscribe before publishing, so the answer cannot be missed.
	resultSubject := strings.TrimSuffix(kanade.SubjectResults, ">") + requestID
	wait, err := c.Await(ctx, resultSubject)
	if err != nil {
		return nil, srv.natsProblem(ctx, "subscribe "+resultSubject, err)
	}
	defer wait.Close()
	// Through Commands, the one path of a Command to the wire (it signs
	// when the backend has a key); the request_id is the Nats-Msg-Id.
	pctx, cancel := context.WithTimeout(ctx, manageTimeout)
	_, err = c.Commands(pctx, []bus.Outgoing{{Subject: r.Subject(), Data: data, MsgID: requestID}})
	cancel()
	if err != nil {
		srv.cfg.Logger.ErrorContext(ctx, "run: publish failed", slog.String("subject", r.Subject()), slog.Any("error", err))
		return nil, huma.NewError(http.StatusBadGateway, "publish to "+r.Subject()+": "+err.Error())
	}
	// The command is out: audit now, whether or not an answer comes.
	p := r.AuditPayload(requestID)
	srv.audit(ctx, "run", r.PCID, p)

	wctx, cancel := context.WithTimeout(ctx, r.Wait())
	defer cancel()
	res, err := wait.Next(wctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, huma.NewError(http.StatusRequestTimeout, "timeout waiting for result on "+resultSubject)
		}
		if ctx.Err() != nil {
			return nil, huma.NewError(http.StatusRequestTimeout, "the request ended before the result on "+resultSubject)
		}
		return nil, srv.natsProblem(ctx, "wait on "+resultSubject, err)
	}
	out, err := srv.withOutput(ctx, c, res)
	if err != nil {
		return nil, err
	}
	return &manageValueOutput{Body: out}, nil
}

// withOutput answers the result as the agent sent it, except that output
// the agent moved to the object store is fetched back into stdout/stderr,
// so the caller sees the text.
func (srv *Server) withOutput(ctx context.Context, c *bus.Client, raw []byte) ([]byte, error) {
	var r kanade.ExecResult
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, huma.Error500InternalServerError("decode the result: " + err.Error())
	}
	if r.StdoutObject == "" && r.StderrObject == "" {
		return raw, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, huma.Error500InternalServerError("decode the result: " + err.Error())
	}
	for _, o := range []struct{ key, field string }{{r.StdoutObject, "stdout"}, {r.StderrObject, "stderr"}} {
		if o.key == "" {
			continue
		}
		octx, cancel := context.WithTimeout(ctx, manageTimeout)
		text, _, _, err := c.Output(octx, o.key, runOutputLimit)
		cancel()
		if err != nil {
			srv.cfg.Logger.WarnContext(ctx, "run: output object not fetched", slog.String("object", kanade.Clip(o.key)), slog.Any("error", err))
			continue
		}
		b, _ := json.Marshal(text)
		m[o.field] = b
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, huma.Error500InternalServerError("encode the result: " + err.Error())
	}
	return b, nil
}
