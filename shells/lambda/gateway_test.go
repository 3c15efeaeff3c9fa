package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// seen is what the echo handler saw of a request.
type seen struct {
	Method, URI, Path, Host, Remote string
	Query                           map[string][]string
	Header                          map[string][]string
	Body                            []byte
	ContentLength                   int64
}

// echo answers every request with what it saw, as JSON, and two values of
// X-Multi so that the response shape of each front door shows.
func echo(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		w.Header().Add("X-Multi", "one")
		w.Header().Add("X-Multi", "two")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(seen{Method: r.Method, URI: r.RequestURI, Path: r.URL.Path, Host: r.Host, Remote: r.RemoteAddr,
			Query: r.URL.Query(), Header: r.Header, Body: body, ContentLength: r.ContentLength})
	})
}

// lambdaAnswer is a decoded response of any shape.
type lambdaAnswer struct {
	StatusCode        int                 `json:"statusCode"`
	StatusDescription string              `json:"statusDescription"`
	Headers           map[string]string   `json:"headers"`
	MultiValueHeaders map[string][]string `json:"multiValueHeaders"`
	Cookies           []string            `json:"cookies"`
	Body              string              `json:"body"`
	IsBase64Encoded   bool                `json:"isBase64Encoded"`
}

func (a lambdaAnswer) body(t *testing.T) []byte {
	t.Helper()
	if !a.IsBase64Encoded {
		return []byte(a.Body)
	}
	b, err := base64.StdEncoding.DecodeString(a.Body)
	if err != nil {
		t.Fatalf("base64 body: %v", err)
	}
	return b
}

func invokeRaw(t *testing.T, h http.Handler, ev any) lambdaAnswer {
	t.Helper()
	raw, ok := ev.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(ev); err != nil {
			t.Fatal(err)
		}
	}
	out, err := newGateway(h).Invoke(context.Background(), raw)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	var a lambdaAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("response %s: %v", out, err)
	}
	return a
}

func invokeEcho(t *testing.T, ev any) (lambdaAnswer, seen) {
	t.Helper()
	a := invokeRaw(t, echo(t), ev)
	var s seen
	if err := json.Unmarshal(a.body(t), &s); err != nil {
		t.Fatalf("echo body %q: %v", a.body(t), err)
	}
	return a, s
}

type obj = map[string]any

func v1Event(resource, path string, params map[string]string) obj {
	return obj{"resource": resource, "path": path, "httpMethod": "GET", "pathParameters": params,
		"headers":           obj{"Host": "api.example.com"},
		"multiValueHeaders": obj{"Host": []string{"api.example.com"}},
		"requestContext": obj{"accountId": "123456789012", "stage": "prod", "path": "/prod" + path,
			"identity": obj{"sourceIp": "198.51.100.7"}},
		"body": nil, "isBase64Encoded": false}
}

func v2Event(routeKey, rawPath, rawQuery string, params map[string]string) obj {
	return obj{"version": "2.0", "routeKey": routeKey, "rawPath": rawPath, "rawQueryString": rawQuery,
		"headers": obj{"host": "abc123.execute-api.eu-west-1.amazonaws.com"}, "pathParameters": params,
		"requestContext": obj{"stage": "$default", "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
			"http": obj{"method": "GET", "path": rawPath, "sourceIp": "198.51.100.7"}},
		"isBase64Encoded": false}
}

func albEvent(multi bool, path string, query map[string][]string, headers map[string][]string) obj {
	ev := obj{"requestContext": obj{"elb": obj{"targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/kanade/0123"}},
		"httpMethod": "GET", "path": path, "body": "", "isBase64Encoded": false}
	if multi {
		ev["multiValueHeaders"], ev["multiValueQueryStringParameters"] = headers, query
		return ev
	}
	single := func(m map[string][]string) map[string]string {
		out := map[string]string{}
		for k, vs := range m {
			out[k] = vs[len(vs)-1] // ALB keeps the last
		}
		return out
	}
	ev["headers"], ev["queryStringParameters"] = single(headers), single(query)
	return ev
}

