package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
)

// The inventory projection (fleet.md §5.4), run by ApplyResults inside the
// RESULTS transaction for every run the batch really changed: a redelivered
// or replayed result whose run row is already final changes nothing here
// either, so history is written once per report whatever the stream does.
//
// Each report runs under a savepoint. A step that fails (a derived table
// that cannot be created, a value SQLite refuses) is undone back to its
// savepoint and reported in ApplyStats; the batch goes on, because the run
// row is the unit of redelivery and must land. A failure that took the
// transaction itself down (SQLite rolls back on a full disk or an I/O
// error) shows as a savepoint that no longer exists, and fails the batch.
//
// A report writes only the derived rows that changed (replaceRows), so a
// row's collected_at is when it was last written; the read routes serve
// the PC's collected_at from inventory_facts, which every report sets,
// and so answer what rewriting every row would (fleet.md §5.4 step 5).
//
// Derived tables are created on demand, every identifier checked against
// kanade.ValidSQLIdent again here and double-quoted, every value bound.
// A spec change between two reports is followed: missing columns are added
// (ALTER TABLE ADD COLUMN, as upstream #1492 later does); a changed primary
// key or column type rebuilds the table (copy, drop, rename), keeping the
// rows the new key admits. Derived tables are never dropped otherwise,
// never swept, and only tables listed in inventory_tables are touched.

// InventoryHistoryRetention is how long inventory_history keeps an event.
const InventoryHistoryRetention = 90 * 24 * time.Hour

// InventoryStats says what the inventory projection of a batch did.
type InventoryStats struct {
	// Projected counts reports that replaced a PC's facts; Unchanged
	// those among them whose derived rows were those already stored
	// (same rows, same spec: the derived rows were left alone).
	Projected, Unchanged int
	// Stale counts reports older than the stored one (nothing written).
	Stale int
	// Invalid counts reports whose stdout is not one JSON object.
	Invalid int
	// Failed counts steps that failed and were undone (a report may
	// have several).
	Failed int
	// Events counts history rows written.
	Events int
	// Skipped counts array elements left out (not an object, or without
	// a primary-key value, or a duplicate key).
	Skipped int
	// ByElement and Whole count the changed sets diffed element by
	// element (replaceChanged) and from all their rows (replaceAll).
	ByElement, Whole int
	// Issues describe the invalid and failed reports (at most
	// maxInventoryIssues), for the projector's log.
	Issues []InventoryIssue
}

// InventoryIssue is one report the projection could not (fully) apply.
type InventoryIssue struct {
	ResultID, PcID, JobID string
	// Step names what failed: "parse", "facts", "history_scalars", or
	// "explode <table>".
	Step string
	Err  error
}

const maxInventoryIssues = 20

func (s *InventoryStats) issue(r *Result, step string, err error) {
	if len(s.Issues) < maxInventoryIssues {
		s.Issues = append(s.Issues, InventoryIssue{ResultID: r.ResultID, PcID: r.PcID, JobID: r.ManifestID, Step: step, Err: err})
	}
}

// errTxGone says the transaction was rolled back under a failed step.
var errTxGone = errors.New("inventory: the transaction was rolled back by the database")

// projectInventory projects the reports of rs in order.
//
// Normally without any savepoint. SQLite copies every page first changed
// under an open savepoint into the sub-journal (a temporary file past 64
// KiB, memory allocated a kilobyte at a time with temp_store=MEMORY): a
// savepoint per report and step was a tenth of the projection's time, and
// one around the batch's inventory, still a fifth (bench/ingest -inventory
// 0.1, profiled: pwrite and malloc under subjournalPage). Steps fail
// rarely; when one does, the step's error is errStepFailed, the whole
// transaction is rolled back by Update, and the batch is applied again
// with tx.careful set: each step under its own savepoint, which undoes
// only what failed.
func (tx *Tx) projectInventory(ctx context.Context, rs []*Result, st *InventoryStats) error {
	if len(rs) == 0 {
		return nil
	}
	return tx.projectReports(ctx, rs, st)
}

func (tx *Tx) projectReports(ctx context.Context, rs []*Result, st *InventoryStats) error {
	for _, r := range rs {
		if err := tx.projectReport(ctx, r, st); err != nil {
			return err
		}
	}
	return nil
}

// errStepFailed is what a step's failure becomes outside careful mode:
// Update rolls the transaction back and applies it again, carefully.
var errStepFailed = errors.New("inventory: a step failed; the transaction is applied again step by step")

// savepoint runs fn under a savepoint named name. fn's error is undone and
// returned as failed; fatal is set when the transaction is gone (or ctx
// ended), and the batch must fail. Outside careful mode there is no
// savepoint, and fn's error is fatal (errStepFailed).
func (tx *Tx) savepoint(ctx context.Context, name string, fn func() error) (failed, fatal error) {
	if !tx.careful {
		if err := fn(); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", errStepFailed, name, err)
		}
		return nil, nil
	}
	if _, err := tx.execPrepared(ctx, `SAVEPOINT `+name); err != nil {
		return nil, fmt.Errorf("savepoint %s: %w", name, err)
	}
	err := fn()
	if err == nil {
		if _, rerr := tx.execPrepared(ctx, `RELEASE `+name); rerr != nil {
			return nil, fmt.Errorf("release %s: %w", name, rerr)
		}
		return nil, nil
	}
	if ctx.Err() != nil {
		return nil, errors.Join(ctx.Err(), err)
	}
	if _, rerr := tx.execPrepared(ctx, `ROLLBACK TO `+name); rerr != nil {
		return nil, errors.Join(errTxGone, err, rerr)
	}
	if _, rerr := tx.execPrepared(ctx, `RELEASE `+name); rerr != nil {
		return nil, errors.Join(errTxGone, err, rerr)
	}
	return err, nil
}

