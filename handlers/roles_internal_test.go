package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// TestRoleTableFollowsTheContract checks every line of routeRoles against
// the rule of control.md §9.2 (reads viewer, mutations operator, accounts
// admin), with the exceptions written out, and that the routes §9.2 names
// are there with their tier.
func TestRoleTableFollowsTheContract(t *testing.T) {
	// The docs page and its files are open too (issue 13, bug 10): they
	// hold no data, and the document they load stays a viewer's.
	open := []string{"GET /health", "GET /healthz", "GET /readyz", "GET /", "GET /api/version", "POST /api/auth/login",
		"GET /api/docs", "GET /api/docs.js", "GET /api/docs.css"}
	for pattern, need := range routeRoles() {
		method, path, _ := strings.Cut(pattern, " ")
		var want auth.Role
		switch {
		case slices.Contains(open, pattern):
			want = public
		case strings.HasPrefix(path, "/api/accounts"):
			want = auth.Admin
		case pattern == "POST /api/auth/change-password":
			want = auth.Viewer // one's own password: any account
		case method == http.MethodGet, method == http.MethodHead: // HEAD reads headers (observe.md §5.4)
			want = auth.Viewer
		default:
			want = auth.Operator
		}
		if need != want {
			t.Errorf("%s needs %v, want %v", pattern, need, want)
		}
	}
	spec := map[string]auth.Role{
		"GET /api/jobs": auth.Viewer, "GET /api/jobs/{id}/yaml": auth.Viewer, "GET /api/schedules": auth.Viewer,
		"GET /api/schedules/upcoming": auth.Viewer, "GET /api/schedules/{id}/yaml": auth.Viewer,
		"GET /api/schedules/{id}/preview": auth.Viewer, "GET /api/schedules/{id}/status": auth.Viewer,
		"GET /api/scripts/status": auth.Viewer, "GET /api/freeze": auth.Viewer,
		"GET /api/schemas/manifest.json": auth.Viewer, "GET /api/schemas/schedule.json": auth.Viewer,
		"GET /api/executions": auth.Viewer, "GET /api/executions/{exec_id}": auth.Viewer,
		"POST /api/exec/{job_id}": auth.Operator, "POST /api/run": auth.Operator, "POST /api/jobs/{job_id}/kill": auth.Operator,
		"POST /api/scripts/{cmd_id}/revoke": auth.Operator, "POST /api/scripts/{cmd_id}/unrevoke": auth.Operator,
		"POST /api/jobs": auth.Operator, "DELETE /api/jobs/{id}": auth.Operator, "POST /api/schedules": auth.Operator,
		"DELETE /api/schedules/{id}": auth.Operator, "POST /api/schedules/{id}/disable": auth.Operator,
		"POST /api/schedules/{id}/enable": auth.Operator, "PUT /api/freeze": auth.Operator, "DELETE /api/freeze": auth.Operator,
		"PUT /api/jobs/{id}": auth.Operator, "PUT /api/schedules/{id}": auth.Operator,
		"GET /api/accounts": auth.Admin, "POST /api/accounts": auth.Admin,
		"PATCH /api/accounts/{username}": auth.Admin, "DELETE /api/accounts/{username}": auth.Admin,
	}
	roles := routeRoles()
	for pattern, want := range spec {
		if got, ok := roles[pattern]; !ok || got != want {
			t.Errorf("%s: %v (in table: %v), want %v", pattern, got, ok, want)
		}
	}
}

// TestEveryRouteHasARoleAndEveryRoleARoute registers every route, the
// dashboard included, and compares the patterns with the table both ways.
func TestEveryRouteHasARoleAndEveryRoleARoute(t *testing.T) {
	srv := &Server{cfg: Config{SPA: fstest.MapFS{"index.html": {Data: []byte("x")}}}}
	mux, api, err := srv.buildRoutes()
	if err != nil {
		t.Fatal(err)
	}
	roles := routeRoles()
	if err := checkRoles(mux.patterns, roles); err != nil {
		t.Error(err)
	}
	for pattern := range roles {
		if !slices.Contains(mux.patterns, pattern) {
			t.Errorf("routeRoles has %q, which no route registers", pattern)
		}
	}
	if err := documentRoles(api.OpenAPI(), roles); err != nil {
		t.Error(err)
	}
}

