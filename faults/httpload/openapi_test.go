package httpload

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sampleDoc = `{
  "openapi": "3.1.0",
  "paths": {
    "/api/jobs/{id}": {
      "parameters": [{"name": "id", "in": "path"}],
      "summary": "not an operation",
      "put": {"operationId": "put-job", "requestBody": {"content": {"application/json": {}}}},
      "get": {"operationId": "get-job"},
      "delete": {"operationId": "delete-job"}
    },
    "/api/agents/{pc_id}/runs/{result_id}": {"get": {"operationId": "deep"}},
    "/api/agents/publish": {"post": {"operationId": "upload", "requestBody": {"content": {"multipart/form-data": {}}}}},
    "/api/version": {"get": {"operationId": "version"}}
  }
}`

func TestRoutesWalksEveryOperation(t *testing.T) {
	got, err := routes([]byte(sampleDoc))
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{
		{Method: "POST", Template: "/api/agents/publish", Path: "/api/agents/publish", HasBody: true},
		{Method: "GET", Template: "/api/agents/{pc_id}/runs/{result_id}", Path: "/api/agents/httpload-dummy/runs/httpload-dummy"},
		{Method: "DELETE", Template: "/api/jobs/{id}", Path: "/api/jobs/httpload-dummy"},
		{Method: "GET", Template: "/api/jobs/{id}", Path: "/api/jobs/httpload-dummy"},
		{Method: "PUT", Template: "/api/jobs/{id}", Path: "/api/jobs/httpload-dummy", HasBody: true, JSONBody: true},
		{Method: "GET", Template: "/api/version", Path: "/api/version"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("routes (-want +got):\n%s", diff)
	}
}

func TestRoutesRefusesWhatIsNotADocument(t *testing.T) {
	for _, doc := range []string{`not json`, `{"paths": {"/x": {"get": 3}}}`} {
		if _, err := routes([]byte(doc)); err == nil {
			t.Errorf("routes(%q): no error", doc)
		}
	}
}

func TestUndeclaredMethod(t *testing.T) {
	all, err := routes([]byte(sampleDoc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		template string
		all      []Route
		want     string
	}{
		{"/api/jobs/{id}", all, "POST"},
		{"/api/version", all, "POST"},
		{"/x", []Route{{Method: "POST", Template: "/x"}, {Method: "PATCH", Template: "/x"}}, "PUT"},
		{"/x", []Route{{Method: "POST", Template: "/x"}, {Method: "PATCH", Template: "/x"},
			{Method: "PUT", Template: "/x"}, {Method: "DELETE", Template: "/x"}}, ""},
	}
	for _, tt := range tests {
		if got := undeclaredMethod(tt.all, tt.template); got != tt.want {
			t.Errorf("undeclaredMethod(%s) = %q, want %q", tt.template, got, tt.want)
		}
	}
}
