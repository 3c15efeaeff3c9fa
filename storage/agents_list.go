package storage

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kanade-fleet/backend"
)

// The agent roster of GET /api/agents: sorted by any column the dashboard
// shows, filtered by status, OS, version, group and a search, paged by
// keyset, and counted.
//
// Every sort walks an index of migration 0013 in order: the query's ORDER
// BY and keyset use the very expressions those indexes are built on
// (ifnull(col, '') for a nullable column), because SQLite matches an
// expression index only by its text. The cursor names the sort it was made
// for, so a cursor of one sort given to another is refused, never served as
// a wrong page.

// AgentStatus filters the roster by liveness.
type AgentStatus string

// The values of AgentStatus; the empty string means all. Stale is the
// fleet rollup's word for offline (api.md: stale = known − active), the
// same rows.
const (
	AgentsOnline  AgentStatus = "online"
	AgentsOffline AgentStatus = "offline"
	AgentsStale   AgentStatus = "stale"
)

// AgentStatuses are the values a caller may give, for validation.
var AgentStatuses = []AgentStatus{AgentsOnline, AgentsOffline, AgentsStale}

// AgentSort is a column the roster can be sorted by.
type AgentSort string

// The values of AgentSort; the empty string is pc_id. Status sorts offline
// before online (ascending): since the status is a function of the
// heartbeat (online when at or after the cutoff), that is the heartbeat
// order, and within a status the rows follow their heartbeat too.
const (
	AgentSortPCID      AgentSort = "pc_id"
	AgentSortHostname  AgentSort = "hostname"
	AgentSortOS        AgentSort = "os"
	AgentSortVersion   AgentSort = "agent_version"
	AgentSortHeartbeat AgentSort = "last_heartbeat"
	AgentSortStatus    AgentSort = "status"
)

// AgentSorts are the values a caller may give, for validation.
var AgentSorts = []AgentSort{AgentSortPCID, AgentSortHostname, AgentSortOS, AgentSortVersion, AgentSortHeartbeat, AgentSortStatus}

// agentSortExpr is the SQL each sort orders by before pc_id (the tie
// break, unique); "" for pc_id alone. Each is the leading expression of
// an index of 0013.
var agentSortExpr = map[AgentSort]string{
	AgentSortPCID:      "",
	AgentSortHostname:  "ifnull(hostname, '')",
	AgentSortOS:        "ifnull(os_family, '')",
	AgentSortVersion:   "ifnull(agent_version, '')",
	AgentSortHeartbeat: "last_heartbeat",
	AgentSortStatus:    "last_heartbeat",
}

// agentSortValue is the Go side of agentSortExpr, for the cursor.
func agentSortValue(s AgentSort, a *kanade.Agent) string {
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	switch s {
	case AgentSortHostname:
		return str(a.Hostname)
	case AgentSortOS:
		return str(a.OSFamily)
	case AgentSortVersion:
		return str(a.AgentVersion)
	case AgentSortHeartbeat, AgentSortStatus:
		return a.LastHeartbeat
	}
	return ""
}

// AgentFilter selects a page of the roster.
type AgentFilter struct {
	PageRequest
	// OnlineSince is the cutoff: an agent is online when its last heartbeat is
	// at or after it (the caller's now − stale threshold, as AgentCounts).
	OnlineSince time.Time
	Status      AgentStatus
	// Query matches pc_id or hostname as a case-insensitive (ASCII) substring;
	// %, _ and \ are literal. Three characters or more are looked up in the
	// trigram index of migration 0016 (see agentSearch).
	Query string
	// OS, Version and Group match exactly when not empty (Group: a member of
	// that group in the agent_groups mirror).
	OS, Version, Group string
	// Sort is the column ordered by (then pc_id); Desc reverses both.
	Sort AgentSort
	Desc bool
}

// sortKey is the sort as the cursor names it: "hostname.desc".
func (f AgentFilter) sortKey() string {
	s := f.Sort
	if s == "" {
		s = AgentSortPCID
	}
	if f.Desc {
		return string(s) + ".desc"
	}
	return string(s) + ".asc"
}

