package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// QueryRowForTest reads one row through the read pool.
func QueryRowForTest(ctx context.Context, db *DB, q string, dest ...any) error {
	return db.read.QueryRowContext(ctx, q).Scan(dest...)
}

// WriterPragmaForTest reads an integer pragma of the write connection.
func WriterPragmaForTest(ctx context.Context, db *DB, name string) (int64, error) {
	var n int64
	err := db.write.QueryRowContext(ctx, "PRAGMA "+name).Scan(&n)
	return n, err
}

// WALRestartFramesForTest is the checkpointer's limit (walRestartFrames).
const WALRestartFramesForTest = walRestartFrames

// ExecForTest runs one statement on the write connection, so tests can seed
// rows the projection would write (the triggers still run).
func ExecForTest(ctx context.Context, db *DB, q string, args ...any) error {
	_, err := db.write.ExecContext(ctx, q, args...)
	return err
}

// CountForTest runs a query returning one integer, with arguments, through
// the read pool: the brute-force reference of the summary-based counts.
func CountForTest(ctx context.Context, db *DB, q string, args ...any) (int64, error) {
	var n int64
	err := db.read.QueryRowContext(ctx, q, args...).Scan(&n)
	return n, err
}

// FleetQueryPlansForTest returns the EXPLAIN QUERY PLAN details of the two
// fleet rollup statements, so a test can prove they never scan the big tables.
func FleetQueryPlansForTest(ctx context.Context, db *DB) (map[string][]string, error) {
	args := []any{"2026-01-01T00:00", "2026-01-01T00:00:30.000000000Z", "2026-01-01T00:01:00.000000000Z"}
	return queryPlans(ctx, db, map[string]planCase{
		"agents":           {agentCountsAdd, args},
		"agents subtract":  {agentCountsSub, args},
		"results":          {resultCountsAdd, args},
		"results subtract": {resultCountsSub, args},
	})
}

// ReadsQueryPlansForTest returns the EXPLAIN QUERY PLAN details of the list
// statements of reads.go, by case name, so a test can prove which of them walk
// an index in order instead of sorting the table.
func ReadsQueryPlansForTest(ctx context.Context, db *DB) (map[string][]string, error) {
	const at, id, n = "2026-01-01T00:00:00.000000000Z", "x", 51
	return queryPlans(ctx, db, map[string]planCase{
		"results first page": {runList.selectSQL(runList.afterConds(false), runList.order()), []any{n}},
		"results next page":  {runList.selectSQL(runList.afterConds(true), runList.order()), []any{at, at, id, n}},
		"results of a pc next page": {runList.selectSQL(append([]string{"pc_id = ?"}, runList.afterConds(true)...), runList.order()),
			[]any{"pc", at, at, id, n}},
		"results of a job next page": {runList.selectSQL(append([]string{"job_id = ?"}, runList.afterConds(true)...), runList.order()),
			[]any{"job", at, at, id, n}},
		"results without start": {runList.selectSQL([]string{"started_at IS NULL", "result_id < ?"}, "result_id DESC"), []any{id, n}},
		"executions next page":  {executionList.selectSQL(executionList.afterConds(true), executionList.order()), []any{at, at, id, n}},
		"audit next page":       {auditList.selectSQL(auditList.afterConds(true), auditList.order()), []any{at, at, 7, n}},
	})
}

// RunsQueryPlanForTest returns the EXPLAIN QUERY PLAN details of the first
// section of a runs page after a cursor (the keyset range every page but the
// first walks) for filter f.
func RunsQueryPlanForTest(ctx context.Context, db *DB, f RunFilter) ([]string, error) {
	build, _, err := db.runQuery(ctx, f)
	if err != nil || build == nil {
		return nil, fmt.Errorf("no statement for %+v: %v", f, err)
	}
	const at = "2026-01-01T00:00:00.000000000Z"
	q, args := build(runList.afterConds(true), []any{at, at, "x"}, runList.order(), 51)
	plans, err := queryPlans(ctx, db, map[string]planCase{"runs": {q, args}})
	return plans["runs"], err
}

