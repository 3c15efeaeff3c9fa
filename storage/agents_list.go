package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

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
	// %, _ and \ are literal.
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

// listSQL builds the page statement; after is the decoded cursor or nil.
func (f AgentFilter) listSQL(after *pageKey) (string, []any, error) {
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
	return `SELECT ` + agentColumns + ` FROM agents WHERE ` + strings.Join(conds, " AND ") +
		` ORDER BY ` + order + ` LIMIT ?`, args, nil
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
	q, args, err := f.listSQL(after)
	if err != nil {
		return page, fmt.Errorf("list agents: %w", err)
	}
	rows, err := db.read.QueryContext(ctx, q, args...)
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
// fleet summaries of 0001/0008 (a few rows at any fleet size); otherwise it
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
	q, args, err := f.countSQL()
	if err != nil {
		return 0, fmt.Errorf("count agents: %w", err)
	}
	var n int64
	if err := db.read.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count agents: %w", err)
	}
	return n, nil
}

func (f AgentFilter) countSQL() (string, []any, error) {
	// The status may drive the heartbeat index when nothing narrower does.
	conds, args, err := f.where(f.OS == "" && f.Version == "" && f.Group == "", true)
	if err != nil {
		return "", nil, err
	}
	if len(conds) == 0 {
		conds = []string{"1 = 1"}
	}
	return `SELECT COUNT(*) FROM agents WHERE ` + strings.Join(conds, " AND "), args, nil
}
