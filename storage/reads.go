package storage

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// The read side of the API (api.md "Read and manage endpoints"): the agent
// roster, runs, executions and the audit log, each as a keyset-paginated list
// and a single-row lookup, all through the read pool.
//
// Keyset, not OFFSET: a page costs the same at row 10 and at row 10 million,
// and rows inserted while someone pages (the projection never stops) neither
// repeat nor vanish from the pages still to come. The cursor is the sort key
// of the last row served, base64url-encoded JSON, opaque to clients.
//
// Every filter value is a bound parameter; the only text joined into SQL is
// the constant fragments below.

// MaxPageLimit is the largest page a list serves (api.md: default 50, max 500).
const MaxPageLimit = 500

// ErrNotFound is returned by the single-row reads when no row has the id.
var ErrNotFound = errors.New("not found")

// ErrInvalidCursor is returned (wrapped) by the lists when the cursor is not
// one this package produced for that list. The handler answers 400.
var ErrInvalidCursor = errors.New("invalid cursor")

// maxCursorLen bounds what is decoded: a real cursor holds one timestamp and
// one id.
const maxCursorLen = 4096

// PageRequest is the paging part of every list.
type PageRequest struct {
	// Limit is the page size, 1..MaxPageLimit.
	Limit int
	// Cursor is the NextCursor of the previous page; empty for the first.
	Cursor string
}

func (p PageRequest) check() error {
	if p.Limit < 1 || p.Limit > MaxPageLimit {
		return fmt.Errorf("page limit %d outside 1..%d", p.Limit, MaxPageLimit)
	}
	return nil
}

// pageKey is the decoded cursor. Kind names the list, so a cursor of one list
// is refused by another instead of silently returning a wrong page. At is the
// timestamp of the last row served, nil when that row had none (the NULL
// section at the end of a descending list) and always nil for agents.
type pageKey struct {
	Kind string  `json:"k"`
	At   *string `json:"t,omitempty"`
	ID   *string `json:"i"`
	// S and V are the agents list's sort ("hostname.desc") and the last
	// row's value of that sort's column (agents_list.go).
	S string  `json:"s,omitempty"`
	V *string `json:"v,omitempty"`
}

func encodeCursor(k pageKey) *string {
	b, err := json.Marshal(k)
	if err != nil {
		// Strings and a pointer to a string always marshal.
		panic(fmt.Sprintf("encode cursor: %v", err))
	}
	s := base64.RawURLEncoding.EncodeToString(b)
	return &s
}

