package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kanade-fleet/backend"
)

// The inventory read routes' queries (fleet.md §5.5). Every filter names a
// column of the job's spec, checked here against the spec and the
// identifier rule before it becomes a quoted identifier; every value is
// bound. Only tables listed in inventory_tables are read.

// ErrInvalidQuery is wrapped by a *QueryError: a request parameter the
// route refuses (400).
var ErrInvalidQuery = errors.New("invalid query")

// QueryError names the query parameter a route refuses and why.
type QueryError struct {
	Param  string
	Reason string
}

func (e *QueryError) Error() string {
	return "query parameter " + strconv.Quote(e.Param) + ": " + e.Reason
}

// Is makes errors.Is(err, ErrInvalidQuery) hold.
func (e *QueryError) Is(target error) bool { return target == ErrInvalidQuery }

// Filter operators of the search routes.
var filterOps = map[string]bool{"eq": true, "ne": true, "lt": true, "le": true, "gt": true, "ge": true,
	"contains": true, "prefix": true, "suffix": true}

// InventoryFilter is one condition of an inventory search: Column Op
// Value, the value bound as text.
type InventoryFilter struct {
	Column, Op, Value string
}

// Inventory search bounds (fleet.md §5.5).
const (
	InventorySearchDefaultLimit  = 1000
	InventorySearchMaxLimit      = 5000
	InventoryHistoryDefaultLimit = 500
	InventoryHistoryMaxLimit     = 5000
)

