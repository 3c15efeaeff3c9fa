package kanade

import (
	"encoding/json"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// The shape of the records operators write (Manifest, Schedule), derived
// once from their Go types by reflection over the json and schema struct
// tags. Three things read it, so they cannot drift apart:
//
//   - the strict body decoders (body.go), which reject every key the shape
//     does not name, at every level;
//   - the hint checks of Manifest.Validate, since hints are kept as
//     verbatim JSON and so get no type checking from encoding/json;
//   - the JSON Schemas served to the SPA editor (schema.go).
//
// The schema tag holds what a json tag cannot say, comma separated:
// required, nonblank (a string with a character that is not white space),
// pattern=<name of a shapePatterns entry>, enum=a|b|c, hint=<name of a
// hintTypes entry> (a json.RawMessage holding that hint), min=N and max=N
// (integers), minItems=N. A Go string that is absent or "" means "unset"
// to every validator here, so an optional string with a pattern or an enum
// also accepts "".

type shapeKind int

const (
	shapeString shapeKind = iota
	shapeBool
	shapeInt
	shapeObject
	shapeArray
	// shapeOneOf is a value of one of several JSON types (a cadence is the
	// string "once" or {"every": …}); the variant is chosen by JSON type.
	shapeOneOf
)

// shape is one node of the tree.
type shape struct {
	kind  shapeKind
	name  string // the $defs name of a struct shape
	props []*prop
	items *shape
	// variants of a shapeOneOf, at most one per JSON type.
	variants []*shape

	pattern  string // without anchors; see shapePatterns
	enum     []string
	nonBlank bool
	min, max *int64
	minItems int
	// schema adds hand-written JSON Schema keywords for rules reflection
	// cannot see (exactly one script source, …); see schema.go.
	schema func(g *schemaGen, base map[string]any) map[string]any
}

type prop struct {
	name     string
	shape    *shape
	required bool
}

func (s *shape) prop(name string) *prop {
	for _, p := range s.props {
		if p.name == name {
			return p
		}
	}
	return nil
}

// shapePatterns are the string rules a schema tag names, as regular
// expressions both Go's regexp and ECMA 262 (the SPA editor) read alike:
// no \p classes and no \x{…} escapes; non-ASCII characters appear as
// themselves. Each matches exactly what the Go check it mirrors accepts,
// except for the known gaps the schema test lists (byte lengths, numeric
// ranges, calendar dates).
var shapePatterns = map[string]string{
	// ParseDuration's grammar: an optional day count with a "d" unit, then
	// Go duration components (or the bare "0").
	"duration": ws + `\+?\+?(?:` + durNum + `d(?:\+?(?:` + goDuration + `))?|` + goDuration + `)` + ws,
	// ValidToken, up to its byte bound.
	"token": `[^.*>` + spaceChars + controlChars + `]{1,128}`,
	// A manifest id is a subject token and a KV key: their intersection.
	"jobid": `[-/_=a-zA-Z0-9]{1,128}`,
	// ValidKVKey, up to its byte bound.
	"kvkey": `[-/_=a-zA-Z0-9]+(?:\.[-/_=a-zA-Z0-9]+)*`,
	// <name>/<version> in object store "scripts" (ValidScriptObjectKey,
	// but for its byte bounds and the segments "." and "..").
	"objectkey": `[ !#-.0-\[\]-~]{1,128}/[ !#-.0-\[\]-~]{1,128}`,
	// A date (midnight in the zone) or an RFC 3339 instant.
	// Go's RFC 3339 parser takes only an upper-case T and Z.
	"bound": `[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2}))?`,
	// ValidSQLIdent: a derived table or column name (fleet.md §5.2).
	"ident": `[A-Za-z_][A-Za-z0-9_]{0,63}`,
	// calendar.at: HH:MM or YYYY-MM-DD HH:MM.
	"at":  ws + `(?:[0-9]{4}-[0-9]{2}-[0-9]{2} )?(?:[01][0-9]|2[0-3]):[0-5][0-9]` + ws,
	"day": ws + `(?:` + dayName + `)(?:-(?:` + dayName + `))?` + ws,
	// A byte size such as 50MB or 1GiB (collect.max_size).
	"size": ws + `[0-9]+` + ws + `(?:[bB]|[kKmMgG][bB]|[kKmMgG][iI][bB])?` + ws,
	// A zone: local, utc or an IANA name.
	"tz": `local|utc|[A-Za-z][-A-Za-z0-9_+]*(?:/[-A-Za-z0-9_+]+)*`,
}

const (
	durNum     = `(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)`
	goDuration = `0|(?:` + durNum + `(?:ns|us|µs|μs|ms|s|m|h))+`
	dayName    = `[Mm][Oo][Nn]|[Tt][Uu][Ee]|[Ww][Ee][Dd]|[Tt][Hh][Uu]|[Ff][Rr][Ii]|[Ss][Aa][Tt]|[Ss][Uu][Nn]`
	// spaceChars are the characters unicode.IsSpace accepts besides the
	// control characters, controlChars those unicode.IsControl accepts.
	spaceChars   = " \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
	controlChars = `\x00-\x1f\x7f-\x9f`
)

// ws is any run of white space (unicode.IsSpace), which the Go checks
// trim.
const ws = `[\t\n\v\f\r\x85` + spaceChars + `]*`

// nonBlankPattern matches a string holding a character that is not white
// space (unicode.IsSpace), the nonblank rule.
const nonBlankPattern = `[^\t\n\v\f\r\x85` + spaceChars + `]`

var (
	compiledPatterns = map[string]*regexp.Regexp{}
	compileOnce      sync.Once
)

// patternMatch reports whether s matches the whole of pattern name.
func patternMatch(name, s string) bool {
	compileOnce.Do(func() {
		for k, p := range shapePatterns {
			compiledPatterns[k] = regexp.MustCompile(`^(?:` + p + `)$`)
		}
	})
	return compiledPatterns[name].MatchString(s)
}

// hintTypes are the Go types describing the inner shape of each manifest
// hint kept as verbatim JSON.
var hintTypes = map[string]reflect.Type{
	"emit":      reflect.TypeOf(emitHint{}),
	"check":     reflect.TypeOf(checkHint{}),
	"collect":   reflect.TypeOf(collectHint{}),
	"inventory": reflect.TypeOf(InventoryHint{}),
	"client":    reflect.TypeOf(clientHint{}),
}

var (
	shapesOnce               sync.Once
	manifestShape, schShape  *shape
	shapeOverrides           map[reflect.Type]func() *shape
	rawMessageType           = reflect.TypeOf(json.RawMessage(nil))
	errorShapeTypeNotAllowed = "kanade: shape of unsupported type "
)

// shapes builds the two record shapes once.
func shapes() (*shape, *shape) {
	shapesOnce.Do(func() {
		shapeOverrides = map[reflect.Type]func() *shape{
			reflect.TypeOf(Cadence{}): cadenceShape,
		}
		defs := map[reflect.Type]*shape{}
		manifestShape = buildShape(reflect.TypeOf(Manifest{}), defs)
		manifestShape.schema = manifestSchemaRules
		schShape = buildShape(reflect.TypeOf(Schedule{}), defs)
		schShape.schema = scheduleSchemaRules
		defs[reflect.TypeOf(When{})].schema = whenSchemaRules
		defs[reflect.TypeOf(Execute{})].schema = executeSchemaRules
		defs[reflect.TypeOf(Staleness{})].schema = stalenessSchemaRules
		defs[reflect.TypeOf(Calendar{})].schema = calendarSchemaRules
	})
	return manifestShape, schShape
}

func cadenceShape() *shape {
	return &shape{kind: shapeOneOf, name: "Cadence", variants: []*shape{
		{kind: shapeString, enum: []string{"once"}},
		{kind: shapeObject, name: "Every", props: []*prop{{name: "every", required: true, shape: &shape{kind: shapeString, pattern: "duration"}}}},
	}}
}

// buildShape derives the shape of t from its fields' tags. Struct shapes
// are kept in defs by type, so a recursive type (an inventory display
// column holding columns) refers to itself.
func buildShape(t reflect.Type, defs map[reflect.Type]*shape) *shape {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s, ok := defs[t]; ok {
		return s
	}
	if f, ok := shapeOverrides[t]; ok {
		s := f()
		defs[t] = s
		return s
	}
	switch t.Kind() {
	case reflect.String:
		return &shape{kind: shapeString}
	case reflect.Bool:
		return &shape{kind: shapeBool}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return &shape{kind: shapeInt}
	case reflect.Slice:
		return &shape{kind: shapeArray, items: buildShape(t.Elem(), defs)}
	case reflect.Struct:
	default:
		panic(errorShapeTypeNotAllowed + t.String())
	}
	s := &shape{kind: shapeObject, name: defName(t.Name())}
	defs[t] = s
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		p := &prop{name: name}
		var opts map[string]string
		opts, p.required = schemaTag(f.Tag.Get("schema"))
		if h, ok := opts["hint"]; ok {
			p.shape = buildShape(hintTypes[h], defs)
		} else if f.Type == rawMessageType {
			panic("kanade: json.RawMessage field " + f.Name + " without a hint")
		} else {
			p.shape = buildShape(f.Type, defs)
		}
		if len(opts) > 0 && p.shape.kind != shapeObject {
			p.shape = constrain(p.shape, opts)
		}
		s.props = append(s.props, p)
	}
	return s
}

