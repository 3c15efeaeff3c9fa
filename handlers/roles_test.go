package handlers_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/handlers"
)

// caller is one identity the role walk tries every route with.
type caller struct {
	name  string
	token string
	role  auth.Role // NoRole: no credentials
}

// callers logs in one account per role (plus the static token and nobody).
func (e *acctEnv) callers() []caller {
	e.t.Helper()
	e.addAccount("vic", "vic-password-1", "viewer")
	e.addAccount("opal", "opal-password-1", "operator")
	e.addAccount("ada", "ada-password-1", "admin")
	return []caller{
		{"nobody", "", auth.NoRole},
		{"viewer", e.login("vic", "vic-password-1").Token, auth.Viewer},
		{"operator", e.login("opal", "opal-password-1").Token, auth.Operator},
		{"admin", e.login("ada", "ada-password-1").Token, auth.Admin},
		{"static token", testToken, auth.Admin},
	}
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// checkGate serves method path (a body of {} for writes) as c and checks
// the answer against need: 401 without credentials, 403 with the sentence
// of control.md §9.2 below the role, and neither at or above it.
func (e *acctEnv) checkGate(t *testing.T, c caller, method, path string, need auth.Role) {
	t.Helper()
	url := pathParam.ReplaceAllString(path, "x")
	body := ""
	if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		body = "{}"
	}
	rec := e.call(c.token, "192.0.2.50:1", method, url, body)
	switch {
	case need == auth.NoRole:
		if rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden {
			t.Errorf("%s %s as %s (public): %d %s", method, url, c.name, rec.Code, rec.Body)
		}
	case c.role == auth.NoRole:
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s %s without credentials: %d, want 401", method, url, rec.Code)
		}
	case c.role < need:
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s %s as %s (needs %v): %d, want 403; %s", method, url, c.name, need, rec.Code, rec.Body)
		} else if got, want := detail(t, rec), need.String()+" role required (caller is "+c.role.String()+")"; got != want {
			t.Errorf("%s %s as %s: 403 detail %q, want %q", method, url, c.name, got, want)
		}
	default:
		if rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden {
			t.Errorf("%s %s as %s (needs %v): %d %s; want through the gate", method, url, c.name, need, rec.Code, rec.Body)
		}
	}
}

