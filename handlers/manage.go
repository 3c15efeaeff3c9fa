package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// The manage endpoints of api.md "Read and manage endpoints": job manifests in
// KV "jobs" and schedules in KV "schedules", read and written by operators,
// plus the upcoming calendar firings. Unlike the read endpoints they talk to
// JetStream, not the database: the KV buckets are the source of truth the
// worker and the agents read, so the API must show exactly what is stored,
// broken entries included.
//
// Shapes:
//   - GET /api/jobs/{id} and GET /api/schedules/{id} answer the stored JSON
//     value byte for byte, so GET, edit, PUT round-trips.
//   - PUT takes the whole object, validates it (422 naming the field), and
//     answers 200 with the value as stored.
//   - DELETE answers 204; a missing key is 404.
//   - Lists answer {"items": [item...]} sorted by key, every item an envelope
//     {key, revision, updated_at, value, error?, raw?}: value is the stored
//     JSON; error says why it does not parse or validate (the worker skips such
//     an entry, so operators must see it); raw carries the text of a value that
//     is not JSON at all. An envelope rather than the bare object because a
//     manifest may carry any unknown field, "error" or "key" included, and the
//     two must not be confused.
//
// Every change publishes an audit event (job_upsert, job_delete,
// schedule_upsert, schedule_delete) on the AUDIT stream.

// manageTimeout bounds the NATS round trips of one manage request, so an
// unreachable NATS gives a fast 503 instead of a hung request.
const manageTimeout = 5 * time.Second

// upcomingMax is the largest limit of GET /api/schedules/upcoming; it must
// equal the maximum tag on upcomingInput.
const upcomingMax = 500

// Audit actions of the manage endpoints.
const (
	actionJobUpsert      = "job_upsert"
	actionJobDelete      = "job_delete"
	actionScheduleUpsert = "schedule_upsert"
	actionScheduleDelete = "schedule_delete"
)

// jsonValue is a JSON value passed through byte for byte: a stored KV value
// in a response, or a request body. Keeping the bytes (rather than a
// map[string]any) preserves unknown fields, their order and large numbers.
type jsonValue []byte

// MarshalJSON writes the bytes as they are (encoding/json checks they are JSON).
func (v jsonValue) MarshalJSON() ([]byte, error) {
	if len(v) == 0 {
		return []byte("null"), nil
	}
	return v, nil
}

// UnmarshalJSON keeps a copy of the bytes.
func (v *jsonValue) UnmarshalJSON(b []byte) error {
	*v = append((*v)[:0], b...)
	return nil
}

// Schema documents a free-form object: the manifest and schedule shapes are
// defined in wire.md and scheduler.md, and unknown fields are allowed.
func (jsonValue) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{Type: huma.TypeObject, AdditionalProperties: true,
		Description: "A Manifest (wire.md) or a Schedule (scheduler.md) as JSON; unknown fields are kept."}
}

// manageItem is one entry of a list: see the shapes above.
type manageItem struct {
	Key       string           `json:"key" doc:"The KV key (the job or schedule id)."`
	Revision  uint64           `json:"revision" doc:"The KV revision of the value."`
	UpdatedAt kanade.Timestamp `json:"updated_at" format:"date-time" doc:"When this revision was written."`
	Value     jsonValue        `json:"value,omitempty" doc:"The stored JSON; absent when the value is not JSON at all (see raw)."`
	Error     string           `json:"error,omitempty" doc:"Why the value does not parse or validate; absent when it is fine. The worker skips such an entry."`
	Raw       string           `json:"raw,omitempty" doc:"The stored text, only when it is not JSON."`
}

type manageListOutput struct {
	Body struct {
		Items []manageItem `json:"items"`
	}
}

type manageValueOutput struct {
	Body jsonValue
}

type manageIDInput struct {
	ID string `path:"id" doc:"The job or schedule id, which is its KV key."`
}