// constrain is s with a field's own constraints: the string rules go to
// the entries of a list.
func constrain(s *shape, opts map[string]string) *shape {
	c := *s
	if n := intOpt(opts["minItems"]); n != nil {
		c.minItems = int(*n)
	}
	target := &c
	if c.kind == shapeArray {
		items := *c.items
		c.items = &items
		target = &items
	}
	target.pattern = opts["pattern"]
	if e, ok := opts["enum"]; ok {
		target.enum = strings.Split(e, "|")
	}
	_, target.nonBlank = opts["nonblank"]
	target.min, target.max = intOpt(opts["min"]), intOpt(opts["max"])
	return &c
}

// defName is the $defs name of a Go type: exported, without the "Hint"
// noise of the unexported hint types kept.
func defName(goName string) string {
	if goName == "" {
		return ""
	}
	r := []rune(goName)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

func schemaTag(tag string) (map[string]string, bool) {
	opts := map[string]string{}
	required := false
	for _, o := range strings.Split(tag, ",") {
		if o == "" {
			continue
		}
		if o == "required" {
			required = true
			continue
		}
		k, v, _ := strings.Cut(o, "=")
		opts[k] = v
	}
	return opts, required
}

func intOpt(s string) *int64 {
	if s == "" {
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		panic("kanade: bad integer in schema tag: " + s)
	}
	return &n
}

// unknownPaths lists the path of every member of v (a decoded JSON value:
// map[string]any, []any, string, bool, json.Number, nil) that s does not
// name, at every level, sorted and each once.
func unknownPaths(v any, s *shape) []string {
	var out []string
	walkUnknown(v, s, "", &out)
	sort.Strings(out)
	return compactStrings(out)
}

func walkUnknown(v any, s *shape, path string, out *[]string) {
	if s == nil {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		if s.kind == shapeOneOf {
			s = s.variant(x)
		}
		if s == nil || s.kind != shapeObject {
			return
		}
		for k, val := range x {
			p := s.prop(k)
			if p == nil {
				*out = append(*out, joinPath(path, k))
				continue
			}
			walkUnknown(val, p.shape, joinPath(path, k), out)
		}
	case []any:
		if s.kind != shapeArray {
			return
		}
		for i, item := range x {
			walkUnknown(item, s.items, path+"["+strconv.Itoa(i)+"]", out)
		}
	}
}

// variant is the variant of a shapeOneOf that a value of v's JSON type
// is read as, or nil.
func (s *shape) variant(v any) *shape {
	want := jsonShapeKind(v)
	for _, o := range s.variants {
		if o.kind == want {
			return o
		}
	}
	return nil
}

func jsonShapeKind(v any) shapeKind {
	switch v.(type) {
	case map[string]any:
		return shapeObject
	case []any:
		return shapeArray
	case bool:
		return shapeBool
	case json.Number, float64:
		return shapeInt
	default:
		return shapeString
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// checkValue applies s to v as the validators of this package would: JSON
// types, required members, enums, patterns, nonblank strings, bounds. An
// absent or null optional member is "not given"; unknown members are left
// to unknownPaths (reads stay tolerant). The first broken rule is a
// *FieldError on its path below prefix.
func checkValue(v any, s *shape, path string) error {
	if s.kind == shapeOneOf {
		o := s.variant(v)
		if o == nil {
			return &FieldError{Field: path, Rule: "must be " + kindNames(s)}
		}
		return checkValue(v, o, path)
	}
	switch s.kind {
	case shapeString:
		str, ok := v.(string)
		if !ok {
			return typeError(path, "a string", v)
		}
		var c checker
		if len(s.enum) > 0 {
			c.rule(path, str, contains(s.enum, str), "must be one of "+strings.Join(s.enum, ", "))
		}
		if s.pattern != "" {
			c.rule(path, str, patternMatch(s.pattern, str), "must match "+s.pattern)
		}
		if s.nonBlank {
			c.holds(path, strings.TrimSpace(str) != "", "must not be empty")
		}
		return c.err
	case shapeBool:
		if _, ok := v.(bool); !ok {
			return typeError(path, "a boolean", v)
		}
	case shapeInt:
		n, ok := v.(json.Number)
		i, err := n.Int64()
		if !ok || err != nil {
			return typeError(path, "an integer", v)
		}
		if s.min != nil && i < *s.min || s.max != nil && i > *s.max {
			return &FieldError{Field: path, Rule: "is out of range", Excerpt: n.String()}
		}
	case shapeArray:
		a, ok := v.([]any)
		if !ok {
			return typeError(path, "an array", v)
		}
		if len(a) < s.minItems {
			return &FieldError{Field: path, Rule: "must have at least " + strconv.Itoa(s.minItems) + " entries"}
		}
		for i, item := range a {
			if err := checkValue(item, s.items, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	case shapeObject:
		m, ok := v.(map[string]any)
		if !ok {
			return typeError(path, "an object", v)
		}
		for _, p := range s.props {
			val, present := m[p.name]
			if !present || val == nil {
				if p.required {
					return &FieldError{Field: joinPath(path, p.name), Rule: "is required"}
				}
				continue
			}
			if err := checkValue(val, p.shape, joinPath(path, p.name)); err != nil {
				return err
			}
		}
	}
	return nil
}

func kindNames(s *shape) string {
	var names []string
	for _, o := range s.variants {
		switch {
		case o.kind == shapeString && len(o.enum) == 1:
			names = append(names, strconv.Quote(o.enum[0]))
		case o.kind == shapeObject:
			names = append(names, "an object")
		default:
			names = append(names, "a value")
		}
	}
	return strings.Join(names, " or ")
}

func typeError(path, want string, v any) error {
	got := "null"
	switch v.(type) {
	case string:
		got = "string"
	case bool:
		got = "boolean"
	case json.Number, float64:
		got = "number"
	case []any:
		got = "array"
	case map[string]any:
		got = "object"
	}
	return &FieldError{Field: path, Rule: "must be " + want + " (got a JSON " + got + ")"}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
