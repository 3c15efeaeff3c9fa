package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// The layered agent configuration (fleet.md §2): KV agent_config holds a
// ConfigScope under global, groups.<name> and pcs.<pc_id>; an agent merges
// the built-in defaults, global, its groups' scopes and its own scope into
// what it runs with (kanade.ConfigLayers.Resolve). These routes read and
// write the scopes straight in the KV (agents watch it, so there is no SQL
// copy to keep), whole scopes by blind put, single fields by
// compare-and-swap, and show the merge for one PC.

// Audit actions of the config edits (fleet.md §0.6, upstream's names).
const (
	actionScopePut   = "config_scope_put"
	actionScopeClear = "config_scope_clear"
	actionFieldSet   = "config_field_set"
	actionFieldUnset = "config_field_unset"
)

// scopeRef is the agent_config scope a route names: its KV key and its
// label in messages.
type scopeRef struct {
	key, label string
}

// scopeReq is what a scope route's input carries: the scope (kind and
// name), the field of a field route, the body of a write.
type scopeReq struct {
	kind, name, field, contentType string
	body                           []byte
}

// scope checks the scope's name (fleet.md §0.4: a group that carries a
// scope must keep to the KV key alphabet) and names its key.
func (r scopeReq) scope() (scopeRef, error) {
	switch r.kind {
	case kanade.ScopeGroup:
		if err := kanade.CheckScopeGroup("name", r.name); err != nil {
			return scopeRef{}, badPath("name", err)
		}
		return scopeRef{key: kanade.GroupScopeKey(r.name), label: kanade.ScopeLabel(kanade.ScopeGroup, r.name)}, nil
	case kanade.ScopePC:
		if err := checkPCID(r.name); err != nil {
			return scopeRef{}, err
		}
		return scopeRef{key: kanade.PCScopeKey(r.name), label: kanade.ScopeLabel(kanade.ScopePC, r.name)}, nil
	}
	return scopeRef{key: kanade.ScopeKeyGlobal, label: kanade.ScopeGlobal}, nil
}

// scopeInput is the input of a scope route. (huma reads only exported
// fields, embedded structs included, so each route has its own plain
// input type rather than a composition of unexported parts.)
type scopeInput interface {
	req() scopeReq
}

type (
	globalIn    struct{}
	globalPutIn struct {
		ContentType string `header:"Content-Type"`
		RawBody     []byte
	}
	globalFieldIn struct {
		Field string `path:"field" doc:"A ConfigScope field, e.g. heartbeat_interval." example:"heartbeat_interval"`
	}
	globalFieldPutIn struct {
		Field       string `path:"field" doc:"A ConfigScope field, e.g. heartbeat_interval." example:"heartbeat_interval"`
		ContentType string `header:"Content-Type"`
		RawBody     []byte
	}
	groupIn struct {
		Name string `path:"name" doc:"The group: 1–128 bytes of [A-Za-z0-9_=/-] (a group whose name has other characters can have members but no config scope)." example:"canary"`
	}
	groupPutIn struct {
		Name        string `path:"name" doc:"The group: 1–128 bytes of [A-Za-z0-9_=/-]." example:"canary"`
		ContentType string `header:"Content-Type"`
		RawBody     []byte
	}
	groupFieldIn struct {
		Name  string `path:"name" doc:"The group: 1–128 bytes of [A-Za-z0-9_=/-]." example:"canary"`
		Field string `path:"field" doc:"A ConfigScope field, e.g. heartbeat_interval." example:"heartbeat_interval"`
	}
	groupFieldPutIn struct {
		Name        string `path:"name" doc:"The group: 1–128 bytes of [A-Za-z0-9_=/-]." example:"canary"`
		Field       string `path:"field" doc:"A ConfigScope field, e.g. heartbeat_interval." example:"heartbeat_interval"`
		ContentType string `header:"Content-Type"`
		RawBody     []byte
	}
	pcIn struct {
		PCID string `path:"pc_id" doc:"The PC: 1–128 bytes of [A-Za-z0-9_=/-]." example:"PC-0123"`
	}
	pcPutIn struct {
		PCID        string `path:"pc_id" doc:"The PC: 1–128 bytes of [A-Za-z0-9_=/-]." example:"PC-0123"`
		ContentType string `header:"Content-Type"`
		RawBody     []byte
	}
	pcFieldIn struct {
		PCID  string `path:"pc_id" doc:"The PC: 1–128 bytes of [A-Za-z0-9_=/-]." example:"PC-0123"`
		Field string `path:"field" doc:"A ConfigScope field, e.g. heartbeat_interval." example:"heartbeat_interval"`
	}
	pcFieldPutIn struct {
		PCID        string `path:"pc_id" doc:"The PC: 1–128 bytes of [A-Za-z0-9_=/-]." example:"PC-0123"`
		Field       string `path:"field" doc:"A ConfigScope field, e.g. heartbeat_interval." example:"heartbeat_interval"`
		ContentType string `header:"Content-Type"`
		RawBody     []byte
	}
)

