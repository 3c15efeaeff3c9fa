package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// The limits of a synchronous invocation. Lambda refuses a larger event
// before the function sees it (the caller gets the error), and the runtime
// interface emulator cuts it at maxEvent + 100 bytes instead, so the
// function may see a truncated one; a larger response fails the invocation.
const (
	maxEvent    = 6 << 20
	maxResponse = 6 << 20
)

// kind is the front door an event came through, which decides how the
// request is read and in which shape the response must go back.
type kind uint8

const (
	// kindV1 is API Gateway REST (and an HTTP API with payload format 1.0).
	kindV1 kind = iota + 1
	// kindV2 is an API Gateway HTTP API with payload format 2.0 (also a
	// function URL).
	kindV2
	// kindALBMulti is an ALB target group with multi-value headers on.
	kindALBMulti
	// kindALBSingle is an ALB target group with multi-value headers off (the
	// ALB default): headers and query parameters carry one value each, and
	// the response must answer in kind.
	kindALBSingle
)

func (k kind) String() string {
	switch k {
	case kindV1:
		return "API Gateway v1"
	case kindV2:
		return "API Gateway v2"
	case kindALBMulti:
		return "ALB (multi-value headers)"
	case kindALBSingle:
		return "ALB (single-value headers)"
	}
	return "unknown"
}

// errNotHTTP is the answer to an event that no HTTP front door sends.
var errNotHTTP = errors.New("not an API Gateway (v1 or v2) or ALB event")

// httpEvent is the union of the three front doors' payloads: one decode reads
// any of them, and kind tells them apart.
type httpEvent struct {
	Version        string              `json:"version"`
	Resource       string              `json:"resource"`
	RouteKey       string              `json:"routeKey"`
	HTTPMethod     string              `json:"httpMethod"`
	Path           string              `json:"path"`
	RawPath        string              `json:"rawPath"`
	RawQuery       string              `json:"rawQueryString"`
	Query          map[string]string   `json:"queryStringParameters"`
	MultiQuery     map[string][]string `json:"multiValueQueryStringParameters"`
	Headers        map[string]string   `json:"headers"`
	MultiHeaders   map[string][]string `json:"multiValueHeaders"`
	PathParameters map[string]string   `json:"pathParameters"`
	Cookies        []string            `json:"cookies"`
	Body           string              `json:"body"`
	IsBase64       bool                `json:"isBase64Encoded"`
	RequestContext struct {
		Stage      string `json:"stage"`
		DomainName string `json:"domainName"`
		Identity   struct {
			SourceIP string `json:"sourceIp"`
		} `json:"identity"`
		HTTP struct {
			Method   string `json:"method"`
			SourceIP string `json:"sourceIp"`
		} `json:"http"`
		ELB *struct {
			TargetGroupArn string `json:"targetGroupArn"`
		} `json:"elb"`
	} `json:"requestContext"`
}

// kind tells the front door from the fields only it sends. An ALB target
// group with multi-value headers on sends multiValueHeaders and nothing
// else; with them off, headers.
func (e *httpEvent) kind() (kind, error) {
	switch {
	case e.RequestContext.ELB != nil:
		if e.MultiHeaders != nil {
			return kindALBMulti, nil
		}
		return kindALBSingle, nil
	case e.Version == "2.0":
		return kindV2, nil
	case e.HTTPMethod != "":
		return kindV1, nil
	}
	return 0, errNotHTTP
}

// gateway serves an http.Handler to Lambda events from API Gateway (v1, v2)
// and ALB (either target-group mode), answering each in the shape its front
// door expects. It replaces algnhsa, which refuses ALB events without
// multi-value headers, routes API Gateway v1 requests through a custom
// domain's base path to the wrong path, and mangles binary response bodies
// unless told every content type is binary.
type gateway struct {
	h http.Handler
	// bodies are the recorders' buffers, kept between invocations: a
	// warm invocation writes its answer into memory already grown to the
	// size of earlier answers instead of growing a new buffer step by
	// step. Nil: a new buffer each time.
	bodies *sync.Pool
}

func newGateway(h http.Handler) gateway {
	return gateway{h: h, bodies: &sync.Pool{New: func() any { return new(bytes.Buffer) }}}
}

