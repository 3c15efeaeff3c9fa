package handlers

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"slices"
	"time"
	"unicode"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/exeversion"
)

// Agent releases and their rollout (fleet.md §6): agent builds live in the
// object store agent_releases under their version; an agent whose
// effective target_version differs from its own fetches that object and
// replaces itself. Publishing stores a build; only a rollout, which sets a
// scope's target_version in KV agent_config, makes agents take it.

// maxReleaseBytes caps the body of POST /api/agents/publish (fleet.md
// §6.3; upstream's axum limit). The build never sits in memory: it is
// spooled to a temporary file while it is read, then streamed into the
// store.
const maxReleaseBytes = 64 << 20

// publishDeadline is how long a publish may take to send its body and get
// its answer: the shells' server gives every request 30 s to be read,
// which a 64 MiB upload over a slow link cannot meet. Only operators reach
// this route, so the longer window is not open to a slow-body attack by
// anyone else.
const publishDeadline = 10 * time.Minute

type releaseItem struct {
	Version  string  `json:"version" doc:"The object name: the agent version, e.g. 0.43.56." example:"0.43.56"`
	Size     uint64  `json:"size" doc:"Bytes." example:"13471232"`
	Digest   *string `json:"digest" doc:"The object store's SHA-256 of the bytes: SHA-256=<base64url>." example:"SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="`
	Modified *string `json:"modified" format:"date-time" doc:"When the object was last put (RFC 3339, UTC)."`
}

type releasesOutput struct {
	Body []releaseItem
}

type publishInput struct {
	ContentType string `header:"Content-Type" doc:"multipart/form-data with a boundary."`
}

type publishBody struct {
	Version string `json:"version" doc:"The version read from the binary, now the object's name." example:"0.43.56"`
	Size    uint64 `json:"size" doc:"Bytes stored." example:"13471232"`
	Digest  string `json:"digest" doc:"The object store's SHA-256 of the bytes: SHA-256=<base64url>."`
}

type publishOutput struct {
	Body publishBody
}

type rolloutScope struct {
	_     struct{} `json:"-" additionalProperties:"true"`
	Type  string   `json:"type" enum:"global,group,pc" doc:"Which agent_config scope: global, a group's (groups.<value>) or a PC's (pcs.<value>)."`
	Value string   `json:"value,omitempty" doc:"The group name or pc_id; required for group and pc, ignored for global." example:"canary"`
}

type rolloutRequest struct {
	_       struct{}     `json:"-" additionalProperties:"true"`
	Version string       `json:"version" doc:"A published release (GET /api/agents/releases)." example:"0.43.56"`
	Scope   rolloutScope `json:"scope"`
	Jitter  *string      `json:"jitter,omitempty" nullable:"true" doc:"Also set target_version_jitter: how long each agent may wait at random before updating (a duration such as 30m). Absent or null leaves it as it is." example:"30m"`
}

type rolloutInput struct {
	Body rolloutRequest
}

type rolloutBody struct {
	Version    string  `json:"version" example:"0.43.56"`
	ScopeKey   string  `json:"scope_key" doc:"The agent_config key written: global, groups.<g> or pcs.<pc_id>." example:"groups.canary"`
	ScopeLabel string  `json:"scope_label" doc:"The scope as messages name it: global, group:<g> or pc:<pc_id>." example:"group:canary"`
	Jitter     *string `json:"jitter" doc:"The jitter given, or null." example:"30m"`
}

type rolloutOutput struct {
	Body rolloutBody
}

type releaseInput struct {
	Version string `path:"version" doc:"The release (object name) to delete." example:"0.43.56"`
}

// uploadKey carries the request and its writer from the publish route's
// middleware to its handler, which reads the body itself.
type uploadKey struct{}

type upload struct {
	r *http.Request
	w http.ResponseWriter
}

