package kanade

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Strict decoding of request bodies (control.md §5.1, upstream #492).
//
// Records are read tolerantly everywhere (ParseManifest, ParseSchedule):
// agents and backends of different versions share them, so a field one
// does not know must never make the record unreadable. The write
// boundary is the opposite: an operator's typo (execute.scirpt) must not
// be stored silently as an unknown field, so POST and PUT bodies go
// through the decoders below, which refuse every key the record does not
// know, at every level, and name all of them at once.
//
// Errors: a body that is not a YAML or JSON document of a mapping is a
// *BodySyntaxError; unknown keys are one *UnknownFieldsError; a member of
// the wrong type is a *FieldError. Validate is left to the caller, which
// knows the key the record goes under.

// BodySyntaxError is a request body that is not a well-formed YAML or
// JSON mapping (bad syntax, not UTF-8, several documents, a list).
type BodySyntaxError struct {
	Format string // "YAML" or "JSON"
	Msg    string
}

func (e *BodySyntaxError) Error() string { return "parse " + e.Format + " body: " + e.Msg }

// UnknownFieldsError names every key of a body that its record does not
// know, as paths from the root (execute.scirpt, when.calendar.dayz,
// rollout.waves[1].dlay), sorted, each once.
type UnknownFieldsError struct {
	Paths []string
}

func (e *UnknownFieldsError) Error() string {
	return "unknown field(s): " + strings.Join(e.Paths, ", ") + " — check for typos; fields must match the current schema"
}

// IsYAMLContentType reports whether a request's Content-Type says its body
// is YAML: the media type (before any ';') application/yaml, text/yaml,
// application/x-yaml or text/x-yaml, in any case. Anything else, absent
// included, is JSON.
func IsYAMLContentType(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case "application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml":
		return true
	}
	return false
}

// DecodeManifestBody decodes a POST or PUT body holding a Manifest, YAML
// when isYAML (see IsYAMLContentType), JSON otherwise, refusing unknown
// keys. It does not Validate.
func DecodeManifestBody(body []byte, isYAML bool) (*Manifest, error) {
	ms, _ := shapes()
	var m Manifest
	if err := decodeStrict(body, isYAML, ms, "manifest", &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// DecodeScheduleBody is DecodeManifestBody for a Schedule. It does not
// Validate, so the parsed forms are not filled yet.
func DecodeScheduleBody(body []byte, isYAML bool) (*Schedule, error) {
	_, ss := shapes()
	var s Schedule
	if err := decodeStrict(body, isYAML, ss, "schedule", &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func decodeStrict(body []byte, isYAML bool, root *shape, doc string, out any) error {
	format := "JSON"
	if isYAML {
		format = "YAML"
	}
	if !utf8.Valid(body) {
		return &BodySyntaxError{Format: format, Msg: "the body is not UTF-8"}
	}
	var v any
	var err error
	if isYAML {
		v, err = yamlDocument(body, root)
	} else {
		v, err = jsonDocument(body)
	}
	if err != nil {
		return &BodySyntaxError{Format: format, Msg: err.Error()}
	}
	if _, ok := v.(map[string]any); !ok {
		return &BodySyntaxError{Format: format, Msg: "the body must be a " + map[bool]string{true: "mapping", false: "JSON object"}[isYAML]}
	}
	if paths := unknownPaths(v, root); len(paths) > 0 {
		return &UnknownFieldsError{Paths: paths}
	}
	data := body
	if isYAML {
		if data, err = json.Marshal(v); err != nil {
			return &BodySyntaxError{Format: format, Msg: err.Error()}
		}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return jsonError(doc, "", err)
	}
	return nil
}

// jsonDocument is decodeGeneric for a request body, which also refuses a
// key given twice in one object: encoding/json would keep the last one
// silently, and which of two ids the operator meant is not ours to guess
// (upstream's serde refuses it too). Stored records keep the tolerant
// decodeGeneric.
func jsonDocument(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	v, err := jsonValue(dec, "")
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return nil, fmt.Errorf("byte %d: %w", se.Offset, err)
	}
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// jsonValue reads the next value of dec; path names it in errors.
func jsonValue(dec *json.Decoder, path string) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			out := []any{}
			for dec.More() {
				item, err := jsonValue(dec, path+"["+strconv.Itoa(len(out))+"]")
				if err != nil {
					return nil, err
				}
				out = append(out, item)
			}
			_, err := dec.Token() // ']'
			return out, err
		}
		out := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, _ := kt.(string) // a key is always a string token
			if _, dup := out[k]; dup {
				return nil, fmt.Errorf("key %s is given twice", strconv.Quote(clip(joinPath(path, k), errExcerptBytes)))
			}
			if out[k], err = jsonValue(dec, joinPath(path, k)); err != nil {
				return nil, err
			}
		}
		_, err := dec.Token() // '}'
		return out, err
	default:
		return t, nil // string, bool, json.Number or nil
	}
}

// maxYAMLNodes bounds the values a YAML body may expand to through
// aliases, so a few lines of nested aliases cannot make megabytes.
const maxYAMLNodes = 100_000

// yamlDocument reads body as one YAML document into the values
// decodeGeneric makes (map[string]any, []any, string, bool, json.Number,
// nil), reading each scalar as root's shape expects: where a string is
// due, a plain scalar keeps its text (version: 1.10 is "1.10", not the
// number 1.1), as upstream's serde_yaml does.
func yamlDocument(body []byte, root *shape) (any, error) {
	f, err := parser.ParseBytes(body, 0)
	if err != nil {
		// The parser's message goes on with an excerpt of the body over
		// several lines; the first line ([line:column] what) says it.
		msg, _, _ := strings.Cut(strings.TrimSpace(err.Error()), "\n")
		return nil, errors.New(msg)
	}
	docs := 0
	var doc *ast.DocumentNode
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			docs++
			doc = d
		}
	}
	switch {
	case docs == 0:
		return nil, errors.New("the body is empty")
	case docs > 1:
		return nil, errors.New("the body holds several YAML documents; send one")
	}
	c := &yamlConv{anchors: map[string]ast.Node{}}
	return c.value(doc.Body, root)
}

