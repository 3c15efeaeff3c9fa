package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend/auth"
)

// public is the requirement of a route anyone may call, without
// credentials.
const public = auth.NoRole

// routeRoles is the one table of who may call what (control.md §9.2): every
// route the server registers, as its ServeMux pattern ("METHOD /path", the
// method and path of its OpenAPI operation), to the lowest role that may
// call it. Viewers read, operators act on the fleet, admins manage
// accounts.
//
// New refuses to build a server with a route missing from it, and the gate
// refuses callers below the role before any handler runs, so a route added
// without a line here fails every test. To add a route, add its line.
func routeRoles() map[string]auth.Role {
	return map[string]auth.Role{
		// Open to anyone: the probes, the dashboard's files, the version,
		// and the login that gets a token.
		"GET /health":                    public,
		"GET /healthz":                   public,
		"GET /readyz":                    public,
		"GET /":                          public,
		"GET /api/version":               public,
		"POST /api/auth/login":           public,
		"GET /api/auth/me":               auth.Viewer,
		"POST /api/auth/change-password": auth.Viewer,
		// The API reference page and its files: public, without secrets
		// (docs.go); the document they load needs a viewer's token.
		"GET /api/docs":     public,
		"GET /api/docs.js":  public,
		"GET /api/docs.css": public,

		// The API's own description and the metrics.
		"GET /api/openapi.json":             auth.Viewer,
		"GET /api/openapi.yaml":             auth.Viewer,
		"GET /api/openapi-3.0.json":         auth.Viewer,
		"GET /api/openapi-3.0.yaml":         auth.Viewer,
		"GET /api/openapi/schemas/{schema}": auth.Viewer,
		"GET /metrics":                      auth.Viewer,

		// Reading the fleet.
		"GET /api/health/fleet":             auth.Viewer,
		"GET /api/health/scan_durations":    auth.Viewer,
		"GET /api/jetstream/status":         auth.Viewer,
		"GET /api/agents":                   auth.Viewer,
		"GET /api/agents/{pc_id}":           auth.Viewer,
		"GET /api/agents/versions":          auth.Viewer,
		"GET /api/agents/{pc_id}/logs":      auth.Viewer,
		"GET /api/results/{result_id}/tail": auth.Viewer,
		"GET /api/results":                  auth.Viewer,
		"GET /api/results/{result_id}":      auth.Viewer,
		"GET /api/executions":               auth.Viewer,
		"GET /api/executions/{exec_id}":     auth.Viewer,
		"GET /api/audit":                    auth.Viewer,

		// Inventory (fleet.md §5.5). The mux serves by-job and
		// search-scalars through one pattern (inventory.go), which
		// needs its line too.
		"GET /api/inventory/jobs":                             auth.Viewer,
		"GET /api/inventory/by-job/{manifest_id}":             auth.Viewer,
		"GET /api/inventory/{pc_id}":                          auth.Viewer,
		"GET /api/inventory/{manifest_id}/search/{field}":     auth.Viewer,
		"GET /api/inventory/{manifest_id}/search-scalars":     auth.Viewer,
		"GET /api/inventory/{manifest_id}/history/pc/{pc_id}": auth.Viewer,
		"GET /api/inventory/{manifest_id}/history/search":     auth.Viewer,
		"GET /api/inventory/{manifest_id}/history/first_seen": auth.Viewer,
		inventoryPairPattern:                                  auth.Viewer,

		// Performance samples and the observability timeline (observe.md §1–§2).
		"GET /api/agents/{pc_id}/perf":               auth.Viewer,
		"GET /api/perf/fleet":                        auth.Viewer,
		"GET /api/perf/top":                          auth.Viewer,
		"GET /api/perf/active-investigations":        auth.Viewer,
		"GET /api/agents/{pc_id}/processes":          auth.Viewer,
		"GET /api/agents/{pc_id}/processes/timeline": auth.Viewer,
		"GET /api/obs_events":                        auth.Viewer,
		"GET /api/obs_events/recent":                 auth.Viewer,
		"GET /api/obs_events/kinds":                  auth.Viewer,
		"GET /api/obs_events/sources":                auth.Viewer,

		// Jobs and schedules: reads are viewer, writes operator.
		"GET /api/jobs":                    auth.Viewer,
		"GET /api/jobs/{id}":               auth.Viewer,
		"GET /api/jobs/{id}/yaml":          auth.Viewer,
		"POST /api/jobs":                   auth.Operator,
		"PUT /api/jobs/{id}":               auth.Operator,
		"DELETE /api/jobs/{id}":            auth.Operator,
		"GET /api/schedules":               auth.Viewer,
		"GET /api/schedules/upcoming":      auth.Viewer,
		"GET /api/schedules/{id}":          auth.Viewer,
		"GET /api/schedules/{id}/yaml":     auth.Viewer,
		"GET /api/schedules/{id}/preview":  auth.Viewer,
		"GET /api/schedules/{id}/status":   auth.Viewer,
		"POST /api/schedules":              auth.Operator,
		"PUT /api/schedules/{id}":          auth.Operator,
		"DELETE /api/schedules/{id}":       auth.Operator,
		"POST /api/schedules/{id}/disable": auth.Operator,
		"POST /api/schedules/{id}/enable":  auth.Operator,
		"GET /api/schemas/manifest.json":   auth.Viewer,
		"GET /api/schemas/schedule.json":   auth.Viewer,

		// Acting on the fleet.
		"DELETE /api/agents/{pc_id}":          auth.Operator,
		"POST /api/agents/{pc_id}/ping":       auth.Operator,
		"POST /api/exec/{job_id}":             auth.Operator,
		"POST /api/run":                       auth.Operator,
		"POST /api/jobs/{job_id}/kill":        auth.Operator,
		"POST /api/executions/{exec_id}/kill": auth.Operator,
		"GET /api/scripts/status":             auth.Viewer,
		"POST /api/scripts/{cmd_id}/revoke":   auth.Operator,
		"POST /api/scripts/{cmd_id}/unrevoke": auth.Operator,
		"GET /api/freeze":                     auth.Viewer,
		"GET /api/command-signing":            auth.Viewer,
		"PUT /api/freeze":                     auth.Operator,
		"DELETE /api/freeze":                  auth.Operator,

		// Group memberships and the layered agent config (fleet.md §1, §2).
		"GET /api/groups":                                 auth.Viewer,
		"GET /api/agents/{pc_id}/groups":                  auth.Viewer,
		"PUT /api/agents/{pc_id}/groups":                  auth.Operator,
		"POST /api/agents/{pc_id}/groups":                 auth.Operator,
		"DELETE /api/agents/{pc_id}/groups/{group}":       auth.Operator,
		"GET /api/agents/{pc_id}/effective_config":        auth.Viewer,
		"GET /api/config":                                 auth.Viewer,
		"PUT /api/config":                                 auth.Operator,
		"DELETE /api/config":                              auth.Operator,
		"GET /api/config/defaults":                        auth.Viewer,
		"PUT /api/config/fields/{field}":                  auth.Operator,
		"DELETE /api/config/fields/{field}":               auth.Operator,
		"GET /api/groups/{name}/config":                   auth.Viewer,
		"PUT /api/groups/{name}/config":                   auth.Operator,
		"DELETE /api/groups/{name}/config":                auth.Operator,
		"GET /api/groups/{name}/config/inherited":         auth.Viewer,
		"PUT /api/groups/{name}/config/fields/{field}":    auth.Operator,
		"DELETE /api/groups/{name}/config/fields/{field}": auth.Operator,
		"GET /api/pcs/{pc_id}/config":                     auth.Viewer,
		"PUT /api/pcs/{pc_id}/config":                     auth.Operator,
		"DELETE /api/pcs/{pc_id}/config":                  auth.Operator,
		"GET /api/pcs/{pc_id}/config/inherited":           auth.Viewer,
		"PUT /api/pcs/{pc_id}/config/fields/{field}":      auth.Operator,
		"DELETE /api/pcs/{pc_id}/config/fields/{field}":   auth.Operator,

		// Agent releases (fleet.md §6): reading them is viewer,
		// publishing, rolling out and deleting operator.
		"GET /api/agents/releases":              auth.Viewer,
		"POST /api/agents/publish":              auth.Operator,
		"POST /api/agents/rollout":              auth.Operator,
		"DELETE /api/agents/releases/{version}": auth.Operator,

		// Compliance checks and notifications (observe.md §3, §4).
		"GET /api/checks":                        auth.Viewer,
		"DELETE /api/checks/{check_name}":        auth.Operator,
		"GET /api/notifications":                 auth.Viewer,
		"POST /api/notifications":                auth.Operator,
		"GET /api/notifications/{id}/ack_status": auth.Viewer,

		// App packages and script objects (observe.md §5): downloads need
		// a token like any /api/ route.
		"GET /api/app-packages":                       auth.Viewer,
		"GET /api/app-packages/{name}/{version}":      auth.Viewer,
		"HEAD /api/app-packages/{name}/{version}":     auth.Viewer,
		"POST /api/app-packages/{name}/{version}":     auth.Operator,
		"DELETE /api/app-packages/{name}/{version}":   auth.Operator,
		"GET /api/script-objects":                     auth.Viewer,
		"GET /api/script-objects/{name}/{version}":    auth.Viewer,
		"HEAD /api/script-objects/{name}/{version}":   auth.Viewer,
		"POST /api/script-objects/{name}/{version}":   auth.Operator,
		"DELETE /api/script-objects/{name}/{version}": auth.Operator,

		// Accounts.
		"GET /api/accounts":               auth.Admin,
		"POST /api/accounts":              auth.Admin,
		"PATCH /api/accounts/{username}":  auth.Admin,
		"DELETE /api/accounts/{username}": auth.Admin,
	}
}