// TestEveryOperationIsGatedByItsRole walks every operation of the served
// OpenAPI document with no credentials, a viewer, an operator, an admin and
// the static token, and checks each answer against the role table: 401,
// 403 with the contract's sentence, or an answer from the route itself
// (2xx, a validation error, a 404 for the made-up ids). It also checks that
// the document states each operation's role and security. A route added
// without a role never gets this far: New refuses it.
func TestEveryOperationIsGatedByItsRole(t *testing.T) {
	e := newAcctEnv(t, nil)
	callers := e.callers()
	roles := handlers.RoleTableForTest()

	rec := e.call(testToken, "192.0.2.50:1", http.MethodGet, "/api/openapi.json", "")
	expect(t, rec, http.StatusOK, "openapi.json")
	var doc struct {
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
		Info struct {
			License struct {
				Name string `json:"name"`
			} `json:"license"`
		} `json:"info"`
		Components struct {
			SecuritySchemes map[string]map[string]any `json:"securitySchemes"`
		} `json:"components"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if s := doc.Components.SecuritySchemes["bearer"]; s["type"] != "http" || s["scheme"] != "bearer" {
		t.Errorf("securitySchemes.bearer = %v", s)
	}
	// What Redocly's recommended rules ask of the document as a whole
	// (scripts/lint-openapi.sh runs the linter itself in CI).
	if len(doc.Servers) == 0 || doc.Servers[0].URL == "" {
		t.Errorf("servers = %v, want the API's own", doc.Servers)
	}
	if doc.Info.License.Name == "" {
		t.Error("info.license has no name")
	}
	type operation struct {
		OperationID string                 `json:"operationId"`
		Role        string                 `json:"x-kanade-role"`
		Security    *[]map[string][]string `json:"security"`
		Description string                 `json:"description"`
		Responses   map[string]any         `json:"responses"`
	}
	walked := 0
	for rel, item := range doc.Paths {
		// A family the document mounts under a server of its own prefix
		// (mountApart) is served at that prefix plus its path.
		path := rel
		if raw, ok := item["servers"]; ok {
			var servers []struct {
				URL string `json:"url"`
			}
			if err := json.Unmarshal(raw, &servers); err != nil || len(servers) != 1 {
				t.Errorf("%s: path-level servers %s", rel, raw)
				continue
			}
			path = servers[0].URL + rel
			delete(item, "servers")
		}
		for m, raw := range item {
			var op operation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Errorf("%s %s: %v", m, rel, err)
				continue
			}
			method := strings.ToUpper(m)
			need, ok := roles[method+" "+path]
			if !ok {
				t.Errorf("%s %s (%s) is served without a role", method, path, op.OperationID)
				continue
			}
			walked++
			wantRole, wantSecurity := need.String(), []map[string][]string{{"bearer": {}}}
			if need == auth.NoRole {
				wantRole, wantSecurity = "public", []map[string][]string{}
			}
			if op.Role != wantRole {
				t.Errorf("%s %s: x-kanade-role %q, want %q", method, path, op.Role, wantRole)
			}
			if op.Security == nil || !cmp.Equal(*op.Security, wantSecurity) {
				t.Errorf("%s %s: security %v, want %v", method, path, op.Security, wantSecurity)
			}
			if !slices.ContainsFunc(slices.Collect(maps.Keys(op.Responses)), func(code string) bool { return strings.HasPrefix(code, "4") }) {
				t.Errorf("%s %s: no 4xx response documented, only %v", method, path, slices.Sorted(maps.Keys(op.Responses)))
			}
			if need > auth.NoRole && op.Responses["401"] == nil {
				t.Errorf("%s %s: needs a token but documents no 401", method, path)
			}
			if need > auth.Viewer && op.Responses["403"] == nil {
				t.Errorf("%s %s: needs %s but documents no 403", method, path, need)
			}
			if !strings.Contains(op.Description, "Role: "+wantRole) && !strings.Contains(op.Description, "Public:") {
				t.Errorf("%s %s: the description does not state the role: %q", method, path, op.Description)
			}
			for _, c := range callers {
				e.checkGate(t, c, method, path, need)
			}
		}
	}
	if walked < 45 {
		t.Errorf("walked %d operations; the document lost some", walked)
	}
}

// TestRoutesOutsideTheDocumentAreGated walks the table's routes that the
// OpenAPI document does not list (the document itself, the docs page,
// /metrics, the probes, the dashboard) the same way.
func TestRoutesOutsideTheDocumentAreGated(t *testing.T) {
	e := newAcctEnv(t, func(c *handlers.Config) {
		c.SPA = fstest.MapFS{"index.html": {Data: []byte("<!doctype html>")}}
	})
	callers := e.callers()
	roles := handlers.RoleTableForTest()
	outside := []string{"GET /health", "GET /healthz", "GET /readyz", "GET /", "GET /metrics", "GET /api/docs", "GET /api/docs.js", "GET /api/docs.css",
		"GET /api/openapi.json", "GET /api/openapi.yaml", "GET /api/openapi-3.0.json", "GET /api/openapi-3.0.yaml",
		"GET /api/openapi/schemas/{schema}"}
	for _, pattern := range outside {
		need, ok := roles[pattern]
		if !ok {
			t.Errorf("%s has no role", pattern)
			continue
		}
		method, path, _ := strings.Cut(pattern, " ")
		for _, c := range callers {
			e.checkGate(t, c, method, path, need)
		}
	}
	for pattern := range roles {
		if _, path, _ := strings.Cut(pattern, " "); !strings.HasPrefix(path, "/api/") && !slices.Contains(outside, pattern) {
			t.Errorf("%s is outside /api/ and not walked here", pattern)
		}
	}
}