// storedFacts is the inventory_facts row a report replaces: its first
// page only (the report itself, facts_json, lies on overflow pages and is
// read only when history scalars need it, see previousScalars).
type storedFacts struct {
	exists     bool
	recordedAt string
	sig        *string
	scalars    *string // scalars_json
}

func (tx *Tx) projectReport(ctx context.Context, r *Result, st *InventoryStats) error {
	rep := r.Inventory
	if rep.Err != nil {
		st.Invalid++
		st.issue(r, "parse", rep.Err)
		return nil
	}
	pc, job := r.PcID, r.ManifestID
	recorded := kanade.FormatTime(r.RecordedAt)
	collected := kanade.FormatTime(r.FinishedAt.Time)

	// Tables first, each under a savepoint of its own and outside the
	// report's: their DDL then only goes away with the whole transaction
	// or their own failure, which keeps the table cache simple (see
	// tableCache).
	broken := make([]bool, len(rep.sets))
	for i, set := range rep.sets {
		if tx.tableReady(set.spec) {
			continue
		}
		failed, fatal := tx.savepoint(ctx, "inventory_table", func() error { return tx.ensureExplodeTable(ctx, set.spec, job) })
		if fatal != nil {
			return fatal
		}
		if failed != nil {
			broken[i] = true
			st.Failed++
			st.issue(r, "explode "+set.spec.Table, failed)
		}
	}

	var stale, unchanged bool
	var same []bool // per set: its stored rows are this report's
	failed, fatal := tx.savepoint(ctx, "inventory_report", func() error {
		var cur storedFacts
		read, err := tx.prepared(ctx, `SELECT recorded_at, explode_sig, scalars_json
			FROM inventory_facts WHERE pc_id = ? AND job_id = ?`)
		if err == nil {
			err = read.QueryRowContext(ctx, pc, job).Scan(&cur.recordedAt, &cur.sig, &cur.scalars)
		}
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("read facts: %w", err)
		default:
			cur.exists = true
		}
		if cur.exists && recorded < cur.recordedAt {
			stale = true
			return nil
		}
		// The previous values of the history scalars, read before the
		// upsert replaces them.
		var prev map[string]json.RawMessage
		if len(rep.scalars) > 0 && cur.exists {
			if prev, err = tx.previousScalars(ctx, rep, cur, pc, job); err != nil {
				return fmt.Errorf("history_scalars: %w", err)
			}
		}
		anyBroken := false
		for _, b := range broken {
			anyBroken = anyBroken || b
		}
		// same[i]: set i's derived rows are those stored (see setSigs).
		same = make([]bool, len(rep.sets))
		if cur.exists {
			same = rep.unchangedSets(cur.sig)
		}
		unchanged = !anyBroken
		for i := range same {
			unchanged = unchanged && same[i]
		}
		sig := any(rep.explodeSig())
		if anyBroken {
			sig = nil
		}
		if _, err := tx.execPrepared(ctx, `INSERT INTO inventory_facts
			(pc_id, job_id, facts_json, display_json, summary_json, collected_at, recorded_at, explode_sig, scalars_json)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (pc_id, job_id) DO UPDATE SET
			    facts_json = excluded.facts_json, display_json = excluded.display_json,
			    summary_json = excluded.summary_json, collected_at = excluded.collected_at,
			    recorded_at = excluded.recorded_at, explode_sig = excluded.explode_sig,
			    scalars_json = excluded.scalars_json
			WHERE excluded.recorded_at >= inventory_facts.recorded_at`,
			pc, job, rep.factsValue(), rep.display, rep.summary, collected, recorded, sig, rep.top); err != nil {
			return fmt.Errorf("upsert facts: %w", err)
		}

		if len(rep.scalars) > 0 {
			events := scalarEvents(rep, prev)
			if _, err := tx.insertHistory(ctx, pc, job, recorded, events); err != nil {
				return fmt.Errorf("history_scalars: %w", err)
			}
			st.Events += len(events)
		}

		for i := range rep.sets {
			if broken[i] {
				continue
			}
			if same[i] {
				continue // the stored rows are this report's
			}
			set := &rep.sets[i]
			var n int
			serr, fatal := tx.savepoint(ctx, "inventory_explode", func() error {
				var err error
				n, err = tx.replaceRows(ctx, set, pc, job, collected, recorded, st)
				return err
			})
			if fatal != nil {
				return &fatalError{fatal}
			}
			if serr != nil {
				st.Failed++
				st.issue(r, "explode "+set.spec.Table, serr)
				tx.forgetTable(set.spec.Table)
				if _, err := tx.tx.ExecContext(ctx, `UPDATE inventory_facts SET explode_sig = NULL WHERE pc_id = ? AND job_id = ?`, pc, job); err != nil {
					return fmt.Errorf("clear explode_sig: %w", err)
				}
				if _, err := tx.tx.ExecContext(ctx, `DELETE FROM inventory_elements WHERE pc_id = ? AND job_id = ?`, pc, job); err != nil {
					return fmt.Errorf("clear element digests: %w", err)
				}
				continue
			}
			st.Events += n
			st.Skipped += set.skipped
		}
		return nil
	})
	var fe *fatalError
	if errors.As(failed, &fe) {
		return fe.err
	}
	switch {
	case fatal != nil:
		return fatal
	case failed != nil:
		st.Failed++
		st.issue(r, "facts", failed)
	case stale:
		st.Stale++
	default:
		st.Projected++
		if unchanged {
			st.Unchanged++
		}
	}
	return nil
}

// fatalError carries a nested savepoint's fatal error out of the outer one.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

func (e *fatalError) Unwrap() error { return e.err }