// ParseInventoryFilters reads every parameter of q except limit and
// offset as a filter <column>[__<op>]=<value> (op eq by default) whose
// column is(column) accepts; a repeated parameter keeps its last value.
// An unknown column or op is a *QueryError. Filters come in parameter
// order (sorted), so equal queries build equal SQL.
func ParseInventoryFilters(q url.Values, is func(column string) bool) ([]InventoryFilter, error) {
	keys := make([]string, 0, len(q))
	for k := range q {
		if k != "limit" && k != "offset" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []InventoryFilter
	for _, k := range keys {
		vals := q[k]
		v := ""
		if len(vals) > 0 {
			v = vals[len(vals)-1]
		}
		if i := strings.LastIndex(k, "__"); i > 0 && filterOps[k[i+2:]] && is(k[:i]) {
			out = append(out, InventoryFilter{Column: k[:i], Op: k[i+2:], Value: v})
			continue
		}
		if is(k) {
			out = append(out, InventoryFilter{Column: k, Op: "eq", Value: v})
			continue
		}
		return nil, &QueryError{Param: k, Reason: "not <column>[__<op>] with a column of the spec and an op of eq, ne, lt, le, gt, ge, contains, prefix, suffix"}
	}
	return out, nil
}

// likePattern is the LIKE pattern of a contains, prefix or suffix filter,
// with %, _ and \ escaped (ESCAPE '\').
func likePattern(op, v string) string {
	v = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(v)
	switch op {
	case "prefix":
		return v + "%"
	case "suffix":
		return "%" + v
	}
	return "%" + v + "%"
}

// comparison is the SQL operator of a comparison op.
var comparison = map[string]string{"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}

// checkLimit bounds a search's paging.
func checkLimit(limit, offset, maxLimit int) error {
	if limit < 1 || limit > maxLimit || offset < 0 {
		return fmt.Errorf("limit %d outside 1..%d or offset %d negative", limit, maxLimit, offset)
	}
	return nil
}

// SearchInventory is GET /api/inventory/{manifest_id}/search/{field}: the
// rows of spec's table for job matching every filter, ordered by pc_id,
// collected_at descending, then the primary key, as JSON objects
// {pc_id, collected_at, <each spec column>}. A table not created yet
// answers no rows; a table that is not an inventory table is ErrNotFound.
//
// contains, prefix and suffix on an index:true column read the column's
// distinct values by walking its index (one seek per distinct value), match
// the pattern against those, and fetch the matching rows through the
// index: a fleet has far fewer distinct names than installed copies, so
// this reads a few thousand index entries instead of millions of rows.
func (db *DB) SearchInventory(ctx context.Context, job string, spec *kanade.ExplodeSpec, filters []InventoryFilter, limit, offset int) ([]json.RawMessage, error) {
	if err := checkLimit(limit, offset, InventorySearchMaxLimit); err != nil {
		return nil, err
	}
	if err := checkSpecIdents(spec); err != nil {
		return nil, err
	}
	for _, f := range filters {
		if _, ok := spec.Column(f.Column); !ok || !filterOps[f.Op] {
			return nil, &QueryError{Param: f.Column + "__" + f.Op, Reason: "not a column of the spec with a known op"}
		}
	}
	shape, registered, exists, err := readTableShape(ctx, db.read, spec.Table)
	switch {
	case err != nil:
		return nil, err
	case !exists:
		return []json.RawMessage{}, nil
	case !registered:
		return nil, fmt.Errorf("table %s: %w: %w", spec.Table, errNotInventoryTable, ErrNotFound)
	}
	for _, f := range filters {
		if _, ok := shape.types[strings.ToLower(f.Column)]; !ok {
			// Not projected under this spec yet: every value is NULL,
			// which no filter matches.
			return []json.RawMessage{}, nil
		}
	}
	s := inventorySearch{table: spec.Table, spec: spec, shape: shape, job: job}
	// The plan. A contains, prefix or suffix filter on an indexed column
	// leads when its pattern matches few distinct values: each value's
	// rows are read through the index, already in pc_id order, and merged
	// here. Otherwise SQLite filters; without an indexed comparison it is
	// told to scan the table by its key (the answer's order, so it stops
	// after limit rows), since left alone (no ANALYZE statistics) it walks
	// an unrelated index and fetches every row through it, ten times
	// slower.
	lead := -1
	indexed := false
	for i, f := range filters {
		if !shape.indexed[strings.ToLower(f.Column)] {
			continue
		}
		if _, ok := comparison[f.Op]; ok && f.Op != "ne" {
			indexed = true
		} else if f.Op != "ne" && lead < 0 {
			lead = i
		}
	}
	if lead >= 0 {
		values, many, err := db.distinctMatching(ctx, spec.Table, filters[lead], maxLeadValues)
		if err != nil {
			return nil, err
		}
		if len(values) == 0 {
			return []json.RawMessage{}, nil
		}
		if !many {
			rest := append(append([]InventoryFilter{}, filters[:lead]...), filters[lead+1:]...)
			return db.searchByValues(ctx, s, filters[lead].Column, values, rest, limit, offset)
		}
	}
	q, args := s.query(filters, !indexed, "", nil)
	rows, err := db.read.QueryContext(ctx, q+` LIMIT ? OFFSET ?`, append(args, limit, offset)...)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", spec.Table, err)
	}
	defer rows.Close()
	return scanObjects(rows, s.names())
}

// maxLeadValues is how many distinct values a leading pattern may match
// for the rows to be read value by value (a variable for tests).
var maxLeadValues = 64

// inventorySearch is one search's table and spec, for building its SQL.
type inventorySearch struct {
	table, job string
	spec       *kanade.ExplodeSpec
	shape      *tableShape
}

// names are the members of an answer's objects, in order.
func (s inventorySearch) names() []string {
	names := make([]string, 0, len(s.spec.Columns)+2)
	names = append(names, "pc_id", "collected_at")
	for _, c := range s.spec.Columns {
		names = append(names, c.Field)
	}
	return names
}

// query is the SELECT of the rows matching filters (and col = value when
// col is set), in answer order, without LIMIT. scan tells SQLite not to
// use an index.
func (s inventorySearch) query(filters []InventoryFilter, scan bool, col string, value any) (string, []any) {
	table := kanade.QuoteIdent(s.table)
	conds := []string{`"job_id" = ?`}
	args := []any{s.job}
	if col != "" {
		conds = append(conds, kanade.QuoteIdent(col)+" = ?")
		args = append(args, value)
	}
	for _, f := range filters {
		c := kanade.QuoteIdent(f.Column)
		if op, ok := comparison[f.Op]; ok {
			conds = append(conds, c+" "+op+" ?")
			args = append(args, f.Value)
		} else {
			conds = append(conds, c+` LIKE ? ESCAPE '\'`)
			args = append(args, likePattern(f.Op, f.Value))
		}
	}
	// collected_at is the PC's, from inventory_facts (see replaceRows: a
	// row a report left alone keeps the time it was written).
	sel := []string{`"pc_id"`,
		`(SELECT f.collected_at FROM inventory_facts f WHERE f.pc_id = t."pc_id" AND f.job_id = t."job_id")`}
	for _, c := range s.spec.Columns {
		if _, ok := s.shape.types[strings.ToLower(c.Field)]; ok {
			sel = append(sel, kanade.QuoteIdent(c.Field))
		} else {
			sel = append(sel, "NULL")
		}
	}
	from := table + " AS t"
	if scan && s.shape.keyIndex != "" {
		from += " INDEXED BY " + quoteName(s.shape.keyIndex)
	}
	return `SELECT ` + strings.Join(sel, ", ") + ` FROM ` + from + ` WHERE ` + strings.Join(conds, " AND ") +
		` ORDER BY ` + strings.Join(s.order(), ", "), args
}

// order is the answer's ORDER BY: pc_id, collected_at descending (one
// value per PC and job, so it orders nothing), then the primary key.
func (s inventorySearch) order() []string {
	order := []string{`"pc_id"`}
	for _, k := range s.spec.PrimaryKey {
		if _, ok := s.shape.types[strings.ToLower(k)]; ok {
			order = append(order, kanade.QuoteIdent(k))
		}
	}
	return order
}

// distinctMatching returns the distinct values of an indexed column that
// f's pattern matches, walking the index one seek per distinct value and
// stopping after most+1 matches (many is then true).
func (db *DB) distinctMatching(ctx context.Context, table string, f InventoryFilter, most int) ([]any, bool, error) {
	t, c := kanade.QuoteIdent(table), kanade.QuoteIdent(f.Column)
	rows, err := db.read.QueryContext(ctx, `WITH RECURSIVE d(v) AS (
		SELECT (SELECT MIN(`+c+`) FROM `+t+`)
		UNION ALL
		SELECT (SELECT MIN(`+c+`) FROM `+t+` WHERE `+c+` > d.v) FROM d WHERE d.v IS NOT NULL)
		SELECT v FROM d WHERE v LIKE ? ESCAPE '\' LIMIT ?`, likePattern(f.Op, f.Value), most+1)
	if err != nil {
		return nil, false, fmt.Errorf("search %s: distinct %s: %w", table, f.Column, err)
	}
	defer rows.Close()
	var out []any
	for rows.Next() {
		var v any
		if err := rows.Scan(&v); err != nil {
			return nil, false, fmt.Errorf("search %s: distinct %s: %w", table, f.Column, err)
		}
		out = append(out, sqlValue(v))
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("search %s: distinct %s: %w", table, f.Column, err)
	}
	if len(out) > most {
		return out[:most], true, nil
	}
	return out, false, nil
}

// searchByValues reads the rows of each value of col through its index,
// each stream already in answer order, and merges the streams, pulling
// from whichever is behind: it reads about offset+limit rows in all, not
// that many per value. The streams share one connection, hence one
// snapshot.
func (db *DB) searchByValues(ctx context.Context, s inventorySearch, col string, values []any, rest []InventoryFilter, limit, offset int) ([]json.RawMessage, error) {
	conn, err := db.read.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", s.table, err)
	}
	defer conn.Close()
	width := len(s.spec.Columns) + 2
	type stream struct {
		rows *sql.Rows
		cur  []any
	}
	var streams []*stream
	defer func() {
		for _, st := range streams {
			st.rows.Close()
		}
	}()
	next := func(st *stream) (bool, error) {
		if !st.rows.Next() {
			return false, st.rows.Err()
		}
		vals := make([]any, width)
		ptrs := make([]any, width)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := st.rows.Scan(ptrs...); err != nil {
			return false, err
		}
		for i := range vals {
			vals[i] = sqlValue(vals[i])
		}
		st.cur = vals
		return true, nil
	}
	// end is where the page ends. An offset so large that it wraps end
	// around is past any table's rows (and a negative LIMIT would be none
	// in SQLite).
	end := offset + limit
	if end < offset {
		return []json.RawMessage{}, nil
	}
	var live []*stream
	for _, v := range values {
		q, args := s.query(rest, false, col, v)
		rows, err := conn.QueryContext(ctx, q+` LIMIT ?`, append(args, end)...)
		if err != nil {
			return nil, fmt.Errorf("search %s: %w", s.table, err)
		}
		st := &stream{rows: rows}
		streams = append(streams, st)
		ok, err := next(st)
		if err != nil {
			return nil, fmt.Errorf("search %s: %w", s.table, err)
		}
		if ok {
			live = append(live, st)
		}
	}
	// The answer's order: pc_id, collected_at descending, the key.
	var keyAt []int
	for _, k := range s.spec.PrimaryKey {
		for j, c := range s.spec.Columns {
			if c.Field == k {
				keyAt = append(keyAt, j+2)
			}
		}
	}
	less := func(a, b []any) bool {
		if c := compareSQL(a[0], b[0]); c != 0 {
			return c < 0
		}
		if c := compareSQL(a[1], b[1]); c != 0 {
			return c > 0
		}
		for _, k := range keyAt {
			if c := compareSQL(a[k], b[k]); c != 0 {
				return c < 0
			}
		}
		return false
	}
	names := s.names()
	out := []json.RawMessage{}
	for taken := 0; len(live) > 0 && taken < end; taken++ {
		lo := 0
		for i := 1; i < len(live); i++ {
			if less(live[i].cur, live[lo].cur) {
				lo = i
			}
		}
		st := live[lo]
		if taken >= offset {
			var o jsonObject
			for i, n := range names {
				o.add(n, st.cur[i])
			}
			out = append(out, json.RawMessage(o.String()))
		}
		ok, err := next(st)
		if err != nil {
			return nil, fmt.Errorf("search %s: %w", s.table, err)
		}
		if !ok {
			live = append(live[:lo], live[lo+1:]...)
		}
	}
	return out, nil
}