// MaxRunArmsForTest is the number of matching ids up to which a partial
// filter reads one range per id.
const MaxRunArmsForTest = maxRunArms

// ControlQueryPlansForTest returns the EXPLAIN QUERY PLAN details of the
// control plane's statements (control.go).
func ControlQueryPlansForTest(ctx context.Context, db *DB) (map[string][]string, error) {
	return queryPlans(ctx, db, map[string]planCase{
		"count alive":           {countAliveSQL, []any{"2026-01-01T00:00:00.000000000Z"}},
		"active executions":     {activeExecsSQL, []any{"job"}},
		"unfinished executions": {unfinishedExecsSQL, []any{"job"}},
		"last run":              {lastRunSQL, []any{"job"}},
		"recent runs":           {recentRunsSQL, []any{"job", "2026-01-01T00:00:00.000000000Z"}},
	})
}

// WatchQueryPlansForTest returns the EXPLAIN QUERY PLAN details of the
// watchdog's claims and settle (watch.go).
func WatchQueryPlansForTest(ctx context.Context, db *DB) (map[string][]string, error) {
	const at = "2026-01-01T00:00:00.000000000Z"
	return queryPlans(ctx, db, map[string]planCase{
		"claim stale": {claimStaleSQL, []any{"t", at, at, at, at, 10}},
		"claim fresh": {claimFreshSQL, []any{"t", at, at, at, 10}},
		"settle":      {settleWatchSQL, []any{"t"}},
	})
}

// PerfQueryPlansForTest returns the EXPLAIN QUERY PLAN details of the
// fleet-wide telemetry reads of raw samples (perf_reads.go) for metric.
func PerfQueryPlansForTest(ctx context.Context, db *DB, metric string) (map[string][]string, error) {
	const at, next = "2026-01-01T00:00:30.000000000Z", "2026-01-01T00:05:00.000000000Z"
	return queryPlans(ctx, db, map[string]planCase{
		"top":        {topPCsSQL(metric), []any{int64(1767225900), at, next, 10}},
		"fleet edge": {fleetRawSQL(metric), []any{int64(300), int64(300), int64(300), at, next}},
	})
}

// planCase is one statement whose plan a test looks at, with arguments of
// the right types (SQLite plans some comparisons by the argument's type).
type planCase struct {
	q    string
	args []any
}

