package storage

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

// explodeRowsByDecoding is explodeRows as it was before the scanner: each
// element decoded by encoding/json. The scanner must answer the same.
func explodeRowsByDecoding(spec *kanade.ExplodeSpec, raw json.RawMessage) explodeSet {
	set := explodeSet{spec: spec}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		set.missing = true
		return set
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		set.missing, set.clean = true, true
		return set
	}
	set.rows = make([][]any, 0, 64)
	// The digests as the element diff needs them (inventory_elements.go):
	// one per element, of its text and of its key, when every element is
	// a row with a certain key of its own.
	typer := newElementTyper(spec)
	keys := map[uint64]bool{}
	set.clean = true
	for _, e := range elems {
		var obj map[string]json.RawMessage
		if e = bytes.TrimSpace(e); len(e) == 0 || e[0] != '{' || json.Unmarshal(e, &obj) != nil {
			set.skipped++
			set.clean = false
			continue
		}
		row := make([]any, len(spec.Columns))
		ok := true
		for i, c := range spec.Columns {
			var v any
			if s := bytes.TrimSpace(obj[c.Field]); len(s) > 0 && s[0] == '"' {
				var str string
				if json.Unmarshal(s, &str) == nil {
					v = str
				}
			} else {
				v = bindValue(c.Kind(), obj[c.Field])
			}
			row[i] = v
			for _, k := range spec.PrimaryKey {
				ok = ok && !(k == c.Field && v == nil)
			}
		}
		if !ok {
			set.skipped++
			set.clean = false
			continue
		}
		set.rows = append(set.rows, row)
		k, certain := typer.keyDigest(row)
		if set.clean && certain && !keys[k] {
			keys[k] = true
			set.digests = append(set.digests, elemDigest{elem: xxhash.Sum64(e), key: k})
		} else {
			set.clean = false
		}
	}
	if !set.clean {
		set.digests = nil
	} else if set.digests == nil {
		set.digests = []elemDigest{}
	}
	return set
}

var scanSpec = &kanade.ExplodeSpec{Field: "apps", Table: "t", PrimaryKey: []string{"name"},
	Columns: []kanade.ExplodeColumn{{Field: "name"}, {Field: "v"}, {Field: "n", Type: kanade.ColumnInteger}, {Field: "r", Type: kanade.ColumnReal}, {Field: "é"}}}

var scanSeeds = []string{
	`[]`, ` [ ] `, `[1, "x", null, [], {}]`,
	`[{"name":"a","v":"1","n":2,"r":3.5}, {"name":"b"}]`,
	"[\n\t{ \"name\" : \"a\" , \"v\" : { \"x\" : [1, \"]}\\\"\", {}] } } ,{\"name\":\"c\"}\r\n]",
	`[{"na\u006de":"escaped name","v":"x"},{"name":"dup","name":"last"}]`,
	`[{"name":"a\"b\\c\u00e9\ud83d\ude00","v":"\u0000"}]`,
	"[{\"name\":\"bad utf8 \xff\xfe\",\"v\":\"ok\"},{\"name\":\"x\",\"\xff\":1}]",
	`[{"name":"k","\u00e9":"by escape"},{"name":"l","é":"raw"}]`,
	`[{"name":"deep","v":[[[[{"a":[{"b":"]]]}}}"}]}]]]]}]`,
	`[{"name":1e3,"n":4.0,"r":"7"},{"name":true,"n":1e300},{"name":"x","n":-0,"r":-1e-7}]`,
	`[{"":"empty","name":"e"},{"name":null},{"v":"no key"}]`,
}

func TestExplodeRowsScanAsDecoding(t *testing.T) {
	for _, raw := range scanSeeds {
		want := explodeRowsByDecoding(scanSpec, json.RawMessage(raw))
		got := explodeRows(scanSpec, json.RawMessage(raw))
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(explodeSet{}, elemDigest{})); diff != "" {
			t.Errorf("%q (-decoding +scan):\n%s", raw, diff)
		}
	}
}

// FuzzExplodeRows: on any valid JSON array the scanner answers what
// decoding each element does.
func FuzzExplodeRows(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		b := bytes.TrimSpace([]byte(raw))
		if !json.Valid(b) || len(b) == 0 || b[0] != '[' {
			return
		}
		want := explodeRowsByDecoding(scanSpec, b)
		got := explodeRows(scanSpec, b)
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(explodeSet{}, elemDigest{})); diff != "" {
			t.Errorf("%q (-decoding +scan):\n%s", raw, diff)
		}
	})
}