// compareSQL orders two values as SQLite's ORDER BY does with the BINARY
// collation: NULL, then numbers, then text, then blobs.
func compareSQL(a, b any) int {
	rank := func(v any) int {
		switch v.(type) {
		case nil:
			return 0
		case int64, float64:
			return 1
		case string:
			return 2
		}
		return 3
	}
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return ra - rb
	}
	switch x := a.(type) {
	case int64:
		if y, ok := b.(int64); ok {
			return cmpOrdered(x, y)
		}
		return cmpOrdered(float64(x), b.(float64))
	case float64:
		if y, ok := b.(int64); ok {
			return cmpOrdered(x, float64(y))
		}
		return cmpOrdered(x, b.(float64))
	case string:
		return strings.Compare(x, b.(string))
	case []byte:
		return strings.Compare(string(x), string(b.([]byte)))
	}
	return 0
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scanObjects reads every row as a JSON object with the given member
// names, values typed as SQLite returns them.
func scanObjects(rows *sql.Rows, names []string) ([]json.RawMessage, error) {
	out := []json.RawMessage{}
	vals := make([]any, len(names))
	ptrs := make([]any, len(names))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		var o jsonObject
		for i, n := range names {
			o.add(n, sqlValue(vals[i]))
		}
		out = append(out, json.RawMessage(o.String()))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	return out, nil
}

