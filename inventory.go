package kanade

import (
	"encoding/json"
	"strconv"
	"strings"
)

// The manifest's inventory hint (fleet.md §5.2): how the projector turns an
// inventory job's stdout (one JSON object) into rows, and how the SPA shows
// them. Table and column names become SQL identifiers, so the hint is
// checked when a job is stored (Manifest.Validate) and again where the
// names are used (storage): an identifier is never anything but
// ^[A-Za-z_][A-Za-z0-9_]{0,63}$, and it is always double-quoted.

// InventoryHint is the value of a manifest's "inventory" member.
type InventoryHint struct {
	// Display lists the facts the SPA shows for one PC.
	Display []DisplayField `json:"display" schema:"required"`
	// Summary lists the fleet list's columns (nil: the SPA uses Display).
	Summary []DisplayField `json:"summary,omitempty"`
	// Explode turns top-level arrays into rows of derived tables.
	Explode []ExplodeSpec `json:"explode,omitempty"`
	// HistoryScalars are top-level fields whose changes are logged.
	HistoryScalars []string `json:"history_scalars,omitempty" schema:"nonblank"`
}

// DisplayField is one fact the SPA shows; Type is a render hint (number,
// bytes, timestamp, table) and Columns are a table's own fields.
type DisplayField struct {
	Field   string         `json:"field" schema:"required"`
	Label   string         `json:"label" schema:"required"`
	Type    string         `json:"type,omitempty"`
	Columns []DisplayField `json:"columns,omitempty"`
}

// ExplodeSpec projects the array Field of the stdout object into Table, one
// row per element, keyed within a PC by PrimaryKey.
type ExplodeSpec struct {
	Field        string          `json:"field" schema:"required,nonblank"`
	Table        string          `json:"table" schema:"required,pattern=ident"`
	PrimaryKey   []string        `json:"primary_key" schema:"required,minItems=1,pattern=ident"`
	Columns      []ExplodeColumn `json:"columns" schema:"required,minItems=1"`
	TrackHistory bool            `json:"track_history,omitempty"`
}

// ExplodeColumn is one column of a derived table: an element field of the
// same name, stored with the affinity of Type.
type ExplodeColumn struct {
	Field string `json:"field" schema:"required,pattern=ident"`
	Type  string `json:"type,omitempty" schema:"enum=text|integer|real"`
	Index bool   `json:"index,omitempty"`
}

// Column types of an ExplodeColumn.
const (
	ColumnText    = "text"
	ColumnInteger = "integer"
	ColumnReal    = "real"
)

// Kind is the column's type, "text" when none is given.
func (c ExplodeColumn) Kind() string {
	if c.Type == "" {
		return ColumnText
	}
	return c.Type
}

// Column returns the declared column named field, and whether there is one.
func (s *ExplodeSpec) Column(field string) (ExplodeColumn, bool) {
	for _, c := range s.Columns {
		if c.Field == field {
			return c, true
		}
	}
	return ExplodeColumn{}, false
}

// Bounds of a hint, so that one manifest cannot make the projector create
// hundreds of tables or statements of thousands of columns.
const (
	MaxExplodeSpecs   = 16
	MaxExplodeColumns = 128
	MaxHistoryScalars = 128
)

// explodeReserved are the columns every derived table has already.
var explodeReserved = []string{"pc_id", "job_id", "collected_at"}

const ruleSQLIdent = "must be an SQL identifier: ^[A-Za-z_][A-Za-z0-9_]{0,63}$"

// ValidSQLIdent reports whether s may name a derived table or column:
// ^[A-Za-z_][A-Za-z0-9_]{0,63}$. The storage layer checks it again before
// an identifier reaches SQL, where it is always double-quoted.
func ValidSQLIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// QuoteIdent double-quotes an identifier for SQL. It panics on one that
// is not a ValidSQLIdent: every caller checks first, and an unchecked name
// must never reach a statement.
func QuoteIdent(s string) string {
	if !ValidSQLIdent(s) {
		panic("kanade: QuoteIdent of an invalid identifier " + strconv.Quote(clip(s, errExcerptBytes)))
	}
	return `"` + s + `"`
}

