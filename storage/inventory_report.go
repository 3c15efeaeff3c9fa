package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/internal/jsonscan"
)

// InventoryReport is an inventory job's stdout made ready to project
// (fleet.md §5.4): checked, its members found and each explode set's
// signature taken. PrepareInventory builds it outside the transaction (the
// projector does so while it fetches). A set's elements are typed for
// binding only when its rows are written, in the transaction: most
// reports repeat the stored rows, and typing 150 apps was a third of the
// preparation.
type InventoryReport struct {
	// Spec is the manifest's hint the report was prepared with.
	Spec *kanade.InventoryHint
	// Err says why stdout is not an inventory object; nothing is projected
	// then (the run row still is).
	Err error

	facts string
	// packedFacts is facts as bound (packText), packed here, outside
	// the transaction.
	packedFacts any
	top         string            // the scalar members as one JSON object
	scalars     map[string]string // present history scalar → canonical JSON
	sets        []explodeSet
	display     any // JSON text or nil
	summary     any
	sigs        []string // setSigs of sets
	size        int64
}

// explodeSet is one ExplodeSpec's rows of a report.
type explodeSet struct {
	spec *kanade.ExplodeSpec
	// raw is the report's member spec.Field, the JSON text the rows
	// come from; the signature is of it (see setSigs).
	raw json.RawMessage
	// typed says rows and skipped are set: the elements are typed only
	// when the set's rows are written (typeRows), since most reports
	// repeat the stored rows.
	typed bool
	// rows hold one value per spec column, in spec order: nil, int64,
	// float64 or string.
	rows [][]any
	// skipped counts elements dropped before SQL: not objects, or missing
	// a primary-key value.
	skipped int
	// digests are the elements' (elemDigest), in order, when clean: every
	// element became a row, and their keys are certain and distinct.
	digests []elemDigest
	clean   bool
	// missing says the field was absent or not an array; it is projected
	// as an empty array (fleet.md §5.4, the later #929 behaviour), so the
	// PC's rows are removed and, with history, logged as removed.
	missing bool
}

// Size is about how many bytes the report holds, for the projector's
// memory budget.
func (r *InventoryReport) Size() int64 {
	if r == nil {
		return 0
	}
	return r.size
}

// errNotObject is the Err of a stdout that is JSON but not an object.
var errNotObject = errors.New("stdout is JSON but not an object")

// PrepareInventory parses stdout, an inventory run's output, for spec. A
// stdout that is not one JSON object gives a report whose Err says why. A
// UTF-8 byte order mark (PowerShell writes one) is dropped first, so
// facts_json holds the text an agent meant.
func PrepareInventory(spec *kanade.InventoryHint, stdout string) *InventoryReport {
	text := strings.TrimPrefix(stdout, "\ufeff")
	r := &InventoryReport{Spec: spec, facts: text, size: 2 * int64(len(text))}
	trimmed := bytes.TrimSpace([]byte(text))
	if len(trimmed) == 0 || trimmed[0] != '{' {
		if len(trimmed) > 0 && jsonscan.Valid(trimmed) {
			r.Err = errNotObject
		} else {
			r.Err = notJSON(trimmed)
		}
		return r
	}
	// Checked once, then walked (scan.go) rather than decoded: the
	// members' values stay slices of trimmed. A name that is escaped or
	// not ASCII is left to encoding/json (which unescapes it, or replaces
	// invalid UTF-8 as it does in every other name it reads).
	if !jsonscan.Valid(trimmed) {
		r.Err = notJSON(trimmed)
		return r
	}
	top := map[string]json.RawMessage{}
	ascii := true
	plain := eachMember(trimmed, func(k, v []byte) {
		for _, c := range k {
			ascii = ascii && c < utf8.RuneSelf
		}
		top[string(k)] = v
	})
	if !plain || !ascii {
		top = nil
		if err := json.Unmarshal(trimmed, &top); err != nil {
			r.Err = notJSON(trimmed)
			return r
		}
	}
	r.packedFacts = packText(text)
	r.top = scalarMembers(top)
	r.display = snapshot(spec.Display)
	if spec.Summary != nil {
		r.summary = snapshot(spec.Summary)
	}
	for _, f := range spec.HistoryScalars {
		raw, ok := top[f]
		if !ok {
			continue
		}
		if r.scalars == nil {
			r.scalars = map[string]string{}
		}
		r.scalars[f] = canonicalJSON(raw)
	}
	for i := range spec.Explode {
		raw := json.RawMessage(bytes.TrimSpace(top[spec.Explode[i].Field]))
		r.sets = append(r.sets, explodeSet{spec: &spec.Explode[i], raw: raw, missing: len(raw) == 0 || raw[0] != '['})
	}
	r.sigs = setSigs(spec.Explode, r.sets)
	return r
}