// ScalarField is a top-level fact search-scalars may filter on: a display
// field that is not a table and is an identifier (so it is a plain JSON
// path). Numeric says its display type is number or bytes: its filter
// values are then compared as numbers.
type ScalarField struct {
	Field   string
	Numeric bool
}

// ScalarFields are the fields of display that search-scalars serves.
func ScalarFields(display []kanade.DisplayField) []ScalarField {
	var out []ScalarField
	seen := map[string]bool{}
	for _, d := range display {
		if d.Type == "table" || !kanade.ValidSQLIdent(d.Field) || seen[d.Field] {
			continue
		}
		seen[d.Field] = true
		out = append(out, ScalarField{Field: d.Field, Numeric: d.Type == "number" || d.Type == "bytes"})
	}
	return out
}

// SearchInventoryScalars is GET /api/inventory/{manifest_id}/search-scalars
// (fleet.md §5.5, later #574): the filter grammar over the top-level facts
// of inventory_facts (its scalars_json), objects {pc_id, collected_at, <each field>} ordered
// by pc_id. A numeric field's filter value must be a number.
func (db *DB) SearchInventoryScalars(ctx context.Context, job string, fields []ScalarField, filters []InventoryFilter, limit, offset int) ([]json.RawMessage, error) {
	if err := checkLimit(limit, offset, InventorySearchMaxLimit); err != nil {
		return nil, err
	}
	byName := map[string]ScalarField{}
	sel := []string{"pc_id", "collected_at"}
	var selArgs []any
	for _, f := range fields {
		if !kanade.ValidSQLIdent(f.Field) {
			return nil, fmt.Errorf("scalar field %q: not an identifier", kanade.Clip(f.Field))
		}
		byName[f.Field] = f
		sel = append(sel, "scalars_json -> ?")
		selArgs = append(selArgs, "$."+f.Field)
	}
	conds := []string{"job_id = ?"}
	args := append(selArgs, job)
	for _, f := range filters {
		sf, ok := byName[f.Column]
		if !ok || !filterOps[f.Op] {
			return nil, &QueryError{Param: f.Column + "__" + f.Op, Reason: "not a scalar display field with a known op"}
		}
		path := "$." + f.Column
		if op, ok := comparison[f.Op]; ok {
			var v any = f.Value
			if sf.Numeric {
				n, err := strconv.ParseFloat(strings.TrimSpace(f.Value), 64)
				if err != nil {
					return nil, &QueryError{Param: f.Column + "__" + f.Op, Reason: "must be a number: the field is numeric"}
				}
				v = n
				if i, err := strconv.ParseInt(strings.TrimSpace(f.Value), 10, 64); err == nil {
					v = i
				}
			}
			conds = append(conds, "scalars_json ->> ? "+op+" ?")
			args = append(args, path, v)
			continue
		}
		conds = append(conds, `scalars_json ->> ? LIKE ? ESCAPE '\'`)
		args = append(args, path, likePattern(f.Op, f.Value))
	}
	args = append(args, limit, offset)
	rows, err := db.read.QueryContext(ctx, `SELECT `+strings.Join(sel, ", ")+` FROM inventory_facts WHERE `+
		strings.Join(conds, " AND ")+` ORDER BY pc_id LIMIT ? OFFSET ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("search scalars: %w", err)
	}
	defer rows.Close()
	out := []json.RawMessage{}
	vals := make([]any, len(sel))
	ptrs := make([]any, len(sel))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("search scalars: %w", err)
		}
		var o jsonObject
		o.add("pc_id", sqlValue(vals[0]))
		o.add("collected_at", sqlValue(vals[1]))
		for i, f := range fields {
			// -> gives the value's JSON text, NULL when absent.
			raw, _ := sqlValue(vals[i+2]).(string)
			if raw == "" || !json.Valid([]byte(raw)) {
				raw = "null"
			}
			o.add(f.Field, json.RawMessage(raw))
		}
		out = append(out, json.RawMessage(o.String()))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search scalars: %w", err)
	}
	return out, nil
}

// rawJSON is text as a JSON value for a response, nil when it is not JSON.
func rawJSON(text *string) any {
	if text == nil || !json.Valid([]byte(*text)) {
		return nil
	}
	return json.RawMessage(*text)
}

// InventoryByJob is GET /api/inventory/by-job/{manifest_id}.
func (db *DB) InventoryByJob(ctx context.Context, job string) (kanade.InventoryByJob, error) {
	out := kanade.InventoryByJob{ManifestID: job, Display: json.RawMessage("[]"), Rows: []kanade.InventoryJobRow{}}
	rows, err := db.read.QueryContext(ctx, `SELECT pc_id, facts_json, display_json, summary_json, collected_at
		FROM inventory_facts WHERE job_id = ? ORDER BY pc_id`, job)
	if err != nil {
		return out, fmt.Errorf("inventory of job %s: %w", kanade.Clip(job), err)
	}
	defer rows.Close()
	snap := false
	for rows.Next() {
		var r kanade.InventoryJobRow
		var facts packedText
		var display, summary *string
		if err := rows.Scan(&r.PCID, &facts, &display, &summary, &r.CollectedAt); err != nil {
			return out, fmt.Errorf("inventory of job %s: %w", kanade.Clip(job), err)
		}
		r.Facts = rawJSON(facts.ptr())
		if !snap && display != nil {
			if d := rawJSON(display); d != nil {
				out.Display, out.Summary, snap = d, rawJSON(summary), true
			}
		}
		out.Rows = append(out.Rows, r)
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("inventory of job %s: %w", kanade.Clip(job), err)
	}
	return out, nil
}

// InventoryOfPC is GET /api/inventory/{pc_id}: the PC's facts of every
// job, ordered by job_id.
func (db *DB) InventoryOfPC(ctx context.Context, pc string) ([]kanade.InventoryPCFacts, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT job_id, facts_json, display_json, summary_json, collected_at, recorded_at
		FROM inventory_facts WHERE pc_id = ? ORDER BY job_id`, pc)
	if err != nil {
		return nil, fmt.Errorf("inventory of %s: %w", kanade.Clip(pc), err)
	}
	defer rows.Close()
	out := []kanade.InventoryPCFacts{}
	for rows.Next() {
		var f kanade.InventoryPCFacts
		var facts packedText
		var display, summary *string
		if err := rows.Scan(&f.JobID, &facts, &display, &summary, &f.CollectedAt, &f.RecordedAt); err != nil {
			return nil, fmt.Errorf("inventory of %s: %w", kanade.Clip(pc), err)
		}
		f.Facts, f.Display, f.Summary = rawJSON(facts.ptr()), rawJSON(display), rawJSON(summary)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("inventory of %s: %w", kanade.Clip(pc), err)
	}
	return out, nil
}

