package httpload

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// Route is one operation of the OpenAPI document, ready to request.
type Route struct {
	Method string
	// Template is the path as documented ("/api/jobs/{id}").
	Template string
	// Path has every path parameter replaced by a dummy value.
	Path string
	// HasBody is true when the operation declares a request body.
	HasBody bool
	// JSONBody is true when that body may be application/json; a route
	// that takes only another type (a multipart upload) may refuse a JSON
	// body for its type before reading it.
	JSONBody bool
}

// dummyParam replaces path parameters: it matches every documented pattern
// (pc_id's [A-Za-z0-9_=/-]{1,128} included) and names no stored object.
const dummyParam = "httpload-dummy"

var pathParam = regexp.MustCompile(`\{[^/{}]+\}`)

// openAPIMethods are the operation keys of an OpenAPI path item; the item's
// other keys (summary, parameters, servers) are not operations.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// routes lists the operations of an OpenAPI 3 document, sorted by path and
// method, so the checks walk whatever the server documents rather than a
// list kept here that would drift from it.
func routes(doc []byte) ([]Route, error) {
	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("parse OpenAPI document: %w", err)
	}
	var out []Route
	for rel, item := range d.Paths {
		// A path item may carry servers of its own (OpenAPI 3.1): its
		// operations are served at that (relative) server's path plus
		// the item's.
		tmpl := rel
		if raw, ok := item["servers"]; ok {
			var servers []struct {
				URL string `json:"url"`
			}
			if err := json.Unmarshal(raw, &servers); err != nil || len(servers) == 0 || !strings.HasPrefix(servers[0].URL, "/") {
				return nil, fmt.Errorf("parse OpenAPI path %s: servers %s: want one relative URL", rel, raw)
			}
			tmpl = strings.TrimSuffix(servers[0].URL, "/") + rel
		}
		for _, m := range openAPIMethods {
			raw, ok := item[m]
			if !ok {
				continue
			}
			var op struct {
				RequestBody json.RawMessage `json:"requestBody"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				return nil, fmt.Errorf("parse OpenAPI operation %s %s: %w", strings.ToUpper(m), tmpl, err)
			}
			r := Route{
				Method:   strings.ToUpper(m),
				Template: tmpl,
				Path:     pathParam.ReplaceAllString(tmpl, dummyParam),
				HasBody:  len(op.RequestBody) > 0 && string(op.RequestBody) != "null",
			}
			if r.HasBody {
				var body struct {
					Content map[string]json.RawMessage `json:"content"`
				}
				if err := json.Unmarshal(op.RequestBody, &body); err != nil {
					return nil, fmt.Errorf("parse OpenAPI request body of %s %s: %w", r.Method, tmpl, err)
				}
				_, r.JSONBody = body.Content["application/json"]
			}
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Route) int {
		if c := strings.Compare(a.Template, b.Template); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	return out, nil
}

// undeclaredMethod returns a method the path does not declare, so a request
// with it must be refused by the router (405) before any handler reads the
// body.
func undeclaredMethod(all []Route, template string) string {
	declared := map[string]bool{}
	for _, r := range all {
		if r.Template == template {
			declared[r.Method] = true
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete} {
		if !declared[m] {
			return m
		}
	}
	return ""
}
