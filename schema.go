package kanade

import (
	"encoding/json"
	"fmt"
)

// JSON Schemas of the records operators write (control.md §8.1), for the
// SPA's YAML editor: generated from the shapes of shape.go, the ones the
// strict decoders and validators use, so that a document the schema
// accepts is one POST /api/jobs or /api/schedules accepts. The rules JSON
// Schema cannot state (an order between two dates, a zone that exists, a
// duration above zero, byte lengths) are left to the server; the schema
// test lists each of them.

// ManifestSchema is the JSON Schema (draft 2020-12) of a Manifest.
func ManifestSchema() []byte {
	m, _ := shapes()
	return renderSchema("Manifest", m)
}

// ScheduleSchema is the JSON Schema (draft 2020-12) of a Schedule.
func ScheduleSchema() []byte {
	_, s := shapes()
	return renderSchema("Schedule", s)
}

func renderSchema(title string, root *shape) []byte {
	g := &schemaGen{defs: map[string]any{}, done: map[*shape]bool{}}
	out := g.object(root)
	out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	out["title"] = title
	out["$defs"] = g.defs
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("kanade: render the %s schema: %v", title, err)) // only maps, strings and numbers
	}
	return b
}

// schemaGen collects the $defs of the struct shapes it meets.
type schemaGen struct {
	defs map[string]any
	done map[*shape]bool
}

// of is the schema of a non-null value of shape s.
func (g *schemaGen) of(s *shape) map[string]any {
	switch s.kind {
	case shapeObject:
		if s.name == "" {
			return g.object(s)
		}
		if !g.done[s] {
			g.done[s] = true
			g.defs[s.name] = g.object(s)
		}
		return map[string]any{"$ref": "#/$defs/" + s.name}
	case shapeArray:
		a := map[string]any{"type": "array", "items": g.of(s.items)}
		if s.minItems > 0 {
			a["minItems"] = s.minItems
		}
		return a
	case shapeOneOf:
		var vs []any
		for _, v := range s.variants {
			vs = append(vs, g.of(v))
		}
		out := map[string]any{"oneOf": vs}
		if s.name != "" {
			if !g.done[s] {
				g.done[s] = true
				g.defs[s.name] = out
			}
			return map[string]any{"$ref": "#/$defs/" + s.name}
		}
		return out
	case shapeBool:
		return map[string]any{"type": "boolean"}
	case shapeInt:
		i := map[string]any{"type": "integer"}
		if s.min != nil {
			i["minimum"] = *s.min
		}
		if s.max != nil {
			i["maximum"] = *s.max
		}
		return i
	default:
		return g.str(s, true)
	}
}

// str is the schema of a string; an optional one ("" is unset) also
// accepts "".
func (g *schemaGen) str(s *shape, required bool) map[string]any {
	out := map[string]any{"type": "string"}
	emptyOK := !required && !s.nonBlank
	if len(s.enum) > 0 {
		var e []any
		for _, v := range s.enum {
			e = append(e, v)
		}
		if emptyOK {
			e = append(e, "")
		}
		out["enum"] = e
	}
	switch {
	case s.pattern != "" && emptyOK:
		out["pattern"] = "^(?:" + shapePatterns[s.pattern] + ")?$"
	case s.pattern != "":
		out["pattern"] = "^(?:" + shapePatterns[s.pattern] + ")$"
	case s.nonBlank:
		out["pattern"] = nonBlankPattern
	}
	return out
}

func (g *schemaGen) object(s *shape) map[string]any {
	props := map[string]any{}
	required := []string{}
	for _, p := range s.props {
		ps := g.of(p.shape)
		if p.shape.kind == shapeString {
			ps = g.str(p.shape, p.required)
		}
		if p.required {
			required = append(required, p.name)
		} else {
			ps = nullable(ps)
		}
		props[p.name] = ps
	}
	out := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		out["required"] = required
	}
	if s.schema != nil {
		out = s.schema(g, out)
	}
	return out
}