type managePutInput struct {
	ID   string    `path:"id" doc:"The job or schedule id, which is its KV key; must equal the body's id."`
	Body jsonValue `required:"true"`
}

type upcomingInput struct {
	Limit int `query:"limit" minimum:"1" maximum:"500" default:"20" doc:"How many firings to list."`
}

type upcomingOutput struct {
	Body struct {
		Items []kanade.Firing `json:"items"`
	}
}

func (srv *Server) registerManage(api huma.API) {
	op := func(method, id, path, summary, description string) huma.Operation {
		o := huma.Operation{OperationID: id, Method: method, Path: path,
			Summary: summary, Description: description, Tags: []string{"manage"}, MaxBodyBytes: maxBodyBytes}
		if method == http.MethodDelete {
			o.DefaultStatus = http.StatusNoContent
		}
		return o
	}
	const listDoc = `All entries sorted by key, as {"items": [...]}. Each item is {key, revision, updated_at, value, error?, raw?}: ` +
		`value is the stored JSON; error, present only when the value does not parse or validate, says why (such an entry is listed, not hidden); ` +
		`raw holds the stored text when it is not JSON at all (value is then absent).`
	const getDoc = `The stored value byte for byte (PUT it back after editing). A value that does not validate is still returned; the list says what is wrong with it. ` +
		`A value that is not JSON at all cannot be, and answers 500 pointing at the list, which shows its text.`

	jobs := manageKind{bucket: kanade.BucketJobs, noun: "job", upsert: actionJobUpsert, del: actionJobDelete,
		parse:  func(key string, data []byte) error { _, err := kanade.ParseManifest(key, data); return err },
		plural: "Job manifests", title: "job manifest", put: srv.putJob, remove: srv.deleteJob,
		putDoc: "Validates the manifest (422 naming the field), requires its id to equal the path's, stores it in KV jobs with its unknown fields, " +
			"publishes the audit event job_upsert and answers the stored value.",
		deleteDoc: "404 when there is no such job; 409 naming the schedules that still run it. Publishes the audit event job_delete."}
	schedules := manageKind{bucket: kanade.BucketSchedules, noun: "schedule", upsert: actionScheduleUpsert, del: actionScheduleDelete,
		parse:  func(key string, data []byte) error { _, err := kanade.ParseSchedule(key, data); return err },
		plural: "Schedules", title: "schedule", put: srv.putSchedule,
		remove: func(ctx context.Context, k manageKind, id string) error { return srv.deleteEntry(ctx, k, id, nil) },
		putDoc: "Validates the whole schedule (422 naming the field; its id must equal the path's) and that its job_id names a job in KV jobs, " +
			"stores the body as sent, publishes the audit event schedule_upsert and answers the stored value.",
		deleteDoc: "404 when there is no such schedule. Publishes the audit event schedule_delete."}

	// Registered before /api/schedules/{id}; net/http prefers the literal
	// path anyway, so a schedule named "upcoming" is reachable by PUT and
	// DELETE and in the list, but not by GET /api/schedules/upcoming.
	huma.Register(api, op(http.MethodGet, "upcoming-schedules", "/api/schedules/upcoming", "Upcoming calendar firings",
		"The next fire instants after now of the calendar schedules the worker drives (enabled, runs_on backend), soonest first, then by schedule id; "+
			"a daily schedule appears once per day in the list. Values that do not validate are skipped (GET /api/schedules shows them)."),
		func(ctx context.Context, in *upcomingInput) (*upcomingOutput, error) {
			return srv.upcoming(ctx, in.Limit)
		})
	for _, k := range []manageKind{jobs, schedules} {
		list, one := "/api/"+k.noun+"s", "/api/"+k.noun+"s/{id}"
		huma.Register(api, op(http.MethodGet, "list-"+k.noun+"s", list, k.plural, listDoc),
			func(ctx context.Context, _ *struct{}) (*manageListOutput, error) { return srv.manageList(ctx, k) })
		huma.Register(api, op(http.MethodGet, "get-"+k.noun, one, "One "+k.title, getDoc),
			func(ctx context.Context, in *manageIDInput) (*manageValueOutput, error) {
				return srv.manageGet(ctx, k, in.ID)
			})
		huma.Register(api, op(http.MethodPut, "put-"+k.noun, one, "Create or replace a "+k.title, k.putDoc),
			func(ctx context.Context, in *managePutInput) (*manageValueOutput, error) {
				return k.put(ctx, in.ID, in.Body)
			})
		huma.Register(api, op(http.MethodDelete, "delete-"+k.noun, one, "Delete a "+k.title, k.deleteDoc),
			func(ctx context.Context, in *manageIDInput) (*struct{}, error) { return nil, k.remove(ctx, k, in.ID) })
	}
}