// openPaths are the literal /api/ paths of public routes: the auth
// middleware lets them through without credentials (everything else under
// /api/ needs some before any router sees it).
func openPaths(roles map[string]auth.Role) ([]string, error) {
	var open []string
	for pattern, need := range roles {
		if need != public {
			continue
		}
		_, path, _ := strings.Cut(pattern, " ")
		if !strings.HasPrefix(path, "/api/") {
			continue // open anyway: the middleware guards only /api and /metrics
		}
		if strings.ContainsAny(path, "{}") {
			return nil, fmt.Errorf("handlers: public route %q has a path parameter; only literal paths can be open", pattern)
		}
		open = append(open, path)
	}
	slices.Sort(open)
	return open, nil
}

// routes is the server's ServeMux, remembering each pattern registered on
// it (by the handlers and by huma), so New can check each has a role.
type routes struct {
	*http.ServeMux
	patterns []string
	// pair serves two inventory routes the mux cannot hold apart
	// (inventory.go).
	pair *inventoryPair
}

func (m *routes) Handle(pattern string, h http.Handler) {
	m.HandleFunc(pattern, h.ServeHTTP)
}

func (m *routes) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	if byJob, scalars := pairedPattern(pattern); byJob || scalars {
		if m.pair == nil {
			m.pair = &inventoryPair{}
			m.patterns = append(m.patterns, inventoryPairPattern)
			m.ServeMux.Handle(inventoryPairPattern, m.pair)
		}
		if byJob {
			m.pair.byJob = h
		} else {
			m.pair.scalars = h
		}
		return
	}
	m.ServeMux.HandleFunc(pattern, h)
}

