//go:build unix

package main

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend/shells/internal/proctest"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// The variables that switch on the emulator tests (scripts/ci-deploy.sh sets
// them): the aws-lambda-rie binary, and optionally prebuilt binaries so the
// tests do not build their own.
const (
	envRIE       = "KANADE_TEST_RIE"
	envBootstrap = "KANADE_TEST_BOOTSTRAP"
	envHTTPShell = "KANADE_TEST_HTTP_SHELL"
	envControl   = "KANADE_TEST_CONTROL_BOOTSTRAP"
	envBaseline  = "KANADE_TEST_BASELINE_BOOTSTRAP"
)

// bootstrapTags and bootstrapGCFlags build the bootstrap as `just lambda`
// does (the justfile says why each is there).
const bootstrapTags = "lambda.norpc,kanade.nosqlite,kanade.nobrotli"

var bootstrapGCFlags = []string{"-gcflags=github.com/kanade-fleet/backend=-l",
	"-gcflags=github.com/kanade-fleet/backend/bus=-l", "-gcflags=github.com/kanade-fleet/backend/handlers=-l"}

var bootstrapFlags = append([]string{"-tags", bootstrapTags, "-ldflags", "-s -w"}, bootstrapGCFlags...)

// TestEveryBootstrapBuildUsesTheSameFlags: the bootstrap is built in three
// places (the justfile's build and lambda recipes, scripts/ci-deploy.sh, and
// these tests), and the size target holds only with the tags and the
// gcflags together; one that drifts ships a larger binary than CI measured.
func TestEveryBootstrapBuildUsesTheSameFlags(t *testing.T) {
	gcflags := strings.Join(bootstrapGCFlags, " ")
	just, err := os.ReadFile("../../justfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"lambda_tags := " + strconv.Quote(bootstrapTags), "lambda_gcflags := " + strconv.Quote(gcflags)} {
		if !bytes.Contains(just, []byte(v)) {
			t.Errorf("justfile: no %s", v)
		}
	}
	if n := bytes.Count(just, []byte("-tags '{{lambda_tags}}' {{lambda_gcflags}}")); n != 2 {
		t.Errorf("justfile: %d bootstrap builds with both lambda_tags and lambda_gcflags, want 2 (build, lambda)", n)
	}
	ci, err := os.ReadFile("../../scripts/ci-deploy.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"-tags " + bootstrapTags, gcflags} {
		if !bytes.Contains(ci, []byte(v)) {
			t.Errorf("scripts/ci-deploy.sh: no %s", v)
		}
	}
}

// maxBootstrapBytes is the size the bootstrap must stay under: a smaller
// zip loads faster at a cold start.
const maxBootstrapBytes = 15_000_000 // "under 15 MB", decimal

// rieKinds are the four ways a request reaches the function.
var rieKinds = []kind{kindV1, kindV2, kindALBMulti, kindALBSingle}

// wireRequest is one HTTP request as a client sends it.
type wireRequest struct {
	name   string
	method string
	path   string      // escaped, as on the request line
	query  [][2]string // encoded keys and values, in order
	header http.Header
	body   []byte
	// statusOnly compares status and content type only: the body is the
	// process's own (metrics), or one side cannot produce the other's text
	// (Lambda refuses an event over its limit before the handler runs).
	statusOnly bool
}

// collapsed is the request as an ALB target group without multi-value
// headers forwards it: the last value of each repeated header and query key.
func (r wireRequest) collapsed() wireRequest {
	last := map[string]string{}
	var order []string
	for _, kv := range r.query {
		if _, ok := last[kv[0]]; !ok {
			order = append(order, kv[0])
		}
		last[kv[0]] = kv[1]
	}
	r.query = nil
	for _, k := range order {
		r.query = append(r.query, [2]string{k, last[k]})
	}
	h := http.Header{}
	for k, vs := range r.header {
		h[k] = vs[len(vs)-1:]
	}
	r.header = h
	return r
}

func (r wireRequest) rawQuery() string {
	var parts []string
	for _, kv := range r.query {
		parts = append(parts, kv[0]+"="+kv[1])
	}
	return strings.Join(parts, "&")
}

