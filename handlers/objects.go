package handlers

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// App packages and script objects (observe.md §5): two object stores an
// operator fills over HTTP, the first with installers agents fetch, the
// second with script bodies a manifest names by execute.script_object.
// Both are moved through the bus's object routines a chunk at a time, as
// agent releases are: an 8 GiB package never sits in memory. Unlike a
// release (whose name is read from the binary, so it is spooled first) an
// upload is copied from the request straight into the store, and the form
// is read to its end before the store sees the end of the object, so a
// broken, oversize or doubled upload is refused before it can replace
// anything.

// objectKind is one of the two stores and what its routes say.
type objectKind struct {
	store, prefix, tag string
	// what names an object in messages ("app package").
	what string
	// max caps an upload's whole request body.
	max int64
	// deadline is how long an upload may take to arrive.
	deadline time.Duration
	// publishAction and deleteAction are the audit actions.
	publishAction, deleteAction string
}

var (
	appPackages = objectKind{store: kanade.ObjectAppPackages, prefix: "/api/app-packages", tag: "app-packages",
		what: "app package", max: kanade.MaxAppPackageBytes, deadline: time.Hour,
		publishAction: "app_package_publish", deleteAction: "app_package_delete"}
	scriptObjects = objectKind{store: kanade.ObjectScripts, prefix: "/api/script-objects", tag: "script-objects",
		what: "script object", max: kanade.MaxScriptObjectBytes, deadline: publishDeadline,
		publishAction: "script_object_publish", deleteAction: "script_object_delete"}
)

type objectItem struct {
	Name     string  `json:"name" example:"webex"`
	Version  string  `json:"version" example:"2025.03"`
	Size     uint64  `json:"size" example:"104857600"`
	Digest   *string `json:"digest" doc:"The store's SHA-256 of the bytes: SHA-256=<base64url>, or null."`
	Modified *string `json:"modified" format:"date-time" doc:"When the object was last put (RFC 3339, UTC), or null."`
}

type objectsOutput struct{ Body []objectItem }

type objectPath struct {
	Name    string `path:"name" doc:"1–128 printable ASCII characters without '/', '\"' or '\\', not '.' or '..'." example:"webex"`
	Version string `path:"version" doc:"Same rule as name." example:"2025.03"`
}

type downloadInput struct {
	Name    string `path:"name" doc:"1–128 printable ASCII characters without '/', '\"' or '\\', not '.' or '..'." example:"webex"`
	Version string `path:"version" doc:"Same rule as name." example:"2025.03"`
	IfMatch string `header:"If-Match" doc:"The ETag (quoted digest) the object must still have; * or a comma list also pass."`
	Range   string `header:"Range" doc:"bytes=N- or bytes=N-M."`
}

type objectUploadInput struct {
	Name        string `path:"name" doc:"1–128 printable ASCII characters without '/', '\"' or '\\', not '.' or '..'." example:"webex"`
	Version     string `path:"version" doc:"Same rule as name." example:"2025.03"`
	ContentType string `header:"Content-Type" doc:"multipart/form-data with a boundary."`
}

type objectUploadOutput struct {
	Body struct {
		Name    string `json:"name" example:"webex"`
		Version string `json:"version" example:"2025.03"`
		Size    uint64 `json:"size" example:"104857600"`
		Digest  string `json:"digest" doc:"SHA-256=<base64url>."`
	}
}

func (srv *Server) registerObjects(api huma.API) {
	for _, k := range []objectKind{appPackages, scriptObjects} {
		srv.registerObjectKind(api, k)
	}
}