// checkRoles fails for every registered pattern without a role.
func checkRoles(patterns []string, roles map[string]auth.Role) error {
	var errs []error
	for _, p := range patterns {
		if _, ok := roles[p]; !ok {
			errs = append(errs, fmt.Errorf("handlers: route %q has no role in routeRoles (control.md §9.2)", p))
		}
	}
	return errors.Join(errs...)
}

// bearerScheme names the one security scheme of the OpenAPI document.
const bearerScheme = "bearer"

// documentRoles writes each operation's role into the OpenAPI document:
// the x-kanade-role extension, a sentence of its description, its
// security requirement (none for a public route) and its 401 and 403
// answers; and declares the bearer scheme. It fails for an operation
// without a role, which checkRoles would also catch.
func documentRoles(oapi *huma.OpenAPI, roles map[string]auth.Role) error {
	if oapi.Components == nil {
		oapi.Components = &huma.Components{}
	}
	if oapi.Components.SecuritySchemes == nil {
		oapi.Components.SecuritySchemes = map[string]*huma.SecurityScheme{}
	}
	oapi.Components.SecuritySchemes[bearerScheme] = &huma.SecurityScheme{
		Type:   "http",
		Scheme: "bearer",
		Description: "The static service token (KANADE_AUTH_STATIC_TOKEN, or the one the server generated; acts as admin), " +
			"or a JWT from POST /api/auth/login (HS256 with KANADE_JWT_SECRET, audience kanade); " +
			"a JWT's role is its account's role at the time of the request.",
	}
	problem := func(desc string) *huma.Response {
		return &huma.Response{Description: desc, Content: map[string]*huma.MediaType{
			"application/problem+json": {Schema: &huma.Schema{Ref: "#/components/schemas/ErrorModel"}},
		}}
	}
	var errs []error
	for path, item := range oapi.Paths {
		for method, op := range map[string]*huma.Operation{
			http.MethodGet: item.Get, http.MethodPut: item.Put, http.MethodPost: item.Post,
			http.MethodDelete: item.Delete, http.MethodPatch: item.Patch, http.MethodHead: item.Head,
			http.MethodOptions: item.Options, http.MethodTrace: item.Trace,
		} {
			if op == nil {
				continue
			}
			need, ok := roles[method+" "+path]
			if !ok {
				errs = append(errs, fmt.Errorf("handlers: operation %s %s (%s) has no role in routeRoles (control.md §9.2)", method, path, op.OperationID))
				continue
			}
			if op.Extensions == nil {
				op.Extensions = map[string]any{}
			}
			var sentence string
			if need == public {
				op.Extensions["x-kanade-role"] = "public"
				op.Security = []map[string][]string{} // explicitly none
				sentence = "Public: no credentials needed."
			} else {
				op.Extensions["x-kanade-role"] = need.String()
				op.Security = []map[string][]string{{bearerScheme: {}}}
				sentence = "Role: viewer (any authenticated caller)."
				if need > auth.Viewer {
					sentence = fmt.Sprintf("Role: %s or higher (viewer < operator < admin); a caller below it gets 403, e.g. %q.",
						need, auth.Forbidden(need, auth.Caller{Role: need - 1}))
				}
				if op.Responses == nil {
					op.Responses = map[string]*huma.Response{}
				}
				if op.Responses["401"] == nil {
					op.Responses["401"] = problem("No valid credentials, or the JWT's account is unknown or disabled.")
				}
				if need > auth.Viewer && op.Responses["403"] == nil {
					op.Responses["403"] = problem("The caller's role is below " + need.String() + ".")
				}
			}
			if op.Description != "" {
				op.Description += "\n\n"
			}
			op.Description += sentence
		}
	}
	return errors.Join(errs...)
}