func decodeCursor(kind, s string) (*pageKey, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > maxCursorLen {
		return nil, fmt.Errorf("%w: too long", ErrInvalidCursor)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url", ErrInvalidCursor)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var k pageKey
	if err := dec.Decode(&k); err != nil {
		return nil, fmt.Errorf("%w: not a cursor", ErrInvalidCursor)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data", ErrInvalidCursor)
	}
	if k.Kind != kind || k.ID == nil {
		return nil, fmt.Errorf("%w: not a %s cursor", ErrInvalidCursor, kind)
	}
	return &k, nil
}

// likeContains returns a LIKE pattern (for ESCAPE '\') matching s literally
// anywhere in a value.
func likeContains(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

func boolPtr(v *int64) *bool {
	if v == nil {
		return nil
	}
	b := *v != 0
	return &b
}

// stringList decodes a JSON text column holding a string array; NULL is nil
// (JSON null), "[]" an empty array.
func stringList(col string, v *string) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	out := []string{}
	if err := json.Unmarshal([]byte(*v), &out); err != nil {
		return nil, fmt.Errorf("decode %s: %w", col, err)
	}
	return out, nil
}

// ---- agents ----------------------------------------------------------------

const agentColumns = `pc_id, hostname, os_family, agent_version, last_heartbeat, agent_cpu_pct,
	agent_rss_bytes, agent_disk_read_bytes, agent_disk_written_bytes, quarantined_versions,
	last_logon_user, last_logon_display_name, command_keys, command_protocols, enforcing, updated_at`

func scanAgent(sc interface{ Scan(...any) error }, cutoff string) (kanade.Agent, error) {
	var a kanade.Agent
	var quarantined, keys, protocols *string
	var enforcing *int64
	if err := sc.Scan(&a.PCID, &a.Hostname, &a.OSFamily, &a.AgentVersion, &a.LastHeartbeat,
		&a.AgentCPUPct, &a.AgentRSSBytes, &a.AgentDiskReadBytes, &a.AgentDiskWrittenBytes,
		&quarantined, &a.LastLogonUser, &a.LastLogonDisplayName, &keys, &protocols, &enforcing,
		&a.UpdatedAt); err != nil {
		return a, err
	}
	// Text order is time order (kanade.TimeLayout), and Go compares strings
	// bytewise as SQLite's BINARY collation does, so this agrees with the
	// status filter's SQL.
	a.Online = a.LastHeartbeat >= cutoff
	a.Enforcing = boolPtr(enforcing)
	var err error
	if a.QuarantinedVersions, err = stringList("quarantined_versions", quarantined); err != nil {
		return a, fmt.Errorf("agent %q: %w", a.PCID, err)
	}
	if a.CommandKeys, err = stringList("command_keys", keys); err != nil {
		return a, fmt.Errorf("agent %q: %w", a.PCID, err)
	}
	if a.CommandProtocols, err = stringList("command_protocols", protocols); err != nil {
		return a, fmt.Errorf("agent %q: %w", a.PCID, err)
	}
	return a, nil
}

// GetAgent returns one agent, online relative to onlineSince, or ErrNotFound.
func (db *DB) GetAgent(ctx context.Context, pcID string, onlineSince time.Time) (kanade.Agent, error) {
	row := db.read.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE pc_id = ?`, pcID)
	a, err := scanAgent(row, kanade.FormatTime(onlineSince))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("agent %q: %w", pcID, ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("get agent %q: %w", pcID, err)
	}
	return a, nil
}

// ---- descending keyset lists -----------------------------------------------

// descList describes a list ordered by (at DESC, id DESC) where at may be
// NULL. SQLite sorts NULL last in a descending order, but a NULL never
// satisfies "at < ?", so the list is read in two sections: rows with a
// timestamp, then (only once those are exhausted) rows without one, by id.
// Each section is one indexed range scan; the second costs a query only on
// the last page.
type descList[T any] struct {
	kind    string
	columns string
	table   string
	at, id  string // sort columns
	// parseID turns a cursor's id back into the id column's value.
	parseID func(string) (any, error)
	scan    func(*sql.Rows) (T, error)
	key     func(*T) (at *string, id string)
}

// selectSQL is the statement of one section: the conditions are ANDed, and
// the last placeholder is the LIMIT.
func (l *descList[T]) selectSQL(conds []string, order string) string {
	return `SELECT ` + l.columns + ` FROM ` + l.table + ` WHERE ` +
		strings.Join(append([]string{"1 = 1"}, conds...), " AND ") + ` ORDER BY ` + order + ` LIMIT ?`
}

func (l *descList[T]) order() string { return l.at + " DESC, " + l.id + " DESC" }

// afterConds are the conditions of the section with a timestamp, after the
// cursor's row when there is one. The first term alone is an index range;
// the second breaks ties.
func (l *descList[T]) afterConds(after bool) []string {
	c := []string{l.at + " IS NOT NULL"}
	if after {
		c = append(c, l.at+" <= ?", "("+l.at+" < ? OR "+l.id+" < ?)")
	}
	return c
}

func (l *descList[T]) page(ctx context.Context, db *DB, p PageRequest, conds []string, args []any) (kanade.Page[T], error) {
	build := func(extra []string, extraArgs []any, order string, limit int) (string, []any) {
		return l.selectSQL(append(append([]string{}, conds...), extra...), order),
			append(append(append([]any{}, args...), extraArgs...), limit)
	}
	return l.pageBy(ctx, db, p, build, true)
}

// sectionSQL builds the statement of one section of a page from the
// section's own terms (extra, with their values extraArgs), its order and
// the number of rows still wanted.
type sectionSQL func(extra []string, extraArgs []any, order string, limit int) (string, []any)

// pageBy is page with the statements made by build; withNull says whether
// the rows without a timestamp can match at all (a time window excludes
// them, and then the second section is never asked for).
func (l *descList[T]) pageBy(ctx context.Context, db *DB, p PageRequest, build sectionSQL, withNull bool) (kanade.Page[T], error) {
	var page kanade.Page[T]
	if err := p.check(); err != nil {
		return page, fmt.Errorf("list %s: %w", l.kind, err)
	}
	after, err := decodeCursor(l.kind, p.Cursor)
	if err != nil {
		return page, fmt.Errorf("list %s: %w", l.kind, err)
	}
	var afterID any
	if after != nil {
		if afterID, err = l.parseID(*after.ID); err != nil {
			return page, fmt.Errorf("list %s: %w: bad id", l.kind, ErrInvalidCursor)
		}
	}
	page.Items = []T{}
	want := p.Limit + 1 // one more than the page tells whether another follows

	query := func(extra []string, extraArgs []any, order string) error {
		q, a := build(extra, extraArgs, order, want-len(page.Items))
		rows, err := db.read.QueryContext(ctx, q, a...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			v, err := l.scan(rows)
			if err != nil {
				return err
			}
			page.Items = append(page.Items, v)
		}
		return rows.Err()
	}

	if after == nil || after.At != nil {
		var extraArgs []any
		if after != nil {
			extraArgs = []any{*after.At, *after.At, afterID}
		}
		if err := query(l.afterConds(after != nil), extraArgs, l.order()); err != nil {
			return page, fmt.Errorf("list %s: %w", l.kind, err)
		}
	}
	if len(page.Items) < want && withNull {
		extra := []string{l.at + " IS NULL"}
		var extraArgs []any
		if after != nil && after.At == nil {
			extra = append(extra, l.id+" < ?")
			extraArgs = []any{afterID}
		}
		if err := query(extra, extraArgs, l.id+" DESC"); err != nil {
			return page, fmt.Errorf("list %s: %w", l.kind, err)
		}
	}
	if len(page.Items) > p.Limit {
		page.Items = page.Items[:p.Limit]
		at, id := l.key(&page.Items[p.Limit-1])
		page.NextCursor = encodeCursor(pageKey{Kind: l.kind, At: at, ID: &id})
	}
	return page, nil
}

func textID(s string) (any, error) { return s, nil }

// ---- runs (execution_results) ------------------------------------------------

// RunStatus filters runs by outcome.
type RunStatus string

// The values of RunStatus; the empty string means all runs.
const (
	RunsSuccess RunStatus = "success"
	RunsFailure RunStatus = "failure"
	RunsRunning RunStatus = "running"
	RunsSkipped RunStatus = "skipped"
)

// runStatusCodes are the values of the run_status column (migration 0014),
// which encodes the api.md rules: failure is the failedPredicate of the fleet
// rollup, so the list and the counts never disagree.
var runStatusCodes = map[RunStatus]int64{
	RunsRunning: 0,
	RunsSuccess: 1,
	RunsFailure: 2,
	RunsSkipped: 3,
}

// RunFilter selects a page of runs; empty fields do not filter, and the
// filters that are set all apply.
type RunFilter struct {
	PageRequest
	// JobID, PCID and ExecID match exactly.
	JobID  string
	PCID   string
	ExecID string
	// Job matches runs whose job_id contains it, case-insensitively (ASCII;
	// %, _ and \ are literal), as the agents search does.
	Job string
	// PC matches runs of the roster's PCs whose pc_id or hostname contains
	// it, case-insensitively, like the agents search (q=). A PC no longer on
	// the roster is found by PCID.
	PC string
	// Since and Until bound started_at: Since <= started_at < Until. Either
	// set leaves out the runs without a start time.
	Since, Until time.Time
	Status       RunStatus
}

const runColumns = `result_id, request_id, exec_id, pc_id, job_id, version, exit_code, skipped,
	started_at, finished_at, recorded_at, expires_at, reaped, parent_result_id, duration_ms`

func runDest(r *kanade.Run, skipped, reaped *int64) []any {
	return []any{&r.ResultID, &r.RequestID, &r.ExecID, &r.PCID, &r.JobID, &r.Version, &r.ExitCode,
		skipped, &r.StartedAt, &r.FinishedAt, &r.RecordedAt, &r.ExpiresAt, reaped,
		&r.ParentResultID, &r.DurationMs}
}

var runList = descList[kanade.Run]{
	kind: "results", columns: runColumns, table: "execution_results",
	at: "started_at", id: "result_id", parseID: textID,
	scan: func(rows *sql.Rows) (kanade.Run, error) {
		var r kanade.Run
		var skipped, reaped int64
		err := rows.Scan(runDest(&r, &skipped, &reaped)...)
		r.Skipped, r.Reaped = skipped != 0, reaped != 0
		return r, err
	},
	key: func(r *kanade.Run) (*string, string) { return r.StartedAt, r.ResultID },
}

// maxRunArms is the largest number of job or PC ids a partial filter is
// served by one index range each (a UNION ALL of per-id keyset pages, each
// at most a page long). Beyond it the filter is a test on the rows of the
// walk: so many matching ids make matching rows dense.
const maxRunArms = 64

// ListRuns returns a page of runs, newest started first (runs without a
// start time last).
//
// Every combination is served by an index range in list order (the plans are
// pinned with INDEXED BY, so the planner's guesses without statistics cannot
// turn a page into a walk of a million rows): the narrowest of exec_id, the
// PC, the job, the status, in that order, picks the index. A status other
// than success uses the partial status indexes of migration 0014; successes
// are most runs, so the lists' own indexes find a page of them at once.
// Partial job and PC filters resolve their matching ids first (jobs by a
// skip scan of the job index, PCs from the roster), then read one range per
// id and merge.
func (db *DB) ListRuns(ctx context.Context, f RunFilter) (kanade.Page[kanade.Run], error) {
	build, withNull, err := db.runQuery(ctx, f)
	if err != nil {
		return kanade.Page[kanade.Run]{}, fmt.Errorf("list results: %w", err)
	}
	if build == nil { // a partial filter that matches no job or PC
		return emptyRunPage(f.PageRequest)
	}
	return runList.pageBy(ctx, db, f.PageRequest, build, withNull)
}

// runQuery turns a filter into the statements of its sections (nil when a
// partial filter matches nothing) and whether runs without a start time can
// match.
func (db *DB) runQuery(ctx context.Context, f RunFilter) (sectionSQL, bool, error) {
	var conds []string
	var args []any
	add := func(cond string, a ...any) { conds, args = append(conds, cond), append(args, a...) }

	rare := false // a status kept in the partial indexes
	if f.Status != "" {
		code, ok := runStatusCodes[f.Status]
		if !ok {
			return nil, false, fmt.Errorf("unknown status %q", f.Status)
		}
		rare = f.Status != RunsSuccess
		if rare {
			add("run_status <> 1") // the partial indexes' term, verbatim
		}
		add("run_status = ?", code)
	}
	if !f.Since.IsZero() {
		add("started_at >= ?", kanade.FormatTime(f.Since))
	}
	if !f.Until.IsZero() {
		add("started_at < ?", kanade.FormatTime(f.Until))
	}
	withNull := f.Since.IsZero() && f.Until.IsZero()
	if f.ExecID != "" {
		add("exec_id = ?", f.ExecID)
	}
	if f.JobID != "" {
		add("job_id = ?", f.JobID)
	}
	if f.PCID != "" {
		add("pc_id = ?", f.PCID)
	}

	var jobIDs, pcIDs []string
	if f.Job != "" {
		var err error
		if jobIDs, err = db.matchingJobs(ctx, f.Job); err != nil || len(jobIDs) == 0 {
			return nil, false, err
		}
	}
	if f.PC != "" {
		var err error
		if pcIDs, err = db.matchingPCs(ctx, f.PC, maxRunArms+1); err != nil || len(pcIDs) == 0 {
			return nil, false, err
		}
	}
	pcFew := len(pcIDs) > 0 && len(pcIDs) <= maxRunArms
	jobFew := len(jobIDs) > 0 && len(jobIDs) <= maxRunArms

	// The index to walk, and the ids read one range each (arms, of column
	// armCol) when a partial filter drives.
	var index, armCol string
	var arms []string
	switch {
	case f.ExecID != "": // an execution's runs are at most its target's PCs
		index = pick(rare, "execution_results_exec_status_started", "execution_results_exec_started")
	case f.PCID != "":
		index = pick(rare, "execution_results_pc_status_started", "execution_results_pc_started")
	case pcFew:
		index = pick(rare, "execution_results_pc_status_started", "execution_results_pc_started")
		arms, armCol = pcIDs, "pc_id"
	case f.JobID != "":
		index = pick(rare, "execution_results_job_status_started", "execution_results_job_started")
	case jobFew:
		index = pick(rare, "execution_results_job_status_started", "execution_results_job_started")
		arms, armCol = jobIDs, "job_id"
	case rare:
		index = "execution_results_status_started"
	default:
		index = "execution_results_started"
	}
	// The partial filters that do not drive test the rows of the walk.
	if f.PC != "" && armCol != "pc_id" {
		if pcFew {
			add("pc_id IN ("+marks(len(pcIDs))+")", anys(pcIDs)...)
		} else {
			p := likeContains(f.PC)
			add(`pc_id IN (SELECT pc_id FROM agents WHERE pc_id LIKE ? ESCAPE '\' OR hostname LIKE ? ESCAPE '\')`, p, p)
		}
	}
	if f.Job != "" && armCol != "job_id" {
		if jobFew {
			add("job_id IN ("+marks(len(jobIDs))+")", anys(jobIDs)...)
		} else {
			add(`job_id LIKE ? ESCAPE '\'`, likeContains(f.Job))
		}
	}
	return runSections(index, conds, args, armCol, arms), withNull, nil
}
func pick(rare bool, ifRare, otherwise string) string {
	if rare {
		return ifRare
	}
	return otherwise
}

