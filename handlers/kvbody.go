package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
)

// What the routes of the fleet organisation (fleet.md §1, §2: groups and
// the layered agent config) share: their status codes are the contract
// (§0), finer than the manage routes' "any NATS failure is 503", and they
// read their JSON bodies themselves to tell a malformed body (400) from a
// well-formed one of the wrong shape (422).

// fleetTimeout bounds the NATS and database round trips of one request of
// these routes. Longer than manageTimeout: a compare-and-swap edit of a
// key that many operators (or scripts) edit at once retries up to 32
// times, and on a loaded machine 27 concurrent edits of one scope ran out
// of 5 s.
const fleetTimeout = 15 * time.Second

// kvProblem answers a failed KV operation on bucket as fleet.md §0.3 asks,
// logged here: a bucket that cannot be opened is 503 naming it, any other
// failure (a read, a write, a compare-and-swap that kept losing) is 500.
func (srv *Server) kvProblem(ctx context.Context, bucket, what string, err error) error {
	srv.cfg.Logger.ErrorContext(ctx, what, slog.String("bucket", bucket), slog.Any("error", err))
	if isNoBucket(err) {
		return huma.Error503ServiceUnavailable(fmt.Sprintf("%s: KV bucket %s cannot be opened (NATS not bootstrapped?)", what, bucket))
	}
	return huma.Error500InternalServerError(fmt.Sprintf("%s: %v", what, err))
}

// badPath is the 400 of a path parameter breaking its rule (fleet.md
// §0.4), located at path.<param>.
func badPath(param string, err error) error {
	var fe *kanade.FieldError
	if errors.As(err, &fe) {
		fe.Field = param
		return huma.Error400BadRequest(fe.Error(), &huma.ErrorDetail{Location: "path." + param, Message: fe.Error(), Value: fe.Excerpt})
	}
	return huma.Error400BadRequest(err.Error(), &huma.ErrorDetail{Location: "path." + param, Message: err.Error()})
}

// readObject decodes a JSON object body into v (fleet.md §0.1): 415 when it
// is not declared JSON, 400 when it is not JSON, 422 when it is JSON but
// not an object or a member has the wrong type (located at body.<field>).
// Unknown members are ignored.
func readObject(contentType string, body []byte, v any) error {
	if err := requireJSON(contentType); err != nil {
		return err
	}
	if err := json.Unmarshal(body, new(json.RawMessage)); err != nil {
		msg := "the body is not JSON: " + err.Error()
		return huma.Error400BadRequest(msg, &huma.ErrorDetail{Location: "body", Message: msg})
	}
	if b := bytes.TrimSpace(body); len(b) == 0 || b[0] != '{' {
		return unprocessable("", "must be a JSON object")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return unprocessable(te.Field, "must be "+jsonKind(te.Type)+" (got a JSON "+te.Value+")")
		}
		var fe *kanade.FieldError
		if errors.As(err, &fe) {
			return unprocessable(fe.Field, fe.Rule)
		}
		return unprocessable("", err.Error())
	}
	return nil
}

// unprocessable is the 422 of a body of the wrong shape, at body.<field>
// (the body itself when field is empty).
func unprocessable(field, rule string) error {
	loc, msg := "body", "the body "+rule
	if field != "" {
		loc, msg = "body."+field, field+" "+rule
	}
	return huma.Error422UnprocessableEntity(msg, &huma.ErrorDetail{Location: loc, Message: msg})
}

// jsonKind names the JSON shape a Go type decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map, reflect.Pointer, reflect.Interface:
		return "an object"
	default:
		return "a number"
	}
}

// invalidValue is the 400 of a body that has the right shape but a value
// breaking its rule (fleet.md §0.4, §2.2), naming the field.
func invalidValue(err error) error { return bodyProblem("", err) }

// documentJSONBody replaces the binary request body huma documents for a
// RawBody with the JSON schema of T: these routes read the body
// themselves (readObject) to answer 400 and 422 as the contract says, but
// the document should still say what to send.
func documentJSONBody[T any](api huma.API, method, path, description string) {
	item := api.OpenAPI().Paths[path]
	var op *huma.Operation
	switch method {
	case http.MethodPut:
		op = item.Put
	case http.MethodPost:
		op = item.Post
	}
	schema := api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[T](), true, "")
	op.RequestBody = &huma.RequestBody{Required: true, Description: description,
		Content: map[string]*huma.MediaType{"application/json": {Schema: schema}}}
	// The Content-Type header is read to refuse other types with 415; it
	// is not a parameter a client chooses.
	params := op.Parameters[:0]
	for _, p := range op.Parameters {
		if p.In != "header" || p.Name != "Content-Type" {
			params = append(params, p)
		}
	}
	op.Parameters = params
	if op.Responses == nil {
		op.Responses = map[string]*huma.Response{}
	}
	for code, desc := range map[string]string{
		"400": "The body is not JSON, or a value breaks its rule (the problem names the field).",
		"415": "The body is not declared application/json.",
		"422": "The body is JSON of the wrong shape: not an object, a required member missing, a member of the wrong type.",
	} {
		if op.Responses[code] == nil {
			op.Responses[code] = problemResponse(desc)
		}
	}
}

// problemResponse documents an RFC 9457 answer.
func problemResponse(desc string) *huma.Response {
	return &huma.Response{Description: desc, Content: map[string]*huma.MediaType{
		"application/problem+json": {Schema: &huma.Schema{Ref: "#/components/schemas/ErrorModel"}},
	}}
}

// documentResponses adds the answers an operation gives besides 200 and
// the role's 401/403 (the shared ones of fleet.md §0).
func documentResponses(api huma.API, method, path string, codes map[string]string) {
	item := api.OpenAPI().Paths[path]
	op := map[string]*huma.Operation{http.MethodGet: item.Get, http.MethodPut: item.Put, http.MethodPost: item.Post,
		http.MethodDelete: item.Delete}[method]
	if op.Responses == nil {
		op.Responses = map[string]*huma.Response{}
	}
	for code, desc := range codes {
		if op.Responses[code] == nil {
			op.Responses[code] = problemResponse(desc)
		}
	}
}