// Invoke answers one event (lambda.Handler).
func (g gateway) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	var e httpEvent
	if err := json.Unmarshal(payload, &e); err != nil {
		if len(payload) >= maxEvent {
			// Cut at the payload limit on its way in (the emulator does
			// that): answer as the handler answers a body over its cap.
			if k, ok := truncatedKind(payload); ok {
				return encode(k, problem(http.StatusRequestEntityTooLarge,
					fmt.Sprintf("the request is larger than an AWS Lambda invocation carries (%d MiB)", maxEvent>>20)))
			}
		}
		return nil, fmt.Errorf("decode event: %w", err)
	}
	k, err := e.kind()
	if err != nil {
		return nil, err
	}
	r, err := e.request(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("%s event: %w", k, err)
	}
	w := newRecorder(r.Method == http.MethodHead, g.bodies)
	g.h.ServeHTTP(w, r)
	out, err := encode(k, w.result())
	w.release()
	if err != nil {
		return nil, err
	}
	if len(out) > maxResponse {
		return encode(k, problem(http.StatusInternalServerError,
			fmt.Sprintf("the response (%d bytes) is larger than AWS Lambda returns (%d MiB); ask for less (a smaller ?limit=)", len(out), maxResponse>>20)))
	}
	return out, nil
}

// truncatedKind recovers the front door of an event cut short: every front
// door sends the body after the request context and headers, so the fields
// before "body" decode and tell.
func truncatedKind(payload []byte) (kind, bool) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, false
	}
	head := map[string]json.RawMessage{}
	for {
		t, err := dec.Token()
		if err != nil {
			break
		}
		key, ok := t.(string)
		if !ok || key == "body" {
			break
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			break
		}
		head[key] = v
	}
	raw, err := json.Marshal(head)
	if err != nil {
		return 0, false
	}
	var e httpEvent
	if err := json.Unmarshal(raw, &e); err != nil {
		return 0, false
	}
	k, err := e.kind()
	return k, err == nil
}

// request is the http.Request the event stands for, as net/http's server
// would have parsed it: a request URI without scheme or host, the Host
// header moved to Host, the body decoded and its length known.
func (e *httpEvent) request(ctx context.Context, k kind) (*http.Request, error) {
	var method, path, query, remote string
	var hdr http.Header
	switch k {
	case kindV1:
		method = e.HTTPMethod
		path = appPath(e.Path, e.Resource, e.PathParameters)
		query = decodedQuery(e.Query, e.MultiQuery)
		hdr = headers(e.Headers, e.MultiHeaders)
		remote = e.RequestContext.Identity.SourceIP
	case kindV2:
		method = e.RequestContext.HTTP.Method
		path = e.v2Path()
		query = e.RawQuery
		hdr = headers(e.Headers, nil)
		if len(e.Cookies) > 0 {
			hdr.Set("Cookie", strings.Join(e.Cookies, "; "))
		}
		remote = e.RequestContext.HTTP.SourceIP
	case kindALBMulti, kindALBSingle:
		method = e.HTTPMethod
		path = e.Path
		query = rawQuery(e.Query, e.MultiQuery)
		hdr = headers(e.Headers, e.MultiHeaders)
		remote = lastForwardedFor(hdr)
	}
	if path == "" {
		path = "/"
	}
	uri := path
	if query != "" {
		uri += "?" + query
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		// A path the gateway decoded (v1 path parameters) may hold
		// characters a request line may not; escape it instead.
		u = &url.URL{Path: path, RawQuery: query}
		uri = u.RequestURI()
	}
	body := []byte(e.Body)
	if e.IsBase64 {
		if body, err = base64.StdEncoding.DecodeString(e.Body); err != nil {
			return nil, fmt.Errorf("base64 body: %w", err)
		}
	}
	host := hdr.Get("Host")
	hdr.Del("Host")
	// The body is whole: how the client framed it no longer applies.
	hdr.Del("Transfer-Encoding")
	r := &http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Body:          http.NoBody,
		ContentLength: int64(len(body)),
		Host:          host,
		RemoteAddr:    remote,
		RequestURI:    uri,
	}
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if r.Method == "" {
		return nil, errors.New("no HTTP method")
	}
	return r.WithContext(ctx), nil
}

// v2Path is the request path without what API Gateway put before it: the
// part a {proxy+} route did not match (a custom domain's API mapping), or,
// on the $default route, a named stage's segment, which the execute-api
// address carries and a custom domain does not.
func (e *httpEvent) v2Path() string {
	if _, route, ok := strings.Cut(e.RouteKey, " "); ok {
		return appPath(e.RawPath, route, e.PathParameters)
	}
	stage := e.RequestContext.Stage
	if stage == "" || stage == "$default" || !strings.Contains(e.RequestContext.DomainName, ".execute-api.") {
		return e.RawPath
	}
	prefix := "/" + stage
	if rest, ok := strings.CutPrefix(e.RawPath, prefix); ok && (rest == "" || rest[0] == '/') {
		if rest == "" {
			return "/"
		}
		return rest
	}
	return e.RawPath
}

