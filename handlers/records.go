package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// Writing jobs and schedules (control.md §5): POST as the upstream CLI
// sends them (YAML or JSON, parsed strictly), PUT by id (the same parsing),
// the YAML mirrors the dashboard's editor reads, job delete revoking
// first, and schedule disable / enable.
//
// POST answers a failed check with 400 as upstream does; PUT, this
// backend's route, keeps answering 422. Both name the field.

type upsertInput struct {
	ContentType string `header:"Content-Type" doc:"application/yaml (or text/yaml, application/x-yaml, text/x-yaml) for YAML; anything else is read as JSON."`
	RawBody     []byte `doc:"The record as YAML or JSON. Unknown keys are refused at every level, all named in the error."`
}

type putInput struct {
	ID          string `path:"id" doc:"The job or schedule id, which is its KV key; must equal the body's id."`
	ContentType string `header:"Content-Type" doc:"application/yaml (or text/yaml, application/x-yaml, text/x-yaml) for YAML; anything else is read as JSON."`
	RawBody     []byte `doc:"The record as YAML or JSON. Unknown keys are refused at every level, all named in the error."`
}

type jobSummary struct {
	ID          string  `json:"id"`
	Version     string  `json:"version"`
	Description *string `json:"description" doc:"null when the job has none."`
	Inventory   bool    `json:"inventory" doc:"Whether the job carries an inventory hint."`
}

type scheduleSummary struct {
	ID      string `json:"id"`
	When    string `json:"when" doc:"One line: per_pc once, per_pc every 6h, per_target once, at 09:00 [mon-fri]…"`
	Enabled bool   `json:"enabled"`
	JobID   string `json:"job_id"`
}

type yamlOutput struct {
	ContentType string `header:"Content-Type"`
	Body        []byte
}

type disableInput struct {
	ID          string `path:"id" doc:"The schedule id."`
	Cascade     string `query:"cascade" doc:"true also revokes the schedule's job (script_status REVOKED): queued and retained commands of it, from every schedule and exec, are skipped by agents."`
	CascadeKill string `query:"cascade_kill" doc:"true also publishes kill.<exec_id> for every run of the job that started and has not reported."`
}

// decodedJob is a job body that passed every check.
type decodedJob struct {
	m     *kanade.Manifest
	value []byte // the JSON stored in KV jobs
	text  []byte // the YAML text as sent, nil for a JSON body
}

// decodeJob parses and validates a job body; pathID, when not "", must be
// the body's id. bad turns a check's error into the route's problem.
func decodeJob(pathID, contentType string, body []byte, bad func(error) error) (*decodedJob, error) {
	isYAML := kanade.IsYAMLContentType(contentType)
	m, err := kanade.DecodeManifestBody(body, isYAML)
	if err != nil {
		return nil, bad(err)
	}
	if err := m.Validate(); err != nil {
		return nil, bad(err)
	}
	if pathID != "" && m.ID != pathID {
		return nil, bad(&kanade.FieldError{Field: "id", Rule: "must equal the id in the path " + fmt.Sprintf("%q", kanade.Clip(pathID)), Excerpt: kanade.Clip(m.ID)})
	}
	if !kanade.ValidKVKey(m.ID) {
		return nil, bad(invalidKey("id", m.ID))
	}
	value, err := json.Marshal(m)
	if err != nil {
		return nil, bad(fmt.Errorf("manifest: %w", err))
	}
	d := &decodedJob{m: m, value: value}
	if isYAML {
		d.text = body
	}
	return d, nil
}

// storeJob puts a checked job, its mirror and its audit event; bad turns
// a refused inventory table into the route's problem.
func (srv *Server) storeJob(ctx context.Context, d *decodedJob, bad func(error) error) error {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return err
	}
	if err := srv.checkInventoryTables(ctx, d.m, bad); err != nil {
		return err
	}
	rev, err := c.Put(ctx, kanade.BucketJobs, d.m.ID, d.value)
	if err != nil {
		return srv.natsProblem(ctx, "put job", err)
	}
	srv.mirror(ctx, c, kanade.BucketJobsYAML, d.m.ID, d.text, d.value)
	srv.audit(ctx, actionJobUpsert, d.m.ID, map[string]any{"version": d.m.Version, "inventory": len(d.m.Inventory) > 0, "revision": rev})
	return nil
}