func TestTheHandlerSeesThePathTheClientAskedFor(t *testing.T) {
	tests := []struct {
		name     string
		ev       obj
		wantPath string
		wantURI  string
	}{
		{"v1 through the stage address (path has no stage)",
			v1Event("/{proxy+}", "/api/agents", map[string]string{"proxy": "api/agents"}), "/api/agents", "/api/agents"},
		{"v1 through a custom domain with base path kanade",
			v1Event("/{proxy+}", "/kanade/api/agents/PC-1", map[string]string{"proxy": "api/agents/PC-1"}), "/api/agents/PC-1", "/api/agents/PC-1"},
		{"v1 through a custom domain with a two-segment base path",
			v1Event("/{proxy+}", "/fleet/v1/api/agents", map[string]string{"proxy": "api/agents"}), "/api/agents", "/api/agents"},
		{"v1 root resource through a custom domain",
			v1Event("/", "/kanade/", nil), "/", "/"},
		{"v1 escaped parameter through a custom domain keeps its escaping",
			v1Event("/{proxy+}", "/kanade/api/agents/PC%201", map[string]string{"proxy": "api/agents/PC 1"}), "/api/agents/PC 1", "/api/agents/PC%201"},
		{"v1 resource with a named parameter",
			v1Event("/api/agents/{pc_id}", "/kanade/api/agents/PC-2", map[string]string{"pc_id": "PC-2"}), "/api/agents/PC-2", "/api/agents/PC-2"},
		{"v1 without a resource keeps the path",
			v1Event("", "/api/agents", nil), "/api/agents", "/api/agents"},
		{"v2 on the $default route",
			v2Event("$default", "/api/agents", "", nil), "/api/agents", "/api/agents"},
		{"v2 named stage through the execute-api address",
			func() obj {
				ev := v2Event("$default", "/prod/api/agents", "", nil)
				ev["requestContext"].(obj)["stage"] = "prod"
				return ev
			}(), "/api/agents", "/api/agents"},
		{"v2 named stage root",
			func() obj {
				ev := v2Event("$default", "/prod", "", nil)
				ev["requestContext"].(obj)["stage"] = "prod"
				return ev
			}(), "/", "/"},
		{"v2 stage-named first segment on a custom domain is kept",
			func() obj {
				ev := v2Event("$default", "/api/agents", "", nil)
				ev["requestContext"].(obj)["stage"] = "api"
				ev["requestContext"].(obj)["domainName"] = "kanade.example.com"
				return ev
			}(), "/api/agents", "/api/agents"},
		{"v2 proxy route through an API mapping",
			v2Event("ANY /{proxy+}", "/kanade/api/agents", "", map[string]string{"proxy": "api/agents"}), "/api/agents", "/api/agents"},
		{"ALB path as sent",
			albEvent(true, "/api/agents/PC%201", nil, map[string][]string{"host": {"kanade.example"}}), "/api/agents/PC 1", "/api/agents/PC%201"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, s := invokeEcho(t, tt.ev)
			if a.StatusCode != http.StatusOK {
				t.Fatalf("status %d", a.StatusCode)
			}
			if s.Path != tt.wantPath || s.URI != tt.wantURI {
				t.Errorf("handler saw path %q (URI %q), want %q (%q)", s.Path, s.URI, tt.wantPath, tt.wantURI)
			}
		})
	}
}