// HistoryQuery selects inventory_history events of one job.
type HistoryQuery struct {
	JobID string
	// PCID, Field and Kind match exactly when set.
	PCID, Field, Kind string
	// Since is inclusive, Until exclusive; zero is unbounded.
	Since, Until time.Time
	// Identity matches events whose identity_json has these string
	// values (keys are identifiers), in this order.
	Identity []IdentityMatch
	Limit    int
	Offset   int
}

// IdentityMatch is one identity.<key>=<value> condition.
type IdentityMatch struct{ Key, Value string }

// where is the query's conditions but its identity ones (historyFrom
// adds those per index range).
func (q HistoryQuery) where() (string, []any, error) {
	for _, m := range q.Identity {
		if !kanade.ValidSQLIdent(m.Key) {
			return "", nil, &QueryError{Param: "identity." + m.Key, Reason: "the key must match ^[A-Za-z_][A-Za-z0-9_]{0,63}$"}
		}
	}
	conds := []string{"job_id = ?"}
	args := []any{q.JobID}
	for _, c := range []struct {
		cond string
		v    string
	}{{"pc_id = ?", q.PCID}, {"field_path = ?", q.Field}, {"change_kind = ?", q.Kind}} {
		if c.v != "" {
			conds = append(conds, c.cond)
			args = append(args, c.v)
		}
	}
	if !q.Since.IsZero() {
		conds = append(conds, "observed_at >= ?")
		args = append(args, kanade.FormatTime(q.Since))
	}
	if !q.Until.IsZero() {
		conds = append(conds, "observed_at < ?")
		args = append(args, kanade.FormatTime(q.Until))
	}
	return strings.Join(conds, " AND "), args, nil
}