// decodedSchedule is a schedule body that passed the checks of its own.
type decodedSchedule struct {
	s     *kanade.Schedule
	value []byte
	text  []byte
}

func decodeSchedule(pathID, contentType string, body []byte, bad func(error) error) (*decodedSchedule, error) {
	isYAML := kanade.IsYAMLContentType(contentType)
	s, err := kanade.DecodeScheduleBody(body, isYAML)
	if err != nil {
		return nil, bad(err)
	}
	key := s.ID
	if pathID != "" {
		key = pathID
	}
	if err := s.Validate(key); err != nil {
		return nil, bad(err)
	}
	if !kanade.ValidKVKey(s.ID) {
		return nil, bad(invalidKey("id", s.ID))
	}
	value, err := kanade.ScheduleBodyJSON(body, isYAML)
	if err != nil {
		return nil, bad(err)
	}
	d := &decodedSchedule{s: s, value: value}
	if isYAML {
		d.text = body
	}
	return d, nil
}

// storeSchedule checks the schedule's job exists, then puts it, its
// mirror and its audit event. unknownJob is the route's problem for a
// job_id no job has.
func (srv *Server) storeSchedule(ctx context.Context, d *decodedSchedule, unknownJob func(error) error) error {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	// Best effort: a job deleted between this check and the Put below leaves
	// a dangling schedule, which the worker reports when it fires. KV offers
	// no transaction across two buckets.
	if _, err := srv.get(ctx, kanade.BucketJobs, d.s.JobID); err != nil {
		if errors.Is(err, errNoSuchKey) {
			return unknownJob(&kanade.FieldError{Field: "job_id",
				Rule: "is an unknown job_id — register the job first (POST /api/jobs)", Excerpt: kanade.Clip(d.s.JobID)})
		}
		return err
	}
	c, err := srv.bus()
	if err != nil {
		return err
	}
	rev, err := c.Put(ctx, kanade.BucketSchedules, d.s.ID, d.value)
	if err != nil {
		return srv.natsProblem(ctx, "put schedule", err)
	}
	srv.mirror(ctx, c, kanade.BucketSchedulesYAML, d.s.ID, d.text, d.value)
	srv.audit(ctx, actionScheduleUpsert, d.s.ID, map[string]any{"when": d.s.DisplayWhen(), "job_id": d.s.JobID,
		"enabled": d.s.Enabled, "revision": rev})
	return nil
}

// mirror writes the YAML mirror of a record (control.md §5.3): the text as
// sent, or a rendering of the stored JSON. Only the dashboard's editor
// reads it, so a failure is logged and the write stands.
func (srv *Server) mirror(ctx context.Context, c *bus.Client, bucket, id string, text, value []byte) {
	if text == nil {
		var err error
		if text, err = kanade.RenderYAML(value); err != nil {
			srv.cfg.Logger.WarnContext(ctx, "YAML mirror not rendered", slog.String("bucket", bucket), slog.String("id", kanade.Clip(id)), slog.Any("error", err))
			return
		}
	}
	if _, err := c.Put(ctx, bucket, id, text); err != nil {
		srv.cfg.Logger.WarnContext(ctx, "YAML mirror not written", slog.String("bucket", bucket), slog.String("id", kanade.Clip(id)), slog.Any("error", err))
	}
}