type yamlConv struct {
	anchors map[string]ast.Node
	nodes   int
}

func (c *yamlConv) value(n ast.Node, s *shape) (any, error) {
	if c.nodes++; c.nodes > maxYAMLNodes {
		return nil, fmt.Errorf("the document expands to more than %d values", maxYAMLNodes)
	}
	if s != nil && s.kind == shapeOneOf {
		s = s.yamlVariant(n)
	}
	wantString := s != nil && s.kind == shapeString
	switch x := n.(type) {
	case *ast.DocumentNode:
		return c.value(x.Body, s)
	case *ast.AnchorNode:
		c.anchors[x.Name.GetToken().Value] = x.Value
		return c.value(x.Value, s)
	case *ast.AliasNode:
		name := x.Value.GetToken().Value
		target, ok := c.anchors[name]
		if !ok {
			return nil, fmt.Errorf("line %d: unknown alias *%s", x.GetToken().Position.Line, name)
		}
		return c.value(target, s)
	case *ast.TagNode:
		return c.value(x.Value, s)
	case *ast.MappingNode:
		m := map[string]any{}
		for _, mv := range x.Values {
			if err := c.pair(m, mv, s); err != nil {
				return nil, err
			}
		}
		return m, nil
	case *ast.MappingValueNode:
		m := map[string]any{}
		if err := c.pair(m, x, s); err != nil {
			return nil, err
		}
		return m, nil
	case *ast.SequenceNode:
		var items *shape
		if s != nil && s.kind == shapeArray {
			items = s.items
		}
		out := []any{}
		for _, v := range x.Values {
			iv, err := c.value(v, items)
			if err != nil {
				return nil, err
			}
			out = append(out, iv)
		}
		return out, nil
	case *ast.StringNode:
		return x.Value, nil
	case *ast.LiteralNode:
		return x.Value.Value, nil
	case *ast.NullNode:
		return nil, nil
	case *ast.BoolNode:
		if wantString {
			return x.GetToken().Value, nil
		}
		return x.Value, nil
	case *ast.IntegerNode:
		if wantString {
			return x.GetToken().Value, nil
		}
		return json.Number(fmt.Sprint(x.Value)), nil
	case *ast.FloatNode:
		if wantString {
			return x.GetToken().Value, nil
		}
		return json.Number(strconv.FormatFloat(x.Value, 'g', -1, 64)), nil
	case *ast.InfinityNode, *ast.NanNode:
		if wantString {
			return n.GetToken().Value, nil
		}
		return nil, fmt.Errorf("line %d: %s is not a JSON number", n.GetToken().Position.Line, n.GetToken().Value)
	}
	return nil, fmt.Errorf("line %d: unsupported YAML construct %s", n.GetToken().Position.Line, n.Type())
}

// pair adds one key: value of a mapping to m; a merge key (<<: *base)
// adds the members of the merged mapping that m does not set itself.
func (c *yamlConv) pair(m map[string]any, mv *ast.MappingValueNode, s *shape) error {
	if mv.Key.Type() == ast.MergeKeyType {
		merged, err := c.value(mv.Value, s)
		if err != nil {
			return err
		}
		src, ok := merged.(map[string]any)
		if !ok {
			return fmt.Errorf("line %d: a merge key needs a mapping", mv.GetToken().Position.Line)
		}
		for k, v := range src {
			if _, set := m[k]; !set {
				m[k] = v
			}
		}
		return nil
	}
	key, err := c.key(mv.Key)
	if err != nil {
		return err
	}
	var vs *shape
	if s != nil && s.kind == shapeObject {
		if p := s.prop(key); p != nil {
			vs = p.shape
		}
	}
	v, err := c.value(mv.Value, vs)
	if err != nil {
		return err
	}
	m[key] = v
	return nil
}

// key is the text of a mapping key. A key that is not a string (on:, 1:)
// keeps its text, so the unknown-key check still sees and names it.
func (c *yamlConv) key(n ast.Node) (string, error) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, nil
	case *ast.MappingKeyNode:
		return c.key(x.Value)
	case *ast.TagNode:
		return c.key(x.Value)
	case *ast.AnchorNode:
		c.anchors[x.Name.GetToken().Value] = x.Value
		return c.key(x.Value)
	case *ast.AliasNode:
		if t, ok := c.anchors[x.Value.GetToken().Value]; ok {
			return c.key(t)
		}
	case *ast.MappingNode, *ast.MappingValueNode, *ast.SequenceNode:
		return "", fmt.Errorf("line %d: a mapping key must be a scalar", n.GetToken().Position.Line)
	}
	if t := n.GetToken(); t != nil {
		return t.Value, nil
	}
	return "", errors.New("a mapping key without text")
}

// yamlVariant is the variant of a shapeOneOf a YAML node is read as.
func (s *shape) yamlVariant(n ast.Node) *shape {
	for {
		switch x := n.(type) {
		case *ast.AnchorNode:
			n = x.Value
			continue
		case *ast.TagNode:
			n = x.Value
			continue
		}
		break
	}
	want := shapeString
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		want = shapeObject
	case *ast.SequenceNode:
		want = shapeArray
	case *ast.AliasNode:
		return nil
	}
	for _, v := range s.variants {
		if v.kind == want {
			return v
		}
	}
	return nil
}