func (srv *Server) registerObjectKind(api huma.API, k objectKind) {
	item := k.prefix + "/{name}/{version}"
	id := strings.ReplaceAll(k.tag, "-", "_") // app_packages, script_objects
	register(api, huma.Operation{OperationID: "list-" + k.tag, Method: http.MethodGet, Path: k.prefix,
		Summary: "List " + k.what + "s", Tags: []string{k.tag},
		Description: "Every object of the object store " + k.store + " named <name>/<version> that is not deleted " +
			"(observe.md §5.3), newest modified first (undated last), then by name and version. 503 when the store does " +
			"not exist; 500 when listing fails part way."},
		func(ctx context.Context, _ *struct{}) (*objectsOutput, error) {
			return srv.listObjects(ctx, k)
		})

	for _, method := range []string{http.MethodGet, http.MethodHead} {
		register(api, huma.Operation{OperationID: strings.ToLower(method) + "-" + id, Method: method, Path: item,
			Summary: "Download an " + k.what, Tags: []string{k.tag},
			Description: "The object's bytes, streamed (observe.md §5.4); HEAD answers the headers alone. ETag is the " +
				"quoted digest; If-Match that differs → 412. Range bytes=N- or bytes=N-M → 206; any other range → 416 with " +
				"Content-Range: bytes */<size>. 400 when a segment breaks its rule; 404 when there is no such object; 503 " +
				"when the store does not exist.",
			Responses: map[string]*huma.Response{
				"200": {Description: "The whole object.", Content: map[string]*huma.MediaType{"application/octet-stream": {Schema: &huma.Schema{Type: huma.TypeString, Format: "binary"}}}},
				"206": {Description: "The requested range.", Content: map[string]*huma.MediaType{"application/octet-stream": {Schema: &huma.Schema{Type: huma.TypeString, Format: "binary"}}}},
			}},
			func(ctx context.Context, in *downloadInput) (*huma.StreamResponse, error) {
				return srv.downloadObject(ctx, k, in, method == http.MethodHead)
			})
	}

	register(api, huma.Operation{OperationID: "upload-" + id, Method: http.MethodPost, Path: item,
		Summary: "Upload an " + k.what, Tags: []string{k.tag}, MaxBodyBytes: k.max,
		Description: fmt.Sprintf("Stores the form field file as <name>/<version> in %s (observe.md §5.5), replacing an "+
			"object of that name. The bytes go from the request into the store as they arrive; a failed, oversize or "+
			"empty upload leaves the previous object as it was. Audited as %s. 400 when a segment breaks its rule, the "+
			"form is malformed or has no, two or an empty file field; 408 when the body takes longer than %s; 413 above "+
			"%s of body; 415 when the body is not multipart/form-data; 503 when the store does not exist.",
			k.store, k.publishAction, k.deadline, sizeText(k.max)),
		Middlewares: huma.Middlewares{uploadMiddleware(k.deadline)}},
		func(ctx context.Context, in *objectUploadInput) (*objectUploadOutput, error) {
			return srv.uploadObject(ctx, k, in)
		})
	if pi := api.OpenAPI().Paths[item]; pi != nil && pi.Post != nil {
		pi.Post.RequestBody = &huma.RequestBody{Required: true,
			Description: "The content as the form field file; other fields are read and ignored.",
			Content: map[string]*huma.MediaType{"multipart/form-data": {
				Schema: &huma.Schema{Type: huma.TypeObject, Required: []string{"file"}, Properties: map[string]*huma.Schema{
					"file": {Type: huma.TypeString, Format: "binary", Description: "The object's bytes."},
				}},
				Encoding: map[string]*huma.Encoding{"file": {ContentType: "application/octet-stream"}},
			}}}
	}

	register(api, huma.Operation{OperationID: "delete-" + id, Method: http.MethodDelete, Path: item,
		Summary: "Delete an " + k.what, Tags: []string{k.tag}, DefaultStatus: http.StatusNoContent,
		Description: "Deletes <name>/<version> from " + k.store + " (observe.md §5.6); nothing checks whether a job still " +
			"names it. Audited as " + k.deleteAction + ". 400 when a segment breaks its rule; 404 when there is no such " +
			"object; 503 when the store does not exist."},
		func(ctx context.Context, in *objectPath) (*struct{}, error) {
			return nil, srv.deleteObject(ctx, k, in)
		})
}

func sizeText(n int64) string {
	if n >= 1<<30 {
		return strconv.FormatInt(n>>30, 10) + " GiB"
	}
	return strconv.FormatInt(n>>20, 10) + " MiB"
}

// key checks both segments (observe.md §5.2) and joins them.
func (p *objectPath) key() (string, error) { return objectKey(p.Name, p.Version) }