// uploadMiddleware hands an upload's request to its handler, which streams
// the body itself, and gives it deadline to arrive: the role gate has let
// the caller through by now (the deadlines are set where the writer can,
// not on Lambda).
func uploadMiddleware(deadline time.Duration) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		r, w := humago.Unwrap(ctx)
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(deadline))
		_ = rc.SetWriteDeadline(time.Now().Add(deadline + time.Minute))
		next(huma.WithValue(ctx, uploadKey{}, upload{r: r, w: w}))
	}
}

// beginUpload refuses an upload for everything that can be known before a
// byte of its body is read: a body that is not multipart/form-data with a
// boundary (what names the file field's content in the 415), a declared
// length over max, NATS down, and a missing object store. It returns the
// request, the bus and the boundary.
func (srv *Server) beginUpload(ctx context.Context, contentType, what string, max int64, store string) (upload, *bus.Client, string, error) {
	up, ok := ctx.Value(uploadKey{}).(upload)
	if !ok {
		return upload{}, nil, "", huma.Error500InternalServerError("upload: the request is not at hand")
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" {
		return upload{}, nil, "", huma.NewError(http.StatusUnsupportedMediaType,
			fmt.Sprintf("Content-Type %q: the body must be multipart/form-data with %s as the field file", kanade.Clip(contentType), what))
	}
	if params["boundary"] == "" {
		return upload{}, nil, "", huma.Error400BadRequest("Content-Type multipart/form-data without a boundary")
	}
	if up.r.ContentLength > max {
		return upload{}, nil, "", tooLargeOf(max)
	}
	c, err := srv.bus()
	if err != nil {
		return upload{}, nil, "", err
	}
	sctx, cancel := context.WithTimeout(ctx, manageTimeout)
	err = c.CheckObjectStore(sctx, store)
	cancel()
	if isNoBucket(err) {
		return upload{}, nil, "", srv.noStore(ctx, "object store", store, err)
	}
	if err != nil {
		return upload{}, nil, "", srv.natsProblem(ctx, "open object store "+store, err)
	}
	return up, c, params["boundary"], nil
}

func (srv *Server) registerReleases(api huma.API) {
	register(api, huma.Operation{OperationID: "list-agent-releases", Method: http.MethodGet, Path: "/api/agents/releases",
		Summary: "Published agent releases", Tags: []string{"releases"},
		Description: "Every object of the object store " + kanade.ObjectAgentReleases + " that is not deleted, newest modified " +
			"first (then by version). digest and modified may be null. An empty store answers []; " +
			"503 when the store does not exist."},
		func(ctx context.Context, _ *struct{}) (*releasesOutput, error) {
			return srv.listReleases(ctx)
		})

	const publishPath = "/api/agents/publish"
	register(api, huma.Operation{OperationID: "publish-agent-release", Method: http.MethodPost, Path: publishPath,
		Summary: "Publish an agent build", Tags: []string{"releases"}, MaxBodyBytes: maxReleaseBytes,
		Description: "Stores a Windows agent build under the version its VERSIONINFO resource declares (ProductVersion, " +
			"else FileVersion, of the first translation that sets one; trailing NULs and whitespace trimmed), replacing " +
			"a release of that version. The build is streamed to a temporary file and from there into the store, never " +
			"held in memory. Nothing rolls out until POST /api/agents/rollout. Audited as agent_publish. " +
			"400 when the file field is missing or empty, the form is malformed, or the binary has no usable embedded " +
			"version; 408 when the body takes longer than 10 minutes; 413 above 64 MiB of body; 415 when the body is not multipart/form-data; 503 when the store does not exist.",
		Middlewares: huma.Middlewares{uploadMiddleware(publishDeadline)}},
		func(ctx context.Context, in *publishInput) (*publishOutput, error) {
			return srv.publishRelease(ctx, in)
		})
	// The input declares no body, so huma leaves the request's body
	// unread for the handler to stream; the document describes it here.
	if item := api.OpenAPI().Paths[publishPath]; item != nil && item.Post != nil {
		item.Post.RequestBody = &huma.RequestBody{Required: true,
			Description: "The build as the form field file; a version field is accepted and ignored (the binary's own version names it).",
			Content: map[string]*huma.MediaType{"multipart/form-data": {
				Schema: &huma.Schema{Type: huma.TypeObject, Required: []string{"file"}, Properties: map[string]*huma.Schema{
					"file":    {Type: huma.TypeString, Format: "binary", Description: "The Windows agent executable (PE32 or PE32+) with a VERSIONINFO resource."},
					"version": {Type: huma.TypeString, Description: "Ignored."},
				}},
				Encoding: map[string]*huma.Encoding{"file": {ContentType: "application/octet-stream"}},
			}}}
	}

	register(api, huma.Operation{OperationID: "rollout-agent-release", Method: http.MethodPost, Path: "/api/agents/rollout",
		Summary: "Roll a release out to a scope", Tags: []string{"releases"},
		Description: "Sets target_version (and target_version_jitter when jitter is given) of one agent_config scope by " +
			"compare-and-swap, other fields kept; writes nothing when the scope already says so. Agents of that scope " +
			"update within one KV round trip, each after a random wait up to its jitter. The legacy target_version key is " +
			"never written. Audited as agent_rollout. 404 when no such release is published; 400 when the group or pc_id " +
			"cannot name a scope or the jitter is not a duration; 503 when the store or agent_config does not exist."},
		func(ctx context.Context, in *rolloutInput) (*rolloutOutput, error) {
			return srv.rollout(ctx, &in.Body)
		})

	register(api, huma.Operation{OperationID: "delete-agent-release", Method: http.MethodDelete, Path: "/api/agents/releases/{version}",
		Summary: "Delete an agent release", Tags: []string{"releases"}, DefaultStatus: http.StatusNoContent,
		Description: "Deletes the release's object unless a scope of agent_config still targets it: then 409 names the " +
			"first such scope (global, group:<g> or pc:<pc_id>); clear or change its target_version first. Agents still " +
			"running the version do not block it. Audited as agent_release_delete. 404 when there is no such release; " +
			"503 when agent_config or the store does not exist."},
		func(ctx context.Context, in *releaseInput) (*struct{}, error) {
			return nil, srv.deleteRelease(ctx, in.Version)
		})
}