// manageKind is what differs between the jobs and the schedules endpoints.
type manageKind struct {
	bucket, noun, upsert, del string
	// parse reports why a stored value is unusable (nil when it is fine).
	parse func(key string, data []byte) error
	// plural and title name the kind in the operations' summaries ("Job
	// manifests", "job manifest"); putDoc and deleteDoc describe its PUT and
	// DELETE.
	plural, title, putDoc, deleteDoc string
	// put validates and stores a body; remove deletes an entry after the
	// kind's own checks.
	put    func(ctx context.Context, id string, body jsonValue) (*manageValueOutput, error)
	remove func(ctx context.Context, k manageKind, id string) error
}

// invalid is the 422 of a body that does not validate, the one place where
// a validation error becomes a problem. A *kanade.FieldError in err's chain
// names the field, and the problem's location points at it
// (body.execute.shell, body.when.calendar.days[0]); any other error is about
// the body as a whole (location body). The detail is the error's text.
func invalid(err error) error {
	msg := err.Error()
	loc := "body"
	var fe *kanade.FieldError
	if errors.As(err, &fe) {
		loc += "." + fe.Field
	}
	return huma.Error422UnprocessableEntity(msg, &huma.ErrorDetail{Location: loc, Message: msg})
}

// invalidKey is the FieldError of a field whose value cannot be a KV key.
func invalidKey(field, value string) error {
	return &kanade.FieldError{Field: field, Rule: "must be a KV key (letters, digits and - / _ = .)", Excerpt: kanade.Clip(value)}
}

// bus is the current JetStream client, or a 503 problem saying why there is
// none.
func (srv *Server) bus() (*bus.Client, error) {
	if srv.cfg.Bus == nil {
		return nil, huma.Error503ServiceUnavailable("NATS is not configured")
	}
	c, err := srv.cfg.Bus()
	if err != nil {
		return nil, huma.Error503ServiceUnavailable(err.Error())
	}
	return c, nil
}

// natsProblem maps a NATS error to 503 (the only errors left once input has
// been checked are NATS being unreachable, slow or not bootstrapped), logged
// here, at the edge.
func (srv *Server) natsProblem(ctx context.Context, what string, err error) error {
	srv.cfg.Logger.ErrorContext(ctx, what, slog.Any("error", err))
	if errors.Is(err, bus.ErrNotFound) {
		return huma.Error503ServiceUnavailable(what + ": the bucket does not exist (NATS not bootstrapped?)")
	}
	return huma.Error503ServiceUnavailable(what + ": NATS is unavailable")
}

// entries lists bucket, or answers why not.
func (srv *Server) entries(ctx context.Context, bucket string) ([]bus.Entry, error) {
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	es, err := c.Entries(ctx, bucket)
	if err != nil {
		return nil, srv.natsProblem(ctx, "list KV "+bucket, err)
	}
	return es, nil
}

// errNoSuchKey says a get found no key (404 for the entry itself, 422 for a
// reference to it).
var errNoSuchKey = errors.New("no such key")