func TestRepeatedQueryKeysReachTheHandlerInEveryMode(t *testing.T) {
	want := map[string][]string{"status": {"online", "offline"}, "q": {"a b&c"}}
	v1 := v1Event("/{proxy+}", "/api/agents", map[string]string{"proxy": "api/agents"})
	v1["queryStringParameters"] = obj{"status": "offline", "q": "a b&c"}
	v1["multiValueQueryStringParameters"] = obj{"status": []string{"online", "offline"}, "q": []string{"a b&c"}}
	albQuery := map[string][]string{"status": {"online", "offline"}, "q": {"a%20b%26c"}}
	host := map[string][]string{"host": {"kanade.example"}}
	for name, ev := range map[string]obj{
		"API Gateway v1": v1,
		"API Gateway v2": v2Event("$default", "/api/agents", "status=online&status=offline&q=a%20b%26c", nil),
		"ALB multi":      albEvent(true, "/api/agents", albQuery, host),
	} {
		t.Run(name, func(t *testing.T) {
			_, s := invokeEcho(t, ev)
			if diff := cmp.Diff(want, s.Query); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("ALB single keeps the last value, as ALB sends it", func(t *testing.T) {
		_, s := invokeEcho(t, albEvent(false, "/api/agents", albQuery, host))
		if diff := cmp.Diff(map[string][]string{"status": {"offline"}, "q": {"a b&c"}}, s.Query); diff != "" {
			t.Errorf("query (-want +got):\n%s", diff)
		}
	})
}

func TestALBAnswersInTheModeTheRequestCameIn(t *testing.T) {
	headers := map[string][]string{"host": {"kanade.example"}, "accept": {"application/json"},
		"x-forwarded-for": {"10.0.0.1, 203.0.113.9"}}
	t.Run("multi-value headers on", func(t *testing.T) {
		a, s := invokeEcho(t, albEvent(true, "/x", nil, headers))
		if a.Headers != nil || !cmp.Equal(a.MultiValueHeaders["X-Multi"], []string{"one", "two"}) {
			t.Errorf("headers %v, multi %v: want multiValueHeaders only", a.Headers, a.MultiValueHeaders)
		}
		if a.StatusDescription != "200 OK" {
			t.Errorf("statusDescription %q", a.StatusDescription)
		}
		if s.Host != "kanade.example" || s.Header["Host"] != nil {
			t.Errorf("host %q, header %v: want Host moved out of the header", s.Host, s.Header["Host"])
		}
		// The client can put anything first; ALB appends what it saw.
		if s.Remote != "203.0.113.9" {
			t.Errorf("remote %q, want the address ALB appended", s.Remote)
		}
	})
	t.Run("multi-value headers off (the ALB default)", func(t *testing.T) {
		a, s := invokeEcho(t, albEvent(false, "/x", nil, headers))
		if a.MultiValueHeaders != nil || a.Headers["X-Multi"] != "one, two" || a.Headers["Content-Type"] != "application/json" {
			t.Errorf("headers %v, multi %v: want single-value headers, lists joined", a.Headers, a.MultiValueHeaders)
		}
		if a.StatusDescription != "200 OK" || s.Host != "kanade.example" || s.Remote != "203.0.113.9" {
			t.Errorf("statusDescription %q, host %q, remote %q", a.StatusDescription, s.Host, s.Remote)
		}
	})
}

func TestResponseHeadersTakeEachFrontDoorsShape(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Add("Vary", "Accept")
		w.Header().Add("Vary", "Origin")
		w.WriteHeader(http.StatusCreated)
		// Set after the status: net/http does not send it, nor do we.
		w.Header().Set("X-Late", "1")
		io.WriteString(w, "made")
	})
	v1 := invokeRaw(t, h, v1Event("/{proxy+}", "/x", map[string]string{"proxy": "x"}))
	if v1.StatusCode != http.StatusCreated || !cmp.Equal(v1.MultiValueHeaders["Set-Cookie"], []string{"a=1", "b=2"}) ||
		!cmp.Equal(v1.MultiValueHeaders["Vary"], []string{"Accept", "Origin"}) || v1.MultiValueHeaders["X-Late"] != nil {
		t.Errorf("v1: %+v", v1)
	}
	if got := v1.MultiValueHeaders["Content-Type"]; !cmp.Equal(got, []string{"text/plain; charset=utf-8"}) {
		t.Errorf("v1 content type %v, want the sniffed one as net/http sends", got)
	}
	v2 := invokeRaw(t, h, v2Event("$default", "/x", "", nil))
	if v2.StatusCode != http.StatusCreated || !cmp.Equal(v2.Cookies, []string{"a=1", "b=2"}) || v2.Headers["Vary"] != "Accept, Origin" ||
		v2.Headers["Set-Cookie"] != "" || v2.MultiValueHeaders != nil {
		t.Errorf("v2: %+v", v2)
	}
	single := invokeRaw(t, h, albEvent(false, "/x", nil, map[string][]string{"host": {"k"}}))
	if single.Headers["Set-Cookie"] != "b=2" || single.Headers["Vary"] != "Accept, Origin" || single.StatusDescription != "201 Created" {
		t.Errorf("ALB single: %+v", single)
	}
}

func TestBinaryAndGzipBodiesPassThroughUnchanged(t *testing.T) {
	var binary []byte
	for i := range 256 {
		binary = append(binary, byte(i))
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, `{"id":"job-1"}`)
	zw.Close()
	for name, body := range map[string][]byte{"binary": binary, "gzip": gz.Bytes(), "text": []byte(`{"id":"job-1"}`)} {
		t.Run(name, func(t *testing.T) {
			b64 := base64.StdEncoding.EncodeToString(body)
			headers := map[string][]string{"host": {"k"}, "content-encoding": {"gzip"}, "content-type": {"application/octet-stream"}}
			evs := map[string]obj{
				"v1":        v1Event("/{proxy+}", "/x", map[string]string{"proxy": "x"}),
				"v2":        v2Event("$default", "/x", "", nil),
				"ALB multi": albEvent(true, "/x", nil, headers),
			}
			for door, ev := range evs {
				ev["body"], ev["isBase64Encoded"] = b64, true
				if door != "ALB multi" {
					ev["headers"].(obj)["content-encoding"] = "gzip"
				}
				_, s := invokeEcho(t, ev)
				if !bytes.Equal(s.Body, body) || s.ContentLength != int64(len(body)) {
					t.Errorf("%s: handler got %d bytes (ContentLength %d), want the %d sent", door, len(s.Body), s.ContentLength, len(body))
				}
				if s.Header["Content-Encoding"] == nil {
					t.Errorf("%s: Content-Encoding did not reach the handler", door)
				}
			}
			// And back: the body the handler writes arrives as written,
			// base64 only when it is not text.
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
			for door, ev := range evs {
				a := invokeRaw(t, h, ev)
				if !bytes.Equal(a.body(t), body) {
					t.Errorf("%s: response body differs", door)
				}
				if a.IsBase64Encoded != (name != "text") {
					t.Errorf("%s: isBase64Encoded %v for a %s body", door, a.IsBase64Encoded, name)
				}
			}
		})
	}
}

func TestNoBodyForHeadOr204(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/none" {
			w.WriteHeader(http.StatusNoContent)
		}
		io.WriteString(w, "some body")
	})
	head := v2Event("$default", "/x", "", nil)
	head["requestContext"].(obj)["http"].(obj)["method"] = http.MethodHead
	if a := invokeRaw(t, h, head); a.StatusCode != http.StatusOK || a.Body != "" || a.Headers["Content-Type"] != "text/plain; charset=utf-8" {
		t.Errorf("HEAD: %+v", a)
	}
	if a := invokeRaw(t, h, v2Event("$default", "/none", "", nil)); a.StatusCode != http.StatusNoContent || a.Body != "" {
		t.Errorf("204: %+v", a)
	}
}