func (globalIn) req() scopeReq { return scopeReq{kind: kanade.ScopeGlobal} }
func (in globalPutIn) req() scopeReq {
	return scopeReq{kind: kanade.ScopeGlobal, contentType: in.ContentType, body: in.RawBody}
}
func (in globalFieldIn) req() scopeReq { return scopeReq{kind: kanade.ScopeGlobal, field: in.Field} }
func (in globalFieldPutIn) req() scopeReq {
	return scopeReq{kind: kanade.ScopeGlobal, field: in.Field, contentType: in.ContentType, body: in.RawBody}
}
func (in groupIn) req() scopeReq { return scopeReq{kind: kanade.ScopeGroup, name: in.Name} }
func (in groupPutIn) req() scopeReq {
	return scopeReq{kind: kanade.ScopeGroup, name: in.Name, contentType: in.ContentType, body: in.RawBody}
}
func (in groupFieldIn) req() scopeReq {
	return scopeReq{kind: kanade.ScopeGroup, name: in.Name, field: in.Field}
}
func (in groupFieldPutIn) req() scopeReq {
	return scopeReq{kind: kanade.ScopeGroup, name: in.Name, field: in.Field, contentType: in.ContentType, body: in.RawBody}
}
func (in pcIn) req() scopeReq { return scopeReq{kind: kanade.ScopePC, name: in.PCID} }
func (in pcPutIn) req() scopeReq {
	return scopeReq{kind: kanade.ScopePC, name: in.PCID, contentType: in.ContentType, body: in.RawBody}
}
func (in pcFieldIn) req() scopeReq {
	return scopeReq{kind: kanade.ScopePC, name: in.PCID, field: in.Field}
}
func (in pcFieldPutIn) req() scopeReq {
	return scopeReq{kind: kanade.ScopePC, name: in.PCID, field: in.Field, contentType: in.ContentType, body: in.RawBody}
}

type scopeOutput struct {
	Body kanade.ConfigScope
}

// fieldValueRequest is the body of PUT …/config/fields/{field}.
type fieldValueRequest struct {
	Value *json.RawMessage `json:"value" required:"true" doc:"The field's new value: its JSON type (\"15s\", true, 20) or its text form (\"true\", \"20\"), as upstream's CLI and SPA send it. null is refused; DELETE the field to clear it." example:"\"15s\""`
}

type fieldUpdateBody struct {
	Scope   kanade.ConfigScope `json:"scope" doc:"The scope as it stands afterwards."`
	Changed bool               `json:"changed" doc:"Whether anything was written: false when the scope already was so (no revision bump, no agent woken)."`
}

type fieldUpdateOutput struct {
	Body fieldUpdateBody
}

type effectiveBody struct {
	PCID      string                 `json:"pc_id"`
	Effective kanade.EffectiveConfig `json:"effective" doc:"What the PC runs with: every field, nullable ones null."`
	Warnings  []string               `json:"warnings" doc:"One per field that two or more of the PC's groups set, naming the groups in application order and the winner (human-readable, not contractual)."`
	MyGroups  []string               `json:"my_groups" doc:"The PC's groups in application order (sorted), as the merge used them."`
}

type effectiveOutput struct {
	Body effectiveBody
}

type inheritedOutput struct {
	Body kanade.EffectiveConfig
}

