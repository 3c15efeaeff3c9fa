package httpload

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// tokenAPI is a stand-in for the real handler: /api/version and /api/docs
// are open, every other /api path wants the token, except the ones listed
// in leaky.
func tokenAPI(token string, leaky map[string]bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/version" && r.URL.Path != "/api/docs" && !leaky[r.URL.Path] && r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func TestCheckAuthNamesEveryRouteThatIsNotRefused(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("{}")) })
	all := []Route{
		{Method: "GET", Template: "/api/agents", Path: "/api/agents"},
		{Method: "PUT", Template: "/api/jobs/{id}", Path: "/api/jobs/httpload-dummy", HasBody: true},
		{Method: "GET", Template: "/api/version", Path: "/api/version"},
	}
	tests := []struct {
		name  string
		leaky map[string]bool
		want  []string
	}{
		{"all protected: pass", nil, nil},
		{"an open route is listed for both variants", map[string]bool{"/api/jobs/httpload-dummy": true}, []string{
			"PUT /api/jobs/httpload-dummy (no token): 200, want 401",
			"PUT /api/jobs/httpload-dummy (wrong token): 200, want 401",
		}},
		{"an open docs route is listed too", map[string]bool{"/api/openapi.yaml": true}, []string{
			"GET /api/openapi.yaml (no token): 200, want 401",
			"GET /api/openapi.yaml (wrong token): 200, want 401",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tokenAPI("secret", tt.leaky, ok))
			defer srv.Close()
			c := checkAuth(context.Background(), srv.URL, all)
			if diff := cmp.Diff(tt.want, c.Details); diff != "" {
				t.Fatalf("details (-want +got):\n%s", diff)
			}
			if c.Pass != (len(tt.want) == 0) {
				t.Fatalf("pass %v with details %q", c.Pass, c.Details)
			}
		})
	}
}

func TestCheckOversizedBodies(t *testing.T) {
	limited := func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20)); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, "too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	greedy := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}
	wrongType := func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnsupportedMediaType)
	}
	tests := []struct {
		name     string
		put      http.HandlerFunc
		jsonBody bool
		want     []string
	}{
		{"a limited body and a router refusing POST pass", limited, true, nil},
		{"a handler reading 10 MiB is named for both framings", greedy, true, []string{
			"PUT /api/x (Content-Length): 200 after", "PUT /api/x (chunked): 200 after",
		}},
		{"a route taking JSON that answers 415 is named", wrongType, true, []string{
			"PUT /api/x (Content-Length): 415 after", "PUT /api/x (chunked): 415 after",
		}},
		{"an upload route refusing JSON for its type passes", wrongType, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := []Route{
				{Method: "GET", Template: "/api/x", Path: "/api/x"},
				{Method: "PUT", Template: "/api/x", Path: "/api/x", HasBody: true, JSONBody: tt.jsonBody},
			}
			mux := http.NewServeMux()
			mux.HandleFunc("GET /api/x", func(http.ResponseWriter, *http.Request) {})
			mux.HandleFunc("PUT /api/x", tt.put)
			srv := httptest.NewServer(mux)
			defer srv.Close()
			c := checkOversizedBodies(context.Background(), srv.Listener.Addr().String(), "t", all)
			var got []string
			for _, d := range c.Details {
				got = append(got, d[:strings.Index(d, "after")+len("after")])
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("details (-want +got):\n%s\n%s", diff, c.Measured)
			}
			if c.Pass != (len(tt.want) == 0) {
				t.Fatalf("pass %v: %s", c.Pass, c.Measured)
			}
		})
	}
}

func TestCheckOversizedHeaders(t *testing.T) {
	for _, tt := range []struct {
		name      string
		maxHeader int
		pass      bool
	}{
		{"1 MiB limit answers 431", 1 << 20, true},
		{"a 4 MiB limit accepts 2 MiB and fails the check", 4 << 20, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			srv.Config.MaxHeaderBytes = tt.maxHeader
			srv.Start()
			defer srv.Close()
			if c := checkOversizedHeaders(context.Background(), srv.Listener.Addr().String()); c.Pass != tt.pass {
				t.Fatalf("pass %v, want %v: %s", c.Pass, tt.pass, c.Measured)
			}
		})
	}
}

// A server with a 1 s ReadHeaderTimeout closes the slow client after about
// that long; the check must see the close and time it.
func TestCheckSlowHeadersSeesTheClose(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a timeout")
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ReadHeaderTimeout = time.Second
	srv.Start()
	defer srv.Close()
	c := checkSlowHeaders(context.Background(), srv.Listener.Addr().String())
	if !c.Pass || !strings.HasPrefix(c.Measured, "closed after 1") {
		t.Fatalf("pass %v: %s", c.Pass, c.Measured)
	}
}

func TestScanLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stderr.log")
	log := strings.Join([]string{
		`{"level":"INFO","msg":"serving"}`,
		`{"level":"WARN","msg":"http: superfluous response.WriteHeader call from x (metrics.go:165)"}`,
		`{"level":"WARN","msg":"http: panic serving 127.0.0.1:1: boom"}`,
		`panic: runtime error`,
		`{"level":"WARN","msg":"fleet health: part unreadable","part":"agents","error":"count agents: context deadline exceeded"}`,
		`{"level":"WARN","msg":"fleet health: part unreadable","part":"agents","error":"count agents: context deadline exceeded"}`,
		`{"level":"INFO","msg":"stopped"}`,
	}, "\n")
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := scanLog(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := serverLog{
		Suspicious: []string{
			`{"level":"WARN","msg":"http: superfluous response.WriteHeader call from x (metrics.go:165)"}`,
			`{"level":"WARN","msg":"http: panic serving 127.0.0.1:1: boom"}`,
		},
		Matches: 3,
		Warnings: map[string]int{
			"WARN http: superfluous response.WriteHeader call from x (metrics.go:165)":    1,
			"WARN http: panic serving 127.0.0.1:1: boom":                                  1,
			"WARN fleet health: part unreadable: count agents: context deadline exceeded": 2,
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("scan (-want +got):\n%s", diff)
	}
}

func TestReportPassNeedsEverything(t *testing.T) {
	good := func() *Report {
		return &Report{
			Endpoints: []EndpointStats{{Name: "a", Requests: 3}},
			Checks:    []Check{{Name: "c", Pass: true}},
		}
	}
	tests := []struct {
		name  string
		spoil func(r *Report)
		want  bool
	}{
		{"all good passes", func(*Report) {}, true},
		{"one load error fails", func(r *Report) { r.Endpoints[0].Errors = 1 }, false},
		{"an endpoint with no requests fails", func(r *Report) { r.Endpoints[0].Requests = 0 }, false},
		{"a failed check fails", func(r *Report) { r.Checks = append(r.Checks, Check{Name: "d"}) }, false},
		{"no checks fails", func(r *Report) { r.Checks = nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good()
			tt.spoil(r)
			if got := r.Pass(); got != tt.want {
				t.Fatalf("Pass() = %v", got)
			}
			if md := r.Markdown(); !strings.Contains(md, map[bool]string{true: "Result: PASS", false: "Result: FAIL"}[tt.want]) {
				t.Fatalf("markdown disagrees:\n%s", md)
			}
		})
	}
}