// previousScalars are the members of the stored facts that rep's history
// scalars compare with (nil when none). They come from scalars_json, the
// stored report's scalar members, a small object on the row's first page;
// the report itself (facts_json: kilobytes on overflow pages, which
// reading and parsing made a fifth of the projection's time) is read only
// when a history scalar the report has is missing there, because the
// stored report lacked it (an added event) or held an object or an array.
func (tx *Tx) previousScalars(ctx context.Context, rep *InventoryReport, cur storedFacts, pc, job string) (map[string]json.RawMessage, error) {
	var prev map[string]json.RawMessage
	if cur.scalars != nil && json.Unmarshal([]byte(*cur.scalars), &prev) == nil {
		complete := true
		for f := range rep.scalars {
			_, ok := prev[f]
			complete = complete && ok
		}
		if complete {
			return prev, nil
		}
	}
	var facts packedText
	if err := tx.tx.QueryRowContext(ctx, `SELECT facts_json FROM inventory_facts WHERE pc_id = ? AND job_id = ?`, pc, job).Scan(&facts); err != nil {
		return nil, fmt.Errorf("read facts: %w", err)
	}
	// Stored facts that no longer parse count as no previous facts.
	prev = nil
	_ = json.Unmarshal([]byte(strings.TrimSpace(facts.String)), &prev)
	return prev, nil
}

// scalarEvents are the history_scalars events of a report (fleet.md §5.4
// step 4) against prev, the previous facts' members (nil: none): added for
// a field prev lacks, changed for a different value; nothing for a
// missing field.
func scalarEvents(rep *InventoryReport, prev map[string]json.RawMessage) []historyEvent {
	var out []historyEvent
	for _, f := range rep.Spec.HistoryScalars {
		v, ok := rep.scalars[f]
		if !ok {
			continue
		}
		after := `{"value":` + v + `}`
		old, had := prev[f]
		switch {
		case !had:
			out = append(out, historyEvent{field: f, kind: "added", after: after})
		case canonicalJSON(old) != v:
			out = append(out, historyEvent{field: f, kind: "changed", before: `{"value":` + canonicalJSON(old) + `}`, after: after})
		}
	}
	return out
}

// historyEvent is one inventory_history row of a report.
type historyEvent struct {
	field, identity, kind, before, after string
}

const historyCols = 8

// insertHistory writes events observed at observed.
func (tx *Tx) insertHistory(ctx context.Context, pc, job, observed string, events []historyEvent) (int, error) {
	per := maxVars / historyCols
	total := len(events)
	for len(events) > 0 {
		n := min(len(events), per)
		args := make([]any, 0, n*historyCols)
		for _, e := range events[:n] {
			args = append(args, pc, job, e.field, nullString(e.identity), e.kind, nullString(e.before), nullString(e.after), observed)
		}
		events = events[n:]
		if _, err := tx.execPrepared(ctx, `INSERT INTO inventory_history
			(pc_id, job_id, field_path, identity_json, change_kind, before_json, after_json, observed_at)
			VALUES `+placeholders(n, historyCols), args...); err != nil {
			return 0, fmt.Errorf("insert %d history events: %w", n, err)
		}
	}
	return total, nil
}

// replaceRows makes the PC's rows of set's table the report's and, with
// track_history, logs the difference. The stored rows are read before and,
// when a written value may have been converted by affinity, again: what
// SQLite stored, after affinity and with duplicate keys counted once, is
// what the events describe.
//
// Only what changed is written: a key no longer reported is deleted, a new
// or different row upserted, an equal row left alone, so a report that
// changes one app of 150 writes one row. A row is left alone only when its
// values are certainly those stored (text in a text column, an integer in
// an integer column, a float in a real column, or NULL); any other value is
// written again, which changes nothing where affinity made it equal. When
// a key itself is uncertain (text in an integer key column), or the PC has
// no rows yet, the PC's rows are deleted and inserted. A row left alone
// keeps the collected_at of the report that wrote it; the read routes serve
// the PC's collected_at from inventory_facts, which every report sets.
//
// With the element digests of the stored rows (inventory_elements.go) the
// set is diffed by element when it can be, else from all its rows
// (replaceAll), after which the digests are the report's.
func (tx *Tx) replaceRows(ctx context.Context, set *explodeSet, pc, job, collected, observed string, st *InventoryStats) (int, error) {
	if old, err := tx.readDigests(ctx, set.spec, pc, job); err != nil {
		return 0, err
	} else if old != nil {
		n, done, err := tx.replaceChanged(ctx, set, old, pc, job, collected, observed)
		if err != nil {
			return 0, err
		}
		if done {
			st.ByElement++
			return n, nil
		}
	}
	n, err := tx.replaceAll(ctx, set, pc, job, collected, observed, st)
	if err != nil {
		return 0, err
	}
	st.Whole++
	return n, tx.writeDigests(ctx, set.spec, pc, job, set.digests, set.clean)
}