// queryPlans returns the EXPLAIN QUERY PLAN details of each case, by name,
// read through the read pool as the real queries are.
func queryPlans(ctx context.Context, db *DB, cases map[string]planCase) (map[string][]string, error) {
	plans := map[string][]string{}
	for name, c := range cases {
		rows, err := db.read.QueryContext(ctx, "EXPLAIN QUERY PLAN "+c.q, c.args...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for rows.Next() {
			var id, parent, notused any
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				rows.Close()
				return nil, err
			}
			plans[name] = append(plans[name], detail)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return plans, nil
}

// HistoryQueryPlansForTest returns the plans of the history search and of
// first_seen for q, with the index ranges historyFrom finds in db.
func HistoryQueryPlansForTest(ctx context.Context, db *DB, q HistoryQuery) (map[string][]string, error) {
	cases := map[string]planCase{}
	for name, c := range map[string]struct {
		cols string
		sql  func(string) string
	}{"search": {historyColsFor(q), func(from string) string { return historyEventsSQL(q, from) }}, "first_seen": {firstSeenCols, firstSeenSQL}} {
		from, args, none, err := historyFrom(ctx, db.read, q, c.cols)
		if err != nil || none {
			return nil, fmt.Errorf("%s: %v (no ranges: %v)", name, err, none)
		}
		cases[name] = planCase{c.sql(from), append(args, q.Limit, q.Offset)}
	}
	return queryPlans(ctx, db, cases)
}

// RetryAfterForTest is the throttle's pure rule.
var RetryAfterForTest = retryAfter

// RowsForTest runs a query through the read pool and returns every row,
// text as string.
func RowsForTest(ctx context.Context, db *DB, q string, args ...any) ([][]any, error) {
	rows, err := db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i, v := range vals {
			vals[i] = sqlValue(v)
		}
		out = append(out, vals)
	}
	return out, rows.Err()
}

// SetMaxLeadValuesForTest changes how many distinct values a search reads
// value by value, and returns a function that restores it.
func SetMaxLeadValuesForTest(n int) func() {
	old := maxLeadValues
	maxLeadValues = n
	return func() { maxLeadValues = old }
}

// StringsForTest reads the one text column of a query's rows through the
// read pool.
func StringsForTest(ctx context.Context, db *DB, q string, args ...any) ([]string, error) {
	return db.strings(ctx, "test query", q, args...)
}

// GroupsQueryPlansForTest returns the EXPLAIN QUERY PLAN details of the
// group overview (groups.go).
func GroupsQueryPlansForTest(ctx context.Context, db *DB) (map[string][]string, error) {
	return queryPlans(ctx, db, map[string]planCase{
		"group overview": {groupOverviewSQL, []any{"2026-01-01T00:00", "2026-01-01T00:00:30.000000000Z", "2026-01-01T00:01:00.000000000Z"}},
	})
}

// QueryForTest runs a query through the read pool and hands each row to
// scan.
func QueryForTest(ctx context.Context, db *DB, q string, args []any, scan func(*sql.Rows) error) error {
	rows, err := db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// AgentsQueryPlansForTest returns the EXPLAIN QUERY PLAN details of the
// version rollup (agents.go).
func AgentsQueryPlansForTest(ctx context.Context, db *DB) (map[string][]string, error) {
	return queryPlans(ctx, db, map[string]planCase{
		"versions": {agentVersionsSQL, []any{"2026-01-01T00:00", "2026-01-01T00:00:30.000000000Z", "2026-01-01T00:01:00.000000000Z"}},
	})
}

// AgentsListPlanForTest returns the EXPLAIN QUERY PLAN details of the page
// statement ListAgents runs for f (a next page when next), and of the
// COUNT CountAgents runs for f's filters when it counts rows.
func AgentsListPlanForTest(ctx context.Context, db *DB, f AgentFilter, next bool) (page, count []string, err error) {
	return agentsListPlan(ctx, db, f, next, agentSource{})
}

// AgentsSearchPlanForTest is AgentsListPlanForTest for a search served from
// the trigram index's candidates.
func AgentsSearchPlanForTest(ctx context.Context, db *DB, f AgentFilter, next bool) (page, count []string, err error) {
	hits := "[1,2,3]"
	return agentsListPlan(ctx, db, f, next, agentSource{hits: &hits})
}

// AgentsGroupPlanForTest is AgentsListPlanForTest for a page served from
// the group's members.
func AgentsGroupPlanForTest(ctx context.Context, db *DB, f AgentFilter, next bool) (page, count []string, err error) {
	return agentsListPlan(ctx, db, f, next, agentSource{group: true})
}

// AgentsKeyedGroupPlanForTest is AgentsListPlanForTest for a page served
// from the members' copy of the sort's value (0025).
func AgentsKeyedGroupPlanForTest(ctx context.Context, db *DB, f AgentFilter, next bool) (page, count []string, err error) {
	return agentsListPlan(ctx, db, f, next, agentSource{keyed: true})
}

// GroupSortKeyed says whether a group's page in sort s is served from the
// members' copy of its value (0025).
func GroupSortKeyed(s AgentSort) bool {
	_, ok := groupSortKeys[s]
	return ok
}

// AgentsCountPlansForTest returns the EXPLAIN QUERY PLAN details of a
// group's count and of the one- and two-character search's candidates.
func AgentsCountPlansForTest(ctx context.Context, db *DB) (map[string][]string, error) {
	return queryPlans(ctx, db, map[string]planCase{
		"group count":          {groupCountAdd, []any{"lab", "2026-01-01T00:00", "2026-01-01T00:00:30.000000000Z", "2026-01-01T00:01:00.000000000Z"}},
		"group count subtract": {groupCountSub, []any{"lab", "2026-01-01T00:00", "2026-01-01T00:00:00.000000000Z", "2026-01-01T00:00:20.000000000Z"}},
		"piece counts":         {`SELECT p.key, ifnull(c.agents, 0) FROM json_each(?) AS p LEFT JOIN agent_piece_counts AS c ON c.gram = lower(p.value)`, []any{`["hos","012"]`}},
		"grams":                {gramsSQL, []any{"zz", searchCandidatesMax + 1}},
	})
}

// SetGroupCandidatesMaxForTest changes how many members a group's page may
// be sorted from, and returns a function that restores it.
func SetGroupCandidatesMaxForTest(n int) func() {
	old := groupCandidatesMax
	groupCandidatesMax = n
	return func() { groupCandidatesMax = old }
}

func agentsListPlan(ctx context.Context, db *DB, f AgentFilter, next bool, src agentSource) (page, count []string, err error) {
	var after *pageKey
	if next {
		id, v := "PC-1", "v"
		if f.Sort == AgentSortHeartbeat || f.Sort == AgentSortStatus {
			v = "2026-01-01T00:00:00.000000000Z"
		}
		after = &pageKey{Kind: "agents", S: f.sortKey(), ID: &id}
		if agentSortExpr[f.Sort] != "" {
			after.V = &v
		}
	}
	q, args, err := f.listSQL(after, src, agentJSONColumns, kanade.FormatTime(f.OnlineSince))
	if err != nil {
		return nil, nil, err
	}
	cq, cargs, err := f.countSQL(agentSource{hits: src.hits})
	if err != nil {
		return nil, nil, err
	}
	plans, err := queryPlans(ctx, db, map[string]planCase{"page": {q, args}, "count": {cq, cargs}})
	return withoutListColumns(plans["page"]), plans["count"], err
}

// withoutListColumns drops from a page's plan the subqueries of its
// columns (the string arrays' of agentJSONColumns, each a scan of one
// row's JSON array, run only for an array with an escape), leaving the plan
// of its rows.
func withoutListColumns(plan []string) []string {
	var out []string
	for i := 0; i < len(plan); i++ {
		if strings.HasPrefix(plan[i], "CORRELATED SCALAR SUBQUERY") && i+1 < len(plan) &&
			strings.HasPrefix(plan[i+1], "SCAN json_each VIRTUAL TABLE") {
			i++
			continue
		}
		out = append(out, plan[i])
	}
	return out
}

// CheckpointForTest makes the checkpointer run every every and start the
// WAL over past frames pages.
func CheckpointForTest(o *Options, every time.Duration, frames int) {
	o.checkpointEvery, o.walFrames = every, frames
}

// ListAgents is ListAgentsJSON's page decoded, so that the roster's tests
// read what the API serves.
func (db *DB) ListAgents(ctx context.Context, f AgentFilter) (kanade.Page[kanade.Agent], error) {
	var page kanade.Page[kanade.Agent]
	b, err := db.ListAgentsJSON(ctx, nil, f)
	if err != nil {
		return page, err
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return page, fmt.Errorf("list agents: decode the page: %w", err)
	}
	return page, nil
}

// WarmPlanForTest returns WarmOldResults' statement and the EXPLAIN QUERY
// PLAN details of it, so a test can prove each lookup seeks its index.
func WarmPlanForTest(ctx context.Context, db *DB) (string, []string, error) {
	q, _, err := db.warmResultsQuery(ctx)
	if err != nil {
		return "", nil, err
	}
	plans, err := queryPlans(ctx, db, map[string]planCase{"warm": {q, []any{"2026-01-01T00:00:00.000000000Z", 10}}})
	return q, plans["warm"], err
}