// nullable lets an optional member be null: every reader here takes null
// for "not given".
func nullable(s map[string]any) map[string]any {
	if t, ok := s["type"].(string); ok && s["enum"] == nil {
		c := map[string]any{}
		for k, v := range s {
			c[k] = v
		}
		c["type"] = []any{t, "null"}
		return c
	}
	return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
}

// present is "member k is given and not null".
func present(k string) map[string]any {
	return map[string]any{"required": []any{k}, "properties": map[string]any{k: map[string]any{"not": map[string]any{"type": "null"}}}}
}

// manifestSchemaRules: emit excludes the hints that read one JSON object.
func manifestSchemaRules(_ *schemaGen, base map[string]any) map[string]any {
	base["not"] = map[string]any{"allOf": []any{present("emit"),
		map[string]any{"anyOf": []any{present("inventory"), present("check"), present("collect")}}}}
	return base
}

// executeSchemaRules: exactly one script source, "" being unset.
func executeSchemaRules(_ *schemaGen, base map[string]any) map[string]any {
	set := func(k string) any {
		return map[string]any{"required": []any{k}, "properties": map[string]any{k: map[string]any{"type": "string", "minLength": 1}}}
	}
	base["oneOf"] = []any{set("script"), set("script_file"), set("script_object")}
	return base
}

// stalenessSchemaRules: max_cache_age comes with mode strict, and only
// with it.
func stalenessSchemaRules(_ *schemaGen, base map[string]any) map[string]any {
	base["if"] = map[string]any{"properties": map[string]any{"mode": map[string]any{"const": StalenessStrict}}}
	base["then"] = map[string]any{"required": []any{"max_cache_age"},
		"properties": map[string]any{"max_cache_age": map[string]any{"type": "string", "minLength": 1}}}
	base["else"] = map[string]any{"properties": map[string]any{"max_cache_age": map[string]any{"enum": []any{nil, ""}}}}
	return base
}

// whenSchemaRules: `when` is one of three single-key objects (the other
// two keys may only be null, which readers skip).
func whenSchemaRules(g *schemaGen, base map[string]any) map[string]any {
	props := base["properties"].(map[string]any)
	keys := []string{"per_pc", "per_target", "calendar"}
	var branches []any
	for _, k := range keys {
		bp := map[string]any{}
		for _, o := range keys {
			bp[o] = map[string]any{"type": "null"}
		}
		bp[k] = props[k].(map[string]any)["anyOf"].([]any)[0] // the non-null form
		branches = append(branches, map[string]any{"type": "object", "properties": bp,
			"required": []any{k}, "additionalProperties": false})
	}
	return map[string]any{"oneOf": branches}
}

// calendarSchemaRules: a one-shot `at` (with a date) takes no days.
func calendarSchemaRules(_ *schemaGen, base map[string]any) map[string]any {
	base["if"] = map[string]any{"required": []any{"at"},
		"properties": map[string]any{"at": map[string]any{"pattern": "^" + ws + "[0-9]{4}-"}}}
	base["then"] = map[string]any{"properties": map[string]any{"days": map[string]any{
		"anyOf": []any{map[string]any{"type": "null"}, map[string]any{"maxItems": 0}}}}}
	return base
}

// scheduleSchemaRules: the target names someone.
func scheduleSchemaRules(_ *schemaGen, base map[string]any) map[string]any {
	props := base["properties"].(map[string]any)
	props["target"] = map[string]any{"allOf": []any{props["target"], map[string]any{"anyOf": []any{
		map[string]any{"required": []any{"all"}, "properties": map[string]any{"all": map[string]any{"const": true}}},
		map[string]any{"required": []any{"groups"}, "properties": map[string]any{"groups": map[string]any{"type": "array", "minItems": 1}}},
		map[string]any{"required": []any{"pcs"}, "properties": map[string]any{"pcs": map[string]any{"type": "array", "minItems": 1}}},
	}}}}
	return base
}