// replaceAll is replaceRows from all the set's rows and all the PC's
// stored ones.
func (tx *Tx) replaceAll(ctx context.Context, set *explodeSet, pc, job, collected, observed string, st *InventoryStats) (int, error) {
	spec := set.spec
	set.typeRows()
	table := kanade.QuoteIdent(spec.Table)
	before, err := tx.selectRows(ctx, spec, pc, job)
	if err != nil {
		return 0, err
	}
	keyAt := keyColumns(spec)
	writes, deletes, dups, planned := planRows(spec, keyAt, before, set.rows)
	if !planned {
		writes, deletes, dups = set.rows, nil, 0
		if len(before) > 0 {
			if _, err := tx.tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE "pc_id" = ? AND "job_id" = ?`, pc, job); err != nil {
				return 0, fmt.Errorf("delete rows: %w", err)
			}
		}
	}
	if err := tx.deleteKeys(ctx, spec, keyAt, pc, job, deletes); err != nil {
		return 0, err
	}
	written, err := tx.writeRows(ctx, spec, pc, job, collected, writes, planned)
	if err != nil {
		return 0, err
	}
	if planned {
		st.Skipped += dups
	} else {
		st.Skipped += len(writes) - written
	}
	if !spec.TrackHistory || len(writes) == 0 && len(deletes) == 0 && planned {
		return 0, nil
	}
	// When every written value is stored as bound, what changed is known
	// without reading the rows back: the rows written and deleted, against
	// the stored rows of their keys (the rows left alone are certainly
	// equal, so diffing all 150 of them found nothing more).
	if planned && allCertain(spec, writes) {
		return tx.insertHistory(ctx, pc, job, observed, diffRows(spec, keyAt, touchedRows(keyAt, before, writes, deletes), writes))
	}
	after, err := tx.selectRows(ctx, spec, pc, job)
	if err != nil {
		return 0, err
	}
	return tx.insertHistory(ctx, pc, job, observed, diffRows(spec, keyAt, before, after))
}

// touchedRows are the stored rows (of before) a write or a delete
// touched: the deleted ones and those whose key was written.
func touchedRows(keyAt []int, before, writes, deletes [][]any) [][]any {
	touched := make(map[string]bool, len(writes))
	for _, w := range writes {
		touched[storedKey(keyAt, w)] = true
	}
	old := slices.Clip(deletes)
	for _, r := range before {
		if touched[storedKey(keyAt, r)] {
			old = append(old, r)
		}
	}
	return old
}

// writeRows writes rows of the PC: upserted by key, or, when upsert is
// false (the PC's rows were just deleted), inserted with a repeated key
// ignored. It returns the rows SQLite changed.
func (tx *Tx) writeRows(ctx context.Context, spec *kanade.ExplodeSpec, pc, job, collected string, rows [][]any, upsert bool) (int, error) {
	cols := []string{`"pc_id"`, `"job_id"`, `"collected_at"`}
	update := []string{`"collected_at" = excluded."collected_at"`}
	key := []string{`"pc_id"`, `"job_id"`}
	for _, c := range spec.Columns {
		q := kanade.QuoteIdent(c.Field)
		cols = append(cols, q)
		if !slicesContains(spec.PrimaryKey, c.Field) {
			update = append(update, q+" = excluded."+q)
		}
	}
	for _, k := range spec.PrimaryKey {
		key = append(key, kanade.QuoteIdent(k))
	}
	verb, tail := `INSERT INTO `, ` ON CONFLICT (`+strings.Join(key, ", ")+`) DO UPDATE SET `+strings.Join(update, ", ")
	if !upsert {
		verb, tail = `INSERT OR IGNORE INTO `, ""
	}
	width := len(cols)
	per := maxVars / width
	written := 0
	for rest := rows; len(rest) > 0; {
		n := min(len(rest), per)
		args := make([]any, 0, n*width)
		for _, row := range rest[:n] {
			args = append(args, pc, job, collected)
			args = append(args, row...)
		}
		rest = rest[n:]
		res, err := tx.execPrepared(ctx, verb+kanade.QuoteIdent(spec.Table)+` (`+strings.Join(cols, ", ")+`) VALUES `+placeholders(n, width)+tail, args...)
		if err != nil {
			return 0, fmt.Errorf("write %d rows: %w", n, err)
		}
		if c, err := res.RowsAffected(); err == nil {
			written += int(c)
		}
	}
	return written, nil
}

// allCertain says whether SQLite stores every value of rows as bound (see
// certain).
func allCertain(spec *kanade.ExplodeSpec, rows [][]any) bool {
	for _, r := range rows {
		for j, c := range spec.Columns {
			if _, ok := certain(c.Kind(), r[j]); !ok {
				return false
			}
		}
	}
	return true
}

func slicesContains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// keyColumns are the indexes in spec.Columns of the primary-key fields, in
// key order.
func keyColumns(spec *kanade.ExplodeSpec) []int {
	at := make([]int, 0, len(spec.PrimaryKey))
	for _, k := range spec.PrimaryKey {
		for j, c := range spec.Columns {
			if c.Field == k {
				at = append(at, j)
			}
		}
	}
	return at
}

// certain is the stored form of a value bound into a column of kind, as
// a comparable string, and whether SQLite certainly stores it as bound.
func certain(kind string, v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "n", true
	case string:
		return "s" + x, kind == kanade.ColumnText
	case int64:
		return "i" + strconv.FormatInt(x, 10), kind == kanade.ColumnInteger
	case float64:
		return "f" + strconv.FormatFloat(x, 'g', -1, 64), kind == kanade.ColumnReal
	}
	return "", false
}

// storedForm is certain's string for a value read back from SQLite.
func storedForm(v any) string {
	switch x := v.(type) {
	case nil:
		return "n"
	case string:
		return "s" + x
	case int64:
		return "i" + strconv.FormatInt(x, 10)
	case float64:
		return "f" + strconv.FormatFloat(x, 'g', -1, 64)
	case []byte:
		return "b" + string(x)
	}
	return fmt.Sprintf("?%v", v)
}

// storedKey is a stored row's key as one comparable string.
func storedKey(keyAt []int, vals []any) string {
	var b strings.Builder
	for _, j := range keyAt {
		f := storedForm(vals[j])
		b.WriteString(strconv.Itoa(len(f)))
		b.WriteByte(':')
		b.WriteString(f)
	}
	return b.String()
}

// planRows compares a report's rows with the stored ones: the rows to
// write (new, or not certainly equal), the stored rows whose key is not
// reported (to delete), how many reported rows repeated a key. planned is
// false when a reported key is not certainly its stored form.
func planRows(spec *kanade.ExplodeSpec, keyAt []int, before [][]any, rows [][]any) (writes, deletes [][]any, dups int, planned bool) {
	stored := make(map[string][]any, len(before))
	for _, r := range before {
		stored[storedKey(keyAt, r)] = r
	}
	seen := make(map[string]bool, len(rows))
	for _, r := range rows {
		var b strings.Builder
		for _, j := range keyAt {
			f, ok := certain(spec.Columns[j].Kind(), r[j])
			if !ok {
				return nil, nil, 0, false
			}
			b.WriteString(strconv.Itoa(len(f)))
			b.WriteByte(':')
			b.WriteString(f)
		}
		k := b.String()
		if seen[k] {
			dups++
			continue
		}
		seen[k] = true
		old, ok := stored[k]
		if !ok {
			writes = append(writes, r)
			continue
		}
		for j, c := range spec.Columns {
			if f, ok := certain(c.Kind(), r[j]); !ok || f != storedForm(old[j]) {
				writes = append(writes, r)
				break
			}
		}
	}
	for _, r := range before {
		if !seen[storedKey(keyAt, r)] {
			deletes = append(deletes, r)
		}
	}
	return writes, deletes, dups, true
}

// deleteKeys deletes the PC's rows with the keys of rows (stored rows,
// whose key values are bound exactly as read).
func (tx *Tx) deleteKeys(ctx context.Context, spec *kanade.ExplodeSpec, keyAt []int, pc, job string, rows [][]any) error {
	return byKeys(spec, keyAt, pc, job, rows, func(n int, where string, args []any) error {
		if _, err := tx.execPrepared(ctx, `DELETE FROM `+kanade.QuoteIdent(spec.Table)+where, args...); err != nil {
			return fmt.Errorf("delete %d rows no longer reported: %w", n, err)
		}
		return nil
	})
}

// byKeys calls fn with a WHERE clause matching the PC's rows with the keys
// of rows, and its arguments, for as many rows at a time as one
// statement binds (n).
func byKeys(spec *kanade.ExplodeSpec, keyAt []int, pc, job string, rows [][]any, fn func(n int, where string, args []any) error) error {
	names := make([]string, len(keyAt))
	for i, j := range keyAt {
		names[i] = kanade.QuoteIdent(spec.Columns[j].Field)
	}
	per := (maxVars - 2) / len(keyAt)
	for len(rows) > 0 {
		n := min(len(rows), per)
		args := []any{pc, job}
		for _, r := range rows[:n] {
			for _, j := range keyAt {
				args = append(args, r[j])
			}
		}
		rows = rows[n:]
		if err := fn(n, ` WHERE "pc_id" = ? AND "job_id" = ? AND (`+strings.Join(names, ", ")+`) IN (VALUES `+placeholders(n, len(keyAt))+`)`, args); err != nil {
			return err
		}
	}
	return nil
}

// selectRows reads the PC's rows of spec's table (the spec's columns, in
// spec order) in primary-key order.
func (tx *Tx) selectRows(ctx context.Context, spec *kanade.ExplodeSpec, pc, job string) ([][]any, error) {
	cols := make([]string, len(spec.Columns))
	for i, c := range spec.Columns {
		cols[i] = kanade.QuoteIdent(c.Field)
	}
	order := make([]string, len(spec.PrimaryKey))
	for i, k := range spec.PrimaryKey {
		order[i] = kanade.QuoteIdent(k)
	}
	out, err := tx.queryRows(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM `+kanade.QuoteIdent(spec.Table)+`
		WHERE "pc_id" = ? AND "job_id" = ? ORDER BY `+strings.Join(order, ", "), len(cols), pc, job)
	if err != nil {
		return nil, fmt.Errorf("read rows: %w", err)
	}
	return out, nil
}

// queryRows runs query (prepared once per transaction) and returns its
// rows of width values each (sqlValue).
func (tx *Tx) queryRows(ctx context.Context, query string, width int, args ...any) ([][]any, error) {
	read, err := tx.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := read.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		vals := make([]any, width)
		ptrs := make([]any, width)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i := range vals {
			vals[i] = sqlValue(vals[i])
		}
		out = append(out, vals)
	}
	return out, rows.Err()
}

