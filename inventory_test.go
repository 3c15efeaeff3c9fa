package kanade_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

// swHint is fleet.md §5.2's example hint.
const swHint = `{
  "display": [{"field":"hostname","label":"Host"},
              {"field":"ram_bytes","label":"RAM","type":"bytes"},
              {"field":"disks","label":"Disks","type":"table",
               "columns":[{"field":"device_id","label":"Drive"},{"field":"free_bytes","label":"Free","type":"bytes"}]}],
  "summary": [{"field":"hostname","label":"Host"}],
  "explode": [{"field":"apps","table":"inventory_sw_apps","primary_key":["name","source"],
               "columns":[{"field":"name","index":true},{"field":"source","type":"text"},
                          {"field":"version"},{"field":"size_kb","type":"integer"}],
               "track_history":true}],
  "history_scalars": ["os_version","ram_bytes"]}`

func inventoryManifest(hint string) kanade.Manifest {
	return kanade.Manifest{ID: "inventory-sw", Version: "1",
		Execute:   kanade.Execute{Shell: "sh", Script: "inventory", Timeout: "5m"},
		Inventory: json.RawMessage(hint)}
}

func TestInventorySpecDecodesTheExample(t *testing.T) {
	m := inventoryManifest(swHint)
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	h, err := m.InventorySpec()
	if err != nil {
		t.Fatal(err)
	}
	want := []kanade.ExplodeSpec{{Field: "apps", Table: "inventory_sw_apps", PrimaryKey: []string{"name", "source"},
		Columns: []kanade.ExplodeColumn{{Field: "name", Index: true}, {Field: "source", Type: "text"},
			{Field: "version"}, {Field: "size_kb", Type: "integer"}}, TrackHistory: true}}
	if diff := cmp.Diff(want, h.Explode); diff != "" {
		t.Errorf("explode (-want +got):\n%s", diff)
	}
	if got := h.Explode[0].Columns[2].Kind(); got != "text" {
		t.Errorf("default kind = %q", got)
	}
	if diff := cmp.Diff([]string{"os_version", "ram_bytes"}, h.HistoryScalars); diff != "" {
		t.Error(diff)
	}
	if len(h.Display) != 3 || len(h.Display[2].Columns) != 2 || h.Summary[0].Label != "Host" {
		t.Errorf("display/summary = %+v / %+v", h.Display, h.Summary)
	}

	none := inventoryManifest("")
	none.Inventory = nil
	if h, err := none.InventorySpec(); h != nil || err != nil {
		t.Errorf("no hint: %v, %v", h, err)
	}
}

func TestInventoryHintErrorsNameTheField(t *testing.T) {
	spec := func(explode string) string {
		return `{"display":[],"explode":[` + explode + `]}`
	}
	col := func(cols string) string {
		return spec(`{"field":"apps","table":"t","primary_key":["name"],"columns":[` + cols + `]}`)
	}
	for _, tt := range []struct {
		name, hint, field string
	}{
		{"a table with a dash", spec(`{"field":"apps","table":"sw-apps","primary_key":["n"],"columns":[{"field":"n"}]}`), "inventory.explode[0].table"},
		{"a table with a quote", spec(`{"field":"apps","table":"t\"; DROP TABLE agents; --","primary_key":["n"],"columns":[{"field":"n"}]}`), "inventory.explode[0].table"},
		{"a table of 65 characters", spec(`{"field":"apps","table":"` + strings.Repeat("t", 65) + `","primary_key":["n"],"columns":[{"field":"n"}]}`), "inventory.explode[0].table"},
		{"a table starting with a digit", spec(`{"field":"apps","table":"1t","primary_key":["n"],"columns":[{"field":"n"}]}`), "inventory.explode[0].table"},
		{"a table of SQLite's", spec(`{"field":"apps","table":"SQLite_master","primary_key":["n"],"columns":[{"field":"n"}]}`), "inventory.explode[0].table"},
		{"a column with a space", col(`{"field":"name"},{"field":"my col"}`), "inventory.explode[0].columns[1].field"},
		{"a column named pc_id", col(`{"field":"name"},{"field":"PC_ID"}`), "inventory.explode[0].columns[1].field"},
		{"a column named collected_at", col(`{"field":"name"},{"field":"collected_at"}`), "inventory.explode[0].columns[1].field"},
		{"two columns differing in case", col(`{"field":"name"},{"field":"Name"}`), "inventory.explode[0].columns[1].field"},
		{"an unknown column type", col(`{"field":"name","type":"blob"}`), "inventory.explode[0].columns[0].type"},
		{"no columns", col(``), "inventory.explode[0].columns"},
		{"no primary key", spec(`{"field":"apps","table":"t","primary_key":[],"columns":[{"field":"n"}]}`), "inventory.explode[0].primary_key"},
		{"a missing primary key", spec(`{"field":"apps","table":"t","columns":[{"field":"n"}]}`), "inventory.explode[0].primary_key"},
		{"a key that is not a column", spec(`{"field":"apps","table":"t","primary_key":["n","v"],"columns":[{"field":"n"}]}`), "inventory.explode[0].primary_key[1]"},
		{"a key twice", spec(`{"field":"apps","table":"t","primary_key":["n","n"],"columns":[{"field":"n"}]}`), "inventory.explode[0].primary_key[1]"},
		{"a key that is not an identifier", spec(`{"field":"apps","table":"t","primary_key":["n;"],"columns":[{"field":"n"}]}`), "inventory.explode[0].primary_key[0]"},
		{"two specs on one table", spec(`{"field":"a","table":"t","primary_key":["n"],"columns":[{"field":"n"}]},` +
			`{"field":"b","table":"T","primary_key":["n"],"columns":[{"field":"n"}]}`), "inventory.explode[1].table"},
		{"two specs of one field", spec(`{"field":"a","table":"t","primary_key":["n"],"columns":[{"field":"n"}]},` +
			`{"field":"a","table":"u","primary_key":["n"],"columns":[{"field":"n"}]}`), "inventory.explode[1].field"},
		{"a blank explode field", spec(`{"field":" ","table":"t","primary_key":["n"],"columns":[{"field":"n"}]}`), "inventory.explode[0].field"},
		{"a blank history scalar", `{"display":[],"history_scalars":["os",""]}`, "inventory.history_scalars[1]"},
		{"no display", `{"explode":[]}`, "inventory.display"},
		{"an explode that is not a list", `{"display":[],"explode":{}}`, "inventory.explode"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := inventoryManifest(tt.hint)
			for what, err := range map[string]error{"Validate": m.Validate(), "InventorySpec": func() error { _, err := m.InventorySpec(); return err }()} {
				var fe *kanade.FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Errorf("%s = %v, want a FieldError on %s", what, err, tt.field)
				}
			}
		})
	}
}