func (srv *Server) registerRecords(api huma.API) {
	register(api, huma.Operation{OperationID: "create-job", Method: http.MethodPost, Path: "/api/jobs",
		Summary: "Create or replace a job (the CLI's job create)", Tags: []string{"manage"},
		Description: "The manifest as YAML (Content-Type application/yaml; comments are kept in the YAML mirror) or JSON. " +
			"Unknown keys, a second script source or a broken rule answer 400 naming every field. Stores it in KV jobs, " +
			"the text in jobs_yaml, audits job_upsert and answers {id, version, description, inventory}."},
		func(ctx context.Context, in *upsertInput) (*struct{ Body jobSummary }, error) {
			d, err := decodeJob("", in.ContentType, in.RawBody, bodyProblemNoPrefix)
			if err != nil {
				return nil, err
			}
			if err := srv.storeJob(ctx, d, bodyProblemNoPrefix); err != nil {
				return nil, err
			}
			var desc *string
			if d.m.Description != "" {
				desc = &d.m.Description
			}
			return &struct{ Body jobSummary }{jobSummary{ID: d.m.ID, Version: d.m.Version, Description: desc, Inventory: len(d.m.Inventory) > 0}}, nil
		})
	register(api, huma.Operation{OperationID: "create-schedule", Method: http.MethodPost, Path: "/api/schedules",
		Summary: "Create or replace a schedule (the CLI's schedule create)", Tags: []string{"manage"},
		Description: "The schedule as YAML or JSON, parsed strictly like POST /api/jobs; its job_id must name a job (400 otherwise). " +
			"Stores it in KV schedules (the worker picks it up at once), the text in schedules_yaml, audits schedule_upsert " +
			"and answers {id, when, enabled, job_id}."},
		func(ctx context.Context, in *upsertInput) (*struct{ Body scheduleSummary }, error) {
			d, err := decodeSchedule("", in.ContentType, in.RawBody, bodyProblemNoPrefix)
			if err != nil {
				return nil, err
			}
			if err := srv.storeSchedule(ctx, d, bodyProblemNoPrefix); err != nil {
				return nil, err
			}
			return &struct{ Body scheduleSummary }{scheduleSummary{ID: d.s.ID, When: d.s.DisplayWhen(), Enabled: d.s.Enabled, JobID: d.s.JobID}}, nil
		})
	register(api, huma.Operation{OperationID: "put-job", Method: http.MethodPut, Path: "/api/jobs/{id}",
		Summary: "Create or replace a job manifest", Tags: []string{"manage"},
		Description: "Like POST /api/jobs (YAML or JSON, strict), with the id in the path (it must equal the body's); " +
			"a failed check answers 422 naming the field. Answers the stored JSON."},
		func(ctx context.Context, in *putInput) (*manageValueOutput, error) {
			d, err := decodeJob(in.ID, in.ContentType, in.RawBody, invalid)
			if err != nil {
				return nil, err
			}
			if err := srv.storeJob(ctx, d, invalid); err != nil {
				return nil, err
			}
			return &manageValueOutput{Body: d.value}, nil
		})
	register(api, huma.Operation{OperationID: "put-schedule", Method: http.MethodPut, Path: "/api/schedules/{id}",
		Summary: "Create or replace a schedule", Tags: []string{"manage"},
		Description: "Like POST /api/schedules (YAML or JSON, strict), with the id in the path (it must equal the body's); " +
			"a failed check, an unknown job_id included, answers 422 naming the field. Answers the stored JSON."},
		func(ctx context.Context, in *putInput) (*manageValueOutput, error) {
			d, err := decodeSchedule(in.ID, in.ContentType, in.RawBody, invalid)
			if err != nil {
				return nil, err
			}
			if err := srv.storeSchedule(ctx, d, invalid); err != nil {
				return nil, err
			}
			return &manageValueOutput{Body: d.value}, nil
		})
	for _, k := range []struct{ noun, bucket, mirror string }{
		{"job", kanade.BucketJobs, kanade.BucketJobsYAML}, {"schedule", kanade.BucketSchedules, kanade.BucketSchedulesYAML}} {
		register(api, huma.Operation{OperationID: "get-" + k.noun + "-yaml", Method: http.MethodGet, Path: "/api/" + k.noun + "s/{id}/yaml",
			Summary: "A " + k.noun + " as YAML", Tags: []string{"manage"},
			Description: "The YAML text last sent for it (comments kept), or a YAML rendering of the stored JSON when it was sent " +
				"as JSON or before mirrors existed. 404 when there is no such " + k.noun + "."},
			func(ctx context.Context, in *manageIDInput) (*yamlOutput, error) {
				return srv.recordYAML(ctx, k.noun, k.bucket, k.mirror, in.ID)
			})
	}
	register(api, huma.Operation{OperationID: "disable-schedule", Method: http.MethodPost, Path: "/api/schedules/{id}/disable",
		Summary: "Disable a schedule", Tags: []string{"manage"}, DefaultStatus: http.StatusNoContent,
		Description: "Sets enabled false (compare-and-set on the KV revision: 409 when it changed meanwhile) and in the YAML mirror. " +
			"cascade=true also revokes the job; cascade_kill=true also signals its unfinished runs (best effort). Audits schedule_disable."},
		func(ctx context.Context, in *disableInput) (*struct{}, error) {
			cascade, err := queryBool("cascade", in.Cascade)
			if err != nil {
				return nil, err
			}
			kill, err := queryBool("cascade_kill", in.CascadeKill)
			if err != nil {
				return nil, err
			}
			return nil, srv.setEnabled(ctx, in.ID, false, cascade, kill)
		})
	register(api, huma.Operation{OperationID: "enable-schedule", Method: http.MethodPost, Path: "/api/schedules/{id}/enable",
		Summary: "Enable a schedule", Tags: []string{"manage"}, DefaultStatus: http.StatusNoContent,
		Description: "Sets enabled true (compare-and-set; 409 when it changed meanwhile) and in the YAML mirror; nothing when it already is. " +
			"It does not unrevoke a job revoked by a cascading disable (POST /api/scripts/{job_id}/unrevoke)."},
		func(ctx context.Context, in *manageIDInput) (*struct{}, error) {
			return nil, srv.setEnabled(ctx, in.ID, true, false, false)
		})
}