func unescape(s string) string {
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return u
}

func unescapePath(s string) string {
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// rieEvent is r as front door k sends it. API Gateway v1 arrives through a
// custom domain whose base path mapping is "kanade", on a REST API with
// binary media type */* (every body base64).
func rieEvent(k kind, r wireRequest) []byte {
	const client = "203.0.113.50"
	lower := func(h http.Header) map[string][]string {
		out := map[string][]string{}
		for name, vs := range h {
			out[strings.ToLower(name)] = vs
		}
		return out
	}
	last := func(m map[string][]string) map[string]string {
		out := map[string]string{}
		for k, vs := range m {
			out[k] = vs[len(vs)-1]
		}
		return out
	}
	body, b64 := string(r.body), false
	if !utf8.Valid(r.body) || r.header.Get("Content-Encoding") != "" || k == kindV1 && len(r.body) > 0 {
		body, b64 = base64.StdEncoding.EncodeToString(r.body), true
	}
	var ev map[string]any
	switch k {
	case kindV1:
		decoded := map[string][]string{}
		for _, kv := range r.query {
			key := unescape(kv[0])
			decoded[key] = append(decoded[key], unescape(kv[1]))
		}
		resource, params := "/", map[string]string(nil)
		if r.path != "/" {
			resource, params = "/{proxy+}", map[string]string{"proxy": unescapePath(r.path)[1:]}
		}
		ev = map[string]any{"resource": resource, "path": "/kanade" + r.path, "httpMethod": r.method,
			"headers": last(r.header), "multiValueHeaders": r.header,
			"queryStringParameters": last(decoded), "multiValueQueryStringParameters": decoded,
			"pathParameters": params,
			"requestContext": map[string]any{"accountId": "123456789012", "stage": "prod", "path": "/kanade" + r.path,
				"domainName": "kanade.example.com", "identity": map[string]any{"sourceIp": client}, "httpMethod": r.method}}
	case kindV2:
		h := map[string]string{}
		var cookies []string
		for name, vs := range lower(r.header) {
			if name == "cookie" {
				for _, v := range vs {
					cookies = append(cookies, strings.Split(v, "; ")...)
				}
				continue
			}
			h[name] = strings.Join(vs, ",")
		}
		ev = map[string]any{"version": "2.0", "routeKey": "$default", "rawPath": r.path, "rawQueryString": r.rawQuery(),
			"cookies": cookies, "headers": h,
			"requestContext": map[string]any{"accountId": "123456789012", "apiId": "abc123", "stage": "$default",
				"domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
				"http":       map[string]any{"method": r.method, "path": r.path, "protocol": "HTTP/1.1", "sourceIp": client}}}
	case kindALBMulti, kindALBSingle:
		h := lower(r.header)
		h["x-forwarded-for"] = []string{client}
		q := map[string][]string{}
		for _, kv := range r.query {
			q[kv[0]] = append(q[kv[0]], kv[1])
		}
		ev = map[string]any{"requestContext": map[string]any{"elb": map[string]any{
			"targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/kanade/0123456789abcdef"}},
			"httpMethod": r.method, "path": r.path}
		if k == kindALBMulti {
			ev["multiValueHeaders"], ev["multiValueQueryStringParameters"] = h, q
		} else {
			ev["headers"], ev["queryStringParameters"] = last(h), last(q)
		}
	}
	head, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	// Every front door sends the body last (json.Marshal would sort it
	// first), which matters to an event cut at the payload limit.
	tail, _ := json.Marshal(map[string]any{"body": body, "isBase64Encoded": b64})
	return append(append(head[:len(head)-1], ','), tail[1:]...)
}

// seenAnswer is a response as a client sees it.
type seenAnswer struct {
	status int
	header http.Header
	body   []byte
}

// decodeAnswer reads a function response in the shape of kind k.
func decodeAnswer(k kind, raw []byte) (seenAnswer, error) {
	var r lambdaAnswer
	if err := json.Unmarshal(raw, &r); err != nil || r.StatusCode == 0 {
		return seenAnswer{}, fmt.Errorf("not a response: %.300s", raw)
	}
	a := seenAnswer{status: r.StatusCode, header: http.Header{}}
	switch k {
	case kindV1, kindALBMulti:
		if r.Headers != nil {
			return a, fmt.Errorf("%s response has single-value headers: %v", k, r.Headers)
		}
		for name, vs := range r.MultiValueHeaders {
			a.header[http.CanonicalHeaderKey(name)] = vs
		}
	case kindV2, kindALBSingle:
		if r.MultiValueHeaders != nil {
			return a, fmt.Errorf("%s response has multi-value headers: %v", k, r.MultiValueHeaders)
		}
		for name, v := range r.Headers {
			a.header.Set(name, v)
		}
		if len(r.Cookies) > 0 {
			a.header["Set-Cookie"] = r.Cookies
		}
	}
	if (k == kindALBMulti || k == kindALBSingle) && r.StatusDescription != fmt.Sprintf("%d %s", r.StatusCode, http.StatusText(r.StatusCode)) {
		return a, fmt.Errorf("ALB statusDescription %q", r.StatusDescription)
	}
	a.body = []byte(r.Body)
	if r.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(r.Body)
		if err != nil {
			return a, err
		}
		a.body = b
	}
	return a, nil
}

