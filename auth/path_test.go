package auth

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNeedsAuth(t *testing.T) {
	tests := []struct {
		target string
		want   bool
	}{
		// Open: the SPA, probes, and exactly /api/version.
		{"/", false},
		{"/health", false},
		{"/healthz", false},
		{"/readyz", false},
		{"/assets/app.js", false},
		{"/agents/pc-01", false},
		{"/apiary", false},
		{"/metrics-dashboard", false},
		{"/api/version", false},
		{"/api/version?pretty=1", false},
		{"/assets/my%20file.js", false},

		// Protected in their plain spelling.
		{"/api", true},
		{"/api/", true},
		{"/api/agents", true},
		{"/api/openapi.json", true},
		{"/metrics", true},
		{"/metrics/", true},
		{"http://example.test/api/agents", true},

		// Not /api/version exactly.
		{"/api/version/", true},
		{"/api/Version", true},
		{"/API/VERSION", true},
		{"/api/version/../agents", true},
		{"/api/version%2f..%2fagents", true},

		// Tricks: case, dot segments, doubled or encoded separators,
		// trailing dots and spaces, path parameters, double encoding.
		{"/API/x", true},
		{"/Metrics", true},
		{"//api/x", true},
		{"/api//x", true},
		{"/./api/x", true},
		{"/api/../api/x", true},
		{"/x/../api/x", true},
		{"/api/%2e%2e/api/x", true},
		{"/%2e%2e/api/x", true},
		{"/%2fapi%2fx", true},
		{"/%2Fapi%2Fx", true},
		{"/api%2Fx", true},
		{"/api%5cx", true},
		{"/api./x", true},
		{"/api%2e/x", true},
		{"/api/x.", true},
		{"/metrics.", true},
		{"/api%20/x", true},
		{"/api;x=1/agents", true},
		{"/api%252fx", true},
		{"/api%00/x", true},
		// Conservative: a non-canonical spelling needs auth even where it
		// would only reach the SPA or a probe.
		{"//health", true},
		{"/assets/../index.html", true},
		{"/x.", true},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			if got := needsAuth(r.URL, versionOnly); got != tt.want {
				t.Errorf("needsAuth(Path=%q, RawPath=%q) = %v, want %v", r.URL.Path, r.URL.RawPath, got, tt.want)
			}
		})
	}

	// Shapes httptest.NewRequest cannot build.
	for _, u := range []*url.URL{
		{Opaque: "/api/x"},
		{Path: "api/x"},
		{Path: ""},
		{Path: "*"},
		{Path: `/api\x`},
		{Path: "/api\x00/x"},
	} {
		if !needsAuth(u, versionOnly) {
			t.Errorf("needsAuth(%#v) = false, want true", u)
		}
	}
}

// guarded is a real ServeMux shaped like the handlers package's: protected
// handlers fail the test when they run without an authenticated caller, so
// whatever the mux does with a tricky path (redirect, clean, route), a
// protected body served unauthenticated is a test failure.
func guarded(t *testing.T) http.Handler {
	protected := func(w http.ResponseWriter, r *http.Request) {
		c, ok := CallerFrom(r.Context())
		if !ok || c.Kind == KindAnonymous {
			t.Errorf("protected handler reached without auth: %s %q (raw %q), caller %+v", r.Method, r.URL.Path, r.URL.RawPath, c)
		}
		fmt.Fprint(w, "PROTECTED")
	}
	open := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) }
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", protected)
	mux.HandleFunc("GET /api/agents/{id}", protected)
	mux.HandleFunc("/metrics", protected)
	mux.HandleFunc("/api/version", open("VERSION"))
	mux.HandleFunc("/health", open("OK"))
	mux.HandleFunc("/healthz", open("OK"))
	mux.HandleFunc("/readyz", open("OK"))
	mux.HandleFunc("/", open("SPA"))
	return mux
}