func objectKey(name, version string) (string, error) {
	const rule = "must be 1–128 printable ASCII characters without '/', '\"' or '\\', and not '.' or '..'"
	if !kanade.ValidObjectSegment(name) {
		return "", badToken("name", name, rule)
	}
	if !kanade.ValidObjectSegment(version) {
		return "", badToken("version", version, rule)
	}
	key := name + "/" + version
	if len(key) > kanade.MaxObjectNameBytes {
		return "", badToken("version", version, fmt.Sprintf("makes the object name %d bytes; name and version together "+
			"must stay within %d", len(key), kanade.MaxObjectNameBytes-1))
	}
	return key, nil
}

// objectProblem maps a store error: 503 for a missing store, 404 for a
// missing object, 500 otherwise.
func (srv *Server) objectProblem(ctx context.Context, k objectKind, what, key string, err error) error {
	switch {
	case isNoBucket(err):
		return srv.noStore(ctx, "object store", k.store, err)
	case errors.Is(err, bus.ErrNotFound):
		return huma.Error404NotFound(fmt.Sprintf("no %s %q in %s", k.what, kanade.Clip(key), k.store))
	}
	return srv.storeFailed(ctx, what+" "+k.store+"["+kanade.Clip(key)+"]", err)
}

func (srv *Server) listObjects(ctx context.Context, k objectKind) (*objectsOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	objs, err := c.Objects(ctx, k.store)
	if isNoBucket(err) {
		return nil, srv.noStore(ctx, "object store", k.store, err)
	}
	if err != nil {
		return nil, srv.storeFailed(ctx, "list "+k.store, err)
	}
	out := make([]objectItem, 0, len(objs))
	for _, o := range objs {
		i := strings.LastIndexByte(o.Name, '/')
		if i < 0 {
			// Written straight over NATS by an older CLI.
			srv.cfg.Logger.WarnContext(ctx, "object without a version segment left out of the listing",
				slog.String("store", k.store), slog.String("object", kanade.Clip(o.Name)))
			continue
		}
		it := objectItem{Name: o.Name[:i], Version: o.Name[i+1:], Size: o.Size}
		if o.Digest != "" {
			it.Digest = &o.Digest
		}
		if !o.Modified.IsZero() {
			m := rfc3339(o.Modified)
			it.Modified = &m
		}
		out = append(out, it)
	}
	slices.SortFunc(out, func(a, b objectItem) int {
		switch {
		case a.Modified == nil && b.Modified != nil:
			return 1
		case a.Modified != nil && b.Modified == nil:
			return -1
		case a.Modified != nil:
			ta, _ := time.Parse(time.RFC3339Nano, *a.Modified)
			tb, _ := time.Parse(time.RFC3339Nano, *b.Modified)
			if c := tb.Compare(ta); c != 0 {
				return c
			}
		}
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version))
	})
	return &objectsOutput{Body: out}, nil
}

// byteRange is a satisfiable Range: first and last byte, inclusive.
type byteRange struct{ first, last uint64 }

// parseRange reads a Range header against size (observe.md §5.4): ok is
// false for anything but bytes=N- or bytes=N-M inside the object.
func parseRange(h string, size uint64) (byteRange, bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || size == 0 {
		return byteRange{}, false
	}
	a, b, found := strings.Cut(spec, "-")
	if !found || a == "" || strings.Contains(b, ",") {
		return byteRange{}, false
	}
	first, err := strconv.ParseUint(a, 10, 64)
	if err != nil || first >= size {
		return byteRange{}, false
	}
	last := size - 1
	if b != "" {
		if last, err = strconv.ParseUint(b, 10, 64); err != nil || last >= size || last < first {
			return byteRange{}, false
		}
	}
	return byteRange{first, last}, true
}

// ifMatch reports whether the If-Match header h lets a request through
// for an object whose ETag is etag ("" when it has none).
func ifMatch(h, etag string) bool {
	for _, v := range strings.Split(h, ",") {
		v = strings.TrimSpace(v)
		if v == "*" || etag != "" && v == etag {
			return true
		}
	}
	return false
}