// queryBool reads an optional true/false query parameter (absent: false);
// anything else is a 400 naming it, before any side effect.
func queryBool(name, v string) (bool, error) {
	switch v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, huma.Error400BadRequest(fmt.Sprintf("query parameter %s %q must be true or false", name, kanade.Clip(v)),
		&huma.ErrorDetail{Location: "query." + name, Message: "must be true or false", Value: kanade.Clip(v)})
}

// bodyProblemNoPrefix is bodyProblem for an error that says what it is.
func bodyProblemNoPrefix(err error) error { return bodyProblem("", err) }

func (srv *Server) recordYAML(ctx context.Context, noun, bucket, mirror, id string) (*yamlOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	out := &yamlOutput{ContentType: "application/yaml"}
	e, err := srv.get(ctx, mirror, id)
	switch {
	case err == nil && utf8.Valid(e.Value):
		out.Body = e.Value
		return out, nil
	case err != nil && !errors.Is(err, errNoSuchKey) && !isNoBucket(errors.Unwrap(err)):
		srv.cfg.Logger.WarnContext(ctx, "YAML mirror not read; rendering the record", slog.String("bucket", mirror), slog.Any("error", err))
	}
	e, err = srv.get(ctx, bucket, id)
	if errors.Is(err, errNoSuchKey) {
		return nil, huma.Error404NotFound(fmt.Sprintf("%s '%s' not found", noun, id))
	}
	if err != nil {
		return nil, err
	}
	if out.Body, err = kanade.RenderYAML(e.Value); err != nil {
		return nil, huma.Error500InternalServerError(fmt.Sprintf("the stored %s '%s' cannot be rendered as YAML: %v", noun, id, err))
	}
	return out, nil
}