// sqlValue normalises a scanned value: drivers return text as string or
// []byte.
func sqlValue(v any) any {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return v
}

// jsonObject builds a JSON object with members in the order added.
type jsonObject struct{ b strings.Builder }

func (o *jsonObject) add(k string, v any) {
	if o.b.Len() == 0 {
		o.b.WriteByte('{')
	} else {
		o.b.WriteByte(',')
	}
	o.b.WriteString(marshalText(k))
	o.b.WriteByte(':')
	o.b.WriteString(marshalText(v))
}

func (o *jsonObject) String() string {
	if o.b.Len() == 0 {
		return "{}"
	}
	return o.b.String() + "}"
}

// diffRows is the explode history of fleet.md §5.4 step 5, keyed by the
// primary key: added for a new key, changed when any declared column
// differs, removed for a key no longer reported. identity_json holds the
// key's values, before_json and after_json the declared columns'; events
// come in identity order.
func diffRows(spec *kanade.ExplodeSpec, keyAt []int, before, after [][]any) []historyEvent {
	object := func(r [][]any, i int, cols []int) string {
		var o jsonObject
		for _, j := range cols {
			o.add(spec.Columns[j].Field, r[i][j])
		}
		return o.String()
	}
	all := make([]int, len(spec.Columns))
	for j := range all {
		all[j] = j
	}
	same := func(a, b []any) bool {
		for j := range a {
			if storedForm(a[j]) != storedForm(b[j]) {
				return false
			}
		}
		return true
	}
	old := make(map[string]int, len(before))
	for i, r := range before {
		old[storedKey(keyAt, r)] = i
	}
	var out []historyEvent
	seen := make(map[string]bool, len(after))
	for i, r := range after {
		k := storedKey(keyAt, r)
		seen[k] = true
		j, had := old[k]
		switch {
		case !had:
			out = append(out, historyEvent{field: spec.Field, identity: object(after, i, keyAt), kind: "added", after: object(after, i, all)})
		case !same(before[j], r):
			out = append(out, historyEvent{field: spec.Field, identity: object(after, i, keyAt), kind: "changed",
				before: object(before, j, all), after: object(after, i, all)})
		}
	}
	for j, r := range before {
		if !seen[storedKey(keyAt, r)] {
			out = append(out, historyEvent{field: spec.Field, identity: object(before, j, keyAt), kind: "removed", before: object(before, j, all)})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].identity < out[j].identity })
	return out
}