// TestAnEventCutAtThePayloadLimitIsA413: the runtime interface emulator cuts
// an event over 6 MiB + 100 bytes; the front door still gets an answer in
// its shape, not an invocation error.
func TestAnEventCutAtThePayloadLimitIsA413(t *testing.T) {
	big := strings.Repeat("A", maxEvent+1024)
	for name, ev := range map[string]obj{
		"API Gateway v1": v1Event("/{proxy+}", "/api/jobs", map[string]string{"proxy": "api/jobs"}),
		"API Gateway v2": v2Event("$default", "/api/jobs", "", nil),
		"ALB multi":      albEvent(true, "/api/jobs", nil, map[string][]string{"host": {"k"}}),
		"ALB single":     albEvent(false, "/api/jobs", nil, map[string][]string{"host": {"k"}}),
	} {
		t.Run(name, func(t *testing.T) {
			// Every front door sends the body after the headers and the
			// request context; json.Marshal would sort it first.
			delete(ev, "body")
			delete(ev, "isBase64Encoded")
			head, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			raw := append(head[:len(head)-1], `,"body":"`+big+`","isBase64Encoded":true}`...)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("the handler was called") })
			a := invokeRaw(t, h, raw[:maxEvent+100])
			if a.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(a.Body, `"status":413`) {
				t.Fatalf("got %+v", a)
			}
			switch name {
			case "API Gateway v1", "ALB multi":
				if a.MultiValueHeaders["Content-Type"][0] != "application/problem+json" {
					t.Errorf("headers %v", a.MultiValueHeaders)
				}
			default:
				if a.Headers["Content-Type"] != "application/problem+json" {
					t.Errorf("headers %v", a.Headers)
				}
			}
		})
	}
}