func (srv *Server) registerAgentConfig(api huma.API) {
	registerScopeRoutes[globalIn, globalPutIn, globalFieldIn, globalFieldPutIn](srv, api, "/api/config", "global", "the global scope",
		"applies to every PC, under its groups' and its own scopes")
	registerScopeRoutes[groupIn, groupPutIn, groupFieldIn, groupFieldPutIn](srv, api, "/api/groups/{name}/config", "group", "a group's scope",
		"applies to the group's members, over the global scope and under their own scopes; of two groups setting a field, the one whose name sorts last wins")
	registerScopeRoutes[pcIn, pcPutIn, pcFieldIn, pcFieldPutIn](srv, api, "/api/pcs/{pc_id}/config", "pc", "a PC's scope",
		"applies to one PC, over every other scope")

	register(api, huma.Operation{OperationID: "get-effective-config", Method: http.MethodGet, Path: "/api/agents/{pc_id}/effective_config",
		Summary: "What a PC runs with, and why", Tags: []string{"config"},
		Description: "Merges the built-in defaults, the global scope, the scopes of the PC's groups (from KV agent_groups, sorted; " +
			"a later group overrides an earlier one field by field) and the PC's own scope, as the agent does, and names " +
			"every field two of its groups set. An unknown PC gets the defaults and the global scope. A group scope that " +
			"does not decode is skipped; a membership that cannot be read or decoded counts as no groups (logged). " +
			"500 when the global or the PC's scope does not decode; 503 when agent_config or agent_groups cannot be opened. " +
			"Writes nothing."},
		func(ctx context.Context, in *pcInput) (*effectiveOutput, error) {
			return srv.effectiveConfig(ctx, in.PCID)
		})
	register(api, huma.Operation{OperationID: "get-config-defaults", Method: http.MethodGet, Path: "/api/config/defaults",
		Summary: "The built-in defaults", Tags: []string{"config"},
		Description: "The EffectiveConfig every merge starts from (what a field left unset everywhere resolves to). Reads nothing."},
		func(context.Context, *struct{}) (*inheritedOutput, error) {
			return &inheritedOutput{Body: kanade.DefaultEffectiveConfig()}, nil
		})
	register(api, huma.Operation{OperationID: "get-group-config-inherited", Method: http.MethodGet, Path: "/api/groups/{name}/config/inherited",
		Summary: "What a group's scope layers on", Tags: []string{"config"},
		Description: "The built-in defaults merged with the global scope only: what a field left unset in a group's scope " +
			"falls back to. The name is not used (sibling groups and PC scopes differ per PC). 500 when the global scope " +
			"does not decode; 503 when agent_config cannot be opened."},
		func(ctx context.Context, _ *struct {
			Name string `path:"name" doc:"The group (not used)."`
		}) (*inheritedOutput, error) {
			return srv.inherited(ctx, "", false)
		})
	register(api, huma.Operation{OperationID: "get-pc-config-inherited", Method: http.MethodGet, Path: "/api/pcs/{pc_id}/config/inherited",
		Summary: "What a PC's scope layers on", Tags: []string{"config"},
		Description: "The merge of the effective config without the PC's own scope (defaults, global, the PC's groups): what " +
			"a field left unset in the PC's scope falls back to. No warnings, no wrapper. Errors as for effective_config."},
		func(ctx context.Context, in *pcInput) (*inheritedOutput, error) {
			if err := checkPCID(in.PCID); err != nil {
				return nil, err
			}
			return srv.inherited(ctx, in.PCID, true)
		})
	for _, p := range []string{"/api/agents/{pc_id}/effective_config", "/api/pcs/{pc_id}/config/inherited"} {
		documentResponses(api, http.MethodGet, p, map[string]string{
			"400": "The pc_id cannot be a KV key.",
			"500": "The global or the PC's scope does not decode, or KV failed.",
			"503": "NATS is unavailable, or agent_config or agent_groups cannot be opened.",
		})
	}
	documentResponses(api, http.MethodGet, "/api/groups/{name}/config/inherited", map[string]string{
		"500": "The global scope does not decode, or KV failed.",
		"503": "NATS is unavailable, or agent_config cannot be opened.",
	})
}