func TestInventoryHintBounds(t *testing.T) {
	var specs []string
	for i := range kanade.MaxExplodeSpecs + 1 {
		specs = append(specs, `{"field":"f`+string(rune('a'+i))+`","table":"t`+string(rune('a'+i))+`","primary_key":["n"],"columns":[{"field":"n"}]}`)
	}
	m := inventoryManifest(`{"display":[],"explode":[` + strings.Join(specs, ",") + `]}`)
	var fe *kanade.FieldError
	if err := m.Validate(); !errors.As(err, &fe) || fe.Field != "inventory.explode" {
		t.Errorf("17 specs: %v", err)
	}
	var cols []string
	for i := range kanade.MaxExplodeColumns + 1 {
		cols = append(cols, `{"field":"c`+strings.Repeat("x", i%40)+string(rune('a'+i%26))+`_`+strings.Repeat("y", i/26)+`"}`)
	}
	m = inventoryManifest(`{"display":[],"explode":[{"field":"a","table":"t","primary_key":["ca_"],"columns":[` + strings.Join(cols, ",") + `]}]}`)
	if err := m.Validate(); !errors.As(err, &fe) || fe.Field != "inventory.explode[0].columns" {
		t.Errorf("129 columns: %v", err)
	}
}

func TestValidSQLIdent(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, "_": true, "inventory_sw_apps": true, "A9_": true, strings.Repeat("x", 64): true,
		"": false, "9a": false, "a-b": false, "a b": false, `a"b`: false, "a.b": false, "é": false,
		strings.Repeat("x", 65): false, "a;": false, "a\x00": false,
	} {
		if got := kanade.ValidSQLIdent(s); got != want {
			t.Errorf("ValidSQLIdent(%q) = %v", s, got)
		}
	}
	if got := kanade.QuoteIdent("size_kb"); got != `"size_kb"` {
		t.Errorf("QuoteIdent = %s", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("QuoteIdent of a hostile name did not panic")
		}
	}()
	kanade.QuoteIdent(`x" OR 1=1 --`)
}

// FuzzInventoryHint: whatever hint validates only ever names tables and
// columns that QuoteIdent accepts, and its keys are declared columns.
func FuzzInventoryHint(f *testing.F) {
	f.Add([]byte(swHint))
	f.Add([]byte(`{"display":[],"explode":[{"field":"a","table":"t\"","primary_key":["n"],"columns":[{"field":"n","type":"real"}]}]}`))
	f.Add([]byte(`{"display":[{"field":"x","label":"y","columns":[{"field":"z","label":"w"}]}],"history_scalars":["a.b"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := inventoryManifest(string(data))
		h, err := m.InventorySpec()
		if (err == nil) != (m.Validate() == nil) {
			t.Fatalf("InventorySpec error %v but Validate %v", err, m.Validate())
		}
		if err != nil || h == nil {
			return
		}
		for _, s := range h.Explode {
			kanade.QuoteIdent(s.Table)
			for _, c := range s.Columns {
				kanade.QuoteIdent(c.Field)
				if k := c.Kind(); k != "text" && k != "integer" && k != "real" {
					t.Fatalf("column kind %q", k)
				}
			}
			for _, k := range s.PrimaryKey {
				if _, ok := s.Column(k); !ok {
					t.Fatalf("key %q is no column", k)
				}
			}
		}
	})
}