// get reads id from bucket; an id that could never be a key is simply not
// found, not a NATS failure.
func (srv *Server) get(ctx context.Context, bucket, id string) (bus.Entry, error) {
	c, err := srv.bus()
	if err != nil {
		return bus.Entry{}, err
	}
	if !kanade.ValidKVKey(id) {
		return bus.Entry{}, errNoSuchKey
	}
	e, err := c.Get(ctx, bucket, id)
	switch {
	case errors.Is(err, bus.ErrNotFound) && !errors.Is(err, bus.ErrNoBucket):
		return bus.Entry{}, errNoSuchKey
	case err != nil:
		return bus.Entry{}, srv.natsProblem(ctx, "get "+bucket, err)
	}
	return e, nil
}

// getEntry is get for the entry a route names: 404 when it is not there.
func (srv *Server) getEntry(ctx context.Context, k manageKind, id string) (bus.Entry, error) {
	e, err := srv.get(ctx, k.bucket, id)
	if errors.Is(err, errNoSuchKey) {
		return e, huma.Error404NotFound(fmt.Sprintf("no %s %q", k.noun, id))
	}
	return e, err
}

func (srv *Server) manageList(ctx context.Context, k manageKind) (*manageListOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	es, err := srv.entries(ctx, k.bucket)
	if err != nil {
		return nil, err
	}
	out := &manageListOutput{}
	out.Body.Items = make([]manageItem, 0, len(es))
	for _, e := range es {
		item := manageItem{Key: e.Key, Revision: e.Revision, UpdatedAt: kanade.Timestamp{Time: e.Created.UTC()}}
		if json.Valid(e.Value) {
			item.Value = jsonValue(e.Value)
			if err := k.parse(e.Key, e.Value); err != nil {
				item.Error = err.Error()
			}
		} else {
			item.Raw = string(e.Value)
			item.Error = "the stored value is not JSON"
		}
		out.Body.Items = append(out.Body.Items, item)
	}
	return out, nil
}

func (srv *Server) manageGet(ctx context.Context, k manageKind, id string) (*manageValueOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	e, err := srv.getEntry(ctx, k, id)
	if err != nil {
		return nil, err
	}
	if !json.Valid(e.Value) {
		// Not the caller's fault and nothing a GET can repair: the list
		// shows the text; say where to look.
		return nil, huma.Error500InternalServerError(fmt.Sprintf("the stored value of %s %q is not JSON; GET /api/%ss lists its raw text", k.noun, id, k.noun))
	}
	return &manageValueOutput{Body: jsonValue(e.Value)}, nil
}

func (srv *Server) putJob(ctx context.Context, id string, body jsonValue) (*manageValueOutput, error) {
	// The path's id is the key the manifest is stored under.
	m, err := kanade.ParseManifest(id, body)
	if err != nil {
		return nil, invalid(err)
	}
	if !kanade.ValidKVKey(m.ID) {
		return nil, invalid(invalidKey("id", m.ID))
	}
	// The manifest's own JSON: the known fields as decoded and the unknown
	// ones verbatim (Manifest.Extra).
	value, err := json.Marshal(m)
	if err != nil {
		return nil, invalid(fmt.Errorf("manifest: %w", err))
	}

	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	rev, err := c.Put(ctx, kanade.BucketJobs, id, value)
	if err != nil {
		return nil, srv.natsProblem(ctx, "put job", err)
	}
	srv.audit(ctx, actionJobUpsert, id, map[string]any{"version": m.Version, "revision": rev})
	return &manageValueOutput{Body: value}, nil
}

