package storage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// swSpec is fleet.md §5.2's example hint, with a real column.
func swSpec(t testing.TB) *kanade.InventoryHint {
	t.Helper()
	return mustHint(t, `{
	  "display": [{"field":"hostname","label":"Host"},{"field":"ram_bytes","label":"RAM","type":"bytes"}],
	  "summary": [{"field":"hostname","label":"Host"}],
	  "explode": [{"field":"apps","table":"inventory_sw_apps","primary_key":["name","source"],
	               "columns":[{"field":"name","index":true},{"field":"source","type":"text"},
	                          {"field":"version"},{"field":"size_kb","type":"integer"},{"field":"score","type":"real"}],
	               "track_history":true}],
	  "history_scalars": ["os_version","ram_bytes"]}`)
}

func mustHint(t testing.TB, hint string) *kanade.InventoryHint {
	t.Helper()
	m := kanade.Manifest{ID: "inventory-sw", Version: "1", Execute: kanade.Execute{Shell: "sh", Script: "x", Timeout: "1m"},
		Inventory: json.RawMessage(hint)}
	h, err := m.InventorySpec()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

var invBase = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// invResult is a successful run of inventory-sw on pc, recorded at minute
// min past invBase, whose stdout is stdout.
func invResult(id, pc string, min int, stdout string, spec *kanade.InventoryHint) storage.Result {
	exit := int64(0)
	at := invBase.Add(time.Duration(min) * time.Minute)
	return storage.Result{ExecResult: kanade.ExecResult{ResultID: id, RequestID: "q-" + id, PcID: pc, ExitCode: &exit,
		StartedAt: kanade.Timestamp{Time: at.Add(-time.Second)}, FinishedAt: kanade.Timestamp{Time: at},
		ManifestID: "inventory-sw", Stdout: stdout},
		RecordedAt: at.Add(time.Second), Inventory: storage.PrepareInventory(spec, stdout)}
}

func applyInv(t testing.TB, db *storage.DB, rs ...storage.Result) storage.ApplyStats {
	t.Helper()
	ctx := context.Background()
	var st storage.ApplyStats
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		var err error
		st, err = tx.ApplyResults(ctx, rs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

func invRows(t testing.TB, db *storage.DB, q string, args ...any) [][]any {
	t.Helper()
	out, err := storage.RowsForTest(context.Background(), db, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// invEvent is an inventory_history row without its id.
type invEvent struct {
	PC, Field, Identity, Kind, Before, After, Observed string
}

func invHistory(t testing.TB, db *storage.DB) []invEvent {
	t.Helper()
	var out []invEvent
	for _, r := range invRows(t, db, `SELECT pc_id, field_path, COALESCE(identity_json, ''), change_kind,
		COALESCE(before_json, ''), COALESCE(after_json, ''), observed_at FROM inventory_history ORDER BY id`) {
		out = append(out, invEvent{r[0].(string), r[1].(string), r[2].(string), r[3].(string), r[4].(string), r[5].(string), r[6].(string)})
	}
	return out
}

// setEvents is the brute-force history of one explode set of one PC: the
// events that turn its stored rows into next (identity → value JSON, both),
// sorted by identity as the projection logs them.
func setEvents(pc, field, observed string, rows, next map[string]string) []invEvent {
	var evs []invEvent
	for id, v := range next {
		switch old, had := rows[id]; {
		case !had:
			evs = append(evs, invEvent{pc, field, id, "added", "", v, observed})
		case old != v:
			evs = append(evs, invEvent{pc, field, id, "changed", old, v, observed})
		}
	}
	for id, v := range rows {
		if _, ok := next[id]; !ok {
			evs = append(evs, invEvent{pc, field, id, "removed", v, "", observed})
		}
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Identity < evs[j].Identity })
	return evs
}

func report(os string, ram int, apps ...string) string {
	return fmt.Sprintf(`{"hostname":"pc","os_version":%q,"ram_bytes":%d,"apps":[%s]}`, os, ram, strings.Join(apps, ","))
}

func TestInventoryProjectsFactsRowsAndHistory(t *testing.T) {
	db := storagetest.Open(t, nil)
	spec := swSpec(t)
	chrome := `{"name":"Chrome","source":"x64","version":"120","size_kb":1000,"score":1.5}`
	st := applyInv(t, db, invResult("r1", "PC-1", 0, report("11", 8, chrome, `{"name":"Zoom","source":"x64","version":"5","size_kb":"200"}`), spec))
	if st.Inserted != 1 || st.Inventory.Projected != 1 || st.Inventory.Events != 4 {
		t.Fatalf("first report: %+v", st)
	}
	got := invRows(t, db, `SELECT pc_id, job_id, collected_at, name, source, version, size_kb, score FROM inventory_sw_apps ORDER BY name`)
	want := [][]any{
		{"PC-1", "inventory-sw", "2026-06-01T00:00:00.000000000Z", "Chrome", "x64", "120", int64(1000), 1.5},
		{"PC-1", "inventory-sw", "2026-06-01T00:00:00.000000000Z", "Zoom", "x64", "5", int64(200), nil},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("derived rows (-want +got):\n%s", diff)
	}
	facts := invRows(t, db, `SELECT facts_json, display_json, summary_json, collected_at, recorded_at, explode_sig IS NOT NULL FROM inventory_facts`)
	if len(facts) != 1 || !strings.Contains(facts[0][0].(string), `"Zoom"`) || facts[0][2] != `[{"field":"hostname","label":"Host"}]` ||
		facts[0][4] != "2026-06-01T00:00:01.000000000Z" || facts[0][5] != int64(1) {
		t.Errorf("facts = %v", facts)
	}

	// A week later: Chrome updated, Zoom gone, Slack new, RAM doubled.
	week := report("11", 16, strings.Replace(chrome, `"120"`, `"121"`, 1), `{"name":"Slack","source":"user","version":"4"}`)
	applyInv(t, db, invResult("r2", "PC-1", 7*24*60, week, spec))
	const t1, t2 = "2026-06-01T00:00:01.000000000Z", "2026-06-08T00:00:01.000000000Z"
	wantEvents := []invEvent{
		{"PC-1", "os_version", "", "added", "", `{"value":"11"}`, t1},
		{"PC-1", "ram_bytes", "", "added", "", `{"value":8}`, t1},
		{"PC-1", "apps", `{"name":"Chrome","source":"x64"}`, "added", "", `{"name":"Chrome","source":"x64","version":"120","size_kb":1000,"score":1.5}`, t1},
		{"PC-1", "apps", `{"name":"Zoom","source":"x64"}`, "added", "", `{"name":"Zoom","source":"x64","version":"5","size_kb":200,"score":null}`, t1},
		{"PC-1", "ram_bytes", "", "changed", `{"value":8}`, `{"value":16}`, t2},
		{"PC-1", "apps", `{"name":"Chrome","source":"x64"}`, "changed",
			`{"name":"Chrome","source":"x64","version":"120","size_kb":1000,"score":1.5}`,
			`{"name":"Chrome","source":"x64","version":"121","size_kb":1000,"score":1.5}`, t2},
		{"PC-1", "apps", `{"name":"Slack","source":"user"}`, "added", "", `{"name":"Slack","source":"user","version":"4","size_kb":null,"score":null}`, t2},
		{"PC-1", "apps", `{"name":"Zoom","source":"x64"}`, "removed", `{"name":"Zoom","source":"x64","version":"5","size_kb":200,"score":null}`, "", t2},
	}
	if diff := cmp.Diff(wantEvents, invHistory(t, db)); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}

	// The same report again (a new run): nothing to log, rows only move
	// to the new collected_at.
	st = applyInv(t, db, invResult("r3", "PC-1", 8*24*60, week, spec))
	if st.Inventory.Unchanged != 1 || st.Inventory.Events != 0 {
		t.Errorf("unchanged report: %+v", st.Inventory)
	}
	if n := len(invHistory(t, db)); n != len(wantEvents) {
		t.Errorf("history grew to %d events on an unchanged report", n)
	}
	// The rows are left alone (they keep the time they were written); the
	// search serves the PC's collected_at, the new report's.
	if got := invRows(t, db, `SELECT DISTINCT collected_at FROM inventory_sw_apps`); len(got) != 1 || got[0][0] != "2026-06-08T00:00:00.000000000Z" {
		t.Errorf("rows' collected_at after an unchanged report: %v", got)
	}
	found, err := db.SearchInventory(context.Background(), "inventory-sw", &spec.Explode[0], nil, 10, 0)
	if err != nil || len(found) != 2 || !strings.Contains(string(found[0]), `"collected_at":"2026-06-09T00:00:00.000000000Z"`) {
		t.Errorf("search after an unchanged report: %s %v", found, err)
	}
	// Other facts change (the RAM), the apps do not: the scalar is
	// logged, the rows are only touched.
	st = applyInv(t, db, invResult("r4", "PC-1", 9*24*60, strings.Replace(week, `"ram_bytes":16`, `"ram_bytes":32`, 1), spec))
	if st.Inventory.Unchanged != 1 || st.Inventory.Events != 1 {
		t.Errorf("report with new facts and the same rows: %+v", st.Inventory)
	}
	if h := invHistory(t, db); h[len(h)-1].Field != "ram_bytes" || h[len(h)-1].After != `{"value":32}` {
		t.Errorf("last event %+v", h[len(h)-1])
	}
}

func TestInventoryStaleAndReplayedResultsNeverOverwrite(t *testing.T) {
	db := storagetest.Open(t, nil)
	spec := swSpec(t)
	older := invResult("r-old", "PC-1", 0, report("10", 8, `{"name":"Old","source":"x"}`), spec)
	newer := invResult("r-new", "PC-1", 60, report("11", 8, `{"name":"New","source":"x"}`), spec)

	st := applyInv(t, db, newer, older)
	if st.Inventory.Projected != 1 || st.Inventory.Stale != 1 {
		t.Fatalf("newer then older in one batch: %+v", st.Inventory)
	}
	st = applyInv(t, db, older)
	if st.Inventory.Projected != 0 || st.Unchanged != 1 {
		t.Fatalf("the older result again: %+v", st)
	}
	// The stale run row landed all the same.
	if n := invRows(t, db, `SELECT COUNT(*) FROM execution_results`)[0][0]; n != int64(2) {
		t.Errorf("%v run rows", n)
	}
	if got := invRows(t, db, `SELECT name FROM inventory_sw_apps`); len(got) != 1 || got[0][0] != "New" {
		t.Errorf("rows after a stale report: %v", got)
	}
	before := invHistory(t, db)
	// A redelivered batch of already applied runs writes no history twice.
	for range 3 {
		applyInv(t, db, newer, older, newer)
	}
	if diff := cmp.Diff(before, invHistory(t, db)); diff != "" {
		t.Errorf("history changed on redelivery:\n%s", diff)
	}
	if facts := invRows(t, db, `SELECT facts_json, recorded_at FROM inventory_facts`); facts[0][0] != newer.Stdout {
		t.Errorf("facts = %v", facts)
	}

	// A running row (the started event first) gets its inventory once the
	// result lands, and a reaped run's late result is projected too.
	ctx := context.Background()
	late := invResult("r-late", "PC-2", 120, report("12", 4, `{"name":"A","source":"x"}`), spec)
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.ApplyStarted(ctx, []storage.Started{{EventStarted: kanade.EventStarted{ResultID: "r-late", PcID: "PC-2",
			StartedAt: late.StartedAt, ManifestID: "inventory-sw"}, RecordedAt: late.RecordedAt.Add(-time.Second)}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if st := applyInv(t, db, late); st.Updated != 1 || st.Inventory.Projected != 1 {
		t.Errorf("result after started: %+v", st)
	}
}

func TestInventoryStdoutThatIsNotAnObject(t *testing.T) {
	db := storagetest.Open(t, nil)
	spec := swSpec(t)
	for i, stdout := range []string{"", "hello", `{"apps":[`, `[1,2]`, `"str"`, `null`, strings.Repeat("[", 20000) + strings.Repeat("]", 20000)} {
		r := invResult(fmt.Sprintf("r%d", i), "PC-1", i, stdout, spec)
		st := applyInv(t, db, r)
		if st.Inserted != 1 || st.Inventory.Invalid != 1 || len(st.Inventory.Issues) != 1 || st.Inventory.Issues[0].Step != "parse" {
			t.Errorf("stdout %.20q: %+v", stdout, st)
		}
	}
	if n := invRows(t, db, `SELECT COUNT(*) FROM inventory_facts`)[0][0]; n != int64(0) {
		t.Errorf("%v facts rows", n)
	}
	// A failed or skipped run is no report at all.
	failed := invResult("f", "PC-1", 99, report("1", 1), spec)
	*failed.ExitCode = 1
	skipped := invResult("s", "PC-1", 99, report("1", 1), spec)
	skipped.Skipped = true
	if st := applyInv(t, db, failed, skipped); !cmp.Equal(st.Inventory, storage.InventoryStats{}) {
		t.Errorf("failed and skipped runs: %+v", st.Inventory)
	}
	// A BOM is dropped; surrounding white space is fine.
	bom := invResult("bom", "PC-1", 100, "\ufeff\r\n"+report("1", 1)+"\r\n", spec)
	if st := applyInv(t, db, bom); st.Inventory.Projected != 1 {
		t.Errorf("stdout with a BOM: %+v", st.Inventory)
	}
}

func TestInventoryHostileNamesAndValues(t *testing.T) {
	db := storagetest.Open(t, nil)
	spec := swSpec(t)
	hostile := []string{`'; DROP TABLE agents; --`, `"; DELETE FROM inventory_facts; --`, `Robert'); DROP TABLE inventory_sw_apps;--`,
		`%_\`, "tab\tnew\nline", "\u0000nul", `{"nested":"json"}`, strings.Repeat("é", 5000)}
	var apps []string
	for _, h := range hostile {
		b, _ := json.Marshal(map[string]any{"name": h, "source": h, "version": h, "size_kb": h, "score": h,
			`weird"key; DROP TABLE x`: 1})
		apps = append(apps, string(b))
	}
	// Deep nesting inside a value is kept as its JSON text.
	deep := strings.Repeat(`{"a":`, 3000) + "1" + strings.Repeat("}", 3000)
	apps = append(apps, `{"name":"deep","source":"x","version":`+deep+`}`)
	// Values of every JSON type in every column kind.
	apps = append(apps, `{"name":"types","source":"x","version":12.50,"size_kb":true,"score":[1,"a"]}`,
		`{"name":"numbers","source":"x","version":1e3,"size_kb":2.5,"score":"3.25"}`,
		`{"name":"big","source":"x","size_kb":1e30,"score":1e999}`,
		`{"name":"integral","source":"x","size_kb":4.0,"score":7}`,
		// No primary key, not an object, a duplicate key: skipped.
		`{"name":"nokey"}`, `{"name":null,"source":"x"}`, `"string"`, `[1]`, `{"name":"types","source":"x","version":"dup"}`)
	stdout := `{"hostname":"h","os_version":"'; DROP TABLE x;--","apps":[` + strings.Join(apps, ",") + `]}`
	st := applyInv(t, db, invResult("r1", "PC-1", 0, stdout, spec))
	if st.Inventory.Projected != 1 || st.Inventory.Skipped != 5 || st.Inventory.Failed != 0 {
		t.Fatalf("stats %+v", st.Inventory)
	}
	got := map[string][]any{}
	for _, r := range invRows(t, db, `SELECT name, version, size_kb, score FROM inventory_sw_apps`) {
		got[r[0].(string)] = r[1:]
	}
	for _, h := range hostile {
		want := []any{h, h, h}
		if diff := cmp.Diff(want, got[h]); diff != "" {
			t.Errorf("value %.30q (-want +got):\n%s", h, diff)
		}
	}
	for name, want := range map[string][]any{
		"deep":     {deep, nil, nil},
		"types":    {"12.50", "true", `[1,"a"]`},
		"numbers":  {"1e3", nil, 3.25},
		"big":      {nil, nil, nil},
		"integral": {nil, int64(4), 7.0},
	} {
		if diff := cmp.Diff(want, got[name]); diff != "" {
			t.Errorf("row %s (-want +got):\n%s", name, diff)
		}
	}
	if len(got) != len(hostile)+5 {
		t.Errorf("%d rows", len(got))
	}
	// Nothing was dropped or deleted by a value.
	for _, table := range []string{"agents", "inventory_facts", "inventory_sw_apps"} {
		if n := invRows(t, db, `SELECT COUNT(*) FROM sqlite_master WHERE name = ?`, table)[0][0]; n != int64(1) {
			t.Errorf("table %s: %v", table, n)
		}
	}

	// Reporting it again logs nothing: what is compared is what SQLite
	// stored, so affinity and duplicates cannot make phantom changes.
	before := len(invHistory(t, db))
	st = applyInv(t, db, invResult("r2", "PC-1", 1, strings.Replace(stdout, `"hostname":"h"`, `"hostname":"h2"`, 1), spec))
	if st.Inventory.Events != 0 || len(invHistory(t, db)) != before {
		t.Errorf("a report with the same rows logged %d events", st.Inventory.Events)
	}
}

func TestInventoryLargeArrays(t *testing.T) {
	storagetest.AnswersOnly(t)
	db := storagetest.Open(t, nil)
	spec := swSpec(t)
	var apps []string
	for i := range 10000 {
		apps = append(apps, fmt.Sprintf(`{"name":"app-%05d","source":"x64","version":"1.%d","size_kb":%d,"score":%d.5}`, i, i, i, i))
	}
	st := applyInv(t, db, invResult("r1", "PC-1", 0, report("11", 8, apps...), spec))
	if st.Inventory.Projected != 1 || st.Inventory.Events != 10002 {
		t.Fatalf("%+v", st.Inventory)
	}
	apps[5000] = `{"name":"app-05000","source":"x64","version":"2"}`
	st = applyInv(t, db, invResult("r2", "PC-1", 1, report("11", 8, apps[1:]...), spec))
	if st.Inventory.Events != 2 {
		t.Errorf("one change and one removal of 10000: %d events", st.Inventory.Events)
	}
	if n := invRows(t, db, `SELECT COUNT(*) FROM inventory_sw_apps`)[0][0]; n != int64(9999) {
		t.Errorf("%v rows", n)
	}
}

func TestInventoryMissingArrayRemovesTheRows(t *testing.T) {
	db := storagetest.Open(t, nil)
	spec := swSpec(t)
	applyInv(t, db, invResult("r1", "PC-1", 0, report("11", 8, `{"name":"A","source":"x"}`), spec))
	st := applyInv(t, db, invResult("r2", "PC-1", 1, `{"hostname":"pc","apps":"not a list"}`, spec))
	if st.Inventory.Events != 1 {
		t.Errorf("events %d", st.Inventory.Events)
	}
	h := invHistory(t, db)
	if last := h[len(h)-1]; last.Kind != "removed" || last.Identity != `{"name":"A","source":"x"}` {
		t.Errorf("last event %+v", last)
	}
	if n := invRows(t, db, `SELECT COUNT(*) FROM inventory_sw_apps`)[0][0]; n != int64(0) {
		t.Errorf("%v rows", n)
	}
}

func TestInventorySpecChangesBetweenReports(t *testing.T) {
	dsn := storagetest.DSN(t)
	db, err := storage.Open(context.Background(), dsn, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v1 := mustHint(t, `{"display":[],"explode":[{"field":"apps","table":"sw","primary_key":["name"],
		"columns":[{"field":"name"},{"field":"size","type":"text"}],"track_history":true}]}`)
	applyInv(t, db, invResult("r1", "PC-1", 0, `{"apps":[{"name":"A","size":"10","vendor":"V"},{"name":"B","size":"7"}]}`, v1))
	applyInv(t, db, invResult("r1b", "PC-2", 0, `{"apps":[{"name":"A","size":"10"}]}`, v1))

	// A new column (indexed): added to the table; PC-2's rows keep NULL
	// until it reports again.
	v2 := mustHint(t, `{"display":[],"explode":[{"field":"apps","table":"sw","primary_key":["name"],
		"columns":[{"field":"name"},{"field":"size","type":"text"},{"field":"vendor","index":true}],"track_history":true}]}`)
	st := applyInv(t, db, invResult("r2", "PC-1", 1, `{"apps":[{"name":"A","size":"10","vendor":"V"},{"name":"B","size":"7"}]}`, v2))
	if st.Inventory.Failed != 0 || st.Inventory.Projected != 1 {
		t.Fatalf("after adding a column: %+v", st.Inventory)
	}
	want := [][]any{{"PC-1", "A", "10", "V"}, {"PC-1", "B", "7", nil}, {"PC-2", "A", "10", nil}}
	if diff := cmp.Diff(want, invRows(t, db, `SELECT pc_id, name, size, vendor FROM sw ORDER BY pc_id, name`)); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	if n := invRows(t, db, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'idx_sw_vendor'`)[0][0]; n != int64(1) {
		t.Error("no index on the new column")
	}
	// The new column's values count as changes of those rows.
	if h := invHistory(t, db); h[len(h)-1].Kind != "changed" || !strings.Contains(h[len(h)-1].After, `"vendor":"V"`) {
		t.Errorf("last event %+v", h[len(h)-1])
	}

	// A changed type (size becomes an integer) and key (name, vendor):
	// the table is rebuilt; rows the new key refuses (NULL vendor) go,
	// the next report brings them back.
	v3 := mustHint(t, `{"display":[],"explode":[{"field":"apps","table":"sw","primary_key":["name","vendor"],
		"columns":[{"field":"name"},{"field":"size","type":"integer"},{"field":"vendor","index":true}],"track_history":true}]}`)
	st = applyInv(t, db, invResult("r3", "PC-2", 2, `{"apps":[{"name":"A","size":"10","vendor":"W"}]}`, v3))
	if st.Inventory.Failed != 0 {
		t.Fatalf("after a key change: %+v", st.Inventory)
	}
	want = [][]any{{"PC-1", "A", int64(10), "V"}, {"PC-2", "A", int64(10), "W"}}
	if diff := cmp.Diff(want, invRows(t, db, `SELECT pc_id, name, size, vendor FROM sw ORDER BY pc_id, name`)); diff != "" {
		t.Errorf("rows after the rebuild (-want +got):\n%s", diff)
	}
	var pk []string
	for _, r := range invRows(t, db, `SELECT name FROM pragma_table_info('sw') WHERE pk > 0 ORDER BY pk`) {
		pk = append(pk, r[0].(string))
	}
	if diff := cmp.Diff([]string{"pc_id", "job_id", "name", "vendor"}, pk); diff != "" {
		t.Errorf("key after the rebuild: %s", diff)
	}
	// The rebuilt table is searched by its key (INDEXED BY its key's
	// index, renamed with it).
	found, err := db.SearchInventory(context.Background(), "inventory-sw", &v3.Explode[0],
		[]storage.InventoryFilter{{Column: "size", Op: "ge", Value: "10"}}, 10, 0)
	if err != nil || len(found) != 2 {
		t.Errorf("search after the rebuild: %s, %v", found, err)
	}
	// A spec that drops a column: the column stays, the projection goes on.
	v4 := mustHint(t, `{"display":[],"explode":[{"field":"apps","table":"sw","primary_key":["name","vendor"],
		"columns":[{"field":"name"},{"field":"vendor"}]}]}`)
	if st := applyInv(t, db, invResult("r4", "PC-1", 3, `{"apps":[{"name":"C","vendor":"V","size":5}]}`, v4)); st.Inventory.Failed != 0 {
		t.Fatalf("after dropping a column: %+v", st.Inventory)
	}
	if got := invRows(t, db, `SELECT name, size FROM sw WHERE pc_id = 'PC-1'`); len(got) != 1 || got[0][1] != nil {
		t.Errorf("rows %v", got)
	}
	// A second database handle (another worker) with a cache of the older
	// shape follows the table as it is.
	db2, err := storage.Open(context.Background(), dsn, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if st := applyInv(t, db2, invResult("r5", "PC-3", 4, `{"apps":[{"name":"D","size":"1","vendor":"Z"}]}`, v3)); st.Inventory.Failed != 0 {
		t.Errorf("second handle: %+v", st.Inventory)
	}
}

func TestInventoryRefusesTablesThatAreNotItsOwn(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	if err := storage.ExecForTest(ctx, db, `INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES ('PC-9', 'x', 'x')`); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"agents", "execution_results", "Execution_Results", "inventory_facts", "users"} {
		spec := &kanade.InventoryHint{Display: []kanade.DisplayField{}, Explode: []kanade.ExplodeSpec{{Field: "apps", Table: table,
			PrimaryKey: []string{"name"}, Columns: []kanade.ExplodeColumn{{Field: "name"}}}}}
		st := applyInv(t, db, invResult("r-"+table, "PC-9", 0, `{"apps":[{"name":"x"}]}`, spec))
		if st.Inventory.Failed != 1 || len(st.Inventory.Issues) != 1 || !strings.Contains(st.Inventory.Issues[0].Err.Error(), "not an inventory table") {
			t.Errorf("table %s: %+v", table, st.Inventory)
		}
	}
	if n := invRows(t, db, `SELECT COUNT(*) FROM execution_results`)[0][0]; n != int64(5) {
		t.Errorf("run rows %v", n)
	}
	if n := invRows(t, db, `SELECT COUNT(*) FROM agents`)[0][0]; n != int64(1) {
		t.Errorf("agents %v", n)
	}
	// An unchecked spec (one that never went through Validate) is checked
	// again at use time.
	bad := &kanade.InventoryHint{Display: []kanade.DisplayField{}, Explode: []kanade.ExplodeSpec{{Field: "apps", Table: `t"; DROP TABLE agents; --`,
		PrimaryKey: []string{"name"}, Columns: []kanade.ExplodeColumn{{Field: "name"}}}}}
	if st := applyInv(t, db, invResult("r-bad", "PC-9", 1, `{"apps":[{"name":"x"}]}`, bad)); st.Inventory.Failed != 1 {
		t.Errorf("hostile table name: %+v", st.Inventory)
	}
}

func TestInventoryFailedStepIsUndoneAndTheBatchCommits(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	spec := swSpec(t)
	applyInv(t, db, invResult("r1", "PC-1", 0, report("1", 1, `{"name":"A","source":"x"}`), spec))
	if err := storage.ExecForTest(ctx, db, `CREATE TRIGGER boom BEFORE INSERT ON inventory_sw_apps
		WHEN NEW.name = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	st := applyInv(t, db, invResult("r2", "PC-1", 1, report("2", 1, `{"name":"boom","source":"x"}`), spec),
		invResult("r3", "PC-2", 1, report("2", 1, `{"name":"B","source":"x"}`), spec))
	if st.Inserted != 2 || st.Inventory.Failed != 1 || st.Inventory.Projected != 2 {
		t.Fatalf("%+v", st)
	}
	// PC-1's derived rows and their history are as before; its facts are
	// new but marked for a full rewrite.
	if got := invRows(t, db, `SELECT name FROM inventory_sw_apps WHERE pc_id = 'PC-1'`); len(got) != 1 || got[0][0] != "A" {
		t.Errorf("rows %v", got)
	}
	if got := invRows(t, db, `SELECT explode_sig IS NULL FROM inventory_facts WHERE pc_id = 'PC-1'`); got[0][0] != int64(1) {
		t.Errorf("explode_sig not cleared")
	}
	if got := invRows(t, db, `SELECT COUNT(*) FROM inventory_history WHERE field_path = 'apps' AND pc_id = 'PC-1'`); got[0][0] != int64(1) {
		t.Errorf("history %v", got)
	}
	if err := storage.ExecForTest(ctx, db, `DROP TRIGGER boom`); err != nil {
		t.Fatal(err)
	}
	// The same stdout again is rewritten, not skipped as unchanged.
	st = applyInv(t, db, invResult("r4", "PC-1", 2, report("2", 1, `{"name":"boom","source":"x"}`), spec))
	if st.Inventory.Unchanged != 0 || st.Inventory.Events != 2 {
		t.Errorf("after the failure: %+v", st.Inventory)
	}
}

// TestInventoryHistoryMatchesBruteForce projects random report sequences
// (keys appearing, vanishing and changing, duplicates, elements without a
// key, reports out of order) and compares the history with one computed
// here from the payloads alone.
func TestInventoryHistoryMatchesBruteForce(t *testing.T) {
	db := storagetest.Open(t, nil)
	spec := mustHint(t, `{"display":[],"explode":[{"field":"apps","table":"bf","primary_key":["name","arch"],
		"columns":[{"field":"name","index":true},{"field":"arch"},{"field":"ver"},{"field":"kb","type":"integer"},{"field":"r","type":"real"}],
		"track_history":true}],"history_scalars":["os"]}`)
	rng := rand.New(rand.NewPCG(1, 2))
	type elem struct {
		Name, Arch, Ver string
		KB              int64
		R               float64
		noKey           bool
	}
	type model struct {
		recorded int
		rows     map[string]string // identity → value
		os       *string
	}
	models := map[string]*model{}
	var want []invEvent
	seq := 0
	for round := range 40 {
		var batch []storage.Result
		for range 1 + rng.IntN(4) {
			pc := fmt.Sprintf("PC-%d", rng.IntN(4))
			// Mostly newer reports, sometimes one older than the stored.
			min := round*10 + rng.IntN(10)
			if rng.IntN(6) == 0 {
				min -= 25
			}
			var elems []elem
			for range rng.IntN(6) {
				e := elem{Name: fmt.Sprintf("app%d", rng.IntN(6)), Arch: []string{"x64", "x86"}[rng.IntN(2)],
					Ver: fmt.Sprint(rng.IntN(3)), KB: int64(rng.IntN(3)), R: float64(rng.IntN(3)) / 2, noKey: rng.IntN(12) == 0}
				elems = append(elems, e)
			}
			var parts []string
			for _, e := range elems {
				if e.noKey {
					parts = append(parts, fmt.Sprintf(`{"name":%q,"ver":%q}`, e.Name, e.Ver))
					continue
				}
				parts = append(parts, fmt.Sprintf(`{"name":%q,"arch":%q,"ver":%q,"kb":%d,"r":%v}`, e.Name, e.Arch, e.Ver, e.KB, e.R))
			}
			os := fmt.Sprint(rng.IntN(3))
			stdout := `{"apps":[` + strings.Join(parts, ",") + `]`
			withOS := rng.IntN(4) != 0
			if withOS {
				stdout += `,"os":"` + os + `"`
			}
			stdout += "}"
			seq++
			r := invResult(fmt.Sprintf("r%d", seq), pc, min, stdout, spec)
			batch = append(batch, r)

			// The brute-force model, applied in batch order.
			m := models[pc]
			if m == nil {
				m = &model{recorded: -1 << 30, rows: map[string]string{}}
				models[pc] = m
			}
			if min < m.recorded {
				continue
			}
			m.recorded = min
			observed := kanade.FormatTime(r.RecordedAt)
			if withOS {
				switch {
				case m.os == nil:
					want = append(want, invEvent{pc, "os", "", "added", "", `{"value":"` + os + `"}`, observed})
				case *m.os != os:
					want = append(want, invEvent{pc, "os", "", "changed", `{"value":"` + *m.os + `"}`, `{"value":"` + os + `"}`, observed})
				}
			}
			if withOS {
				m.os = &os
			} else {
				m.os = nil // facts without the field: the next report adds it again
			}
			next := map[string]string{}
			for _, e := range elems {
				id := fmt.Sprintf(`{"name":%q,"arch":%q}`, e.Name, e.Arch)
				if e.noKey {
					continue
				}
				if _, dup := next[id]; dup {
					continue
				}
				next[id] = fmt.Sprintf(`{"name":%q,"arch":%q,"ver":%q,"kb":%d,"r":%s}`, e.Name, e.Arch, e.Ver, e.KB, floatJSON(e.R))
			}
			want = append(want, setEvents(pc, "apps", observed, m.rows, next)...)
			m.rows = next
		}
		applyInv(t, db, batch...)
		// A redelivery of the whole batch changes nothing.
		if rng.IntN(3) == 0 {
			applyInv(t, db, batch...)
		}
	}
	if diff := cmp.Diff(want, invHistory(t, db)); diff != "" {
		t.Errorf("history (-brute force +projection):\n%s", diff)
	}
	if len(want) < 100 {
		t.Errorf("only %d events: the test exercises too little", len(want))
	}
	// The derived rows are the model's.
	for pc, m := range models {
		got := map[string]string{}
		for _, r := range invRows(t, db, `SELECT name, arch, ver, kb, r FROM bf WHERE pc_id = ?`, pc) {
			got[fmt.Sprintf(`{"name":%q,"arch":%q}`, r[0], r[1])] = fmt.Sprintf(`{"name":%q,"arch":%q,"ver":%q,"kb":%d,"r":%s}`,
				r[0], r[1], r[2], r[3], floatJSON(r[4].(float64)))
		}
		if diff := cmp.Diff(m.rows, got); diff != "" {
			t.Errorf("%s rows (-model +db):\n%s", pc, diff)
		}
	}
}

func floatJSON(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

// TestInventoryKeysEqualOnlyAfterAffinity: 1 and "1" are one key of an
// integer column; the first element wins whether the PC's rows are
// inserted or rewritten in place, and reporting the same again logs
// nothing.
func TestInventoryKeysEqualOnlyAfterAffinity(t *testing.T) {
	db := storagetest.Open(t, nil)
	spec := mustHint(t, `{"display":[],"explode":[{"field":"items","table":"aff","primary_key":["id"],
		"columns":[{"field":"id","type":"integer"},{"field":"v"}],"track_history":true}]}`)
	stdout := `{"items":[{"id":1,"v":"a"},{"id":"1","v":"b"},{"id":2.0,"v":"c"},{"id":"2","v":"d"}]}`
	for i := range 3 {
		st := applyInv(t, db, invResult(fmt.Sprintf("a%d", i), "PC-1", i, strings.Replace(stdout, `"c"`, fmt.Sprintf(`"c%d"`, i%2), 1), spec))
		if st.Inventory.Skipped != 2 {
			t.Errorf("report %d: %+v", i, st.Inventory)
		}
		want := [][]any{{int64(1), "a"}, {int64(2), fmt.Sprintf("c%d", i%2)}}
		if diff := cmp.Diff(want, invRows(t, db, `SELECT id, v FROM aff ORDER BY id`)); diff != "" {
			t.Errorf("report %d rows (-want +got):\n%s", i, diff)
		}
	}
	var kinds []string
	for _, e := range invHistory(t, db) {
		kinds = append(kinds, e.Kind+" "+e.Identity)
	}
	if diff := cmp.Diff([]string{`added {"id":1}`, `added {"id":2}`, `changed {"id":2}`, `changed {"id":2}`}, kinds); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
}

// TestInventorySetsChangeApart: each explode set is skipped only when its
// own rows are unchanged (disks change in every report, apps now and then;
// one signature for both made every report rewrite its apps), and after
// every report both tables hold exactly that report's rows.
func TestInventorySetsChangeApart(t *testing.T) {
	db := storagetest.Open(t, nil)
	spec := mustHint(t, `{"display":[],"explode":[
		{"field":"apps","table":"sa","primary_key":["name"],"columns":[{"field":"name"},{"field":"ver"}],"track_history":true},
		{"field":"disks","table":"sd","primary_key":["id"],"columns":[{"field":"id"},{"field":"free","type":"integer"}]}]}`)
	rng := rand.New(rand.NewPCG(3, 4))
	apps, disks := map[string]string{"a": "1"}, map[string]int64{"C:": 10}
	render := func() string {
		var a, d []string
		for _, k := range slices.Sorted(maps.Keys(apps)) {
			a = append(a, fmt.Sprintf(`{"name":%q,"ver":%q}`, k, apps[k]))
		}
		for _, k := range slices.Sorted(maps.Keys(disks)) {
			d = append(d, fmt.Sprintf(`{"id":%q,"free":%d}`, k, disks[k]))
		}
		return `{"apps":[` + strings.Join(a, ",") + `],"disks":[` + strings.Join(d, ",") + `]}`
	}
	unchanged := 0
	for round := range 60 {
		switch rng.IntN(4) {
		case 0: // an app moves, comes or goes
			k := fmt.Sprintf("%c", 'a'+rng.IntN(4))
			if rng.IntN(3) == 0 {
				delete(apps, k)
			} else {
				apps[k] = fmt.Sprint(rng.IntN(5))
			}
		case 1: // a disk's free space
			k := []string{"C:", "D:"}[rng.IntN(2)]
			disks[k] = int64(rng.IntN(5))
		case 2: // both
			apps["a"] = fmt.Sprint(rng.IntN(5))
			disks["C:"] = int64(rng.IntN(5))
		}
		st := applyInv(t, db, invResult(fmt.Sprintf("r%d", round), "PC-1", round, render(), spec))
		unchanged += st.Inventory.Unchanged
		var gotApps []string
		for _, r := range invRows(t, db, `SELECT name, ver FROM sa WHERE pc_id = 'PC-1' ORDER BY name`) {
			gotApps = append(gotApps, fmt.Sprintf("%s=%s", r[0], r[1]))
		}
		var wantApps []string
		for _, k := range slices.Sorted(maps.Keys(apps)) {
			wantApps = append(wantApps, k+"="+apps[k])
		}
		var gotDisks []string
		for _, r := range invRows(t, db, `SELECT id, free FROM sd WHERE pc_id = 'PC-1' ORDER BY id`) {
			gotDisks = append(gotDisks, fmt.Sprintf("%s=%d", r[0], r[1]))
		}
		var wantDisks []string
		for _, k := range slices.Sorted(maps.Keys(disks)) {
			wantDisks = append(wantDisks, fmt.Sprintf("%s=%d", k, disks[k]))
		}
		if diff := cmp.Diff(wantApps, gotApps); diff != "" {
			t.Fatalf("round %d: apps (-report +table):\n%s", round, diff)
		}
		if diff := cmp.Diff(wantDisks, gotDisks); diff != "" {
			t.Fatalf("round %d: disks (-report +table):\n%s", round, diff)
		}
	}
	if unchanged == 0 {
		t.Error("no report was unchanged: the skip went untested")
	}
}

// TestInventoryHistoryScalarsOfEveryShape: history scalars compare with
// the stored report's values whether those are scalars (read from the
// small scalars_json), objects or arrays (read from the stored report),
// another spelling of one value logs nothing, a field the stored report
// lacked is added, and one the new report lacks logs nothing.
func TestInventoryHistoryScalarsOfEveryShape(t *testing.T) {
	db := storagetest.Open(t, nil)
	spec := mustHint(t, `{"display":[],"history_scalars":["os","cpu","tags","n","gone"]}`)
	reports := []string{
		`{"os":"11","cpu":{"cores":4,"model":"i5"},"tags":["a"],"n":1.0,"gone":true}`,
		// Same values, other spellings and member order: nothing.
		`{"n":1.0, "tags":[ "a" ],"cpu":{"model":"i5","cores":4},"os":"\u0031\u0031","gone":true}`,
		// The object and the array change, the number too; gone goes.
		`{"os":"11","cpu":{"cores":8,"model":"i5"},"tags":["a","b"],"n":2}`,
		// gone is back (added again: the stored report lacked it), os is
		// now an object, cpu a scalar.
		`{"os":{"v":"12"},"cpu":"i7","tags":["a","b"],"n":2,"gone":false}`,
		`{"os":{"v":"12"},"cpu":"i7","tags":["a","b"],"n":2,"gone":false}`,
	}
	for i, r := range reports {
		applyInv(t, db, invResult(fmt.Sprintf("s%d", i), "PC-1", i, r, spec))
	}
	var got []string
	for _, e := range invHistory(t, db) {
		got = append(got, fmt.Sprintf("%s %s %s -> %s", e.Field, e.Kind, e.Before, e.After))
	}
	want := []string{
		`os added  -> {"value":"11"}`,
		`cpu added  -> {"value":{"cores":4,"model":"i5"}}`,
		`tags added  -> {"value":["a"]}`,
		`n added  -> {"value":1.0}`,
		`gone added  -> {"value":true}`,
		`cpu changed {"value":{"cores":4,"model":"i5"}} -> {"value":{"cores":8,"model":"i5"}}`,
		`tags changed {"value":["a"]} -> {"value":["a","b"]}`,
		`n changed {"value":1.0} -> {"value":2}`,
		`os changed {"value":"11"} -> {"value":{"v":"12"}}`,
		`cpu changed {"value":{"cores":8,"model":"i5"}} -> {"value":"i7"}`,
		`gone added  -> {"value":false}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
}

// TestInventoryFailureLaterInTheBatch: a batch is first projected under
// one savepoint; a step failing after other reports were projected rolls
// all of them back and projects them again step by step, so the reports
// before and after the failure are written once (rows, history, counts),
// and only the failed step is undone.
func TestInventoryFailureLaterInTheBatch(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	spec := swSpec(t)
	applyInv(t, db, invResult("r0", "PC-0", 0, report("1", 1, `{"name":"A","source":"x"}`), spec))
	if err := storage.ExecForTest(ctx, db, `CREATE TRIGGER boom BEFORE INSERT ON inventory_sw_apps
		WHEN NEW.name = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	st := applyInv(t, db,
		invResult("r1", "PC-0", 1, report("2", 1, `{"name":"A","source":"x","version":"2"}`), spec),
		invResult("r2", "PC-1", 1, report("2", 1, `{"name":"B","source":"x"}`), spec),
		invResult("r3", "PC-2", 1, report("2", 1, `{"name":"boom","source":"x"}`), spec),
		invResult("r4", "PC-3", 1, report("2", 1, `{"name":"C","source":"x"}`), spec))
	// PC-0: os changed + A changed; PC-1 and PC-3: os, ram, app added;
	// PC-2: os, ram (its apps failed).
	if st.Inserted != 4 || st.Inventory.Failed != 1 || st.Inventory.Projected != 4 || st.Inventory.Events != 2+3+2+3 ||
		len(st.Inventory.Issues) != 1 || st.Inventory.Issues[0].PcID != "PC-2" {
		t.Fatalf("%+v", st.Inventory)
	}
	var got []string
	for _, r := range invRows(t, db, `SELECT pc_id, field_path, change_kind, COUNT(*) FROM inventory_history
		GROUP BY pc_id, field_path, change_kind ORDER BY 1, 2, 3`) {
		got = append(got, fmt.Sprint(r...))
	}
	want := []string{"PC-0apps" + "added1", "PC-0appschanged1", "PC-0os_versionadded1", "PC-0os_versionchanged1", "PC-0ram_bytesadded1",
		"PC-1appsadded1", "PC-1os_versionadded1", "PC-1ram_bytesadded1",
		"PC-2os_versionadded1", "PC-2ram_bytesadded1",
		"PC-3appsadded1", "PC-3os_versionadded1", "PC-3ram_bytesadded1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if got := invRows(t, db, `SELECT pc_id, name FROM inventory_sw_apps ORDER BY 1`); len(got) != 3 {
		t.Errorf("rows %v", got)
	}
}

// TestInventorySkippedSetsMatchBruteForce: a set whose text repeats the
// stored one is not typed, read or diffed (setSigs), while the rest of
// the report changes; the history and the rows still equal a brute-force
// model computed from the payloads alone, through out-of-order reports,
// redeliveries and a spec change halfway (a column added that the
// elements carried all along: the same text under the new spec must be
// projected again, so the column fills and every row logs a change).
func TestInventorySkippedSetsMatchBruteForce(t *testing.T) {
	db := storagetest.Open(t, nil)
	const cols = `{"field":"name"},{"field":"ver"},{"field":"kb","type":"integer"}`
	spec1 := mustHint(t, `{"display":[],"explode":[{"field":"apps","table":"sk","primary_key":["name"],"columns":[`+cols+`],
		"track_history":true}],"history_scalars":["free"]}`)
	spec2 := mustHint(t, `{"display":[],"explode":[{"field":"apps","table":"sk","primary_key":["name"],"columns":[`+cols+`,{"field":"pub"}],
		"track_history":true}],"history_scalars":["free"]}`)
	type elem struct {
		Name, Ver, Pub string
		KB             int64
	}
	render := func(e elem, withPub bool) string {
		if !withPub {
			return fmt.Sprintf(`{"name":%q,"ver":%q,"kb":%d}`, e.Name, e.Ver, e.KB)
		}
		pub := "null"
		if e.Pub != "" {
			pub = strconv.Quote(e.Pub)
		}
		return fmt.Sprintf(`{"name":%q,"ver":%q,"kb":%d,"pub":%s}`, e.Name, e.Ver, e.KB, pub)
	}
	type model struct {
		recorded int
		rows     map[string]elem // name → element as stored
		apps     string          // the text of the stored report's array
		free     *string
	}
	rng := rand.New(rand.NewPCG(5, 6))
	models := map[string]*model{}
	var want []invEvent
	seq, unchanged := 0, 0
	spec, withPub := spec1, false
	for round := range 60 {
		if round == 30 {
			// The spec gains a column; the stored rows get NULL in it
			// (ALTER TABLE ADD COLUMN), which the model stores too.
			spec, withPub = spec2, true
			for _, m := range models {
				for k, e := range m.rows {
					e.Pub = ""
					m.rows[k] = e
				}
			}
		}
		var batch []storage.Result
		for range 1 + rng.IntN(4) {
			pc := fmt.Sprintf("PC-%d", rng.IntN(3))
			min := round*10 + rng.IntN(10)
			if rng.IntN(8) == 0 {
				min -= 25 // older than the stored report
			}
			m := models[pc]
			if m == nil {
				m = &model{recorded: -1 << 30, rows: map[string]elem{}}
				models[pc] = m
			}
			var apps string
			if m.apps != "" && rng.IntN(2) == 0 {
				apps = m.apps // the stored report's apps, byte for byte
			} else {
				var parts []string
				for range rng.IntN(5) {
					parts = append(parts, fmt.Sprintf(`{"name":"app%d","ver":"%d","kb":%d,"pub":"p%d"}`,
						rng.IntN(5), rng.IntN(3), rng.IntN(3), rng.IntN(2)))
				}
				apps = "[" + strings.Join(parts, ",") + "]"
			}
			free := fmt.Sprint(rng.IntN(4))
			stdout := `{"free":"` + free + `","apps":` + apps + `}`
			seq++
			r := invResult(fmt.Sprintf("r%d", seq), pc, min, stdout, spec)
			batch = append(batch, r)

			if min < m.recorded {
				continue
			}
			m.recorded = min
			observed := kanade.FormatTime(r.RecordedAt)
			switch {
			case m.free == nil:
				want = append(want, invEvent{pc, "free", "", "added", "", `{"value":"` + free + `"}`, observed})
			case *m.free != free:
				want = append(want, invEvent{pc, "free", "", "changed", `{"value":"` + *m.free + `"}`, `{"value":"` + free + `"}`, observed})
			}
			m.free = &free
			var elems []elem
			if err := json.Unmarshal([]byte(apps), &elems); err != nil {
				t.Fatal(err)
			}
			next := map[string]elem{}
			for _, e := range elems {
				if _, dup := next[e.Name]; !dup {
					if !withPub {
						e.Pub = ""
					}
					next[e.Name] = e
				}
			}
			var evs []invEvent
			id := func(name string) string { return fmt.Sprintf(`{"name":%q}`, name) }
			for name, e := range next {
				old, had := m.rows[name]
				switch {
				case !had:
					evs = append(evs, invEvent{pc, "apps", id(name), "added", "", render(e, withPub), observed})
				case old != e:
					evs = append(evs, invEvent{pc, "apps", id(name), "changed", render(old, withPub), render(e, withPub), observed})
				}
			}
			for name, e := range m.rows {
				if _, ok := next[name]; !ok {
					evs = append(evs, invEvent{pc, "apps", id(name), "removed", render(e, withPub), "", observed})
				}
			}
			sort.Slice(evs, func(i, j int) bool { return evs[i].Identity < evs[j].Identity })
			want = append(want, evs...)
			m.rows, m.apps = next, apps
		}
		st := applyInv(t, db, batch...)
		unchanged += st.Inventory.Unchanged
		if rng.IntN(3) == 0 {
			applyInv(t, db, batch...) // a redelivery changes nothing
		}
	}
	if diff := cmp.Diff(want, invHistory(t, db)); diff != "" {
		t.Errorf("history (-brute force +projection):\n%s", diff)
	}
	if unchanged < 20 || len(want) < 100 {
		t.Errorf("%d unchanged reports, %d events: the test exercises too little", unchanged, len(want))
	}
	for pc, m := range models {
		got := map[string]elem{}
		for _, r := range invRows(t, db, `SELECT name, ver, kb, COALESCE(pub, '') FROM sk WHERE pc_id = ?`, pc) {
			got[r[0].(string)] = elem{Name: r[0].(string), Ver: r[1].(string), KB: r[2].(int64), Pub: r[3].(string)}
		}
		if diff := cmp.Diff(m.rows, got); diff != "" {
			t.Errorf("%s rows (-model +db):\n%s", pc, diff)
		}
	}
}

// TestInventoryRebuildByAnotherJobVoidsSignatures: a table two manifests
// write is rebuilt for one's new key, and the copy drops rows of the
// other (their keys collide under the new key). The other's next report,
// the same text as its last, must write its rows again: the rebuild
// cleared the signatures that vouched for them.
func TestInventoryRebuildByAnotherJobVoidsSignatures(t *testing.T) {
	db := storagetest.Open(t, nil)
	byName := mustHint(t, `{"display":[],"explode":[{"field":"apps","table":"shared","primary_key":["name"],
		"columns":[{"field":"name"},{"field":"arch"}]}]}`)
	byArch := mustHint(t, `{"display":[],"explode":[{"field":"apps","table":"shared","primary_key":["arch"],
		"columns":[{"field":"name"},{"field":"arch"}]}]}`)
	stdout := `{"apps":[{"name":"a","arch":"x64"},{"name":"b","arch":"x64"},{"name":"c","arch":"x86"}]}`
	applyInv(t, db, invResult("r1", "PC-1", 0, stdout, byName))
	other := invResult("r2", "PC-2", 1, `{"apps":[{"name":"z","arch":"arm"}]}`, byArch)
	other.ManifestID = "other-job"
	applyInv(t, db, other)
	// The copy kept one of PC-1's x64 rows.
	if n := invRows(t, db, `SELECT COUNT(*) FROM shared WHERE pc_id = 'PC-1'`)[0][0]; n != int64(2) {
		t.Fatalf("after the rebuild PC-1 has %v rows, want 2 (one x64 row dropped)", n)
	}
	applyInv(t, db, invResult("r3", "PC-1", 2, stdout, byName))
	got := invRows(t, db, `SELECT name FROM shared WHERE pc_id = 'PC-1' ORDER BY name`)
	if diff := cmp.Diff([][]any{{"a"}, {"b"}, {"c"}}, got); diff != "" {
		t.Errorf("PC-1's rows after its next report (-want +got):\n%s", diff)
	}
}