func emptyRunPage(p PageRequest) (kanade.Page[kanade.Run], error) {
	if err := p.check(); err != nil {
		return kanade.Page[kanade.Run]{}, fmt.Errorf("list results: %w", err)
	}
	if _, err := decodeCursor(runList.kind, p.Cursor); err != nil {
		return kanade.Page[kanade.Run]{}, fmt.Errorf("list results: %w", err)
	}
	return kanade.Page[kanade.Run]{Items: []kanade.Run{}}, nil
}

// runSections builds the statements of a runs page walking index: one
// keyset range, or with arms one range per id of armCol, merged in list
// order. Each arm is a range in that order already, so SQLite merges them
// without sorting (MERGE (UNION ALL)) and stops at the LIMIT: a page reads
// about limit + arms rows, not limit per arm.
func runSections(index string, conds []string, args []any, armCol string, arms []string) sectionSQL {
	from := ` FROM execution_results INDEXED BY ` + index + ` WHERE `
	return func(extra []string, extraArgs []any, order string, limit int) (string, []any) {
		where := strings.Join(append(append([]string{"1 = 1"}, conds...), extra...), " AND ")
		if len(arms) == 0 {
			return `SELECT ` + runColumns + from + where + ` ORDER BY ` + order + ` LIMIT ?`,
				append(append(append([]any{}, args...), extraArgs...), limit)
		}
		var q strings.Builder
		var a []any
		for i, id := range arms {
			if i > 0 {
				q.WriteString(" UNION ALL ")
			}
			q.WriteString(`SELECT ` + runColumns + from + armCol + ` = ? AND ` + where)
			a = append(append(append(a, id), args...), extraArgs...)
		}
		q.WriteString(` ORDER BY ` + order + ` LIMIT ?`)
		return q.String(), append(a, limit)
	}
}