// appPath is path without the prefix API Gateway adds ahead of the route
// (a custom domain's base path mapping, v1's stage through some mappings):
// the route template filled with the path parameters is the path the API
// was asked for, and what precedes it in path is the prefix. The template
// is "/{proxy+}", "/" or any resource such as "/api/agents/{id}"; without
// one, or with parameters that do not fill it, path is kept as it came.
func appPath(path, template string, params map[string]string) string {
	if template == "" {
		return path
	}
	want, ok := fillTemplate(template, params)
	if !ok {
		return path
	}
	decoded, err := url.PathUnescape(path)
	if err != nil {
		decoded = path
	}
	if decoded == want {
		return path
	}
	if prefix, ok := strings.CutSuffix(decoded, want); ok && strings.HasPrefix(path, prefix) {
		// Keep the escaping of the part that remains.
		return path[len(prefix):]
	}
	return (&url.URL{Path: want}).EscapedPath()
}

// fillTemplate replaces every {name} and {name+} of an API Gateway resource
// or route with its path parameter.
func fillTemplate(template string, params map[string]string) (string, bool) {
	var b strings.Builder
	for {
		open := strings.IndexByte(template, '{')
		if open < 0 {
			b.WriteString(template)
			return b.String(), true
		}
		end := strings.IndexByte(template[open:], '}')
		if end < 0 {
			return "", false
		}
		name := strings.TrimSuffix(template[open+1:open+end], "+")
		v, ok := params[name]
		if !ok {
			return "", false
		}
		b.WriteString(template[:open])
		b.WriteString(v)
		template = template[open+end+1:]
	}
}

// headers merges single- and multi-value headers as API Gateway v1 defines
// it: a name in both takes the multi-value list.
func headers(single map[string]string, multi map[string][]string) http.Header {
	h := make(http.Header, len(single)+len(multi))
	for k, v := range single {
		h[http.CanonicalHeaderKey(k)] = []string{v}
	}
	for k, vs := range multi {
		h[http.CanonicalHeaderKey(k)] = slices.Clone(vs)
	}
	return h
}

// decodedQuery encodes API Gateway v1's query parameters, which arrive
// decoded; a key in both maps takes the multi-value list.
func decodedQuery(single map[string]string, multi map[string][]string) string {
	v := make(url.Values, len(single)+len(multi))
	for k, s := range single {
		v[k] = []string{s}
	}
	for k, vs := range multi {
		v[k] = vs
	}
	return v.Encode()
}