// registerScopeRoutes registers the five routes of one scope family under
// base: GET, PUT and DELETE of the whole scope, PUT and DELETE of one
// field.
func registerScopeRoutes[R, P, F, FP scopeInput](srv *Server, api huma.API, base, id, title, applies string) {
	fields := base + "/fields/{field}"
	register(api, huma.Operation{OperationID: "get-" + id + "-config", Method: http.MethodGet, Path: base,
		Summary: "Read " + title, Tags: []string{"config"},
		Description: "The ConfigScope stored for " + title + " ({} when none is), which " + applies + ". Only the fields it sets " +
			"are present. 500 when the stored value does not decode."},
		func(ctx context.Context, in *R) (*scopeOutput, error) {
			ref, err := (*in).req().scope()
			if err != nil {
				return nil, err
			}
			return srv.getScope(ctx, ref)
		})
	register(api, huma.Operation{OperationID: "put-" + id + "-config", Method: http.MethodPut, Path: base,
		Summary: "Replace " + title, Tags: []string{"config"},
		Description: "Stores the ConfigScope as " + title + ", replacing the whole value (a blind put), and answers it as stored " +
			"(only the fields set; unknown and retired fields are dropped). {} stores an empty scope. Durations, the timestamp " +
			"and the counts are checked (400 naming the field: an agent silently falls back to its default on a value it " +
			"cannot parse). Publishes the audit event config_scope_put."},
		func(ctx context.Context, in *P) (*scopeOutput, error) {
			r := (*in).req()
			ref, err := r.scope()
			if err != nil {
				return nil, err
			}
			return srv.putScope(ctx, ref, r.contentType, r.body)
		})
	documentJSONBody[kanade.ConfigScope](api, http.MethodPut, base, `A ConfigScope, e.g. {"heartbeat_interval": "15s", "target_version": "0.43.56"}.`)
	register(api, huma.Operation{OperationID: "delete-" + id + "-config", Method: http.MethodDelete, Path: base,
		Summary: "Delete " + title, Tags: []string{"config"}, DefaultStatus: http.StatusNoContent,
		Description: "Deletes " + title + " (none stored is fine): its fields are inherited again. " +
			"Publishes the audit event config_scope_clear."},
		func(ctx context.Context, in *R) (*struct{}, error) {
			ref, err := (*in).req().scope()
			if err != nil {
				return nil, err
			}
			return nil, srv.deleteScope(ctx, ref)
		})
	register(api, huma.Operation{OperationID: "set-" + id + "-config-field", Method: http.MethodPut, Path: fields,
		Summary: "Set one field of " + title, Tags: []string{"config"},
		Description: "Sets one field by compare-and-swap, so a concurrent edit of another field of the same scope (a rollout " +
			"writing target_version) is never lost, and answers {scope, changed}; nothing is written when the field already " +
			"has this value. 400 for an unknown field or a value failing its check. Publishes the audit event config_field_set."},
		func(ctx context.Context, in *FP) (*fieldUpdateOutput, error) {
			r := (*in).req()
			ref, err := r.scope()
			if err != nil {
				return nil, err
			}
			return srv.setField(ctx, ref, r.field, r.contentType, r.body)
		})
	documentJSONBody[fieldValueRequest](api, http.MethodPut, fields, `{"value": "15s"}`)
	register(api, huma.Operation{OperationID: "unset-" + id + "-config-field", Method: http.MethodDelete, Path: fields,
		Summary: "Clear one field of " + title, Tags: []string{"config"},
		Description: "Clears one field by compare-and-swap (it is inherited again) and answers {scope, changed}; nothing is " +
			"written when the field is not set. 400 for an unknown field. Publishes the audit event config_field_unset."},
		func(ctx context.Context, in *F) (*fieldUpdateOutput, error) {
			r := (*in).req()
			ref, err := r.scope()
			if err != nil {
				return nil, err
			}
			return srv.unsetField(ctx, ref, r.field)
		})
	const kvErrs = "The stored value does not decode, or KV failed."
	for _, p := range []struct{ method, path string }{{http.MethodGet, base}, {http.MethodPut, base}, {http.MethodDelete, base},
		{http.MethodPut, fields}, {http.MethodDelete, fields}} {
		codes := map[string]string{"500": kvErrs, "503": "NATS is unavailable or agent_config cannot be opened."}
		if id != "global" || strings.Contains(p.path, "{field}") {
			codes["400"] = "A path parameter breaks its rule (a scope name, a pc_id, a field name)."
		}
		documentResponses(api, p.method, p.path, codes)
	}
}