// TestARouteWithoutARoleIsAnError: what New does with a route the table
// lacks, in the mux and in the OpenAPI document.
func TestARouteWithoutARoleIsAnError(t *testing.T) {
	roles := routeRoles()
	err := checkRoles([]string{"GET /api/agents", "POST /api/new-thing"}, roles)
	if err == nil || !strings.Contains(err.Error(), `"POST /api/new-thing"`) || strings.Contains(err.Error(), "/api/agents") {
		t.Errorf("checkRoles: %v", err)
	}
	oapi := &huma.OpenAPI{Paths: map[string]*huma.PathItem{
		"/api/agents":    {Get: &huma.Operation{OperationID: "list-agents"}},
		"/api/new-thing": {Post: &huma.Operation{OperationID: "new-thing"}},
	}}
	err = documentRoles(oapi, roles)
	if err == nil || !strings.Contains(err.Error(), "POST /api/new-thing (new-thing)") {
		t.Errorf("documentRoles: %v", err)
	}
	if oapi.Paths["/api/agents"].Get.Extensions["x-kanade-role"] != "viewer" {
		t.Error("the known operation was not documented")
	}
	// And a route registered behind New's back is refused at run time.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/sneaky", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	srv := &Server{cfg: Config{Logger: slog.New(slog.DiscardHandler)}}
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/api/sneaky", nil)
	srv.gate(mux, roles).ServeHTTP(rec, r.WithContext(auth.WithCaller(r.Context(), auth.Caller{Subject: "x", Role: auth.Admin})))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("a route without a role answered %d", rec.Code)
	}
}

// benchRoute is the route the middleware benchmarks serve: a viewer read
// with a path parameter, answered without any work.
const benchRoute = "GET /api/agents/{pc_id}"

var benchSecret = []byte("bench-secret-0123456789abcdef0123456789")

// BenchmarkAuthMiddleware measures what the role checks add to a request:
// the auth middleware alone in front of a mux (the baseline), then with the
// gate, for the static token and for a JWT, whose role check also reads
// the account from a real SQLite database. The report has the figures;
// the target is < 50 µs added.
func BenchmarkAuthMiddleware(b *testing.B) {
	ctx := context.Background()
	db := storagetest.Open(b, nil)
	if _, err := db.CreateAccount(ctx, storage.NewAccount{Username: "bench", Hash: "unused", Role: "operator"}); err != nil {
		b.Fatal(err)
	}
	srv := &Server{cfg: Config{DB: db, Logger: slog.New(slog.DiscardHandler)}}
	mux := http.NewServeMux()
	mux.HandleFunc(benchRoute, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	roles := routeRoles()
	now := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	token, err := auth.IssueJWT(benchSecret, "bench", auth.Operator, now.Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	const static = "bench-static-token-0123456789abcdef"
	build := func(accounts auth.AccountLookup, gated bool) http.Handler {
		var next http.Handler = mux
		if gated {
			next = srv.gate(mux, roles)
		}
		h, err := auth.Middleware(auth.Config{StaticToken: static, JWTSecret: benchSecret, Clock: clock, Accounts: accounts}, next)
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	for _, c := range []struct {
		name   string
		bearer string
		h      http.Handler
	}{
		{"static/no-roles", static, build(nil, false)},
		{"static/roles", static, build(srv.accountOf, true)},
		{"jwt/no-roles", token, build(nil, false)},
		{"jwt/roles+account", token, build(srv.accountOf, true)},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/api/agents/PC-0001", nil)
			r.Header.Set("Authorization", "Bearer "+c.bearer)
			for b.Loop() {
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, r)
				if w.Code != http.StatusNoContent {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