// matchingJobs returns the job ids of runs that contain s, case-insensitively:
// a skip scan of the job index (one seek per distinct job, and jobs are few),
// never a walk of the runs.
func (db *DB) matchingJobs(ctx context.Context, s string) ([]string, error) {
	rows, err := db.read.QueryContext(ctx, `WITH RECURSIVE j(id) AS (
			SELECT (SELECT min(job_id) FROM execution_results INDEXED BY execution_results_job_started)
			UNION ALL
			SELECT (SELECT min(job_id) FROM execution_results INDEXED BY execution_results_job_started WHERE job_id > j.id)
			  FROM j WHERE j.id IS NOT NULL)
		SELECT id FROM j WHERE id LIKE ? ESCAPE '\' ORDER BY id`, likeContains(s))
	if err != nil {
		return nil, fmt.Errorf("match jobs: %w", err)
	}
	return scanIDs(rows, "match jobs")
}

// matchingPCs returns at most limit pc_ids of the roster whose pc_id or
// hostname contains s, case-insensitively (the agents search's rule).
func (db *DB) matchingPCs(ctx context.Context, s string, limit int) ([]string, error) {
	p := likeContains(s)
	rows, err := db.read.QueryContext(ctx, `SELECT pc_id FROM agents
		WHERE pc_id LIKE ? ESCAPE '\' OR hostname LIKE ? ESCAPE '\' ORDER BY pc_id LIMIT ?`, p, p, limit)
	if err != nil {
		return nil, fmt.Errorf("match pcs: %w", err)
	}
	return scanIDs(rows, "match pcs")
}