func (srv *Server) getScope(ctx context.Context, ref scopeRef) (*scopeOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	s, _, err := srv.readScope(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	return &scopeOutput{Body: s}, nil
}

// readScope reads and decodes a scope; found is false (and the scope
// empty) when none is stored.
func (srv *Server) readScope(ctx context.Context, c *bus.Client, ref scopeRef) (s kanade.ConfigScope, found bool, err error) {
	e, err := c.Get(ctx, kanade.BucketAgentConfig, ref.key)
	switch {
	case errors.Is(err, bus.ErrNotFound) && !isNoBucket(err):
		return s, false, nil
	case err != nil:
		return s, false, srv.kvProblem(ctx, kanade.BucketAgentConfig, "read the "+ref.label+" scope", err)
	}
	if s, err = kanade.DecodeConfigScope(e.Value); err != nil {
		return s, false, srv.undecodableScope(ctx, ref, err)
	}
	return s, true, nil
}

// undecodableScope is the 500 of a stored scope that does not decode.
func (srv *Server) undecodableScope(ctx context.Context, ref scopeRef, err error) error {
	srv.cfg.Logger.ErrorContext(ctx, "stored config scope does not decode", slog.String("key", ref.key), slog.Any("error", err))
	return huma.Error500InternalServerError("the stored " + ref.label + " scope does not decode: " + err.Error() + "; PUT a valid one or DELETE it")
}

func (srv *Server) putScope(ctx context.Context, ref scopeRef, contentType string, raw []byte) (*scopeOutput, error) {
	var s kanade.ConfigScope
	if err := readObject(contentType, raw, &s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, invalidValue(err)
	}
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	if _, err := c.Put(ctx, kanade.BucketAgentConfig, ref.key, s.Encode()); err != nil {
		return nil, srv.kvProblem(ctx, kanade.BucketAgentConfig, "store the "+ref.label+" scope", err)
	}
	srv.audit(ctx, actionScopePut, ref.key, map[string]any{"scope": s})
	return &scopeOutput{Body: s}, nil
}

func (srv *Server) deleteScope(ctx context.Context, ref scopeRef) error {
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return err
	}
	if err := c.Delete(ctx, kanade.BucketAgentConfig, ref.key, 0); err != nil {
		return srv.kvProblem(ctx, kanade.BucketAgentConfig, "delete the "+ref.label+" scope", err)
	}
	srv.audit(ctx, actionScopeClear, ref.key, nil)
	return nil
}

// checkField is the 400 of a field name no scope has.
func checkField(field string) error {
	if slices.Contains(kanade.ConfigFields, field) {
		return nil
	}
	return badPath("field", &kanade.FieldError{Field: "field", Rule: "must be one of " + strings.Join(kanade.ConfigFields, ", "),
		Excerpt: kanade.Clip(field)})
}

func (srv *Server) setField(ctx context.Context, ref scopeRef, field, contentType string, raw []byte) (*fieldUpdateOutput, error) {
	if err := checkField(field); err != nil {
		return nil, err
	}
	var req fieldValueRequest
	if err := readObject(contentType, raw, &req); err != nil {
		return nil, err
	}
	if req.Value == nil {
		return nil, unprocessable("value", "is required (DELETE the field to clear it)")
	}
	// Checked once before the compare-and-swap, not found on every retry.
	if _, err := (kanade.ConfigScope{}).WithField(field, *req.Value); err != nil {
		msg := "value for " + field + ": " + err.Error()
		return nil, huma.Error400BadRequest(msg, &huma.ErrorDetail{Location: "body.value", Message: msg, Value: kanade.Clip(string(*req.Value))})
	}
	out, err := srv.editField(ctx, ref, field, *req.Value)
	if err != nil {
		return nil, err
	}
	srv.audit(ctx, actionFieldSet, ref.key, map[string]any{"field": field, "value": *req.Value, "changed": out.Body.Changed})
	return out, nil
}

func (srv *Server) unsetField(ctx context.Context, ref scopeRef, field string) (*fieldUpdateOutput, error) {
	if err := checkField(field); err != nil {
		return nil, err
	}
	out, err := srv.editField(ctx, ref, field, nil)
	if err != nil {
		return nil, err
	}
	srv.audit(ctx, actionFieldUnset, ref.key, map[string]any{"field": field, "changed": out.Body.Changed})
	return out, nil
}

// editField sets field of the scope to raw (nil clears it) by
// compare-and-swap (fleet.md §1.6); nothing is written when the scope
// would stay as it is.
func (srv *Server) editField(ctx context.Context, ref scopeRef, field string, raw json.RawMessage) (*fieldUpdateOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	var decodeErr, editErr error
	e, changed, err := c.ModifyEntry(ctx, kanade.BucketAgentConfig, ref.key, func(cur []byte, _ bool) ([]byte, bool, error) {
		s, err := kanade.DecodeConfigScope(cur)
		if err != nil {
			decodeErr = err
			return nil, false, errUndecodable
		}
		next, err := s.WithField(field, raw)
		if err != nil {
			editErr = err // checked before; only a changed rule could get here
			return nil, false, err
		}
		b := next.Encode()
		return b, !bytes.Equal(b, s.Encode()), nil
	})
	switch {
	case errors.Is(err, errUndecodable):
		return nil, srv.undecodableScope(ctx, ref, decodeErr)
	case editErr != nil:
		return nil, invalidValue(editErr)
	case err != nil:
		return nil, srv.kvProblem(ctx, kanade.BucketAgentConfig, "edit the "+ref.label+" scope", err)
	}
	s, err := kanade.DecodeConfigScope(e.Value)
	if err != nil {
		return nil, srv.undecodableScope(ctx, ref, err)
	}
	return &fieldUpdateOutput{Body: fieldUpdateBody{Scope: s, Changed: changed}}, nil
}