// setEnabled is disable and enable (control.md §5.7).
func (srv *Server) setEnabled(ctx context.Context, id string, enabled, cascade, cascadeKill bool) error {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	e, s, err := srv.schedule(ctx, id)
	if err != nil {
		return err
	}
	c, err := srv.bus()
	if err != nil {
		return err
	}
	if s.Enabled != enabled {
		value, err := withEnabled(e.Value, enabled)
		if err != nil {
			return huma.Error500InternalServerError(fmt.Sprintf("the stored schedule '%s': %v", id, err))
		}
		if _, err := c.Update(ctx, kanade.BucketSchedules, id, value, e.Revision); err != nil {
			if errors.Is(err, bus.ErrChanged) {
				return huma.Error409Conflict(fmt.Sprintf("schedule '%s' changed while it was being %s; look at it again", id, map[bool]string{true: "enabled", false: "disabled"}[enabled]))
			}
			return srv.natsProblem(ctx, "update schedule", err)
		}
		srv.patchMirror(ctx, c, id, enabled, value)
	} else if enabled {
		return nil // already enabled: no write, no audit
	}
	if enabled {
		srv.audit(ctx, "schedule_enable", id, map[string]any{"job_id": s.JobID})
		return nil
	}
	if cascade {
		if err := c.SetScriptStatus(ctx, s.JobID, bus.ScriptRevoked); err != nil {
			if isNoBucket(err) {
				return srv.natsProblem(ctx, "revoke "+s.JobID, err)
			}
			srv.cfg.Logger.ErrorContext(ctx, "revoke on disable", slog.Any("error", err))
			return huma.Error500InternalServerError(fmt.Sprintf("schedule '%s' is disabled, but revoking job '%s' failed: %v", id, s.JobID, err))
		}
	}
	killed := 0
	if cascadeKill {
		// Best effort: only agents online now can act on a kill anyway.
		ids, err := srv.cfg.DB.UnfinishedExecIDs(ctx, s.JobID)
		if err != nil {
			srv.cfg.Logger.ErrorContext(ctx, "cascade_kill: list unfinished runs", slog.Any("error", err))
		}
		for _, x := range ids {
			if err := c.Kill(ctx, x); err != nil {
				srv.cfg.Logger.ErrorContext(ctx, "cascade_kill: publish kill", slog.String("exec_id", x), slog.Any("error", err))
				continue
			}
			killed++
		}
	}
	srv.audit(ctx, "schedule_disable", id, map[string]any{"cascade": cascade, "cascade_kill": cascadeKill, "killed_execs": killed, "job_id": s.JobID})
	return nil
}

// withEnabled sets the top-level "enabled" of a stored JSON object, the
// other members kept as they are.
func withEnabled(value []byte, enabled bool) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(value, &m); err != nil {
		return nil, err
	}
	m["enabled"] = json.RawMessage(map[bool]string{true: "true", false: "false"}[enabled])
	return json.Marshal(m)
}

// patchMirror changes the enabled line of the schedule's YAML mirror, the
// rest of the operator's text untouched; without a mirror it renders one.
func (srv *Server) patchMirror(ctx context.Context, c *bus.Client, id string, enabled bool, value []byte) {
	var text []byte
	if e, err := c.Get(ctx, kanade.BucketSchedulesYAML, id); err == nil && utf8.Valid(e.Value) {
		text = kanade.PatchEnabled(e.Value, enabled)
	}
	srv.mirror(ctx, c, kanade.BucketSchedulesYAML, id, text, value)
}

// deleteMirror removes a deleted record's YAML mirror (upstream leaves it;
// a stale mirror would show a deleted job in the editor).
func (srv *Server) deleteMirror(ctx context.Context, c *bus.Client, bucket, id string) {
	if err := c.Delete(ctx, bucket, id, 0); err != nil && !errors.Is(err, bus.ErrNotFound) {
		srv.cfg.Logger.WarnContext(ctx, "YAML mirror not deleted", slog.String("bucket", bucket), slog.String("id", kanade.Clip(id)), slog.Any("error", err))
	}
}