func scanIDs(rows *sql.Rows, what string) ([]string, error) {
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return ids, nil
}

// GetRun returns one run with its output, or ErrNotFound.
func (db *DB) GetRun(ctx context.Context, resultID string) (kanade.RunDetail, error) {
	var r kanade.RunDetail
	var skipped, reaped int64
	var stdout, stderr packedText
	err := db.read.QueryRowContext(ctx, `SELECT `+runColumns+`, stdout, stderr
		FROM execution_results WHERE result_id = ?`, resultID).
		Scan(append(runDest(&r.Run, &skipped, &reaped), &stdout, &stderr)...)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("result %q: %w", resultID, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("get result %q: %w", resultID, err)
	}
	r.Skipped, r.Reaped = skipped != 0, reaped != 0
	r.Stdout, r.Stderr = stdout.ptr(), stderr.ptr()
	return r, nil
}

// ---- executions ----------------------------------------------------------------

const executionColumns = `exec_id, job_id, version, initiated_by, initiated_at, target_count,
	success_count, failure_count, skipped_count, status`

func executionDest(e *kanade.Execution) []any {
	return []any{&e.ExecID, &e.JobID, &e.Version, &e.InitiatedBy, &e.InitiatedAt, &e.TargetCount,
		&e.SuccessCount, &e.FailureCount, &e.SkippedCount, &e.Status}
}