// Derived tables.

// tableShape is what the projection knows of a derived table: its columns'
// declared types and its key after pc_id, job_id (names in lower case, as
// SQLite compares them).
type tableShape struct {
	types map[string]string
	key   []string
	// indexed lists the columns with an idx_<table>_<column> index.
	indexed map[string]bool
	// keyIndex names the primary key's index (the table itself, WITHOUT
	// ROWID), which a search names to scan the table in key order.
	keyIndex string
}

// tableCache remembers the derived tables the projection made fit their
// specs, so a report needs no schema query. Entries change only when a
// transaction that made them commits (Tx.tables, merged by Update); a
// table that fails a statement is forgotten and looked at again.
type tableCache struct {
	mu     sync.Mutex
	tables map[string]*tableShape
}

func (c *tableCache) get(name string) *tableShape {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tables[strings.ToLower(name)]
}

// merge takes the shapes a committed transaction established.
func (c *tableCache) merge(p *tablePending) {
	if p == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tables == nil {
		c.tables = map[string]*tableShape{}
	}
	for k, s := range p.tables {
		if s == nil {
			delete(c.tables, k)
		} else {
			c.tables[k] = s
		}
	}
}

// tablePending is what a transaction learnt about derived tables, taken
// into the cache when it commits. A nil shape forgets the table.
type tablePending struct {
	tables map[string]*tableShape
}

func (tx *Tx) pendingTables() *tablePending {
	if tx.tables == nil {
		tx.tables = &tablePending{tables: map[string]*tableShape{}}
	}
	return tx.tables
}

// shape is the known shape of table: this transaction's, else the cache's.
func (tx *Tx) shape(table string) *tableShape {
	k := strings.ToLower(table)
	if tx.tables != nil {
		if s, ok := tx.tables.tables[k]; ok {
			return s
		}
	}
	return tx.cache.get(k)
}

func (tx *Tx) forgetTable(table string) {
	tx.pendingTables().tables[strings.ToLower(table)] = nil
}

// fits reports whether s serves spec as it is: every column there with
// its type, the same key, the index:true columns indexed.
func (s *tableShape) fits(spec *kanade.ExplodeSpec) bool {
	if s == nil || !sameKey(s.key, spec.PrimaryKey) {
		return false
	}
	for _, c := range spec.Columns {
		lc := strings.ToLower(c.Field)
		if s.types[lc] != sqlType(c.Kind()) || c.Index && !s.indexed[lc] {
			return false
		}
	}
	return true
}

func sameKey(have, want []string) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if have[i] != strings.ToLower(want[i]) {
			return false
		}
	}
	return true
}

// sqlType is the declared type of a column kind.
func sqlType(kind string) string {
	switch kind {
	case kanade.ColumnInteger:
		return "INTEGER"
	case kanade.ColumnReal:
		return "REAL"
	}
	return "TEXT"
}

// errNotInventoryTable refuses a spec naming a table that exists but is no
// derived table (agents, users, …).
var errNotInventoryTable = errors.New("the name is taken by a table that is not an inventory table (inventory_tables does not list it)")

// checkSpecIdents applies the identifier rule again at use time.
func checkSpecIdents(spec *kanade.ExplodeSpec) error {
	if !kanade.ValidSQLIdent(spec.Table) || strings.HasPrefix(strings.ToLower(spec.Table), "sqlite_") {
		return fmt.Errorf("table %q: not an allowed SQL identifier", kanade.Clip(spec.Table))
	}
	for _, c := range spec.Columns {
		if !kanade.ValidSQLIdent(c.Field) {
			return fmt.Errorf("table %s: column %q: not an SQL identifier", spec.Table, kanade.Clip(c.Field))
		}
		switch strings.ToLower(c.Field) {
		case "pc_id", "job_id", "collected_at":
			return fmt.Errorf("table %s: column %q is reserved", spec.Table, c.Field)
		}
	}
	if len(spec.PrimaryKey) == 0 {
		return fmt.Errorf("table %s: no primary key", spec.Table)
	}
	for _, k := range spec.PrimaryKey {
		if _, ok := spec.Column(k); !ok {
			return fmt.Errorf("table %s: key %q is not a declared column", spec.Table, kanade.Clip(k))
		}
	}
	return nil
}

// tableReady reports whether spec's table is known to fit spec, so the
// report needs no schema work.
func (tx *Tx) tableReady(spec *kanade.ExplodeSpec) bool {
	return checkSpecIdents(spec) == nil && tx.shape(spec.Table).fits(spec)
}