// layers reads the scopes a merge needs: global always, the group scopes
// when groups (one that does not decode is skipped and logged), and the
// PC's own scope when pc is not empty.
func (srv *Server) layers(ctx context.Context, c *bus.Client, groups bool, pc string) (kanade.ConfigLayers, error) {
	var l kanade.ConfigLayers
	g, found, err := srv.readScope(ctx, c, scopeRef{key: kanade.ScopeKeyGlobal, label: kanade.ScopeGlobal})
	if err != nil {
		return l, err
	}
	if found {
		l.Global = &g
	}
	if groups {
		es, err := c.Matching(ctx, kanade.BucketAgentConfig, kanade.GroupScopeKey(">"))
		if err != nil {
			return l, srv.kvProblem(ctx, kanade.BucketAgentConfig, "read the group scopes", err)
		}
		l.Groups = make(map[string]kanade.ConfigScope, len(es))
		for _, e := range es {
			_, name, _ := kanade.ParseScopeKey(e.Key)
			s, err := kanade.DecodeConfigScope(e.Value)
			if err != nil {
				srv.cfg.Logger.WarnContext(ctx, "group scope does not decode; skipped", slog.String("key", kanade.Clip(e.Key)), slog.Any("error", err))
				continue
			}
			l.Groups[name] = s
		}
	}
	if pc != "" {
		ref := scopeRef{key: kanade.PCScopeKey(pc), label: kanade.ScopeLabel(kanade.ScopePC, pc)}
		s, found, err := srv.readScope(ctx, c, ref)
		if err != nil {
			return l, err
		}
		if found {
			l.PCs = map[string]kanade.ConfigScope{pc: s}
		}
	}
	return l, nil
}

// memberships reads pc's groups for a merge: a bucket that cannot be
// opened is 503; a value that cannot be read or decoded is no groups,
// logged (the view degrades rather than failing, fleet.md §2.5).
func (srv *Server) memberships(ctx context.Context, c *bus.Client, pc string) ([]string, error) {
	e, err := c.Get(ctx, kanade.BucketAgentGroups, pc)
	switch {
	case isNoBucket(err):
		return nil, srv.kvProblem(ctx, kanade.BucketAgentGroups, "read the groups of "+pc, err)
	case errors.Is(err, bus.ErrNotFound):
		return nil, nil
	case err != nil:
		srv.cfg.Logger.WarnContext(ctx, "membership unreadable; resolving without groups", slog.String("pc_id", pc), slog.Any("error", err))
		return nil, nil
	}
	gs, err := kanade.DecodeAgentGroups(e.Value)
	if err != nil {
		srv.cfg.Logger.WarnContext(ctx, "membership does not decode; resolving without groups", slog.String("pc_id", pc), slog.Any("error", err))
		return nil, nil
	}
	return gs, nil
}

func (srv *Server) effectiveConfig(ctx context.Context, pc string) (*effectiveOutput, error) {
	if err := checkPCID(pc); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	l, err := srv.layers(ctx, c, true, pc)
	if err != nil {
		return nil, err
	}
	gs, err := srv.memberships(ctx, c, pc)
	if err != nil {
		return nil, err
	}
	r := l.Resolve(pc, gs, true)
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	return &effectiveOutput{Body: effectiveBody{PCID: pc, Effective: r.Effective, Warnings: r.Warnings, MyGroups: r.Groups}}, nil
}

// inherited is the merge without a PC's own scope: of defaults and global
// only (pc empty, the group view), or with pc's groups too.
func (srv *Server) inherited(ctx context.Context, pc string, groups bool) (*inheritedOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	l, err := srv.layers(ctx, c, groups, "")
	if err != nil {
		return nil, err
	}
	var gs []string
	if groups {
		if gs, err = srv.memberships(ctx, c, pc); err != nil {
			return nil, err
		}
	}
	return &inheritedOutput{Body: l.Resolve(pc, gs, false).Effective}, nil
}