// gate refuses a caller whose role is below the route's, before the route
// runs: the one place roles are enforced. It asks the mux which pattern the
// request would match; a request that matches none (404, 405, a redirect
// to a cleaned path) goes on to the mux, which answers it without running
// any route.
func (srv *Server) gate(mux *http.ServeMux, roles map[string]auth.Role) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		if pattern != "" {
			need, ok := roles[pattern]
			c, _ := auth.CallerFrom(r.Context())
			switch {
			case !ok:
				// New checks every route; this is a route registered
				// behind its back. Refuse rather than guess.
				srv.cfg.Logger.ErrorContext(r.Context(), "route without a role refused", slog.String("pattern", pattern))
				r.Pattern = pattern
				writeProblem(w, http.StatusInternalServerError, "route has no role")
				return
			case !c.Allows(need):
				r.Pattern = pattern // for the request metric's route label
				writeProblem(w, http.StatusForbidden, auth.Forbidden(need, c))
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// writeProblem answers an RFC 9457 problem with huma's fields, for the
// answers given before huma runs.
func writeProblem(w http.ResponseWriter, status int, detail string) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// Encoding strings and an int cannot fail; a write error means the
	// client left.
	_ = json.NewEncoder(w).Encode(struct {
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{http.StatusText(status), status, detail})
}

// mountedApart are the route families the contract (fleet.md §6, §5.5) puts
// beside a templated sibling so that their paths cross: DELETE
// /api/agents/releases/{version} and GET /api/agents/{pc_id}/logs could
// both be /api/agents/releases/logs. The mux tells them apart by method and
// by the literal segment, but a client generator reading the document sees
// two templates that match the same URL (Redocly's no-ambiguous-paths).
// The document lists each of these families under a path-level server of
// its own prefix instead (OpenAPI 3.1 §4.8.9, Path Item "servers"), which
// resolves to the very same URLs and leaves no two paths crossing.
var mountedApart = []string{"/api/agents/releases", "/api/inventory/by-job"}

// mountApart moves the path items of mountedApart under a server of their
// parent prefix: /api/agents/releases/{version} becomes
// /releases/{version} at server /api/agents.
func mountApart(oapi *huma.OpenAPI) {
	moved := map[string]*huma.PathItem{}
	for path, item := range oapi.Paths {
		for _, family := range mountedApart {
			if path != family && !strings.HasPrefix(path, family+"/") {
				continue
			}
			base := family[:strings.LastIndexByte(family, '/')]
			item.Servers = []*huma.Server{{URL: base, Description: "paths of this family are relative to " + base}}
			moved[strings.TrimPrefix(path, base)] = item
			delete(oapi.Paths, path)
		}
	}
	for path, item := range moved {
		oapi.Paths[path] = item
	}
}