// noStore is the 503 of a missing store or bucket (fleet.md §0.3: the
// message names it).
func (srv *Server) noStore(ctx context.Context, kind, name string, err error) error {
	srv.cfg.Logger.ErrorContext(ctx, kind+" "+name+" does not exist", slog.Any("error", err))
	return huma.Error503ServiceUnavailable(kind + " " + name + " does not exist (NATS not bootstrapped?)")
}

// storeFailed is the 500 of a failed read or write (fleet.md §0.3), logged
// here.
func (srv *Server) storeFailed(ctx context.Context, what string, err error) error {
	srv.cfg.Logger.ErrorContext(ctx, what, slog.Any("error", err))
	return huma.Error500InternalServerError(what + ": " + err.Error())
}

func (srv *Server) listReleases(ctx context.Context) (*releasesOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	objs, err := c.Objects(ctx, kanade.ObjectAgentReleases)
	if isNoBucket(err) {
		return nil, srv.noStore(ctx, "object store", kanade.ObjectAgentReleases, err)
	}
	if err != nil {
		return nil, srv.storeFailed(ctx, "list "+kanade.ObjectAgentReleases, err)
	}
	slices.SortFunc(objs, func(a, b bus.ObjectInfo) int {
		if c := b.Modified.Compare(a.Modified); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	out := make([]releaseItem, len(objs))
	for i, o := range objs {
		out[i] = releaseItem{Version: o.Name, Size: o.Size}
		if o.Digest != "" {
			out[i].Digest = &o.Digest
		}
		if !o.Modified.IsZero() {
			m := o.Modified.UTC().Format(time.RFC3339Nano)
			out[i].Modified = &m
		}
	}
	return &releasesOutput{Body: out}, nil
}

// validReleaseVersion reports whether v can name a release: what an
// agent's heartbeat may report as its version (1–128 bytes of printable
// UTF-8), so that an agent running it ever sees it is up to date, and a
// valid target_version.
func validReleaseVersion(v string) bool {
	if !kanade.ValidID(v) {
		return false
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func (srv *Server) publishRelease(ctx context.Context, in *publishInput) (*publishOutput, error) {
	up, c, boundary, err := srv.beginUpload(ctx, in.ContentType, "the build", maxReleaseBytes, kanade.ObjectAgentReleases)
	if err != nil {
		return nil, err
	}
	f, size, err := spoolUpload(up, boundary)
	if f != nil {
		defer func() {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}()
	}
	if err != nil {
		return nil, err
	}

	version, err := exeversion.Read(f)
	if err != nil {
		return nil, huma.Error400BadRequest("the file has no readable embedded version: publish a Windows agent build whose " +
			"VERSIONINFO resource sets ProductVersion or FileVersion; its version names the release (" + err.Error() + ")")
	}
	if !validReleaseVersion(version) {
		return nil, huma.Error400BadRequest(fmt.Sprintf("the binary's embedded version %q cannot name a release: "+
			"it must be 1–128 bytes of printable UTF-8", kanade.Clip(version)))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, srv.storeFailed(ctx, "publish: rewind the upload", err)
	}
	info, err := c.PutObject(ctx, kanade.ObjectAgentReleases, version, f)
	if isNoBucket(err) {
		return nil, srv.noStore(ctx, "object store", kanade.ObjectAgentReleases, err)
	}
	if err != nil {
		return nil, srv.storeFailed(ctx, "put "+kanade.ObjectAgentReleases+"["+kanade.Clip(version)+"]", err)
	}
	if info.Size != uint64(size) {
		return nil, srv.storeFailed(ctx, "put "+kanade.ObjectAgentReleases+"["+kanade.Clip(version)+"]",
			fmt.Errorf("stored %d bytes of %d", info.Size, size))
	}
	srv.audit(ctx, "agent_publish", version, map[string]any{"version": version, "size": info.Size, "digest": info.Digest})
	return &publishOutput{Body: publishBody{Version: version, Size: info.Size, Digest: info.Digest}}, nil
}

func tooLarge() error { return tooLargeOf(maxReleaseBytes) }

// tooLargeOf is the 413 of a body over limit bytes.
func tooLargeOf(limit int64) error {
	return huma.NewError(http.StatusRequestEntityTooLarge, "the body is over "+sizeText(limit))
}

// spoolUpload reads the multipart body of up, at most maxReleaseBytes of
// it, and copies the field file into a new temporary file (os.TempDir,
// /tmp on Lambda too), returning it and its size; the caller closes and
// removes it, also with an error. Other fields are read and dropped.
func spoolUpload(up upload, boundary string) (f *os.File, size int64, err error) {
	body := http.MaxBytesReader(up.w, up.r.Body, maxReleaseBytes)
	fail := func(what string, err error) error {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return huma.NewError(http.StatusRequestTimeout, fmt.Sprintf("reading the upload timed out (this route allows %s)", publishDeadline))
		}
		return huma.Error400BadRequest(what + ": " + err.Error())
	}
	mr := multipart.NewReader(body, boundary)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return f, 0, fail("malformed multipart body", err)
		}
		if p.FormName() != "file" {
			if _, err := io.Copy(io.Discard, p); err != nil {
				return f, 0, fail("malformed multipart body", err)
			}
			continue
		}
		if f != nil {
			return f, 0, huma.Error400BadRequest("the form has more than one file field")
		}
		if f, err = os.CreateTemp("", "kanade-release-*.exe"); err != nil {
			return nil, 0, huma.Error500InternalServerError("publish: create a temporary file: " + err.Error())
		}
		if size, err = spool(f, p); err != nil {
			var we writeError
			if errors.As(err, &we) {
				return f, 0, huma.Error500InternalServerError("publish: spool the upload: " + err.Error())
			}
			return f, 0, fail("malformed multipart body (in the file field)", err)
		}
	}
	if f == nil {
		return nil, 0, huma.Error400BadRequest("the form has no file field: send the agent binary as the multipart field file")
	}
	if size == 0 {
		return f, 0, huma.Error400BadRequest("the file field is empty")
	}
	return f, size, nil
}

// spool copies r into f with one small buffer: the body's errors come
// back as they are, the file's (a full or broken disk) as a writeError.
func spool(f *os.File, r io.Reader) (int64, error) {
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if _, werr := f.Write(buf[:k]); werr != nil {
				return n, writeError{werr}
			}
			n += int64(k)
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

type writeError struct{ error }

func (e writeError) Unwrap() error { return e.error }

func (srv *Server) rollout(ctx context.Context, req *rolloutRequest) (*rolloutOutput, error) {
	// §6.4 step 1: the scope's key and label (fleet.md §0.4 for its name).
	var key, label string
	switch req.Scope.Type {
	case kanade.ScopeGlobal:
		key, label = kanade.ScopeKeyGlobal, kanade.ScopeLabel(kanade.ScopeGlobal, "")
	case kanade.ScopeGroup, kanade.ScopePC:
		v := req.Scope.Value
		if v == "" {
			return nil, huma.Error422UnprocessableEntity("scope.value is required for a "+req.Scope.Type+" scope",
				&huma.ErrorDetail{Location: "body.scope.value", Message: "is required for a " + req.Scope.Type + " scope"})
		}
		if req.Scope.Type == kanade.ScopeGroup {
			if err := kanade.CheckScopeGroup("scope.value", v); err != nil {
				return nil, bodyProblem("", err)
			}
			key = kanade.GroupScopeKey(v)
		} else {
			if !kanade.ValidPCID(v) {
				fe := &kanade.FieldError{Field: "scope.value", Rule: "must be a pc_id: 1–128 bytes of [A-Za-z0-9_=/-]", Excerpt: kanade.Clip(v)}
				return nil, bodyProblem("", fe)
			}
			key = kanade.PCScopeKey(v)
		}
		label = kanade.ScopeLabel(req.Scope.Type, v)
	default: // the schema's enum refuses it first
		return nil, huma.Error422UnprocessableEntity("scope.type must be global, group or pc")
	}
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	// Step 2: the release must be published.
	if _, err := c.ObjectInfo(ctx, kanade.ObjectAgentReleases, req.Version); err != nil {
		switch {
		case isNoBucket(err):
			return nil, srv.noStore(ctx, "object store", kanade.ObjectAgentReleases, err)
		case errors.Is(err, bus.ErrNotFound):
			return nil, huma.Error404NotFound(fmt.Sprintf("no release %q in %s: publish it first (POST /api/agents/publish)",
				kanade.Clip(req.Version), kanade.ObjectAgentReleases))
		default:
			return nil, srv.storeFailed(ctx, "read "+kanade.ObjectAgentReleases, err)
		}
	}
	// Steps 3 and 4: Modify reads the scope first (503 when the bucket is
	// missing), then edit checks the jitter (400) and sets the fields.
	edit := func(cur []byte, _ bool) ([]byte, bool, error) {
		return rolloutEdit(cur, req.Version, req.Jitter)
	}
	_, changed, err := c.Modify(ctx, kanade.BucketAgentConfig, key, edit)
	var fe *kanade.FieldError
	var undecodable errUndecodableScope
	switch {
	case errors.As(err, &undecodable): // before fe: it may wrap one
		return nil, srv.storeFailed(ctx, "rollout to "+key, err)
	case errors.As(err, &fe):
		return nil, bodyProblem("", fe)
	case isNoBucket(err):
		return nil, srv.noStore(ctx, "KV", kanade.BucketAgentConfig, err)
	case err != nil:
		return nil, srv.storeFailed(ctx, "write "+kanade.BucketAgentConfig+"["+key+"]", err)
	}
	srv.audit(ctx, "agent_rollout", req.Version, map[string]any{"version": req.Version, "scope_key": key,
		"scope_label": label, "jitter": req.Jitter, "changed": changed})
	return &rolloutOutput{Body: rolloutBody{Version: req.Version, ScopeKey: key, ScopeLabel: label, Jitter: req.Jitter}}, nil
}

// errUndecodableScope: the stored scope is not a ConfigScope; a rollout
// will not write over what it cannot read.
type errUndecodableScope struct{ error }

func (e errUndecodableScope) Unwrap() error { return e.error }

// rolloutEdit is the compare-and-swap edit of a rollout: the stored scope
// cur with target_version set to version and, when jitter is not nil,
// target_version_jitter to *jitter. Every other member of cur is kept as
// stored, those this build does not know included. changed is false when
// cur already says so. A jitter that is not a duration is a FieldError.
func rolloutEdit(cur []byte, version string, jitter *string) ([]byte, bool, error) {
	if err := (kanade.ConfigScope{TargetVersion: &version, TargetVersionJitter: jitter}).Validate(); err != nil {
		// Name the field as the request does.
		var fe *kanade.FieldError
		if errors.As(err, &fe) {
			field := map[string]string{"target_version_jitter": "jitter", "target_version": "version"}[fe.Field]
			return nil, false, &kanade.FieldError{Field: cmp.Or(field, fe.Field), Rule: fe.Rule, Excerpt: fe.Excerpt}
		}
		return nil, false, err
	}
	s, err := kanade.DecodeConfigScope(cur)
	if err != nil {
		return nil, false, errUndecodableScope{fmt.Errorf("the stored scope does not decode: %w", err)}
	}
	if s.TargetVersion != nil && *s.TargetVersion == version &&
		(jitter == nil || s.TargetVersionJitter != nil && *s.TargetVersionJitter == *jitter) {
		return cur, false, nil
	}
	m := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(cur)) > 0 {
		if err := json.Unmarshal(cur, &m); err != nil {
			return nil, false, errUndecodableScope{fmt.Errorf("the stored scope is not an object: %w", err)}
		}
		if m == nil { // a stored null
			m = map[string]json.RawMessage{}
		}
	}
	m["target_version"], _ = json.Marshal(version)
	if jitter != nil {
		m["target_version_jitter"], _ = json.Marshal(*jitter)
	}
	next, err := json.Marshal(m)
	return next, true, err
}

func (srv *Server) deleteRelease(ctx context.Context, version string) error {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return err
	}
	// §6.5 step 1: no scope may still target it.
	entries, err := c.Entries(ctx, kanade.BucketAgentConfig)
	if isNoBucket(err) {
		return srv.noStore(ctx, "KV", kanade.BucketAgentConfig, err)
	}
	if err != nil {
		return srv.storeFailed(ctx, "read "+kanade.BucketAgentConfig, err)
	}
	if label, ok := targetedBy(entries, version); ok {
		return huma.Error409Conflict(fmt.Sprintf("release %q is the target_version of %s: clear or change that scope's "+
			"target_version first", kanade.Clip(version), label))
	}
	// Step 2: delete the object.
	err = c.DeleteObject(ctx, kanade.ObjectAgentReleases, version)
	switch {
	case isNoBucket(err):
		return srv.noStore(ctx, "object store", kanade.ObjectAgentReleases, err)
	case errors.Is(err, bus.ErrNotFound):
		return huma.Error404NotFound(fmt.Sprintf("no release %q in %s", kanade.Clip(version), kanade.ObjectAgentReleases))
	case err != nil:
		return srv.storeFailed(ctx, "delete "+kanade.ObjectAgentReleases+"["+kanade.Clip(version)+"]", err)
	}
	srv.audit(ctx, "agent_release_delete", version, map[string]any{"version": version})
	return nil
}

// targetedBy names, by its label, the first scope of entries (in key
// order) whose target_version is version. Keys that are not scopes, the
// legacy target_version key among them, and values that do not decode as
// a ConfigScope are skipped.
func targetedBy(entries []bus.Entry, version string) (string, bool) {
	for _, e := range entries {
		kind, name, ok := kanade.ParseScopeKey(e.Key)
		if !ok {
			continue
		}
		s, err := kanade.DecodeConfigScope(e.Value)
		if err != nil || s.TargetVersion == nil || *s.TargetVersion != version {
			continue
		}
		return kanade.ScopeLabel(kind, name), true
	}
	return "", false
}