func (srv *Server) putSchedule(ctx context.Context, id string, body jsonValue) (*manageValueOutput, error) {
	s, err := kanade.ParseSchedule(id, body)
	if err != nil {
		return nil, invalid(err)
	}
	if !kanade.ValidKVKey(id) {
		return nil, invalid(invalidKey("id", id))
	}
	// The body as sent (compacted): ParseSchedule's defaults are applied by
	// every reader anyway, and fields this backend does not know survive.
	var value bytes.Buffer
	if err := json.Compact(&value, body); err != nil {
		return nil, invalid(fmt.Errorf("schedule: %w", err))
	}

	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	// Best effort: a job deleted between this check and the Put below leaves
	// a dangling schedule, which the worker reports when it fires. KV offers
	// no transaction across two buckets.
	if _, err := srv.get(ctx, kanade.BucketJobs, s.JobID); err != nil {
		if errors.Is(err, errNoSuchKey) {
			return nil, invalid(&kanade.FieldError{Field: "job_id", Rule: "must name a job in KV jobs (PUT /api/jobs/{id} it first)",
				Excerpt: kanade.Clip(s.JobID)})
		}
		return nil, err
	}
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	rev, err := c.Put(ctx, kanade.BucketSchedules, id, value.Bytes())
	if err != nil {
		return nil, srv.natsProblem(ctx, "put schedule", err)
	}
	srv.audit(ctx, actionScheduleUpsert, id, map[string]any{"when": string(s.Kind()), "job_id": s.JobID, "enabled": s.Enabled, "revision": rev})
	return &manageValueOutput{Body: value.Bytes()}, nil
}

// deleteJob refuses to delete a job that schedules still run: they would
// fail at every firing, silently to whoever deleted the job.
func (srv *Server) deleteJob(ctx context.Context, k manageKind, id string) error {
	return srv.deleteEntry(ctx, k, id, func(ctx context.Context) error {
		es, err := srv.entries(ctx, kanade.BucketSchedules)
		if err != nil {
			return err
		}
		var users []string
		var details []error
		for _, e := range es {
			// Lenient on purpose: a schedule that no longer validates but
			// still names the job counts too.
			var ref struct {
				JobID string `json:"job_id"`
			}
			if json.Unmarshal(e.Value, &ref) == nil && ref.JobID == id {
				users = append(users, e.Key)
				details = append(details, &huma.ErrorDetail{Location: "schedules", Message: "runs job " + id, Value: e.Key})
			}
		}
		if len(users) > 0 {
			return huma.Error409Conflict(fmt.Sprintf("job %q is run by schedules %s; delete them or point them at another job first",
				id, strings.Join(users, ", ")), details...)
		}
		return nil
	})
}

// deleteEntry deletes id from k's bucket after check (nil: none) allowed it.
// The delete is conditional on the revision that was found, so a value
// replaced meanwhile is not removed unseen.
func (srv *Server) deleteEntry(ctx context.Context, k manageKind, id string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	e, err := srv.getEntry(ctx, k, id)
	if err != nil {
		return err
	}
	if check != nil {
		if err := check(ctx); err != nil {
			return err
		}
	}
	c, err := srv.bus()
	if err != nil {
		return err
	}
	if err := c.Delete(ctx, k.bucket, id, e.Revision); err != nil {
		if errors.Is(err, bus.ErrChanged) {
			return huma.Error409Conflict(fmt.Sprintf("%s %q changed while it was being deleted; look at it again", k.noun, id))
		}
		return srv.natsProblem(ctx, "delete "+k.noun, err)
	}
	srv.audit(ctx, k.del, id, map[string]any{"previous_revision": e.Revision})
	return nil
}

func (srv *Server) upcoming(ctx context.Context, limit int) (*upcomingOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	es, err := srv.entries(ctx, kanade.BucketSchedules)
	if err != nil {
		return nil, err
	}
	schedules := make([]*kanade.Schedule, 0, len(es))
	for _, e := range es {
		if s, err := kanade.ParseSchedule(e.Key, e.Value); err == nil {
			schedules = append(schedules, s)
		}
	}
	out := &upcomingOutput{}
	out.Body.Items = kanade.UpcomingFirings(schedules, srv.cfg.Clock(), min(limit, upcomingMax))
	if out.Body.Items == nil {
		out.Body.Items = []kanade.Firing{}
	}
	for i := range out.Body.Items {
		// Instants come in the schedule's zone; the API speaks UTC.
		out.Body.Items[i].At = out.Body.Items[i].At.UTC()
	}
	return out, nil
}