// identityExpr is the JSON value of key in identity_json, as the history
// search tests it (key is a checked identifier, so it can stand in a
// string literal).
func identityExpr(key string) string {
	if !kanade.ValidSQLIdent(key) {
		panic("storage: identity key " + key + " is not an identifier")
	}
	return `json_extract(identity_json, '$.` + key + `')`
}

// identityRange is the part of the (job_id, field_path, identity_json,
// observed_at) index that holds every event of field whose identity can
// match: its identity_json in [lo, hi). exact names the identity key whose
// value the range holds alone (empty when the range is every identity
// with some first key).
type identityRange struct{ field, lo, hi, exact string }

// historyFrom is the rows of inventory_history q selects, as a subquery
// with its arguments; none when no event can match.
//
// A search by identity reads only the index ranges that can hold a match,
// through the (job_id, field_path, identity_json) index fleet.md §5.3
// prescribes (observed_at added, migration 0027). The projection writes
// identity_json itself (diffRows, one encoding: marshalText of the key's
// values in primary-key order, strings in valid UTF-8 since bindValue
// replaces what is not), so an event whose first key is k and whose
// value at k is the string v begins with {"k":<marshalText(v)>, and
// every identity in that range has v at k; a v that is not valid UTF-8
// matches nothing. The ranges come from the index: for each field_path of
// the job (or the one asked for), each first key its identities were
// written with (one, unless the spec's key changed), found by seeking
// past the last (a few index seeks). Where the first key is one the query
// names, the range is that value's; where it is not (a search by a later
// key, or events written under an earlier key), the range is every
// identity with that first key. The other identity conditions are tested
// on each index entry (json_extract), with every condition of where, so
// the ranges only narrow what is read, never what matches.
func historyFrom(ctx context.Context, db queryer, q HistoryQuery, cols string) (string, []any, bool, error) {
	where, args, err := q.where()
	if err != nil {
		return "", nil, false, err
	}
	if len(q.Identity) == 0 {
		return `SELECT ` + cols + ` FROM inventory_history WHERE ` + where, args, false, nil
	}
	for _, m := range q.Identity {
		if !utf8.ValidString(m.Value) {
			// Stored identities are valid UTF-8. (Over libSQL the value
			// would reach the server with U+FFFD for the bytes, and match.)
			return "", nil, true, nil
		}
	}
	ranges, err := identityRanges(ctx, db, q)
	if err != nil || len(ranges) == 0 {
		return "", nil, len(ranges) == 0, err
	}
	var b strings.Builder
	var all []any
	for i, r := range ranges {
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		b.WriteString(`SELECT ` + cols + ` FROM inventory_history INDEXED BY inventory_history_job_field_identity
			WHERE field_path = ? AND identity_json >= ? AND identity_json < ? AND ` + where)
		all = append(append(all, r.field, r.lo, r.hi), args...)
		for _, m := range q.Identity {
			if m.Key != r.exact {
				b.WriteString(" AND " + identityExpr(m.Key) + " = ?")
				all = append(all, m.Value)
			}
		}
	}
	return b.String(), all, false, nil
}