// where returns the filter's conditions (without the keyset) and their
// arguments. indexedStatus says whether the status condition may drive an
// index: only when the walk is the heartbeat's own, so a status filter never
// turns another sort into a range read and a sort of its result.
//
// A page tests a group per row of the sort's walk (EXISTS), so the rows
// need no sort and the walk stops at the page's end; a count is driven by
// the group's members (IN).
func (f AgentFilter) where(indexedStatus, groupDrives bool) ([]string, []any, error) {
	conds, args := []string{}, []any{}
	hb := "+last_heartbeat"
	if indexedStatus {
		hb = "last_heartbeat"
	}
	switch f.Status {
	case "":
	case AgentsOnline:
		conds, args = append(conds, hb+" >= ?"), append(args, kanade.FormatTime(f.OnlineSince))
	case AgentsOffline, AgentsStale:
		conds, args = append(conds, hb+" < ?"), append(args, kanade.FormatTime(f.OnlineSince))
	default:
		return nil, nil, fmt.Errorf("unknown status %q", f.Status)
	}
	if f.OS != "" {
		conds, args = append(conds, "ifnull(os_family, '') = ?"), append(args, f.OS)
	}
	if f.Version != "" {
		conds, args = append(conds, "ifnull(agent_version, '') = ?"), append(args, f.Version)
	}
	if f.Group != "" {
		if groupDrives {
			conds = append(conds, "pc_id IN (SELECT pc_id FROM agent_group_members WHERE group_name = ?)")
		} else {
			conds = append(conds, "EXISTS (SELECT 1 FROM agent_group_members m WHERE m.group_name = ? AND m.pc_id = agents.pc_id)")
		}
		args = append(args, f.Group)
	}
	if f.Query != "" {
		// ifnull(hostname, '') matches as hostname does (an empty text holds no
		// non-empty substring) and is what the sort indexes hold.
		p := likeContains(f.Query)
		conds = append(conds, `(pc_id LIKE ? ESCAPE '\' OR ifnull(hostname, '') LIKE ? ESCAPE '\')`)
		args = append(args, p, p)
	}
	return conds, args, nil
}

// searchPhrase returns the full-text query of migration 0016's trigram
// index that finds every agent whose pc_id or hostname holds q (a superset
// of the LIKE's matches: the index folds case as Unicode does, LIKE only
// ASCII), and false when the index cannot serve q. The trigram index
// matches only pieces of three characters or more, so a shorter search is
// left to the LIKE alone: it tests each entry of the sort's index walk,
// which stops at the page's end. A NUL or invalid UTF-8 is left to it too,
// as the tokenizer and LIKE may read those differently.
//
// The search is one FTS5 string (between double quotes, a quote doubled),
// so nothing in q is query syntax: "*", "^", NEAR, OR, AND and parentheses
// are characters to find.
func searchPhrase(q string) (string, bool) {
	if utf8.RuneCountInString(q) < 3 || !utf8.ValidString(q) || strings.ContainsRune(q, 0) {
		return "", false
	}
	return `"` + strings.ReplaceAll(q, `"`, `""`) + `"`, true
}

// agentSearch is how a search (q=) is served: with hits nil, by the LIKE
// on each entry of the sort's index walk, which stops at the page's end
// (cheap when many agents match: the page fills early; a walk of the whole
// roster when few or none do); otherwise from hits, the trigram index's
// candidates, each tested by the LIKE and the survivors sorted (cheap when
// few match, the case the walk is slow in).
type agentSearch struct {
	// hits is the candidates' agents rowids as a JSON array, for json_each.
	hits *string
}

// searchCandidatesMax is the most candidates a search is served from; with
// more, at least 2% of 100k agents match, so a walk fills a page of 50
// within about 2,500 index entries and a page of 500 within 25,000, while
// reading and sorting every candidate would cost more with each one.
const searchCandidatesMax = 2000

// search picks how f's search is served: from the trigram index when it
// can serve it and finds at most searchCandidatesMax candidates (it reads
// them up to one more, stopping there). The candidates are read once and
// handed to the page's statement, so the index is searched once a request.
func (db *DB) search(ctx context.Context, f AgentFilter) (agentSearch, error) {
	phrase, ok := searchPhrase(f.Query)
	if !ok {
		return agentSearch{}, nil
	}
	rows, err := db.cached(ctx, `SELECT rowid FROM agents_search WHERE agents_search MATCH ? LIMIT ?`,
		phrase, searchCandidatesMax+1)
	if err != nil {
		return agentSearch{}, fmt.Errorf("search candidates: %w", err)
	}
	defer rows.Close()
	b := append(make([]byte, 0, 256), '[')
	n := 0
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return agentSearch{}, fmt.Errorf("search candidates: %w", err)
		}
		if n++; n > searchCandidatesMax {
			return agentSearch{}, nil
		}
		if n > 1 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	if err := rows.Err(); err != nil {
		return agentSearch{}, fmt.Errorf("search candidates: %w", err)
	}
	hits := string(append(b, ']'))
	return agentSearch{hits: &hits}, nil
}