// rawQuery joins ALB's query parameters, which arrive as the client encoded
// them (ALB decodes nothing), in key order. In single-value mode ALB keeps
// only the last value of a repeated key: that loss happens before us.
func rawQuery(single map[string]string, multi map[string][]string) string {
	pairs := make([]string, 0, len(single)+len(multi))
	add := func(k, v string) {
		if v == "" {
			pairs = append(pairs, k)
		} else {
			pairs = append(pairs, k+"="+v)
		}
	}
	for _, k := range sortedKeys(multi) {
		for _, v := range multi[k] {
			add(k, v)
		}
	}
	for _, k := range sortedKeys(single) {
		if _, dup := multi[k]; !dup {
			add(k, single[k])
		}
	}
	return strings.Join(pairs, "&")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// lastForwardedFor is the client address ALB saw: the last entry of
// X-Forwarded-For, which ALB appends. The entries before it are whatever
// the client sent, so the first one (what algnhsa used) lets anyone pick
// the address the login throttle counts them under.
func lastForwardedFor(h http.Header) string {
	vs := h.Values("X-Forwarded-For")
	if len(vs) == 0 {
		return ""
	}
	last := vs[len(vs)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last)
}

// recorder collects a handler's answer the way net/http's server would send
// it: headers as they were when the status was written, the content type
// sniffed when the handler set none, no body for HEAD, 204 or 304.
// (Date and Content-Length are the front door's to add.)
type recorder struct {
	header http.Header
	sent   http.Header
	status int
	body   *bytes.Buffer
	head   bool
	pool   *sync.Pool
}

// maxPooledBody is the largest buffer kept: one huge answer must not pin
// its memory for the life of the sandbox.
const maxPooledBody = 1 << 20

// newRecorder records into a buffer from bodies (nil: a new one).
func newRecorder(head bool, bodies *sync.Pool) *recorder {
	w := &recorder{header: http.Header{}, head: head, body: new(bytes.Buffer), pool: bodies}
	if bodies != nil {
		w.body = bodies.Get().(*bytes.Buffer)
		w.body.Reset()
	}
	return w
}

// release gives the body buffer back to the pool; nothing of the
// recorder's answer may be used after it.
func (w *recorder) release() {
	if w.pool != nil && w.body.Cap() <= maxPooledBody {
		w.pool.Put(w.body)
	}
	w.body = nil
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(code int) {
	if w.sent != nil || code < 200 {
		// A second status is ignored, as net/http does; 1xx are interim
		// answers a Lambda response cannot carry.
		return
	}
	w.status = code
	w.sent = w.header.Clone()
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.sent == nil {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.head && w.body.Len() >= sniffLen {
		// Kept only to sniff the content type, as net/http does for HEAD.
		return len(p), nil
	}
	return w.body.Write(p)
}

// sniffLen is how much of a body http.DetectContentType reads.
const sniffLen = 512

// Flush is a no-op: the whole answer goes back at once. It exists so that a
// handler that streams still works.
func (w *recorder) Flush() {}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// answer is a handler's complete response.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (w *recorder) result() answer {
	if w.sent == nil {
		w.WriteHeader(http.StatusOK)
	}
	body := w.body.Bytes()
	if _, ok := w.sent["Content-Type"]; !ok && len(body) > 0 {
		w.sent.Set("Content-Type", http.DetectContentType(body))
	}
	if w.head {
		body = nil
	}
	return answer{status: w.status, header: w.sent, body: body}
}

// problem is an RFC 9457 answer of the gateway itself, shaped like the
// handler's.
func problem(status int, detail string) answer {
	body, _ := json.Marshal(struct {
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{http.StatusText(status), status, detail})
	h := http.Header{}
	h.Set("Content-Type", "application/problem+json")
	return answer{status: status, header: h, body: body}
}

// lambdaResponse is the union of the three front doors' response shapes; encode
// fills the fields the event's kind reads.
type lambdaResponse struct {
	StatusCode        int                 `json:"statusCode"`
	StatusDescription string              `json:"statusDescription,omitempty"`
	Headers           map[string]string   `json:"headers,omitempty"`
	MultiValueHeaders map[string][]string `json:"multiValueHeaders,omitempty"`
	Cookies           []string            `json:"cookies,omitempty"`
	Body              string              `json:"body"`
	IsBase64Encoded   bool                `json:"isBase64Encoded"`
}

// encode writes a in the response shape of kind k. A body that is not UTF-8
// (images) or is compressed (gzip, brotli: a brotli stream can happen to be
// valid UTF-8) goes base64-encoded, which API Gateway v2 and ALB decode
// by themselves and v1 decodes for the binary media types of the API
// (template.yaml sets */*); text goes as it is, so v1 without binary media
// types serves it too.
func encode(k kind, a answer) ([]byte, error) {
	r := lambdaResponse{StatusCode: a.status}
	coded := a.header.Get("Content-Encoding")
	if utf8.Valid(a.body) && (coded == "" || strings.EqualFold(coded, "identity")) {
		r.Body = string(a.body)
	} else {
		r.Body = base64.StdEncoding.EncodeToString(a.body)
		r.IsBase64Encoded = true
	}
	switch k {
	case kindV1, kindALBMulti:
		r.MultiValueHeaders = a.header
	case kindV2:
		// HTTP APIs take one value per name, and cookies apart.
		r.Headers = make(map[string]string, len(a.header))
		for name, vs := range a.header {
			if name == "Set-Cookie" {
				r.Cookies = vs
				continue
			}
			r.Headers[name] = strings.Join(vs, ", ")
		}
	case kindALBSingle:
		// One value per name: a list header joins as HTTP allows; of
		// several cookies only the last survives (ALB's own rule).
		r.Headers = make(map[string]string, len(a.header))
		for name, vs := range a.header {
			if name == "Set-Cookie" {
				r.Headers[name] = vs[len(vs)-1]
				continue
			}
			r.Headers[name] = strings.Join(vs, ", ")
		}
	}
	if k == kindALBMulti || k == kindALBSingle {
		r.StatusDescription = strconv.Itoa(a.status) + " " + http.StatusText(a.status)
	}
	// Not json.Marshal: HTML in a body needs no escaping in this JSON, and
	// escaping it makes the response longer.
	var out bytes.Buffer
	// The body, escaped, plus the headers: one allocation, not a dozen
	// doublings of a buffer that starts empty.
	out.Grow(len(r.Body) + len(r.Body)/8 + 512)
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}