// identityRanges finds historyFrom's index ranges.
func identityRanges(ctx context.Context, db queryer, q HistoryQuery) ([]identityRange, error) {
	first := func(query string, args ...any) (string, bool, error) {
		rows, err := db.QueryContext(ctx, query, args...)
		if err != nil {
			return "", false, err
		}
		defer rows.Close()
		var v sql.NullString
		if rows.Next() {
			if err := rows.Scan(&v); err != nil {
				return "", false, err
			}
		}
		return v.String, v.Valid, rows.Err()
	}
	fields := []string{q.Field}
	if q.Field == "" {
		fields = fields[:0]
		for f, ok, err := first(`SELECT MIN(field_path) FROM inventory_history WHERE job_id = ?`, q.JobID); ok || err != nil; f, ok, err = first(
			`SELECT MIN(field_path) FROM inventory_history WHERE job_id = ? AND field_path > ?`, q.JobID, f) {
			if err != nil {
				return nil, fmt.Errorf("inventory history: fields: %w", err)
			}
			fields = append(fields, f)
		}
	}
	var out []identityRange
	for _, f := range fields {
		// Identities are objects, so every one sorts at or after `{"`;
		// scalars (NULL) sort before them.
		for id, ok, err := first(`SELECT MIN(identity_json) FROM inventory_history WHERE job_id = ? AND field_path = ? AND identity_json >= '{"'`,
			q.JobID, f); ok || err != nil; id, ok, err = first(
			`SELECT MIN(identity_json) FROM inventory_history WHERE job_id = ? AND field_path = ? AND identity_json >= ?`, q.JobID, f, id) {
			if err != nil {
				return nil, fmt.Errorf("inventory history: identities of %s: %w", kanade.Clip(f), err)
			}
			key, ok := firstKey(id)
			if !ok {
				// Not an identity the projection wrote: the rest of the
				// field, filtered.
				out = append(out, identityRange{field: f, lo: id, hi: "\U0010FFFF"})
				break
			}
			prefix := `{"` + key + `":`
			r := identityRange{field: f, lo: prefix, hi: `{"` + key + `";`} // ';' follows ':'
			for _, m := range q.Identity {
				if m.Key == key {
					// '~' sorts after the ',' or '}' that ends the value.
					r.lo = prefix + marshalText(m.Value)
					r.hi, r.exact = r.lo+"~", key
					break
				}
			}
			out = append(out, r)
			id = `{"` + key + `";`
		}
	}
	return out, nil
}

// firstKey is the first key of an identity_json the projection wrote
// ({"<identifier>":…}).
func firstKey(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, `{"`)
	if !ok {
		return "", false
	}
	key, _, ok := strings.Cut(rest, `":`)
	return key, ok && kanade.ValidSQLIdent(key)
}

