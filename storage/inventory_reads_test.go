package storage_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// searchRow is a derived row as the Go reference sees it: values typed as
// SQLite stores them under the column's affinity.
type searchRow struct {
	pc, job, collected string
	name, label        any // text columns (name indexed)
	n, r               any // integer and real columns
}

// sqliteNumber reports whether SQLite's NUMERIC affinity turns s into a
// number (the values used here: decimal integers and reals, no spaces).
func sqliteNumber(s string) (float64, bool) {
	if s == "" || strings.ContainsAny(s, " xXnNiI_") {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// affinity is the value SQLite stores for v, bound into a column of kind.
func affinity(kind string, v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		if kind == "text" {
			return x
		}
		if f, ok := sqliteNumber(x); ok {
			if kind == "integer" && f == float64(int64(f)) {
				return int64(f)
			}
			return f
		}
		return x
	case int64:
		if kind == "real" {
			return float64(x)
		}
		if kind == "text" {
			return strconv.FormatInt(x, 10)
		}
		return x
	case float64:
		if kind == "text" {
			return sqliteText(x)
		}
		if kind == "integer" && x == float64(int64(x)) {
			return int64(x)
		}
		return x
	}
	panic(fmt.Sprintf("affinity of %T", v))
}

// sqliteText is how SQLite writes a stored number as text (LIKE, CAST).
func sqliteText(v any) string {
	switch x := v.(type) {
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		s := strconv.FormatFloat(x, 'g', 15, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return s
	}
	return v.(string)
}

// compare orders a stored value against the bound text q as SQLite does
// for a column of kind: NULL matches nothing; on numeric columns q is a
// number when it looks like one; numbers sort before text.
func compare(kind string, stored any, q string) (int, bool) {
	if stored == nil {
		return 0, false
	}
	var qv any = q
	if kind != "text" {
		if f, ok := sqliteNumber(q); ok {
			qv = f
		}
	}
	num := func(v any) (float64, bool) {
		switch x := v.(type) {
		case int64:
			return float64(x), true
		case float64:
			return x, true
		}
		return 0, false
	}
	a, an := num(stored)
	b, bn := num(qv)
	switch {
	case an && bn:
		switch {
		case a < b:
			return -1, true
		case a > b:
			return 1, true
		}
		return 0, true
	case an:
		return -1, true
	case bn:
		return 1, true
	}
	return strings.Compare(stored.(string), qv.(string)), true
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// matches is the reference of one filter.
func matches(kind string, stored any, op, q string) bool {
	switch op {
	case "contains", "prefix", "suffix":
		if stored == nil {
			return false
		}
		s, p := lowerASCII(sqliteText(stored)), lowerASCII(q)
		switch op {
		case "prefix":
			return strings.HasPrefix(s, p)
		case "suffix":
			return strings.HasSuffix(s, p)
		}
		return strings.Contains(s, p)
	}
	c, ok := compare(kind, stored, q)
	if !ok {
		return false
	}
	switch op {
	case "eq":
		return c == 0
	case "ne":
		return c != 0
	case "lt":
		return c < 0
	case "le":
		return c <= 0
	case "gt":
		return c > 0
	}
	return c >= 0
}

func searchSpec(t testing.TB) *kanade.InventoryHint {
	return mustHint(t, `{"display":[{"field":"host","label":"Host"},{"field":"ram","label":"RAM","type":"bytes"},
		{"field":"disks","label":"Disks","type":"table"},{"field":"bad-name","label":"x"}],
		"explode":[{"field":"apps","table":"srch","primary_key":["name"],
		"columns":[{"field":"name","index":true},{"field":"label"},{"field":"n","type":"integer"},{"field":"r","type":"real"}]}]}`)
}

// seedSearch projects a random fleet for searchSpec and returns the rows
// the reference searches.
func seedSearch(t testing.TB, db *storage.DB, pcs int, rng *rand.Rand) []searchRow {
	spec := searchSpec(t)
	names := []string{"Google Chrome", "chrome-helper", "Zoom", "100%_done", `back\slash`, "Ünïcode", "ünïcode", "abc", "ABC2",
		"10", "9", "2.5", "", "x_y", "Mozilla Firefox"}
	labels := []any{"a", "B", "10", "9", "-1", "2.5", "1e1", nil, "%", "_", `\`, "Chrome"}
	ns := []any{nil, int64(-1), int64(0), int64(3), int64(10), int64(100), "n/a", 2.5, "10", 1e1}
	rs := []any{nil, 0.5, 2.5, 10.0, -3.25, "x", int64(7), "2.5"}
	var out []searchRow
	var batch []storage.Result
	for pc := range pcs {
		id := fmt.Sprintf("PC-%03d", pc)
		for _, job := range []string{"inventory-sw", "other-job"} {
			var apps []string
			var rowsOf []searchRow
			perm := rng.Perm(len(names))[:2+rng.IntN(8)]
			for _, i := range perm {
				row := searchRow{pc: id, job: job, name: names[i], label: labels[rng.IntN(len(labels))],
					n: ns[rng.IntN(len(ns))], r: rs[rng.IntN(len(rs))]}
				b, _ := json.Marshal(map[string]any{"name": row.name, "label": row.label, "n": row.n, "r": row.r})
				apps = append(apps, string(b))
				row.label = affinity("text", row.label)
				row.n = affinity("integer", jsonBound("integer", row.n))
				row.r = affinity("real", jsonBound("real", row.r))
				rowsOf = append(rowsOf, row)
			}
			r := invResult(fmt.Sprintf("s-%s-%s", id, job), id, pc, fmt.Sprintf(`{"host":"h%d","ram":%d,"apps":[%s]}`, pc, pc*1024, strings.Join(apps, ",")), spec)
			r.ManifestID = job
			at := kanade.FormatTime(r.FinishedAt.Time)
			for i := range rowsOf {
				rowsOf[i].collected = at
			}
			out = append(out, rowsOf...)
			batch = append(batch, r)
		}
	}
	st := applyInv(t, db, batch...)
	if st.Inventory.Projected != len(batch) || st.Inventory.Failed != 0 {
		t.Fatalf("seed: %+v", st.Inventory)
	}
	return out
}

// jsonBound is what PrepareInventory binds for a JSON value v in a column
// of kind: integer columns take integral numbers only.
func jsonBound(kind string, v any) any {
	if f, ok := v.(float64); ok && kind == "integer" && f != float64(int64(f)) {
		return nil
	}
	if i, ok := v.(int64); ok && kind == "real" {
		return float64(i)
	}
	return v
}

func (r searchRow) value(col string) (string, any) {
	switch col {
	case "name":
		return "text", r.name
	case "label":
		return "text", r.label
	case "n":
		return "integer", r.n
	}
	return "real", r.r
}

func TestInventorySearchEveryOperatorMatchesTheReference(t *testing.T) {
	storagetest.AnswersOnly(t)
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	all := seedSearch(t, db, 40, rng)
	spec := &searchSpec(t).Explode[0]
	values := []string{"10", "9", "2.5", "-1", "0", "abc", "a", "Chrome", "chrome", "%", "_", `\`, "1e1", "ü", "n/a", "", "x", "100%_", "ZOOM", "7"}
	if storagetest.Small() { // half of them: every kind, and LIKE's metacharacters
		values = []string{"10", "2.5", "-1", "abc", "Chrome", "%", "_", `\`, "ü", ""}
	}
	queries := 0
	// Twice: patterns on the indexed column read value by value, then
	// (few values allowed) through SQLite's own filter.
	for _, lead := range []int{64, 2} {
		restore := storage.SetMaxLeadValuesForTest(lead)
		for _, col := range []string{"name", "label", "n", "r"} {
			for _, op := range []string{"eq", "ne", "lt", "le", "gt", "ge", "contains", "prefix", "suffix"} {
				for _, v := range values {
					want := searchReference(all, "inventory-sw", func(r searchRow) bool {
						kind, stored := r.value(col)
						return matches(kind, stored, op, v)
					})
					got, err := db.SearchInventory(ctx, "inventory-sw", spec, []storage.InventoryFilter{{Column: col, Op: op, Value: v}}, 5000, 0)
					if err != nil {
						t.Fatalf("%s__%s=%q: %v", col, op, v, err)
					}
					if diff := cmp.Diff(want, keys(t, got)); diff != "" {
						t.Errorf("%s__%s=%q (-reference +search):\n%s", col, op, v, diff)
					}
					queries++
				}
			}
		}
		restore()
	}
	// Two filters at once, and paging through the result.
	want := searchReference(all, "inventory-sw", func(r searchRow) bool {
		return matches("text", r.name, "contains", "o") && matches("integer", r.n, "ge", "0")
	})
	var paged []string
	for off := 0; ; off += 7 {
		got, err := db.SearchInventory(ctx, "inventory-sw", spec, []storage.InventoryFilter{{"name", "contains", "o"}, {"n", "ge", "0"}}, 7, off)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, keys(t, got)...)
		if len(got) < 7 {
			break
		}
	}
	if diff := cmp.Diff(want, paged); diff != "" {
		t.Errorf("paged two-filter search (-reference +search):\n%s", diff)
	}
	if len(want) < 20 {
		t.Errorf("the two-filter query matches only %d rows", len(want))
	}
	t.Logf("%d queries over %d rows", queries, len(all))

	// The objects: every column, typed.
	got, err := db.SearchInventory(ctx, "inventory-sw", spec, []storage.InventoryFilter{{"name", "eq", "Zoom"}}, 1, 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("%v %v", got, err)
	}
	var obj map[string]any
	if err := json.Unmarshal(got[0], &obj); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"pc_id", "collected_at", "name", "label", "n", "r"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("member %s missing from %s", k, got[0])
		}
	}
	if !strings.HasPrefix(string(got[0]), `{"pc_id":`) {
		t.Errorf("member order: %s", got[0])
	}
}

// searchReference filters rows of job and sorts them as the search does.
func searchReference(all []searchRow, job string, keep func(searchRow) bool) []string {
	var out []searchRow
	for _, r := range all {
		if r.job == job && keep(r) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].pc != out[j].pc {
			return out[i].pc < out[j].pc
		}
		return out[i].name.(string) < out[j].name.(string)
	})
	ks := []string{}
	for _, r := range out {
		ks = append(ks, r.pc+"|"+r.name.(string))
	}
	return ks
}

func keys(t testing.TB, objs []json.RawMessage) []string {
	t.Helper()
	ks := []string{}
	for _, o := range objs {
		var m struct {
			PC   string `json:"pc_id"`
			Name string `json:"name"`
		}
		if err := json.Unmarshal(o, &m); err != nil {
			t.Fatalf("%s: %v", o, err)
		}
		ks = append(ks, m.PC+"|"+m.Name)
	}
	return ks
}

func TestInventorySearchRefusesWhatTheSpecDoesNotName(t *testing.T) {
	spec := &searchSpec(t).Explode[0]
	is := func(c string) bool { _, ok := spec.Column(c); return ok }
	for _, q := range []string{"nope=1", "name__like=1", "name__=1", `name"; DROP TABLE agents; --=1`, "__eq=1", "pc_id=PC-1",
		"collected_at__gt=2026", "Name=x", "name__contains__x=1"} {
		k, v, _ := strings.Cut(q, "=")
		vals := url.Values{k: {v}}
		if _, err := storage.ParseInventoryFilters(vals, is); !errors.Is(err, storage.ErrInvalidQuery) {
			t.Errorf("%s: %v", q, err)
		}
	}
	vals, _ := url.ParseQuery("name__contains=a&n=1&n=2&limit=5&offset=x&r__ge=0.5")
	got, err := storage.ParseInventoryFilters(vals, is)
	want := []storage.InventoryFilter{{"n", "eq", "2"}, {"name", "contains", "a"}, {"r", "ge", "0.5"}}
	if err != nil || !cmp.Equal(want, got) {
		t.Errorf("filters %v, %v", got, err)
	}
	// A column named like an op suffix still resolves.
	odd := &kanade.ExplodeSpec{Table: "t", PrimaryKey: []string{"a__lt"}, Columns: []kanade.ExplodeColumn{{Field: "a__lt"}, {Field: "a"}}}
	oddIs := func(c string) bool { _, ok := odd.Column(c); return ok }
	vals, _ = url.ParseQuery("a__lt=1&a__lt__ne=2")
	got, err = storage.ParseInventoryFilters(vals, oddIs)
	if want := []storage.InventoryFilter{{"a", "lt", "1"}, {"a__lt", "ne", "2"}}; err != nil || !cmp.Equal(want, got) {
		t.Errorf("odd columns: %v, %v", got, err)
	}

	db := storagetest.Open(t, nil)
	ctx := context.Background()
	for _, f := range []storage.InventoryFilter{{"pc_id", "eq", "x"}, {"name", "like", "x"}, {`name" OR 1=1 --`, "eq", "x"}} {
		if _, err := db.SearchInventory(ctx, "j", spec, []storage.InventoryFilter{f}, 10, 0); !errors.Is(err, storage.ErrInvalidQuery) {
			t.Errorf("filter %v: %v", f, err)
		}
	}
	for _, lo := range [][2]int{{0, 0}, {5001, 0}, {10, -1}} {
		if _, err := db.SearchInventory(ctx, "j", spec, nil, lo[0], lo[1]); err == nil {
			t.Errorf("limit %d offset %d accepted", lo[0], lo[1])
		}
	}
	// A table not created yet is no rows; one that is not an inventory
	// table is not found.
	if got, err := db.SearchInventory(ctx, "j", spec, nil, 10, 0); err != nil || len(got) != 0 {
		t.Errorf("no table: %v, %v", got, err)
	}
	users := &kanade.ExplodeSpec{Table: "users", PrimaryKey: []string{"username"}, Columns: []kanade.ExplodeColumn{{Field: "username"}, {Field: "password_hash"}}}
	if _, err := db.SearchInventory(ctx, "j", users, nil, 10, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("users table: %v", err)
	}
}

func TestInventorySearchScalars(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	seedSearch(t, db, 12, rand.New(rand.NewPCG(5, 6)))
	fields := storage.ScalarFields(searchSpec(t).Display)
	if diff := cmp.Diff([]storage.ScalarField{{"host", false}, {"ram", true}}, fields); diff != "" {
		t.Fatalf("scalar fields: %s", diff)
	}
	got, err := db.SearchInventoryScalars(ctx, "inventory-sw", fields, []storage.InventoryFilter{{"ram", "ge", "5120"}, {"host", "contains", "H1"}}, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var pcs []string
	for _, o := range got {
		var m struct {
			PC   string `json:"pc_id"`
			Host string `json:"host"`
			RAM  int    `json:"ram"`
		}
		if err := json.Unmarshal(o, &m); err != nil {
			t.Fatal(err)
		}
		pcs = append(pcs, fmt.Sprintf("%s|%s|%d", m.PC, m.Host, m.RAM))
	}
	if diff := cmp.Diff([]string{"PC-010|h10|10240", "PC-011|h11|11264"}, pcs); diff != "" {
		t.Errorf("scalars (-want +got):\n%s", diff)
	}
	if _, err := db.SearchInventoryScalars(ctx, "inventory-sw", fields, []storage.InventoryFilter{{"ram", "gt", "lots"}}, 10, 0); !errors.Is(err, storage.ErrInvalidQuery) {
		t.Errorf("non-numeric value on a numeric field: %v", err)
	}
	if _, err := db.SearchInventoryScalars(ctx, "inventory-sw", fields, []storage.InventoryFilter{{"disks", "eq", "x"}}, 10, 0); !errors.Is(err, storage.ErrInvalidQuery) {
		t.Errorf("a table field: %v", err)
	}
}

func TestInventoryFactsAndHistoryReads(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	spec := swSpec(t)
	rng := rand.New(rand.NewPCG(7, 8))
	apps := []string{"Chrome", "Zoom", "Slack", "Teams"}
	for round := range 12 {
		var batch []storage.Result
		for pc := range 6 {
			var list []string
			for _, a := range apps {
				if rng.IntN(3) != 0 {
					list = append(list, fmt.Sprintf(`{"name":%q,"source":"x64","version":"%d"}`, a, rng.IntN(2)))
				}
			}
			batch = append(batch, invResult(fmt.Sprintf("h-%d-%d", round, pc), fmt.Sprintf("PC-%d", pc), round*60,
				report(fmt.Sprint(rng.IntN(2)), 8, list...), spec))
		}
		applyInv(t, db, batch...)
	}
	all, err := db.InventoryHistory(ctx, storage.HistoryQuery{JobID: "inventory-sw", Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 50 {
		t.Fatalf("only %d events", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].ObservedAt < all[i].ObservedAt || all[i-1].ObservedAt == all[i].ObservedAt && all[i-1].ID < all[i].ID {
			t.Fatalf("not newest first at %d", i)
		}
	}
	since := invBase.Add(3 * time.Hour)
	until := invBase.Add(8 * time.Hour)
	for _, q := range []storage.HistoryQuery{
		{PCID: "PC-2"},
		{PCID: "PC-2", Field: "os_version", Since: since},
		{Field: "apps", Kind: "removed"},
		{Field: "apps", Identity: []storage.IdentityMatch{{"name", "Chrome"}}, Since: since, Until: until},
		{Identity: []storage.IdentityMatch{{"name", "Zoom"}, {"source", "x64"}}, Kind: "changed"},
		{Identity: []storage.IdentityMatch{{"name", "Nope"}}},
	} {
		q.JobID, q.Limit = "inventory-sw", 5000
		var want []kanade.InventoryHistoryEvent
		for _, e := range all {
			if historyMatch(e, q) {
				want = append(want, e)
			}
		}
		got, err := db.InventoryHistory(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmpEmpty); diff != "" {
			t.Errorf("%+v (-reference +query):\n%s", q, diff)
		}
		// first_seen: per PC the earliest match, ascending.
		first := map[string]string{}
		for _, e := range want {
			if f, ok := first[e.PCID]; !ok || e.ObservedAt < f {
				first[e.PCID] = e.ObservedAt
			}
		}
		wantFirst := []kanade.InventoryFirstSeen{}
		for pc, at := range first {
			wantFirst = append(wantFirst, kanade.InventoryFirstSeen{PCID: pc, FirstSeenAt: at})
		}
		sort.Slice(wantFirst, func(i, j int) bool {
			if wantFirst[i].FirstSeenAt != wantFirst[j].FirstSeenAt {
				return wantFirst[i].FirstSeenAt < wantFirst[j].FirstSeenAt
			}
			return wantFirst[i].PCID < wantFirst[j].PCID
		})
		gotFirst, err := db.InventoryFirstSeen(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantFirst, gotFirst); diff != "" {
			t.Errorf("first seen %+v (-reference +query):\n%s", q, diff)
		}
	}
	// Paging is a window of the whole.
	page, err := db.InventoryHistory(ctx, storage.HistoryQuery{JobID: "inventory-sw", Limit: 10, Offset: 5})
	if err != nil || !cmp.Equal(all[5:15], page) {
		t.Errorf("page: %v", err)
	}
	if _, err := db.InventoryHistory(ctx, storage.HistoryQuery{JobID: "x", Limit: 5001}); err == nil {
		t.Error("limit 5001 accepted")
	}
	if _, err := db.InventoryHistory(ctx, storage.HistoryQuery{JobID: "x", Limit: 1, Identity: []storage.IdentityMatch{{"na'me", "x"}}}); !errors.Is(err, storage.ErrInvalidQuery) {
		t.Errorf("hostile identity key: %v", err)
	}

	// The facts routes.
	pc, err := db.InventoryOfPC(ctx, "PC-3")
	if err != nil || len(pc) != 1 || pc[0].JobID != "inventory-sw" || pc[0].Facts == nil || pc[0].RecordedAt == "" {
		t.Fatalf("PC-3: %+v %v", pc, err)
	}
	if got, err := db.InventoryOfPC(ctx, "nobody"); err != nil || got == nil || len(got) != 0 {
		t.Errorf("unknown PC: %v %v", got, err)
	}
	byJob, err := db.InventoryByJob(ctx, "inventory-sw")
	if err != nil || len(byJob.Rows) != 6 || byJob.Rows[0].PCID != "PC-0" {
		t.Fatalf("by job: %+v %v", byJob, err)
	}
	if b, _ := json.Marshal(byJob.Summary); string(b) != `[{"field":"hostname","label":"Host"}]` {
		t.Errorf("summary snapshot %s", b)
	}
	empty, err := db.InventoryByJob(ctx, "nothing")
	if b, _ := json.Marshal(empty); err != nil || string(b) != `{"manifest_id":"nothing","display":[],"summary":null,"rows":[]}` {
		t.Errorf("empty by job: %s %v", b, err)
	}
	// Facts that no longer parse come back as null.
	if err := storage.ExecForTest(ctx, db, `UPDATE inventory_facts SET facts_json = 'not json' WHERE pc_id = 'PC-0'`); err != nil {
		t.Fatal(err)
	}
	if byJob, _ := db.InventoryByJob(ctx, "inventory-sw"); byJob.Rows[0].Facts != nil {
		t.Errorf("unparseable facts: %s", byJob.Rows[0].Facts)
	}
}

var cmpEmpty = cmp.Comparer(func(a, b []kanade.InventoryHistoryEvent) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return cmp.Equal(a, b)
})

func historyMatch(e kanade.InventoryHistoryEvent, q storage.HistoryQuery) bool {
	if q.PCID != "" && e.PCID != q.PCID || q.Field != "" && e.FieldPath != q.Field || q.Kind != "" && e.ChangeKind != q.Kind {
		return false
	}
	if !q.Since.IsZero() && e.ObservedAt < kanade.FormatTime(q.Since) || !q.Until.IsZero() && e.ObservedAt >= kanade.FormatTime(q.Until) {
		return false
	}
	for _, m := range q.Identity {
		if e.IdentityJSON == nil {
			return false
		}
		var id map[string]any
		if json.Unmarshal([]byte(*e.IdentityJSON), &id) != nil || id[m.Key] != m.Value {
			return false
		}
	}
	return true
}

// The history search by identity reads index ranges of identity_json
// (historyFrom) and must find exactly what json_extract finds: across a
// primary key that changed order and length between reports (identities
// whose first key differs), by a later key, without a field, and for
// values JSON escapes or that are not valid UTF-8.
func TestInventoryHistorySearchByIdentityAcrossKeys(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	hint := func(key string) *kanade.InventoryHint {
		return mustHint(t, `{"display": [{"field":"os_version","label":"OS"}], "explode": [
		  {"field":"apps","table":"inventory_sw_apps","primary_key":[`+key+`],
		   "columns":[{"field":"name"},{"field":"source"},{"field":"version"}],"track_history":true},
		  {"field":"disks","table":"inventory_sw_disks","primary_key":["name"],
		   "columns":[{"field":"name"},{"field":"size","type":"integer"}],"track_history":true}],
		  "history_scalars": ["os_version"]}`)
	}
	specs := []*kanade.InventoryHint{hint(`"name","source"`), hint(`"source","name"`), hint(`"name"`), hint(`"version","name"`)}
	names := []string{"Chrome", "Chrome ", "chrome", `Ch"rome`, `a\b`, "line\u2028sep", "tab\there", "日本語", "\ufffd",
		"bad\xff\xfeutf8", "\xff", "x<y&z>", "Chrome,", "Chrome}", "Chrome~", "", "{\"name\":", "'; DROP TABLE inventory_history; --"}
	quote := func(s string) string {
		if !utf8.ValidString(s) {
			return `"` + s + `"` // as an agent may send it: the bytes, not U+FFFD
		}
		b, _ := json.Marshal(s)
		return string(b)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 16 {
		spec := specs[round/4]
		var batch []storage.Result
		for pc := range 5 {
			var apps, disks []string
			for _, n := range names {
				if rng.IntN(3) != 0 {
					apps = append(apps, fmt.Sprintf(`{"name":%s,"source":%s,"version":"%d"}`, quote(n), quote([]string{"x64", "x86", n}[rng.IntN(3)]), rng.IntN(2)))
				}
				if rng.IntN(4) == 0 {
					disks = append(disks, fmt.Sprintf(`{"name":%s,"size":%d}`, quote(n), rng.IntN(3)))
				}
			}
			stdout := fmt.Sprintf(`{"os_version":"%d","apps":[%s],"disks":[%s]}`, rng.IntN(2), strings.Join(apps, ","), strings.Join(disks, ","))
			batch = append(batch, invResult(fmt.Sprintf("k-%d-%d", round, pc), fmt.Sprintf("PC-%d", pc), round*60, stdout, spec))
		}
		applyInv(t, db, batch...)
	}
	all, err := db.InventoryHistory(ctx, storage.HistoryQuery{JobID: "inventory-sw", Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	firstKeys := map[string]bool{}
	for _, e := range all {
		if e.IdentityJSON != nil {
			k, _, _ := strings.Cut(strings.TrimPrefix(*e.IdentityJSON, `{"`), `"`)
			firstKeys[e.FieldPath+"."+k] = true
		}
	}
	if len(all) < 500 || len(all) == 5000 || len(firstKeys) != 4 {
		t.Fatalf("%d events, identities by field and first key %v: want 4 (apps by name, source and version; disks by name)", len(all), firstKeys)
	}
	matched := 0
	for _, n := range names {
		for _, q := range []storage.HistoryQuery{
			{Identity: []storage.IdentityMatch{{"name", n}}},
			{Field: "apps", Identity: []storage.IdentityMatch{{"name", n}}},
			{Field: "disks", Identity: []storage.IdentityMatch{{"name", n}}, Kind: "added"},
			{Field: "apps", Identity: []storage.IdentityMatch{{"source", n}}},
			{Identity: []storage.IdentityMatch{{"source", "x64"}, {"name", n}}, Since: invBase.Add(3 * time.Hour)},
			{Field: "apps", Identity: []storage.IdentityMatch{{"version", "1"}, {"name", n}}},
			{Field: "os_version", Identity: []storage.IdentityMatch{{"name", n}}},
			{Field: "nope", Identity: []storage.IdentityMatch{{"name", n}}},
		} {
			q.JobID, q.Limit = "inventory-sw", 5000
			want := []kanade.InventoryHistoryEvent{}
			for _, e := range all {
				if historyMatch(e, q) {
					want = append(want, e)
				}
			}
			matched += len(want)
			got, err := db.InventoryHistory(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, cmpEmpty); diff != "" {
				t.Errorf("%q: %+v (-reference +query):\n%s", n, q, diff)
			}
			pcs := map[string]bool{}
			for _, e := range want {
				pcs[e.PCID] = true
			}
			first, err := db.InventoryFirstSeen(ctx, q)
			if err != nil || len(first) != len(pcs) {
				t.Errorf("%q: %+v: first seen of %d PCs, %d matched: %v", n, q, len(first), len(pcs), err)
			}
		}
	}
	if matched < 1000 {
		t.Errorf("only %d events matched in all: the queries test little", matched)
	}
	// The search reads the prescribed index's ranges, never the whole
	// history, and chooses its page from the index entries alone.
	plans, err := storage.HistoryQueryPlansForTest(ctx, db, storage.HistoryQuery{JobID: "inventory-sw", Limit: 10,
		Identity: []storage.IdentityMatch{{"name", "Chrome"}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, plan := range plans {
		joined := strings.Join(plan, "\n")
		using := "USING INDEX"
		if name == "search" {
			using = "USING COVERING INDEX"
		}
		if strings.Count(joined, using+" inventory_history_job_field_identity (job_id=? AND field_path=? AND identity_json>? AND identity_json<?)") != 4 ||
			strings.Contains(joined, "SCAN inventory_history") {
			t.Errorf("%s plan:\n%s", name, joined)
		}
	}
}