var executionList = descList[kanade.Execution]{
	kind: "executions", columns: executionColumns, table: "executions",
	at: "initiated_at", id: "exec_id", parseID: textID,
	scan: func(rows *sql.Rows) (kanade.Execution, error) {
		var e kanade.Execution
		return e, rows.Scan(executionDest(&e)...)
	},
	key: func(e *kanade.Execution) (*string, string) { return e.InitiatedAt, e.ExecID },
}

// ListExecutions returns a page of executions, newest first (those without
// an initiation time last).
func (db *DB) ListExecutions(ctx context.Context, p PageRequest) (kanade.Page[kanade.Execution], error) {
	return executionList.page(ctx, db, p, nil, nil)
}

// GetExecution returns one execution, or ErrNotFound.
func (db *DB) GetExecution(ctx context.Context, execID string) (kanade.Execution, error) {
	var e kanade.Execution
	err := db.read.QueryRowContext(ctx, `SELECT `+executionColumns+` FROM executions WHERE exec_id = ?`, execID).
		Scan(executionDest(&e)...)
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("execution %q: %w", execID, ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("get execution %q: %w", execID, err)
	}
	return e, nil
}

// ---- audit log ---------------------------------------------------------------------

var auditList = descList[kanade.AuditEntry]{
	kind: "audit", columns: `id, actor, action, target, payload, occurred_at, stream_seq`,
	table: "audit_log", at: "occurred_at", id: "id",
	parseID: func(s string) (any, error) { return strconv.ParseInt(s, 10, 64) },
	scan: func(rows *sql.Rows) (kanade.AuditEntry, error) {
		var e kanade.AuditEntry
		var payload *string
		if err := rows.Scan(&e.ID, &e.Actor, &e.Action, &e.Target, &payload, &e.OccurredAt, &e.StreamSeq); err != nil {
			return e, err
		}
		if payload != nil {
			if !json.Valid([]byte(*payload)) {
				return e, fmt.Errorf("audit %d: payload is not JSON", e.ID)
			}
			e.Payload = json.RawMessage(*payload)
		}
		return e, nil
	},
	key: func(e *kanade.AuditEntry) (*string, string) { return &e.OccurredAt, strconv.FormatInt(e.ID, 10) },
}

// ListAudit returns a page of the audit log, newest first.
func (db *DB) ListAudit(ctx context.Context, p PageRequest) (kanade.Page[kanade.AuditEntry], error) {
	return auditList.page(ctx, db, p, nil, nil)
}