func (srv *Server) downloadObject(ctx context.Context, k objectKind, in *downloadInput, head bool) (*huma.StreamResponse, error) {
	key, err := objectKey(in.Name, in.Version)
	if err != nil {
		return nil, err
	}
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	// The reader outlives this function: the stream below closes it. Its
	// own bound (the bus's transfer timeout) and the request's context end
	// a stuck read.
	r, info, err := c.GetObject(ctx, k.store, key)
	if err != nil {
		return nil, srv.objectProblem(ctx, k, "get", key, err)
	}
	etag := ""
	if info.Digest != "" {
		etag = `"` + info.Digest + `"`
	}
	if in.IfMatch != "" && !ifMatch(in.IfMatch, etag) {
		_ = r.Close()
		return nil, huma.NewError(http.StatusPreconditionFailed, fmt.Sprintf("If-Match %s: the object's ETag is %s",
			kanade.Clip(in.IfMatch), cmp.Or(etag, "absent")))
	}
	status, first, length := http.StatusOK, uint64(0), info.Size
	var contentRange string
	if in.Range != "" {
		br, ok := parseRange(in.Range, info.Size)
		if !ok {
			_ = r.Close()
			return nil, huma.ErrorWithHeaders(
				huma.NewError(http.StatusRequestedRangeNotSatisfiable, fmt.Sprintf("Range %s: only bytes=N- or bytes=N-M inside "+
					"the object's %d bytes", kanade.Clip(in.Range), info.Size)),
				http.Header{"Content-Range": []string{fmt.Sprintf("bytes */%d", info.Size)}})
		}
		status, first, length = http.StatusPartialContent, br.first, br.last-br.first+1
		contentRange = fmt.Sprintf("bytes %d-%d/%d", br.first, br.last, info.Size)
	}
	name, version := in.Name, in.Version
	return &huma.StreamResponse{Body: func(hc huma.Context) {
		defer r.Close()
		hc.SetHeader("Content-Type", "application/octet-stream")
		hc.SetHeader("Content-Length", strconv.FormatUint(length, 10))
		hc.SetHeader("Accept-Ranges", "bytes")
		hc.SetHeader("Content-Disposition", `attachment; filename="`+name+"-"+version+`"`)
		if etag != "" {
			hc.SetHeader("ETag", etag)
		}
		if contentRange != "" {
			hc.SetHeader("Content-Range", contentRange)
		}
		hc.SetStatus(status)
		if head {
			return
		}
		// A range start is reached by reading and discarding (the store
		// has no seek); the copy uses one small buffer.
		buf := make([]byte, 64<<10)
		if first > 0 {
			if _, err := io.CopyBuffer(io.Discard, io.LimitReader(r, int64(first)), buf); err != nil {
				srv.cfg.Logger.ErrorContext(ctx, "download: skipping to the range failed", slog.String("object", kanade.Clip(key)), slog.Any("error", err))
				return
			}
		}
		if _, err := io.CopyBuffer(hc.BodyWriter(), io.LimitReader(r, int64(length)), buf); err != nil {
			// The status is sent: all that is left is to cut the body
			// short, which the client sees against Content-Length.
			srv.cfg.Logger.WarnContext(ctx, "download cut short", slog.String("store", k.store),
				slog.String("object", kanade.Clip(key)), slog.Any("error", err))
		}
	}}, nil
}

func (srv *Server) uploadObject(ctx context.Context, k objectKind, in *objectUploadInput) (*objectUploadOutput, error) {
	key, err := objectKey(in.Name, in.Version)
	if err != nil {
		return nil, err
	}
	up, c, boundary, err := srv.beginUpload(ctx, in.ContentType, "the content", k.max, k.store)
	if err != nil {
		return nil, err
	}
	f, err := openFormFile(http.MaxBytesReader(up.w, up.r.Body, k.max), boundary)
	if err != nil {
		return nil, uploadProblem(err, k.max, k.deadline)
	}
	info, err := c.PutObject(ctx, k.store, key, f)
	switch {
	case err == nil:
	case isNoBucket(err):
		return nil, srv.noStore(ctx, "object store", k.store, err)
	case errors.As(err, new(formError)), errors.As(err, new(*http.MaxBytesError)), isTimeout(err):
		return nil, uploadProblem(err, k.max, k.deadline)
	default:
		return nil, srv.storeFailed(ctx, "put "+k.store+"["+kanade.Clip(key)+"]", err)
	}
	if info.Size != uint64(f.n) {
		return nil, srv.storeFailed(ctx, "put "+k.store+"["+kanade.Clip(key)+"]", fmt.Errorf("stored %d bytes of %d", info.Size, f.n))
	}
	srv.audit(ctx, k.publishAction, key, map[string]any{"name": in.Name, "version": in.Version, "size": info.Size, "digest": info.Digest})
	out := &objectUploadOutput{}
	out.Body.Name, out.Body.Version, out.Body.Size, out.Body.Digest = in.Name, in.Version, info.Size, info.Digest
	return out, nil
}