func TestAResponseLambdaCannotReturnIsAProblemNotAFailure(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("x"), maxResponse+1)) })
	a := invokeRaw(t, h, v2Event("$default", "/x", "", nil))
	if a.StatusCode != http.StatusInternalServerError || !strings.Contains(a.Body, "larger than AWS Lambda returns") {
		t.Errorf("got %d %.200s", a.StatusCode, a.Body)
	}
}

func TestEventsNoFrontDoorSendsAreRefused(t *testing.T) {
	for _, payload := range []string{`{}`, `{"Records":[]}`, `[1]`, `not json`} {
		if _, err := newGateway(echo(t)).Invoke(context.Background(), []byte(payload)); err == nil {
			t.Errorf("%s: no error", payload)
		} else if payload == `{}` && !errors.Is(err, errNotHTTP) {
			t.Errorf("%s: %v", payload, err)
		}
	}
}

// BenchmarkAdapterOverhead is the warm cost the adapter adds to a request:
// decoding the event, building the request, recording the answer and
// encoding the response, beside the same handler served directly. The
// handler answers a typical API body (2 KiB of JSON); go test -bench prints
// both, and the difference is the overhead.
func BenchmarkAdapterOverhead(b *testing.B) {
	b.Run("handler alone", benchHandlerAlone)
	b.Run("through the adapter, API Gateway v2", func(b *testing.B) { benchAdapter(b, kindV2) })
	b.Run("through the adapter, ALB single", func(b *testing.B) { benchAdapter(b, kindALBSingle) })
}

var benchBody = bytes.Repeat([]byte(`{"pc_id":"PC-0001","hostname":"pc-0001.example","online":true},`), 32)

func benchHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(benchBody)
	})
}

func benchHandlerAlone(b *testing.B) {
	h := benchHandler()
	for b.Loop() {
		r, _ := http.NewRequest(http.MethodGet, "/api/agents?limit=50&status=online", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		h.ServeHTTP(newRecorder(false, nil), r)
	}
}

func benchAdapter(b *testing.B, k kind) {
	var ev obj
	switch k {
	case kindV2:
		ev = v2Event("$default", "/api/agents", "limit=50&status=online", nil)
		ev["headers"].(obj)["authorization"] = "Bearer " + token
	default:
		ev = albEvent(false, "/api/agents", map[string][]string{"limit": {"50"}, "status": {"online"}},
			map[string][]string{"host": {"k"}, "authorization": {"Bearer " + token}})
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		b.Fatal(err)
	}
	g := newGateway(benchHandler())
	for b.Loop() {
		if _, err := g.Invoke(context.Background(), raw); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAWarmInvocationAnswersOnlyItsOwnBody: the gateway reuses the answer
// buffers between invocations, so a short answer after a long one must not
// carry the long one's tail, nor a HEAD answer any earlier body.
func TestAWarmInvocationAnswersOnlyItsOwnBody(t *testing.T) {
	g := newGateway(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, strings.Repeat("x", n))
	}))
	for _, n := range []int{5000, 3, 0, 70000, 1} {
		raw, err := json.Marshal(v2Event("$default", "/", "n="+strconv.Itoa(n), nil))
		if err != nil {
			t.Fatal(err)
		}
		out, err := g.Invoke(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		var resp struct {
			Body string `json:"body"`
		}
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Body != strings.Repeat("x", n) {
			t.Errorf("n=%d: body of %d bytes, want %d", n, len(resp.Body), n)
		}
	}
}