// The history routes' statements over historyFrom's rows.
const (
	historyEventCols = `id, pc_id, job_id, field_path, identity_json, change_kind, before_json, after_json, observed_at`
	firstSeenCols    = `pc_id, observed_at`
)

// historyColsFor is what historyEventsSQL needs historyFrom to select.
func historyColsFor(q HistoryQuery) string {
	if len(q.Identity) > 0 {
		return `id, observed_at`
	}
	return historyEventCols
}

// historyEventsSQL pages the events of from. By identity, the page is
// chosen from the index entries alone (id and observed_at, which the
// identity index holds) and only its rows are read: a popular app has tens
// of thousands of events, and reading each row to sort them was most of
// the search.
func historyEventsSQL(q HistoryQuery, from string) string {
	if len(q.Identity) > 0 {
		return `SELECT ` + historyEventCols + ` FROM inventory_history WHERE id IN
			(SELECT id FROM (` + from + `) ORDER BY observed_at DESC, id DESC LIMIT ? OFFSET ?) ORDER BY observed_at DESC, id DESC`
	}
	return `SELECT * FROM (` + from + `) ORDER BY observed_at DESC, id DESC LIMIT ? OFFSET ?`
}

func firstSeenSQL(from string) string {
	return `SELECT pc_id, MIN(observed_at) AS first_seen FROM (` + from + `) GROUP BY pc_id ORDER BY first_seen, pc_id LIMIT ? OFFSET ?`
}

// historyRead runs a history route's reads: in one read snapshot when it
// searches by identity (the index ranges it finds first must be those its
// search reads), else as one statement on the read pool.
func (db *DB) historyRead(ctx context.Context, q HistoryQuery, fn func(rq queryer) error) error {
	if len(q.Identity) == 0 {
		return fn(db.read)
	}
	return db.readSnapshot(ctx, fn)
}

// InventoryHistory is GET …/history/pc/{pc_id} and …/history/search:
// matching events, newest first (observed_at, then id, descending).
func (db *DB) InventoryHistory(ctx context.Context, q HistoryQuery) ([]kanade.InventoryHistoryEvent, error) {
	if err := checkLimit(q.Limit, q.Offset, InventoryHistoryMaxLimit); err != nil {
		return nil, err
	}
	out := []kanade.InventoryHistoryEvent{}
	err := db.historyRead(ctx, q, func(rq queryer) error {
		from, args, none, err := historyFrom(ctx, rq, q, historyColsFor(q))
		if err != nil || none {
			return err
		}
		rows, err := rq.QueryContext(ctx, historyEventsSQL(q, from), append(args, q.Limit, q.Offset)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e kanade.InventoryHistoryEvent
			if err := rows.Scan(&e.ID, &e.PCID, &e.JobID, &e.FieldPath, &e.IdentityJSON, &e.ChangeKind, &e.BeforeJSON,
				&e.AfterJSON, &e.ObservedAt); err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("inventory history: %w", err)
	}
	return out, nil
}

// InventoryFirstSeen is GET …/history/first_seen: per PC the earliest
// matching event, ascending (then by pc_id).
func (db *DB) InventoryFirstSeen(ctx context.Context, q HistoryQuery) ([]kanade.InventoryFirstSeen, error) {
	if err := checkLimit(q.Limit, q.Offset, InventoryHistoryMaxLimit); err != nil {
		return nil, err
	}
	out := []kanade.InventoryFirstSeen{}
	err := db.historyRead(ctx, q, func(rq queryer) error {
		from, args, none, err := historyFrom(ctx, rq, q, firstSeenCols)
		if err != nil || none {
			return err
		}
		rows, err := rq.QueryContext(ctx, firstSeenSQL(from), append(args, q.Limit, q.Offset)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var f kanade.InventoryFirstSeen
			if err := rows.Scan(&f.PCID, &f.FirstSeenAt); err != nil {
				return err
			}
			out = append(out, f)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("inventory first seen: %w", err)
	}
	return out, nil
}

// InventoryTableTaken reports whether name is taken by a schema object
// that is not an inventory table (agents, users, an index…), so a job
// naming it as a derived table can be refused when it is stored.
func (db *DB) InventoryTableTaken(ctx context.Context, name string) (bool, error) {
	_, registered, exists, err := readTableShape(ctx, db.read, name)
	if err != nil {
		return false, err
	}
	return exists && !registered, nil
}