// typeRows types the set's elements (explodeRows), once.
func (s *explodeSet) typeRows() {
	if s.typed {
		return
	}
	e := explodeRows(s.spec, s.raw)
	s.rows, s.skipped, s.missing, s.digests, s.clean, s.typed = e.rows, e.skipped, e.missing, e.digests, e.clean, true
}

// setSigs are digests of each explode spec and the JSON text of its
// member in a report: a set whose signature is the one stored was stored
// from the same text under the same spec, so typing its elements again
// would bind the very rows stored, and the set is left alone (only
// collected_at would move) without being typed at all. Another spelling
// of the same rows (spaces, member order) differs and is diffed: the
// diff then finds nothing, and the next report of that spelling is
// skipped. They are per set because the sets change apart: free disk
// space changes in every report, the installed apps now and then, and one
// signature for both made every report re-read and re-diff its 150 apps.
// Stored joined by commas (explodeSig); a digest is hex.
//
// The stored signature vouches for the stored rows, so whatever changes
// those rows but the report that wrote them clears it: a failed write
// (projectReport) and a table rebuilt for another spec (rebuildExplodeTable).
func setSigs(specs []kanade.ExplodeSpec, sets []explodeSet) []string {
	out := make([]string, len(sets))
	for i, set := range sets {
		h := sha256.New()
		b, _ := json.Marshal(specs[i]) // plain structs always marshal
		h.Write(b)
		if set.missing {
			h.Write([]byte{0, 'm'}) // projected as [] (fleet.md §5.4)
		} else {
			h.Write([]byte{0, 'a'})
			h.Write(set.raw)
		}
		out[i] = hex.EncodeToString(h.Sum(nil)[:16])
	}
	return out
}

// explodeSig is the stored form of a report's set signatures.
func (r *InventoryReport) explodeSig() string { return strings.Join(r.sigs, ",") }

// unchangedSets says, per set of the report, whether the stored explode_sig
// (nil: unknown) shows its rows already stored. Signatures written before
// they were per set (one digest) match nothing: those PCs are diffed once.
func (r *InventoryReport) unchangedSets(stored *string) []bool {
	out := make([]bool, len(r.sigs))
	if stored == nil {
		return out
	}
	have := strings.Split(*stored, ",")
	if len(have) != len(r.sigs) {
		return out
	}
	for i := range r.sigs {
		out[i] = have[i] == r.sigs[i]
	}
	return out
}