// rawGet sends target verbatim on the request line (no client-side
// cleaning) and returns status, Location and body.
func rawGet(t *testing.T, addr, target, authz string) (int, string, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := "GET " + target + " HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n"
	if authz != "" {
		req += "Authorization: " + authz + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

// follow requests target and follows redirects (as a browser would, keeping
// the Authorization header only if given), returning each hop's status and
// the final body.
func follow(t *testing.T, addr, target, authz string) ([]int, string) {
	t.Helper()
	var statuses []int
	for range 5 {
		status, loc, body := rawGet(t, addr, target, authz)
		statuses = append(statuses, status)
		if status < 300 || status > 399 || loc == "" {
			return statuses, body
		}
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatalf("Location %q: %v", loc, err)
		}
		target = u.RequestURI()
	}
	t.Fatalf("%s: too many redirects: %v", target, statuses)
	return nil, ""
}

func TestPathTricksNeverReachProtectedHandlers(t *testing.T) {
	h := mustMiddleware(t, Config{StaticToken: testStatic, JWTSecret: testSecret, Clock: testClock}, guarded(t))
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	type result struct {
		Statuses []int
		Body     string
	}
	unauthorized := result{[]int{401}, "problem"}
	tests := []struct {
		target string
		want   result
	}{
		{"/", result{[]int{200}, "SPA"}},
		{"/health", result{[]int{200}, "OK"}},
		{"/healthz", result{[]int{200}, "OK"}},
		{"/readyz", result{[]int{200}, "OK"}},
		{"/assets/app.js", result{[]int{200}, "SPA"}},
		{"/api/version", result{[]int{200}, "VERSION"}},
		{"/apiary", result{[]int{200}, "SPA"}},

		{"/api", unauthorized},
		{"/api/x", unauthorized},
		{"/api/agents/pc-01", unauthorized},
		{"/metrics", unauthorized},
		{"/METRICS", unauthorized},
		{"/API/x", unauthorized},
		{"//api/x", unauthorized},
		{"/api//x", unauthorized},
		{"/api/../api/x", unauthorized},
		{"/./api/x", unauthorized},
		{"/api/%2e%2e/api/x", unauthorized},
		{"/%2e%2e/api/x", unauthorized},
		{"/%2Fapi%2Fx", unauthorized},
		{"/api%2Fx", unauthorized},
		{"/api%5Cx", unauthorized},
		{`/api\x`, unauthorized},
		{"/api./x", unauthorized},
		{"/api/x.", unauthorized},
		{"/metrics.", unauthorized},
		{"/api;a=b/x", unauthorized},
		{"/api%252Fx", unauthorized},
		{"/api/version/../x", unauthorized},
		{"/api/version/", unauthorized},
		{"http://example.test/api/x", unauthorized},
		{"http://example.test//api/x", unauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			statuses, body := follow(t, addr, tt.target, "")
			got := result{statuses, body}
			if strings.Contains(body, `"status":401`) {
				got.Body = "problem"
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("GET %s without a token (-want +got):\n%s", tt.target, diff)
			}
			if strings.Contains(body, "PROTECTED") {
				t.Errorf("GET %s without a token served a protected body", tt.target)
			}

			// With a token the same request is let through to the mux,
			// which may redirect or route it as it likes.
			for _, authz := range []string{"Bearer " + testStatic, "Bearer " + validJWT()} {
				statuses, _ := follow(t, addr, tt.target, authz)
				for _, s := range statuses {
					if s == http.StatusUnauthorized {
						t.Errorf("GET %s with a valid token: statuses %v include 401", tt.target, statuses)
					}
				}
			}
		})
	}
}

// TestPathTricksConcurrently runs the tricky requests in parallel through one
// middleware so -race sees the shared authenticator used concurrently.
func TestPathTricksConcurrently(t *testing.T) {
	h := mustMiddleware(t, Config{StaticToken: testStatic, JWTSecret: testSecret, Clock: testClock}, guarded(t))
	targets := []string{"//api/x", "/api/../api/x", "/api/%2e%2e/api/x", "/API/x", "/api./x", "/metrics", "/api/version", "/"}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			target := targets[i%len(targets)]
			req := httptest.NewRequest(http.MethodGet, target, nil)
			if i%2 == 0 {
				req.Header.Set("Authorization", "Bearer "+validJWT())
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
		})
	}
	wg.Wait()
}

// versionOnly is the open set of a middleware without Config.OpenPaths.
var versionOnly = map[string]bool{openAPIPath: true}