// from is the FROM clause of a statement over f's rows and its arguments:
// agents, or the search's candidates joined to their rows (CROSS JOIN
// keeps the candidates the outer loop, so the plan never walks the roster
// testing each row against them).
func (s agentSearch) from() (string, []any) {
	if s.hits == nil {
		return "agents", nil
	}
	return "(SELECT value AS r FROM json_each(?)) AS hit CROSS JOIN agents ON agents.rowid = hit.r", []any{*s.hits}
}

// listSQL builds the page statement; after is the decoded cursor or nil.
func (f AgentFilter) listSQL(after *pageKey, search agentSearch) (string, []any, error) {
	expr, ok := agentSortExpr[f.Sort]
	if f.Sort == "" {
		expr, ok = "", true
	}
	if !ok {
		return "", nil, fmt.Errorf("unknown sort %q", f.Sort)
	}
	// With the sort's own column fixed by a filter, the order is pc_id's
	// (the filter's index walks it); the cursor keeps the value all the same.
	if (f.Sort == AgentSortOS && f.OS != "") || (f.Sort == AgentSortVersion && f.Version != "") {
		expr = ""
	}
	conds, args, err := f.where(expr == "last_heartbeat", false)
	if err != nil {
		return "", nil, err
	}
	dir, cmp := "ASC", ">"
	if f.Desc {
		dir, cmp = "DESC", "<"
	}
	order := "pc_id " + dir
	if expr != "" {
		order = expr + " " + dir + ", " + order
	}
	if after != nil {
		if expr == "" {
			conds, args = append(conds, "pc_id "+cmp+" ?"), append(args, *after.ID)
		} else {
			// Not the row value (expr, pc_id) > (?, ?), which SQLite tests
			// entry by entry from the index's start: the first term is a range
			// of the index, the second sorts out the ties at its start.
			conds = append(conds, expr+" "+cmp+"= ?", "("+expr+" "+cmp+" ? OR pc_id "+cmp+" ?)")
			args = append(args, *after.V, *after.V, *after.ID)
		}
	}
	if len(conds) == 0 {
		conds = []string{"1 = 1"}
	}
	args = append(args, f.Limit+1)
	from, fromArgs := search.from()
	return `SELECT ` + agentColumns + ` FROM ` + from + ` WHERE ` + strings.Join(conds, " AND ") +
		` ORDER BY ` + order + ` LIMIT ?`, append(fromArgs, args...), nil
}

// cursor decodes f.Cursor and checks it was made for f's sort.
func (f AgentFilter) cursor() (*pageKey, error) {
	after, err := decodeCursor("agents", f.Cursor)
	if err != nil || after == nil {
		return nil, err
	}
	sortKey := after.S
	if sortKey == "" {
		sortKey = "pc_id.asc" // the cursors of the roster before it had sorts
	}
	switch {
	case after.At != nil:
		return nil, fmt.Errorf("%w: not an agents cursor", ErrInvalidCursor)
	case sortKey != f.sortKey():
		return nil, fmt.Errorf("%w: a cursor of the sort %s, not %s", ErrInvalidCursor, sortKey, f.sortKey())
	case (agentSortExpr[f.Sort] != "") != (after.V != nil):
		return nil, fmt.Errorf("%w: not a cursor of the sort %s", ErrInvalidCursor, f.sortKey())
	}
	return after, nil
}