// scalarMembers is the members of top that are neither objects nor
// arrays, as a compact JSON object with sorted keys.
func scalarMembers(top map[string]json.RawMessage) string {
	keys := make([]string, 0, len(top))
	for k, v := range top {
		v = bytes.TrimSpace(v)
		if len(v) > 0 && v[0] != '{' && v[0] != '[' {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var o jsonObject
	for _, k := range keys {
		var b bytes.Buffer
		if json.Compact(&b, top[k]) != nil {
			continue
		}
		o.add(k, json.RawMessage(b.Bytes()))
	}
	return o.String()
}

// notJSON is why text does not parse, with encoding/json's reason (which
// names an offset, never the text itself).
func notJSON(text []byte) error {
	if len(text) == 0 {
		return errors.New("stdout is empty")
	}
	var v any
	err := json.Unmarshal(text, &v)
	if err == nil {
		return errNotObject
	}
	return fmt.Errorf("stdout is not JSON: %w", err)
}

func snapshot(fields []kanade.DisplayField) any {
	if fields == nil {
		return nil
	}
	b, _ := json.Marshal(fields) // plain structs always marshal
	return string(b)
}

// explodeRows types the elements of raw, the array spec.Field names. raw
// is a member of a decoded object, hence valid JSON: its elements and
// their members are found by scanning it once (scan.go) instead of
// decoding each element again; an element with an escaped member name is
// decoded by encoding/json, which unescapes it.
func explodeRows(spec *kanade.ExplodeSpec, raw json.RawMessage) explodeSet {
	set := explodeSet{spec: spec}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		set.missing, set.clean = true, true
		return set
	}
	t := newElementTyper(spec)
	set.rows = make([][]any, 0, 64)
	set.digests = make([]elemDigest, 0, 64)
	keys := map[uint64]bool{}
	set.clean = true
	eachElement(raw, func(e []byte) {
		row, ok := t.row(e)
		if !ok {
			set.skipped++
			set.clean = false
			return
		}
		set.rows = append(set.rows, row)
		if !set.clean {
			return
		}
		k, ok := t.keyDigest(row)
		if !ok || keys[k] {
			set.clean = false
			return
		}
		keys[k] = true
		set.digests = append(set.digests, elemDigest{elem: elementDigest(e), key: k})
	})
	if !set.clean {
		set.digests = nil
	}
	return set
}

// elementTyper types the elements of one spec's array.
type elementTyper struct {
	spec   *kanade.ExplodeSpec
	keyCol []bool
	keyAt  []int
	vals   [][]byte
}

func newElementTyper(spec *kanade.ExplodeSpec) *elementTyper {
	t := &elementTyper{spec: spec, keyCol: make([]bool, len(spec.Columns)), keyAt: keyColumns(spec), vals: make([][]byte, len(spec.Columns))}
	for i, c := range spec.Columns {
		for _, k := range spec.PrimaryKey {
			t.keyCol[i] = t.keyCol[i] || c.Field == k
		}
	}
	return t
}

// row types element e (one value per spec column, in spec order); false
// when e is not an object or lacks a primary-key value.
func (t *elementTyper) row(e []byte) ([]any, bool) {
	spec, vals := t.spec, t.vals
	if e[0] != '{' {
		return nil, false
	}
	clear(vals)
	plain := eachMember(e, func(k, v []byte) {
		for i, c := range spec.Columns {
			if c.Field == string(k) {
				vals[i] = v // the last of a repeated name, as encoding/json
			}
		}
	})
	if !plain {
		var obj map[string]json.RawMessage
		if json.Unmarshal(e, &obj) != nil {
			return nil, false
		}
		for i, c := range spec.Columns {
			vals[i] = obj[c.Field]
		}
	}
	row := make([]any, len(spec.Columns))
	for i, c := range spec.Columns {
		row[i] = bindValue(c.Kind(), vals[i])
		if t.keyCol[i] && row[i] == nil {
			return nil, false
		}
	}
	return row, true
}

// keyDigest is the digest of row's key as SQLite stores it; false when a
// key value may be converted by affinity (see certain).
func (t *elementTyper) keyDigest(row []any) (uint64, bool) {
	var b []byte
	for _, j := range t.keyAt {
		f, ok := certain(t.spec.Columns[j].Kind(), row[j])
		if !ok {
			return 0, false
		}
		b = strconv.AppendInt(b, int64(len(f)), 10)
		b = append(b, ':')
		b = append(b, f...)
	}
	return xxhash.Sum64(b), true
}

// bindValue types one element value for a column of kind (fleet.md §5.4):
// missing or null → NULL; in an integer column a number is an int64 (a
// non-integral one, or one past int64, NULL); in a real column a float64;
// every other value is text: strings as they are, numbers and booleans as
// written, arrays and objects as their compact JSON text. SQLite's column
// affinity then applies.
func bindValue(kind string, raw json.RawMessage) any {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	switch raw[0] {
	case 'n':
		return nil
	case '"':
		// Valid JSON (see explodeRows): without an escape, and in valid
		// UTF-8 (which encoding/json would replace), the text is the value.
		if in := raw[1 : len(raw)-1]; bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
			return string(in)
		}
		return jsonscan.UnquoteValid(raw)
	case 't', 'f':
		return string(raw)
	case '{', '[':
		var b bytes.Buffer
		if json.Compact(&b, raw) != nil {
			return nil
		}
		return b.String()
	}
	num := string(raw)
	switch kind {
	case kanade.ColumnInteger:
		if i, err := strconv.ParseInt(num, 10, 64); err == nil {
			return i
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
			return nil
		}
		return int64(f)
	case kanade.ColumnReal:
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return nil
		}
		return f
	}
	return num
}

// canonicalJSON re-encodes a JSON value with sorted keys and numbers as
// written, so two spellings of one value compare equal.
func canonicalJSON(raw json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return string(raw)
	}
	return marshalText(v)
}

// marshalText is json.Marshal without HTML escaping and without the
// trailing newline.
func marshalText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "null"
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// factsValue is facts as bound for facts_json.
func (r *InventoryReport) factsValue() any {
	if r.packedFacts != nil {
		return r.packedFacts
	}
	return packText(r.facts)
}