// Validate checks what the shape cannot say: the identifier rule, that
// every primary_key entry is a declared column, unique names, and the
// bounds. The *FieldError names the field from the hint
// (explode[0].primary_key[1]).
func (h *InventoryHint) Validate() error {
	var c checker
	c.required("display", h.Display != nil)
	c.holds("explode", len(h.Explode) <= MaxExplodeSpecs, "must have at most "+strconv.Itoa(MaxExplodeSpecs)+" entries")
	c.holds("history_scalars", len(h.HistoryScalars) <= MaxHistoryScalars, "must have at most "+strconv.Itoa(MaxHistoryScalars)+" entries")
	for i, f := range h.HistoryScalars {
		c.holds("history_scalars["+strconv.Itoa(i)+"]", strings.TrimSpace(f) != "", "must not be empty")
	}
	tables := map[string]int{}
	fields := map[string]int{}
	for i := range h.Explode {
		s := &h.Explode[i]
		at := "explode[" + strconv.Itoa(i) + "]"
		c.holds(at+".field", strings.TrimSpace(s.Field) != "", "must not be empty")
		if j, dup := fields[s.Field]; dup {
			c.rule(at+".field", s.Field, false, "must differ from explode["+strconv.Itoa(j)+"].field (the search route names a spec by its field)")
		}
		fields[s.Field] = i
		c.rule(at+".table", s.Table, ValidSQLIdent(s.Table), ruleSQLIdent)
		c.rule(at+".table", s.Table, !strings.HasPrefix(strings.ToLower(s.Table), "sqlite_"), "must not start with sqlite_ (reserved by SQLite)")
		lower := strings.ToLower(s.Table)
		if j, dup := tables[lower]; dup {
			c.rule(at+".table", s.Table, false, "must differ from explode["+strconv.Itoa(j)+"].table (SQL names ignore case)")
		}
		tables[lower] = i
		c.holds(at+".columns", len(s.Columns) > 0, "must have at least 1 entries")
		c.holds(at+".columns", len(s.Columns) <= MaxExplodeColumns, "must have at most "+strconv.Itoa(MaxExplodeColumns)+" entries")
		cols := map[string]int{}
		for j, col := range s.Columns {
			cat := at + ".columns[" + strconv.Itoa(j) + "]"
			c.rule(cat+".field", col.Field, ValidSQLIdent(col.Field), ruleSQLIdent)
			lc := strings.ToLower(col.Field)
			for _, r := range explodeReserved {
				c.rule(cat+".field", col.Field, lc != r, "must not be pc_id, job_id or collected_at (every derived table has them)")
			}
			if k, dup := cols[lc]; dup {
				c.rule(cat+".field", col.Field, false, "must differ from columns["+strconv.Itoa(k)+"].field (SQL names ignore case)")
			}
			cols[lc] = j
			c.rule(cat+".type", col.Type, col.Type == "" || col.Type == ColumnText || col.Type == ColumnInteger || col.Type == ColumnReal,
				"must be one of text, integer, real")
		}
		c.holds(at+".primary_key", len(s.PrimaryKey) > 0, "must have at least 1 entries")
		seen := map[string]bool{}
		for j, k := range s.PrimaryKey {
			kat := at + ".primary_key[" + strconv.Itoa(j) + "]"
			c.rule(kat, k, ValidSQLIdent(k), ruleSQLIdent)
			_, declared := s.Column(k)
			c.rule(kat, k, declared, "must be one of the declared columns")
			c.rule(kat, k, !seen[k], "must appear once")
			seen[k] = true
		}
	}
	return c.err
}

// InventorySpec decodes and checks the manifest's inventory hint; nil and
// no error when it has none. The *FieldError names the field from
// "inventory." (inventory.explode[0].table).
func (m *Manifest) InventorySpec() (*InventoryHint, error) {
	if len(m.Inventory) == 0 {
		return nil, nil
	}
	v, err := decodeGeneric(m.Inventory)
	if err != nil {
		return nil, &FieldError{Field: "inventory", Rule: "must be JSON"}
	}
	if v == nil {
		return nil, nil
	}
	ms, _ := shapes()
	if err := checkValue(v, ms.prop("inventory").shape, "inventory"); err != nil {
		return nil, err
	}
	var h InventoryHint
	if err := json.Unmarshal(m.Inventory, &h); err != nil {
		return nil, jsonError("manifest", "inventory", err)
	}
	var c checker
	c.under("inventory", h.Validate())
	if c.err != nil {
		return nil, c.err
	}
	return &h, nil
}