// ensureExplodeTable makes spec's table exist and fit spec, registering it
// when it creates it (job is recorded as its creator). What it established
// goes to the transaction's pending shapes only when all of it succeeded.
func (tx *Tx) ensureExplodeTable(ctx context.Context, spec *kanade.ExplodeSpec, job string) error {
	if err := checkSpecIdents(spec); err != nil {
		return err
	}
	s := tx.shape(spec.Table)
	if !s.fits(spec) {
		var err error
		if s, err = tx.fitTable(ctx, spec, job); err != nil {
			return fmt.Errorf("table %s: %w", spec.Table, err)
		}
	}
	tx.pendingTables().tables[strings.ToLower(spec.Table)] = s
	return nil
}

// fitTable creates, alters or rebuilds spec's table after reading what
// the schema holds.
func (tx *Tx) fitTable(ctx context.Context, spec *kanade.ExplodeSpec, job string) (*tableShape, error) {
	s, registered, exists, err := readTableShape(ctx, tx.tx, spec.Table)
	if err != nil {
		return nil, err
	}
	switch {
	case exists && !registered:
		return nil, errNotInventoryTable
	case !exists:
		if s, err = tx.createExplodeTable(ctx, spec, spec.Table, nil); err != nil {
			return nil, err
		}
		if err := tx.createIndexes(ctx, spec, s); err != nil {
			return nil, err
		}
		_, err = tx.tx.ExecContext(ctx, `INSERT INTO inventory_tables (name, job_id, created_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO NOTHING`, spec.Table, job, kanade.FormatTime(tx.now))
		return s, err
	case !sameKey(s.key, spec.PrimaryKey) || typeChanged(s, spec):
		return tx.rebuildExplodeTable(ctx, spec, s)
	default:
		return s, tx.alterExplodeTable(ctx, spec, s)
	}
}

func typeChanged(s *tableShape, spec *kanade.ExplodeSpec) bool {
	for _, c := range spec.Columns {
		if t, ok := s.types[strings.ToLower(c.Field)]; ok && t != sqlType(c.Kind()) {
			return true
		}
	}
	return false
}

// rowQueryer is what readTableShape needs of a transaction or a pool.
type rowQueryer interface {
	queryer
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readTableShape reads table's shape from the schema, whether
// inventory_tables lists it, and whether any schema object has its name.
func readTableShape(ctx context.Context, q rowQueryer, table string) (s *tableShape, registered, exists bool, err error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM inventory_tables WHERE name = ?`, table).Scan(&n); err != nil {
		return nil, false, false, fmt.Errorf("table %s: registry: %w", table, err)
	}
	registered = n > 0
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE lower(name) = lower(?)`, table).Scan(&n); err != nil {
		return nil, false, false, fmt.Errorf("table %s: schema: %w", table, err)
	}
	exists = n > 0
	if !exists || !registered {
		return nil, registered, exists, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT name, type, pk FROM pragma_table_info(?)`, table)
	if err != nil {
		return nil, false, false, fmt.Errorf("table %s: columns: %w", table, err)
	}
	defer rows.Close()
	s = &tableShape{types: map[string]string{}, indexed: map[string]bool{}}
	type keyCol struct {
		pos  int
		name string
	}
	var key []keyCol
	for rows.Next() {
		var name, typ string
		var pk int
		if err := rows.Scan(&name, &typ, &pk); err != nil {
			return nil, false, false, fmt.Errorf("table %s: columns: %w", table, err)
		}
		ln := strings.ToLower(name)
		s.types[ln] = strings.ToUpper(typ)
		if pk > 0 && ln != "pc_id" && ln != "job_id" {
			key = append(key, keyCol{pk, ln})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, false, fmt.Errorf("table %s: columns: %w", table, err)
	}
	sort.Slice(key, func(i, j int) bool { return key[i].pos < key[j].pos })
	for _, k := range key {
		s.key = append(s.key, k.name)
	}
	idx, err := q.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? COLLATE NOCASE`, table)
	if err != nil {
		return nil, false, false, fmt.Errorf("table %s: indexes: %w", table, err)
	}
	defer idx.Close()
	prefix := strings.ToLower(indexName(table, ""))
	for idx.Next() {
		var name string
		if err := idx.Scan(&name); err != nil {
			return nil, false, false, fmt.Errorf("table %s: indexes: %w", table, err)
		}
		if col, ok := strings.CutPrefix(strings.ToLower(name), prefix); ok {
			s.indexed[col] = true
		}

	}
	if err := idx.Err(); err != nil {
		return nil, false, false, fmt.Errorf("table %s: indexes: %w", table, err)
	}
	// A WITHOUT ROWID table's key index is not in sqlite_master.
	err = q.QueryRowContext(ctx, `SELECT name FROM pragma_index_list(?) WHERE origin = 'pk'`, table).Scan(&s.keyIndex)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, false, false, fmt.Errorf("table %s: key index: %w", table, err)
	}
	return s, registered, exists, nil
}

// indexName is idx_<table>_<column> (fleet.md §5.3).
func indexName(table, column string) string { return "idx_" + table + "_" + column }

// createExplodeTable creates a derived table named name for spec, with the
// extra columns of an older table (rebuilds) after spec's.
func (tx *Tx) createExplodeTable(ctx context.Context, spec *kanade.ExplodeSpec, name string, extra []string) (*tableShape, error) {
	// collected_at is TEXT, not fleet.md's TIMESTAMP: that declared type
	// has NUMERIC affinity, and the modernc driver turns a TIMESTAMP
	// column into time.Time on scan; the storage.md layout is text.
	s := &tableShape{types: map[string]string{"pc_id": "TEXT", "job_id": "TEXT", "collected_at": "TEXT"}, indexed: map[string]bool{}}
	defs := []string{`"pc_id" TEXT NOT NULL`, `"job_id" TEXT NOT NULL`, `"collected_at" TEXT`}
	for _, c := range spec.Columns {
		t := sqlType(c.Kind())
		defs = append(defs, kanade.QuoteIdent(c.Field)+" "+t)
		s.types[strings.ToLower(c.Field)] = t
	}
	defs = append(defs, extra...)
	key := []string{`"pc_id"`, `"job_id"`}
	for _, k := range spec.PrimaryKey {
		key = append(key, kanade.QuoteIdent(k))
		s.key = append(s.key, strings.ToLower(k))
	}
	// WITHOUT ROWID: a PC's rows lie together in key order, which is how
	// a report deletes, inserts and reads them; key columns are NOT NULL.
	if _, err := tx.tx.ExecContext(ctx, `CREATE TABLE `+kanade.QuoteIdent(name)+` (`+strings.Join(defs, ", ")+
		`, PRIMARY KEY (`+strings.Join(key, ", ")+`)) WITHOUT ROWID`); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	return s, nil
}

