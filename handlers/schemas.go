package handlers

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
)

// GET /api/schemas/manifest.json and schedule.json (control.md §8.1): the
// JSON Schemas of what POST /api/jobs and /api/schedules accept, generated
// from the Go types and tested against the validators, for the dashboard's
// YAML editor.

type schemaOutput struct {
	ContentType string `header:"Content-Type"`
	Body        []byte
}

func registerSchemas(api huma.API) {
	for _, s := range []struct{ name, what string }{{"manifest", "a job (Manifest)"}, {"schedule", "a Schedule"}} {
		register(api, huma.Operation{OperationID: s.name + "-schema", Method: http.MethodGet, Path: "/api/schemas/" + s.name + ".json",
			Summary: "JSON Schema of " + s.what, Tags: []string{"control"},
			Description: "Draft 2020-12. It accepts what the " + s.name + " routes accept; rules a schema cannot express " +
				"(a bound before another, a zone that exists) are left to the server, which names the field."},
			func(ctx context.Context, _ *struct{}) (*schemaOutput, error) {
				b := kanade.ManifestSchema()
				if s.name == "schedule" {
					b = kanade.ScheduleSchema()
				}
				return &schemaOutput{ContentType: "application/json", Body: b}, nil
			})
	}
}