// comparable is what must match between the shells: the headers the front
// door does not set itself (Date, Content-Length, the hop-by-hop ones), as
// one value per name where the front door takes one.
func comparable(h http.Header, single bool) map[string][]string {
	out := map[string][]string{}
	for name, vs := range h {
		switch name {
		case "Date", "Content-Length", "Connection", "Keep-Alive", "Transfer-Encoding":
			continue
		}
		if single {
			vs = []string{strings.Join(vs, ", ")}
		}
		out[name] = vs
	}
	return out
}

// rig is an HTTP shell and the Lambda bootstrap under the emulator, on the
// same database and NATS.
type rig struct {
	rie, bootstrap string
	httpBase       string
	client         *http.Client
	lambdaEnv      map[string]string
}

func startRig(t *testing.T) *rig {
	rie := os.Getenv(envRIE)
	if rie == "" {
		t.Skipf("set %s to an aws-lambda-rie binary (scripts/ci-deploy.sh does)", envRIE)
	}
	if os.Getenv(storagetest.EnvSQLD) == "" {
		t.Skipf("set %s too: the bootstrap has no SQLite driver, so both shells share a libSQL server", storagetest.EnvSQLD)
	}
	r := &rig{rie: rie, client: &http.Client{Timeout: 30 * time.Second,
		// No Accept-Encoding of its own: the events carry only the
		// request's headers, so the HTTP shell must see the same ones
		// (it gzips the dashboard for a client that asks).
		Transport: &http.Transport{DisableCompression: true}}}
	r.bootstrap = proctest.Build(t, envBootstrap, "shells/lambda", bootstrapFlags...)
	shell := proctest.Build(t, envHTTPShell, "shells/http")
	dsn := storagetest.DSN(t)
	nats := proctest.FreeAddr(t)
	p := proctest.Start(t, shell, nil, map[string]string{
		"KANADE_DATA_DIR": t.TempDir(), "KANADE_DB": dsn, "KANADE_HTTP_ADDR": "127.0.0.1:0", "KANADE_NATS_LISTEN": nats,
		// No worker: a worker in the process adds its own view of the
		// projections to the health answers, which the Lambda has not.
		"KANADE_WORKER": "off", "KANADE_AUTH_STATIC_TOKEN": token, "KANADE_LOG_LEVEL": "warn"})
	r.httpBase = p.WaitOutput(t, regexp.MustCompile(`kanade: listening on (http://\S+)/`), 60*time.Second)[1]
	r.lambdaEnv = map[string]string{"KANADE_DB": dsn, "KANADE_NATS_URL": "nats://" + nats,
		"KANADE_AUTH_STATIC_TOKEN": token, "KANADE_LOG_LEVEL": "warn"}
	// JetStream is bootstrapped by the HTTP shell once NATS answers; wait,
	// so that both shells report the same resources.
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := r.viaHTTP(t, wireRequest{method: "GET", path: "/api/jetstream/status", header: authHeader()})
		if a.status == http.StatusOK && !bytes.Contains(a.body, []byte(`"exists":false`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream not bootstrapped: %d %s", a.status, a.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

func authHeader() http.Header {
	return http.Header{"Authorization": {"Bearer " + token}, "Accept": {"application/json"}}
}

// emulator is one aws-lambda-rie process running the bootstrap.
type emulator struct {
	proc *proctest.Proc
	url  string
}

// startEmulator starts the emulator on loopback. The bootstrap starts at
// the first invocation, as Lambda starts a sandbox.
func (r *rig) startEmulator(t *testing.T, env map[string]string) *emulator {
	t.Helper()
	return r.startEmulatorOf(t, r.bootstrap, env)
}

// startEmulatorOf is startEmulator with another bootstrap.
func (r *rig) startEmulatorOf(t *testing.T, bootstrap string, env map[string]string) *emulator {
	t.Helper()
	addr, api := proctest.FreeAddr(t), proctest.FreeAddr(t)
	if env == nil {
		env = r.lambdaEnv
	}
	p := proctest.Start(t, r.rie, []string{"--runtime-interface-emulator-address", addr,
		"--runtime-api-address", api, "--log-level", "error", bootstrap}, env)
	return &emulator{proc: p, url: "http://" + addr + "/2015-03-31/functions/function/invocations"}
}

// invoke sends one event and returns the function's raw answer, retrying
// while the emulator is not listening yet.
func (e *emulator) invoke(t *testing.T, client *http.Client, payload []byte) []byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Post(e.url, "application/json", bytes.NewReader(payload))
		if err == nil {
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read invocation answer: %v", err)
			}
			return b
		}
		if e.proc.Exited() || time.Now().After(deadline) {
			t.Fatalf("invoke: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *rig) viaHTTP(t *testing.T, w wireRequest) seenAnswer {
	t.Helper()
	u := r.httpBase + w.path
	if q := w.rawQuery(); q != "" {
		u += "?" + q
	}
	req, err := http.NewRequest(w.method, u, bytes.NewReader(w.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = w.header.Clone()
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", w.method, w.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return seenAnswer{status: resp.StatusCode, header: resp.Header, body: b}
}

// routes are every operation of the served OpenAPI document, with
// placeholder path parameters and an empty JSON object as the body of a
// write, plus what the document does not list: probes, metrics, the
// dashboard, and the bodies and queries the issue names.
func (r *rig) routes(t *testing.T) []wireRequest {
	a := r.viaHTTP(t, wireRequest{method: "GET", path: "/api/openapi.json", header: authHeader()})
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(a.body, &doc); err != nil || len(doc.Paths) == 0 {
		t.Fatalf("openapi.json: %d %v %.200s", a.status, err, a.body)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	var out []wireRequest
	for _, rel := range sortedKeys(doc.Paths) {
		// A path item with servers of its own is served at that server's
		// (relative) path plus the item's.
		path := rel
		if raw, ok := doc.Paths[rel]["servers"]; ok {
			var servers []struct {
				URL string `json:"url"`
			}
			if err := json.Unmarshal(raw, &servers); err != nil || len(servers) == 0 {
				t.Fatalf("%s: servers %s", rel, raw)
			}
			path = servers[0].URL + rel
		}
		for _, method := range sortedKeys(doc.Paths[rel]) {
			m := strings.ToUpper(method)
			if !slices.Contains([]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}, m) {
				continue
			}
			w := wireRequest{name: m + " " + path, method: m, path: param.ReplaceAllString(path, "rie-nope"), header: authHeader()}
			if m == "POST" || m == "PUT" || m == "PATCH" {
				w.body = []byte("{}")
				w.header.Set("Content-Type", "application/json")
			}
			out = append(out, w)
		}
	}
	etag := r.viaHTTP(t, wireRequest{method: "GET", path: "/", header: http.Header{}}).header.Get("ETag")
	var binary []byte
	for i := range 256 {
		binary = append(binary, byte(i))
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, `{"id":"rie-job"}`)
	zw.Close()
	withBody := func(name, ct, enc string, body []byte) wireRequest {
		h := authHeader()
		h.Set("Content-Type", ct)
		if enc != "" {
			h.Set("Content-Encoding", enc)
		}
		return wireRequest{name: name, method: "POST", path: "/api/jobs", header: h, body: body}
	}
	out = append(out,
		wireRequest{name: "probe /health", method: "GET", path: "/health", header: http.Header{}},
		wireRequest{name: "probe /healthz", method: "GET", path: "/healthz", header: http.Header{}},
		wireRequest{name: "probe /readyz", method: "GET", path: "/readyz", header: http.Header{}},
		wireRequest{name: "metrics", method: "GET", path: "/metrics", header: authHeader(), statusOnly: true},
		wireRequest{name: "metrics without a token", method: "GET", path: "/metrics", header: http.Header{}},
		wireRequest{name: "API without a token", method: "GET", path: "/api/agents", header: http.Header{}},
		wireRequest{name: "API with a wrong token", method: "GET", path: "/api/agents", header: http.Header{"Authorization": {"Bearer nope"}}},
		wireRequest{name: "dashboard", method: "GET", path: "/", header: http.Header{}},
		wireRequest{name: "dashboard HEAD", method: "HEAD", path: "/", header: http.Header{}},
		wireRequest{name: "dashboard revalidated", method: "GET", path: "/", header: http.Header{"If-None-Match": {etag}}},
		wireRequest{name: "dashboard script", method: "GET", path: "/assets/app.js", header: http.Header{}},
		wireRequest{name: "dashboard style", method: "GET", path: "/assets/app.css", header: http.Header{}},
		// No brotli: the bootstrap is built without it (handlers/brotli.go),
		// so an answer in brotli from the HTTP shell is the one difference.
		wireRequest{name: "dashboard page gzipped", method: "GET", path: "/", header: http.Header{"Accept-Encoding": {"gzip"}}},
		wireRequest{name: "dashboard range", method: "GET", path: "/assets/app.css", header: http.Header{"Range": {"bytes=0-99"}}},
		wireRequest{name: "dashboard missing asset", method: "GET", path: "/assets/nope.js", header: http.Header{}},
		wireRequest{name: "dashboard client route", method: "GET", path: "/agents/PC-1", header: http.Header{}},
		wireRequest{name: "unknown API path", method: "GET", path: "/api/rie-nope", header: authHeader()},
		wireRequest{name: "escaped path", method: "GET", path: "/api/agents/PC%201", header: authHeader()},
		wireRequest{name: "repeated query keys", method: "GET", path: "/api/agents",
			query: [][2]string{{"status", "online"}, {"status", "offline"}, {"q", "PC%201"}}, header: authHeader()},
		wireRequest{name: "repeated query keys, valid", method: "GET", path: "/api/results",
			query: [][2]string{{"limit", "5"}, {"limit", "7"}, {"job_id", "a%2Fb"}}, header: authHeader()},
		wireRequest{name: "repeated header", method: "GET", path: "/api/agents",
			header: http.Header{"Authorization": {"Bearer " + token}, "Accept": {"text/html", "application/json"}}},
		withBody("JSON body", "application/json", "", []byte(`{"id":"rie-job"}`)),
		withBody("YAML body", "application/yaml", "", []byte("id: rie-job\n")),
		withBody("binary body", "application/octet-stream", "", binary),
		withBody("gzip body", "application/json", "gzip", gz.Bytes()),
		withBody("body over the handler's 2 MiB cap", "application/json", "", bytes.Repeat([]byte(" "), 3<<20)),
	)
	over := withBody("body over Lambda's 6 MiB limit", "application/json", "", bytes.Repeat([]byte(" "), 7<<20))
	over.statusOnly = true
	return append(out, over)
}

// TestUnderTheEmulatorTheLambdaAnswersLikeTheHTTPShell drives the built
// bootstrap under the real runtime interface emulator with every route in
// each of the four event shapes, and compares status, headers and body with
// what the HTTP shell answers to the same request on the same database and
// NATS.
func TestUnderTheEmulatorTheLambdaAnswersLikeTheHTTPShell(t *testing.T) {
	r := startRig(t)
	if fi, err := os.Stat(r.bootstrap); err != nil {
		t.Fatal(err)
	} else if fi.Size() >= maxBootstrapBytes {
		// Issue 14's target, a figure rather than a verdict while the issue
		// is open (17.6 MB after the inventory and telemetry routes).
		t.Logf("perf: bootstrap is %d bytes, over the %d-byte target", fi.Size(), maxBootstrapBytes)
	}
	emu := r.startEmulator(t, nil)
	routes := r.routes(t)
	compared := 0
	for _, w := range routes {
		for _, k := range rieKinds {
			ref := w
			if k == kindALBSingle {
				ref = w.collapsed()
			}
			want := r.viaHTTP(t, ref)
			raw := emu.invoke(t, r.client, rieEvent(k, w))
			got, err := decodeAnswer(k, raw)
			if err != nil {
				t.Errorf("%s via %s: %v", w.name, k, err)
				continue
			}
			compared++
			single := k == kindV2 || k == kindALBSingle
			if got.status != want.status {
				t.Errorf("%s via %s: status %d, the HTTP shell %d (%.200s)", w.name, k, got.status, want.status, got.body)
				continue
			}
			if w.statusOnly {
				if g, h := got.header.Get("Content-Type"), want.header.Get("Content-Type"); g != h {
					t.Errorf("%s via %s: Content-Type %q, the HTTP shell %q", w.name, k, g, h)
				}
				continue
			}
			if diff := cmp.Diff(comparable(want.header, single), comparable(got.header, single)); diff != "" {
				t.Errorf("%s via %s: headers (-HTTP shell +Lambda):\n%s", w.name, k, diff)
			}
			if !bytes.Equal(got.body, want.body) && !sameBesidesTheClock(got.body, want.body) {
				t.Errorf("%s via %s: body differs: %s", w.name, k, bodyDiff(want.body, got.body))
			}
		}
	}
	t.Logf("compared %d answers: %d requests × %d event shapes", compared, len(routes), len(rieKinds))
}

// TestUnderTheEmulatorAFileDatabaseIsRefusedClearly: the bootstrap has no
// SQLite driver, so a file path in KANADE_DB must fail the start with a
// reason, not later.
func TestUnderTheEmulatorAFileDatabaseIsRefusedClearly(t *testing.T) {
	r := startRig(t)
	env := maps.Clone(r.lambdaEnv)
	env["KANADE_DB"] = t.TempDir() + "/kanade.db"
	emu := r.startEmulator(t, env)
	out := emu.invoke(t, r.client, rieEvent(kindV2, wireRequest{method: "GET", path: "/healthz", header: http.Header{}}))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(emu.proc.Stderr.String()+emu.proc.Stdout.String(), "no SQLite driver") {
		if time.Now().After(deadline) {
			t.Fatalf("invocation answered %s; no word of the missing driver in the output", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := decodeAnswer(kindV2, out); err == nil {
		t.Errorf("a bootstrap that cannot start answered %s", out)
	}
}

// TestUnderTheEmulatorColdStartAndWarmOverhead measures what the issue
// names: from starting the emulator to the first answer (a cold start: the
// emulator, the bootstrap's init, one request), and the warm cost of the
// same request through the emulator against the HTTP shell. The figures are
// logged (go test -v); the test fails only far beyond the targets, since a
// shared CI machine is no benchmark.
func TestUnderTheEmulatorColdStartAndWarmOverhead(t *testing.T) {
	r := startRig(t)
	probe := wireRequest{method: "GET", path: "/api/agents", query: [][2]string{{"limit", "1"}}, header: authHeader()}
	ev := rieEvent(kindV2, probe)
	// A cold start is the emulator coming up, then the bootstrap's start,
	// init and first answer: timed apart, and beside a control function
	// that opens nothing, so the machine's own cost of starting a process
	// under the emulator shows. The emulator starts the bootstrap only at
	// the first invocation (its Init is asynchronous, so the REPORT line's
	// "Init Duration" is a fraction of a millisecond and says nothing); its
	// REPORT "Duration" of that first invocation is the bootstrap's exec,
	// init and answer as the emulator timed it, without the test's HTTP
	// round trip to the emulator.
	control := proctest.Build(t, envControl, "shells/lambda/testdata/control", "-tags", "lambda.norpc", "-ldflags", "-s -w")
	// An optional second bootstrap (an older build), measured interleaved
	// with this one so a change is compared on the same machine at the
	// same moment.
	baseline := os.Getenv(envBaseline)
	type coldRun struct{ total, up, answer, report time.Duration }
	coldStart := func(bootstrap string) coldRun {
		emu := r.startEmulatorOf(t, bootstrap, nil)
		defer emu.proc.Kill()
		addr := strings.TrimPrefix(strings.TrimSuffix(emu.url, "/2015-03-31/functions/function/invocations"), "http://")
		// Ready is when the port accepts; polled every 100 µs, so the
		// figure is late by at most that (and a dial).
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Since(emu.proc.Started) > 30*time.Second {
				t.Fatalf("emulator not listening after 30 s: %v", err)
			}
			time.Sleep(100 * time.Microsecond)
		}
		listening := time.Now()
		out := emu.invoke(t, r.client, ev)
		run := coldRun{total: time.Since(emu.proc.Started), up: listening.Sub(emu.proc.Started), answer: time.Since(listening)}
		if a, err := decodeAnswer(kindV2, out); err != nil || a.status != http.StatusOK {
			t.Fatalf("cold invocation of %s: %v %d %s", bootstrap, err, a.status, a.body)
		}
		run.report = reportDuration(t, emu.proc)
		return run
	}
	const colds = 15
	var coldOurs, coldCtl, coldBase []coldRun
	for range colds {
		coldOurs = append(coldOurs, coldStart(r.bootstrap))
		coldCtl = append(coldCtl, coldStart(control))
		if baseline != "" {
			coldBase = append(coldBase, coldStart(baseline))
		}
	}
	// Warm: the same request to the HTTP shell, through the emulator, and
	// the control through the emulator (the emulator's own round trip).
	emu := r.startEmulator(t, nil)
	emu.invoke(t, r.client, ev)
	ctl := r.startEmulatorOf(t, control, nil)
	ctl.invoke(t, r.client, ev)
	var base *emulator
	if baseline != "" {
		base = r.startEmulatorOf(t, baseline, nil)
		base.invoke(t, r.client, ev)
	}
	const warm = 200
	var viaBase []time.Duration
	viaRIE := make([]time.Duration, 0, warm)
	viaHTTP := make([]time.Duration, 0, warm)
	viaControl := make([]time.Duration, 0, warm)
	// The bootstrap and the baseline swap places every round, so neither
	// always follows the HTTP shell's request (whose database and NATS
	// work may still be settling).
	for i := range warm {
		began := time.Now()
		r.viaHTTP(t, probe)
		viaHTTP = append(viaHTTP, time.Since(began))
		if base != nil && i%2 == 1 {
			began = time.Now()
			base.invoke(t, r.client, ev)
			viaBase = append(viaBase, time.Since(began))
		}
		began = time.Now()
		emu.invoke(t, r.client, ev)
		viaRIE = append(viaRIE, time.Since(began))
		if base != nil && i%2 == 0 {
			began = time.Now()
			base.invoke(t, r.client, ev)
			viaBase = append(viaBase, time.Since(began))
		}
		began = time.Now()
		ctl.invoke(t, r.client, ev)
		viaControl = append(viaControl, time.Since(began))
	}
	fi, err := os.Stat(r.bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("perf: bootstrap %.2f MB (%d bytes)", float64(fi.Size())/1e6, fi.Size())
	logCold := func(what string, runs []coldRun) {
		pick := func(f func(coldRun) time.Duration) []time.Duration {
			out := make([]time.Duration, len(runs))
			for i, r := range runs {
				out[i] = f(r)
			}
			return out
		}
		total := pick(func(r coldRun) time.Duration { return r.total })
		t.Logf("perf: %s: cold start (emulator start to first answer), %d runs: median %v, min %v, max %v; "+
			"emulator ready median %v; then first answer median %v (the emulator's REPORT Duration: bootstrap exec, init and answer, median %v, min %v)",
			what, len(runs), median(total), slices.Min(total), slices.Max(total),
			median(pick(func(r coldRun) time.Duration { return r.up })), median(pick(func(r coldRun) time.Duration { return r.answer })),
			median(pick(func(r coldRun) time.Duration { return r.report })), slices.Min(pick(func(r coldRun) time.Duration { return r.report })))
	}
	logCold("bootstrap", coldOurs)
	logCold("control (opens nothing)", coldCtl)
	if baseline != "" {
		logCold("baseline bootstrap "+baseline, coldBase)
	}
	ownInit := func(runs []coldRun) time.Duration {
		var d []time.Duration
		for i, r := range runs {
			d = append(d, r.report-coldCtl[i].report)
		}
		return median(d)
	}
	t.Logf("perf: the bootstrap's own init and first answer beyond the control's (REPORT Duration, paired): median %v", ownInit(coldOurs))
	if baseline != "" {
		t.Logf("perf: the baseline's, same way: median %v", ownInit(coldBase))
	}
	t.Logf("perf: warm GET /api/agents?limit=1, %d each: HTTP shell median %v, through the emulator median %v, overhead %v; "+
		"the control through the emulator median %v, so the emulator's round trip is most of it",
		warm, median(viaHTTP), median(viaRIE), median(viaRIE)-median(viaHTTP), median(viaControl))
	if base != nil {
		t.Logf("perf: the baseline bootstrap through the emulator, same loop: median %v, overhead %v", median(viaBase), median(viaBase)-median(viaHTTP))
	}
	alone := testing.Benchmark(benchHandlerAlone)
	adapted := testing.Benchmark(func(b *testing.B) { benchAdapter(b, kindV2) })
	t.Logf("perf: the adapter alone, in process (API Gateway v2, 2 KiB JSON answer): %v per request beside %v for the handler: %v added",
		time.Duration(adapted.NsPerOp()), time.Duration(alone.NsPerOp()), time.Duration(adapted.NsPerOp()-alone.NsPerOp()))
	var totals []time.Duration
	for _, r := range coldOurs {
		totals = append(totals, r.total)
	}
	if m := median(totals); m > 2*time.Second {
		t.Errorf("cold start median %v: far beyond the 50 ms target", m)
	}
}

// sameBesidesTheClock says whether two JSON bodies are equal once the
// readings of the clock at the moment of the request (observed_at, ages)
// are set aside: the shells answer one after the other.
func sameBesidesTheClock(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return cmp.Equal(withoutClock(x), withoutClock(y))
}

func withoutClock(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			// from and to: the telemetry routes' default window ends at
			// the request's own now.
			if k == "observed_at" || k == "from" || k == "to" || strings.HasSuffix(k, "_age_seconds") {
				e = "(clock)"
			}
			out[k] = withoutClock(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = withoutClock(e)
		}
		return out
	}
	return v
}

// bodyDiff says how two bodies differ: a JSON diff when both are JSON.
func bodyDiff(http, lambda []byte) string {
	var h, l any
	if json.Unmarshal(http, &h) == nil && json.Unmarshal(lambda, &l) == nil {
		return "(-HTTP shell +Lambda)\n" + cmp.Diff(h, l)
	}
	return fmt.Sprintf("\nLambda:     %.300q\nHTTP shell: %.300q", lambda, http)
}

// reportRE is the emulator's REPORT line of an invocation.
var reportRE = regexp.MustCompile(`REPORT RequestId: \S+\t(?:Init Duration: [0-9.]+ ms\t)?Duration: ([0-9.]+) ms`)

// reportDuration is the Duration of the first REPORT line the emulator
// printed, waited for briefly (it prints after it answers).
func reportDuration(t *testing.T, p *proctest.Proc) time.Duration {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m := reportRE.FindStringSubmatch(p.Stdout.String()); m != nil {
			ms, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return time.Duration(ms * float64(time.Millisecond))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no REPORT line from the emulator: %s", p.Stdout)
		}
		time.Sleep(time.Millisecond)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