func (srv *Server) deleteObject(ctx context.Context, k objectKind, in *objectPath) error {
	key, err := in.key()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return err
	}
	if err := c.DeleteObject(ctx, k.store, key); err != nil {
		return srv.objectProblem(ctx, k, "delete", key, err)
	}
	srv.audit(ctx, k.deleteAction, key, map[string]any{"name": in.Name, "version": in.Version})
	return nil
}

// formError is a multipart body that is not an acceptable upload: the
// caller's 400.
type formError struct{ msg string }

func (e formError) Error() string { return e.msg }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// uploadProblem answers an upload whose body failed: 413 over the cap,
// 408 when it arrived too slowly, 400 for a malformed form.
func uploadProblem(err error, limit int64, deadline time.Duration) error {
	var mbe *http.MaxBytesError
	var fe formError
	switch {
	case errors.As(err, &mbe):
		return tooLargeOf(limit)
	case isTimeout(err):
		return huma.NewError(http.StatusRequestTimeout, fmt.Sprintf("reading the upload timed out (this route allows %s)", deadline))
	case errors.As(err, &fe):
		return huma.Error400BadRequest(fe.msg)
	}
	return huma.Error400BadRequest("malformed multipart body: " + err.Error())
}

// formFile reads the field file of a multipart body as the object's
// bytes. It reports the end of the object only once the rest of the form
// is read and found sound (no second file field, a proper end), so the
// store never completes an object from a form that is refused; any
// failure comes back from Read, and the store drops what it took.
type formFile struct {
	mr   *multipart.Reader
	part *bufio.Reader
	n    int64
}

// openFormFile reads up to the field file and makes sure it holds at
// least one byte.
func openFormFile(body io.Reader, boundary string) (*formFile, error) {
	mr := multipart.NewReader(body, boundary)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, formError{"the form has no file field: send the content as the multipart field file"}
		}
		if err != nil {
			return nil, wrapForm(err)
		}
		if p.FormName() != "file" {
			if _, err := io.Copy(io.Discard, p); err != nil {
				return nil, wrapForm(err)
			}
			continue
		}
		br := bufio.NewReaderSize(p, 64<<10)
		if _, err := br.Peek(1); errors.Is(err, io.EOF) {
			return nil, formError{"the file field is empty"}
		} else if err != nil {
			return nil, wrapForm(err)
		}
		return &formFile{mr: mr, part: br}, nil
	}
}

// wrapForm keeps the errors uploadProblem tells apart (the size cap, a
// timeout) and makes any other a malformed form.
func wrapForm(err error) error {
	if errors.As(err, new(*http.MaxBytesError)) || isTimeout(err) {
		return err
	}
	return formError{"malformed multipart body: " + err.Error()}
}

// Read fills p whole unless the file ends: the store makes one chunk
// message of each Read, and a multipart part hands over a few KiB at a
// time, so passing its reads on would cut an object into tens of
// thousands of messages (and as many allocations on the way).
func (f *formFile) Read(p []byte) (int, error) {
	if f.part == nil {
		return 0, io.EOF
	}
	n := 0
	var err error
	for n < len(p) && err == nil {
		var k int
		k, err = f.part.Read(p[n:])
		n += k
	}
	f.n += int64(n)
	if err == io.EOF { // the part's own end, not a truncated body
		f.part = nil
		if err := f.rest(); err != nil {
			return n, err
		}
		return n, io.EOF
	}
	if err != nil {
		return n, wrapForm(err)
	}
	return n, nil
}

// rest reads the form past the file field: other fields are dropped, a
// second file field is refused.
func (f *formFile) rest() error {
	for {
		p, err := f.mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return wrapForm(err)
		}
		if p.FormName() == "file" {
			return formError{"the form has more than one file field"}
		}
		if _, err := io.Copy(io.Discard, p); err != nil {
			return wrapForm(err)
		}
	}
}