// ListAgents returns a page of the roster in f's order.
func (db *DB) ListAgents(ctx context.Context, f AgentFilter) (kanade.Page[kanade.Agent], error) {
	var page kanade.Page[kanade.Agent]
	if err := f.check(); err != nil {
		return page, fmt.Errorf("list agents: %w", err)
	}
	after, err := f.cursor()
	if err != nil {
		return page, fmt.Errorf("list agents: %w", err)
	}
	search, err := db.search(ctx, f)
	if err != nil {
		return page, fmt.Errorf("list agents: %w", err)
	}
	q, args, err := f.listSQL(after, search)
	if err != nil {
		return page, fmt.Errorf("list agents: %w", err)
	}
	// A prepared statement per distinct text: every value is an argument,
	// so the texts are the combinations of sort, order, cursor or not, each
	// filter present or not and the search's mode, a few thousand at most
	// and a few dozen in practice. Parsing the statement was an eighth of a
	// page's CPU.
	rows, err := db.cached(ctx, q, args...)
	if err != nil {
		return page, fmt.Errorf("list agents: %w", err)
	}
	defer rows.Close()
	cutoff := kanade.FormatTime(f.OnlineSince)
	page.Items = []kanade.Agent{}
	for rows.Next() {
		a, err := scanAgent(rows, cutoff)
		if err != nil {
			return page, fmt.Errorf("list agents: %w", err)
		}
		page.Items = append(page.Items, a)
	}
	if err := rows.Err(); err != nil {
		return page, fmt.Errorf("list agents: %w", err)
	}
	if len(page.Items) > f.Limit {
		page.Items = page.Items[:f.Limit]
		last := &page.Items[f.Limit-1]
		k := pageKey{Kind: "agents", S: f.sortKey(), ID: &last.PCID}
		if agentSortExpr[f.Sort] != "" {
			v := agentSortValue(f.Sort, last)
			k.V = &v
		}
		page.NextCursor = encodeCursor(k)
	}
	return page, nil
}

// CountAgents returns how many agents match f's filters (its paging and
// sort are ignored). Without OS, version, group or search it reads the
// fleet summaries of 0001/0008 (a few rows at any fleet size); a search
// with at most searchCandidatesMax candidates counts those; otherwise it
// counts the entries of the narrowest index of 0013 the filters allow,
// never a table row.
func (db *DB) CountAgents(ctx context.Context, f AgentFilter) (int64, error) {
	if f.OS == "" && f.Version == "" && f.Group == "" && f.Query == "" && f.Status == "" {
		var known int64
		if err := db.read.QueryRowContext(ctx, `SELECT value FROM fleet_counters WHERE name = 'agents'`).Scan(&known); err != nil {
			return 0, fmt.Errorf("count agents: %w", err)
		}
		return known, nil
	}
	if f.OS == "" && f.Version == "" && f.Group == "" && f.Query == "" {
		var known, active *int64
		minute, from, to := minuteSplit(f.OnlineSince)
		if err := db.read.QueryRowContext(ctx, agentCountsSQL, minute, from, to).Scan(&known, &active); err != nil {
			return 0, fmt.Errorf("count agents: %w", err)
		}
		if known == nil || active == nil {
			return 0, fmt.Errorf("count agents: fleet_counters has no 'agents' row")
		}
		switch f.Status {
		case "":
			return *known, nil
		case AgentsOnline:
			return *active, nil
		case AgentsOffline, AgentsStale:
			return *known - *active, nil
		}
		return 0, fmt.Errorf("count agents: unknown status %q", f.Status)
	}
	search, err := db.search(ctx, f)
	if err != nil {
		return 0, fmt.Errorf("count agents: %w", err)
	}
	q, args, err := f.countSQL(search)
	if err != nil {
		return 0, fmt.Errorf("count agents: %w", err)
	}
	rows, err := db.cached(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("count agents: %w", err)
	}
	defer rows.Close()
	var n int64
	if !rows.Next() {
		return 0, fmt.Errorf("count agents: no row: %w", cmp.Or(rows.Err(), sql.ErrNoRows))
	}
	if err := rows.Scan(&n); err != nil {
		return 0, fmt.Errorf("count agents: %w", err)
	}
	return n, rows.Err()
}

func (f AgentFilter) countSQL(search agentSearch) (string, []any, error) {
	// The status may drive the heartbeat index when nothing narrower does.
	conds, args, err := f.where(f.OS == "" && f.Version == "" && f.Group == "", true)
	if err != nil {
		return "", nil, err
	}
	if len(conds) == 0 {
		conds = []string{"1 = 1"}
	}
	from, fromArgs := search.from()
	return `SELECT COUNT(*) FROM ` + from + ` WHERE ` + strings.Join(conds, " AND "), append(fromArgs, args...), nil
}