// createIndexes gives every index:true column its idx_<table>_<column>.
func (tx *Tx) createIndexes(ctx context.Context, spec *kanade.ExplodeSpec, s *tableShape) error {
	for _, c := range spec.Columns {
		lc := strings.ToLower(c.Field)
		if !c.Index || s.indexed[lc] {
			continue
		}
		if _, err := tx.tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS `+quoteName(indexName(spec.Table, c.Field))+
			` ON `+kanade.QuoteIdent(spec.Table)+` (`+kanade.QuoteIdent(c.Field)+`)`); err != nil {
			return fmt.Errorf("index %s: %w", c.Field, err)
		}
		s.indexed[lc] = true
	}
	return nil
}

// quoteName double-quotes a name built from checked identifiers (an index
// name may pass 64 characters, so QuoteIdent does not apply).
func quoteName(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// alterExplodeTable adds spec's missing columns and indexes.
func (tx *Tx) alterExplodeTable(ctx context.Context, spec *kanade.ExplodeSpec, s *tableShape) error {
	for _, c := range spec.Columns {
		lc := strings.ToLower(c.Field)
		if _, ok := s.types[lc]; ok {
			continue
		}
		t := sqlType(c.Kind())
		if _, err := tx.tx.ExecContext(ctx, `ALTER TABLE `+kanade.QuoteIdent(spec.Table)+` ADD COLUMN `+kanade.QuoteIdent(c.Field)+` `+t); err != nil {
			return fmt.Errorf("add column %s: %w", c.Field, err)
		}
		s.types[lc] = t
	}
	return tx.createIndexes(ctx, spec, s)
}

// rebuildTable is the scratch name of a table being rebuilt.
const rebuildTable = "kanade_inventory_rebuild"

// rebuildExplodeTable recreates spec's table with spec's key and types:
// the rows are copied (INSERT OR IGNORE, so rows the new key refuses, a
// duplicate or a NULL key, are dropped; the next report of their PC writes
// them again), columns the spec no longer declares are kept.
func (tx *Tx) rebuildExplodeTable(ctx context.Context, spec *kanade.ExplodeSpec, old *tableShape) (*tableShape, error) {
	declared := map[string]bool{"pc_id": true, "job_id": true, "collected_at": true}
	for _, c := range spec.Columns {
		declared[strings.ToLower(c.Field)] = true
	}
	var extra, copyCols []string
	names := make([]string, 0, len(old.types))
	for n := range old.types {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !kanade.ValidSQLIdent(n) {
			continue // not ours: never copied into a statement
		}
		copyCols = append(copyCols, kanade.QuoteIdent(n))
		if !declared[n] {
			extra = append(extra, kanade.QuoteIdent(n)+" "+sqlType(strings.ToLower(old.types[n])))
		}
	}
	if _, err := tx.tx.ExecContext(ctx, `DROP TABLE IF EXISTS `+kanade.QuoteIdent(rebuildTable)); err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	s, err := tx.createExplodeTable(ctx, spec, rebuildTable, extra)
	if err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	for _, e := range extra {
		n, t, _ := strings.Cut(e, " ")
		s.types[strings.ToLower(strings.Trim(n, `"`))] = t
	}
	list := strings.Join(copyCols, ", ")
	for _, q := range []string{
		`INSERT OR IGNORE INTO ` + kanade.QuoteIdent(rebuildTable) + ` (` + list + `) SELECT ` + list + ` FROM ` + kanade.QuoteIdent(spec.Table),
		`DROP TABLE ` + kanade.QuoteIdent(spec.Table),
		`ALTER TABLE ` + kanade.QuoteIdent(rebuildTable) + ` RENAME TO ` + kanade.QuoteIdent(spec.Table),
		// The copy may have dropped or converted rows of any job that
		// writes this table (another manifest's spec may name it), so
		// no stored signature vouches for its rows any longer (setSigs):
		// every PC's next report diffs its sets again.
		`UPDATE inventory_facts SET explode_sig = NULL WHERE explode_sig IS NOT NULL`,
		`DELETE FROM inventory_elements`, // and no element digest either
	} {
		if _, err := tx.tx.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("rebuild: %w", err)
		}
	}
	return s, tx.createIndexes(ctx, spec, s)
}

// dropIdentityIndexes is migration 0027's Go step: it drops the
// inventory_history indexes the projector used to create per tracked key.
func (tx *Tx) dropIdentityIndexes(ctx context.Context) error {
	rows, err := tx.tx.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'inventory_history'
		AND name LIKE 'inventory\_history\_identity\_%' ESCAPE '\'`)
	if err != nil {
		return fmt.Errorf("history identity indexes: %w", err)
	}
	names, err := scanIDs(rows, "history identity indexes")
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, err := tx.tx.ExecContext(ctx, `DROP INDEX IF EXISTS `+quoteName(n)); err != nil {
			return fmt.Errorf("drop %s: %w", n, err)
		}
	}
	return nil
}
