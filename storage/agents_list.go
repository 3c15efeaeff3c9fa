package storage

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"
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
	// trigram index of migration 0016 (see searchPhrase).
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
// A page walking a sort's index tests a group per row (EXISTS), so the
// rows need no sort and the walk stops at the page's end; a count is driven
// by the group's members (IN); a page whose rows come from the group's
// members (agentSource.group) tests nothing more for it (groupInFrom).
func (f AgentFilter) where(indexedStatus, groupDrives, groupInFrom bool) ([]string, []any, error) {
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
	if f.Group != "" && !groupInFrom {
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
		// (? || ''), not a bare ?: SQLite re-prepares a statement whose LIKE
		// pattern is a bare parameter at every bind (the LIKE optimisation
		// may depend on its value), 8.5% of a search's CPU.
		p := likeContains(f.Query)
		conds = append(conds, `(pc_id LIKE (? || '') ESCAPE '\' OR ifnull(hostname, '') LIKE (? || '') ESCAPE '\')`)
		args = append(args, p, p)
	}
	return conds, args, nil
}

// trigramPieces returns the distinct three-character pieces of q, in
// order, and false when the trigram index of 0016 cannot serve q: it
// matches only pieces of three characters or more, so a shorter search is
// left to agent_grams (gramsQuery); a NUL or invalid UTF-8 is left to the
// walk, as the tokenizer and LIKE may read those differently.
func trigramPieces(q string) ([]string, bool) {
	if utf8.RuneCountInString(q) < 3 || !utf8.ValidString(q) || strings.ContainsRune(q, 0) {
		return nil, false
	}
	rs := []rune(q)
	var pieces []string
	for i := 0; i+3 <= len(rs); i++ {
		if p := string(rs[i : i+3]); !slices.Contains(pieces, p) {
			pieces = append(pieces, p)
		}
	}
	return pieces, true
}

// rareRatio bounds the second piece a search asks the index for: it is
// asked too when it is held by at most this many times the agents of the
// rarest, as the AND then costs about as much as the rarest alone and cuts
// the candidates the LIKE tests.
const rareRatio = 4

// pieceCounts returns how many agents hold each of pieces, by
// agent_piece_counts (0023): 0 for a piece it has no row of.
func (db *DB) pieceCounts(ctx context.Context, pieces []string) ([]int, error) {
	js, err := json.Marshal(pieces)
	if err != nil {
		return nil, err
	}
	rows, err := db.cached(ctx, `SELECT p.key, ifnull(c.agents, 0) FROM json_each(?) AS p
		LEFT JOIN agent_piece_counts AS c ON c.gram = lower(p.value)`, string(js))
	if err != nil {
		return nil, fmt.Errorf("piece counts: %w", err)
	}
	defer rows.Close()
	counts := make([]int, len(pieces))
	seen := 0
	for rows.Next() {
		var i, n int
		if err := rows.Scan(&i, &n); err != nil {
			return nil, fmt.Errorf("piece counts: %w", err)
		}
		if i < 0 || i >= len(counts) {
			return nil, fmt.Errorf("piece counts: piece %d of %d", i, len(counts))
		}
		counts[i] = n
		seen++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("piece counts: %w", err)
	}
	if seen != len(pieces) {
		return nil, fmt.Errorf("piece counts: %d rows for %d pieces", seen, len(pieces))
	}
	return counts, nil
}

// searchPhrase returns the full-text query of the trigram index of 0016
// that finds every agent whose pc_id or hostname holds q, given q's
// pieces of three characters and how many agents hold each: a superset of
// the LIKE's matches (the index folds case as Unicode does, LIKE only
// ASCII), which the LIKE then tests. It also returns how many agents hold
// the rarest piece asked for, the most candidates the query can find
// (counts permitting).
//
// Any of q's pieces finds every agent holding q, and FTS5 reads the whole
// list of agents of each piece asked for, so the query asks for the
// rarest piece, and the next rarest when it is nearly as rare: in a fleet
// named alike, "hos" of "host-0123" is in every agent and "012" in one in
// 150, and asking for the covering pieces ("hos", "t-0", "123") cost three
// times the CPU.
//
// Each piece is one FTS5 string (between double quotes, a quote doubled),
// so nothing in q is query syntax: "*", "^", NEAR, OR, AND and parentheses
// are characters to find.
func searchPhrase(pieces []string, counts []int) (string, int) {
	order := make([]int, len(pieces))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(counts[a], counts[b]) })
	quote := func(p string) string { return `"` + strings.ReplaceAll(p, `"`, `""`) + `"` }
	first := order[0]
	phrase := quote(pieces[first])
	if len(order) > 1 && counts[first] > 0 && counts[order[1]] <= rareRatio*counts[first] {
		phrase += " AND " + quote(pieces[order[1]])
	}
	return phrase, counts[first]
}

// agentSource is where a page's rows come from. With neither field set,
// from the sort's index walk, which tests the filters on each entry and
// stops at the page's end: cheap when many agents match (the page fills
// early), a walk of the whole roster when few or none do. Otherwise from a
// bounded set of candidates, each tested by the filters and the survivors
// sorted: cheap when few match, the case the walk is slow in.
type agentSource struct {
	// hits are a search's candidates (the trigram index's, or agent_grams'
	// for a search of one or two characters): their agents rowids as a JSON
	// array, for json_each.
	hits *string
	// group: the rows are the members of f.Group (agent_group_members walked
	// by its key, so in pc_id order), joined to their agents rows.
	group bool
	// keyed: the rows are the members of f.Group walked by the index of
	// 0025 on their copy of the sort's value (groupSortKeys), so in the
	// sort's order, joined to their agents rows.
	keyed bool
}

// groupSortKeys are the sorts whose values each membership row carries
// (0025): the column of agent_group_members holding the sort's expression
// and the index leading with the group and that column.
var groupSortKeys = map[AgentSort]struct{ column, index string }{
	AgentSortHostname: {"host_key", "agent_group_members_by_host"},
	AgentSortOS:       {"os_key", "agent_group_members_by_os"},
	AgentSortVersion:  {"version_key", "agent_group_members_by_version"},
}

// searchCandidatesMax is the most candidates a search is served from; with
// more, at least 2% of 100k agents match, so a walk fills a page of 50
// within about 2,500 index entries and a page of 500 within 25,000, while
// reading and sorting every candidate would cost more with each one.
const searchCandidatesMax = 2000

// groupCandidatesMax is the most members a group's page is read and
// sorted from in a sort other than pc_id (whose order the membership key
// gives, at any size); a larger group is served by the sort's walk, which
// tests the group on each entry. Measured at 100k agents under 50
// connections, a member read and sorted cost about 10 µs of CPU and an
// entry of the walk 0.4 µs: a page of 50 walks 50 × 100k / m entries, so
// the two meet near m = 450 (2.4 ms a page for a group of 1,000 by the
// walk against 10.7 ms sorting its members). A variable for the tests,
// which lower it to compare both paths.
var groupCandidatesMax = 400

// gramsQuery returns the piece of agent_grams (0020) that finds every
// agent whose pc_id or hostname holds q, and false when that table cannot
// serve q: it holds the pieces of one and two characters, so q must be one
// or two characters (valid UTF-8 without NUL, as for searchPhrase). The
// lowering is SQL's lower() on both sides.
func gramsQuery(q string) (string, bool) {
	if n := utf8.RuneCountInString(q); n < 1 || n > 2 || !utf8.ValidString(q) || strings.ContainsRune(q, 0) {
		return "", false
	}
	return q, true
}

// gramsSQL reads the candidates of a search of one or two characters. The
// empty piece marks the agents with a name too long to be cut into pieces:
// candidates of every such search.
const gramsSQL = `SELECT agent AS r FROM agent_grams WHERE gram = lower(?1)
	UNION SELECT agent FROM agent_grams WHERE gram = '' LIMIT ?2`

// source picks where f's rows come from. A search is served from its
// index's candidates when it can serve it and finds at most
// searchCandidatesMax of them (read up to one more, stopping there); the
// candidates are read once and handed to the page's statement, so the index
// is searched once a request. A group is served from its members when
// ordered by pc_id (sorted already: pcOrder), from its members' copy of the
// sort's value when the sort is one of groupSortKeys, or from its members
// sorted when it has at most groupCandidatesMax of them.
func (db *DB) source(ctx context.Context, f AgentFilter, pcOrder bool, search *searchOnce) (agentSource, error) {
	hits, err := search.get(ctx, db, f.Query)
	if err != nil || hits != nil {
		return agentSource{hits: hits}, err
	}
	if f.Group == "" {
		return agentSource{}, nil
	}
	if pcOrder {
		return agentSource{group: true}, nil
	}
	if _, ok := groupSortKeys[f.Sort]; ok {
		return agentSource{keyed: true}, nil
	}
	var n int
	if err := db.cachedRow(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM agent_group_members WHERE group_name = ? LIMIT ?)`,
		[]any{f.Group, groupCandidatesMax + 1}, &n); err != nil {
		return agentSource{}, fmt.Errorf("group size: %w", err)
	}
	return agentSource{group: n <= groupCandidatesMax}, nil
}

// searchOnce reads a search's candidates once for a request that lists
// and counts (ListAndCountAgents): reading them is most of a search's cost.
type searchOnce struct {
	done bool
	hits *string
	err  error
}

// get returns the candidates of the search q (nil when it has none to be
// served from: no search, or too many candidates).
func (s *searchOnce) get(ctx context.Context, db *DB, q string) (*string, error) {
	if s.done {
		return s.hits, s.err
	}
	s.done = true
	if q == "" {
		return nil, nil
	}
	if pieces, ok := trigramPieces(q); ok {
		counts, err := db.pieceCounts(ctx, pieces)
		if err != nil {
			s.err = err
			return nil, err
		}
		// With more candidates than are read, the walk serves q: do not ask.
		if phrase, most := searchPhrase(pieces, counts); most <= searchCandidatesMax {
			s.hits, s.err = db.candidates(ctx, `SELECT rowid AS r FROM agents_search WHERE agents_search MATCH ? LIMIT ?`, phrase)
		}
	} else if piece, ok := gramsQuery(q); ok {
		counts, err := db.pieceCounts(ctx, []string{piece})
		if err != nil {
			s.err = err
			return nil, err
		}
		// The agents with a name too long for pieces are candidates too, so
		// a count within the bound may still find more: candidates checks.
		if counts[0] <= searchCandidatesMax {
			s.hits, s.err = db.candidates(ctx, gramsSQL, piece)
		}
	}
	return s.hits, s.err
}

// candidates runs q (a list of agents rowids in a column r, with arg and
// the limit searchCandidatesMax+1 as its arguments) and returns the rowids
// as a JSON array, or nil when there are more than searchCandidatesMax.
// SQLite builds the array: one row to scan, not one per candidate (reading
// 2,000 rows through database/sql cost 2 ms, most of a common search's
// time before it turned to the walk).
func (db *DB) candidates(ctx context.Context, q string, arg any) (*string, error) {
	var n int
	var hits string
	if err := db.cachedRow(ctx, `SELECT COUNT(*), json_group_array(r) FROM (`+q+`)`,
		[]any{arg, searchCandidatesMax + 1}, &n, &hits); err != nil {
		return nil, fmt.Errorf("search candidates: %w", err)
	}
	if n > searchCandidatesMax {
		return nil, nil
	}
	return &hits, nil
}

// cachedRow reads one row of a cached statement into dest.
func (db *DB) cachedRow(ctx context.Context, q string, args []any, dest ...any) error {
	return db.cachedRowOn(ctx, db.read, q, args, dest...)
}

// cachedRowOn is cachedRow on pool.
func (db *DB) cachedRowOn(ctx context.Context, pool *sql.DB, q string, args []any, dest ...any) error {
	rows, err := db.cachedOn(ctx, pool, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		return cmp.Or(rows.Err(), sql.ErrNoRows)
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	return rows.Err()
}

// from is the FROM clause of a statement over f's rows and its arguments,
// and the expression of the rows' pc_id order: agents; the candidates
// joined to their rows; or the group's members joined to theirs. CROSS
// JOIN keeps the candidates or members the outer loop, so the plan never
// walks the roster testing each row against them; with the members in
// their key's order, ordering by their pc_id needs no sort.
func (s agentSource) from(f AgentFilter) (string, []any, string) {
	switch {
	case s.hits != nil:
		return "(SELECT value AS r FROM json_each(?)) AS hit CROSS JOIN agents ON agents.rowid = hit.r", []any{*s.hits}, "pc_id"
	case s.keyed:
		// The membership's columns renamed, so that pc_id in the filters and
		// the columns read is the agents row's alone.
		k := groupSortKeys[f.Sort]
		return "(SELECT group_name AS gg, pc_id AS gpc, " + k.column + " AS gk FROM agent_group_members INDEXED BY " + k.index +
			" WHERE group_name = ?) AS gm CROSS JOIN agents INDEXED BY sqlite_autoindex_agents_1 ON agents.pc_id = gm.gpc", []any{f.Group}, "gm.gpc"
	case s.group:
		// INDEXED BY the primary key's: with a filter on OS or version the
		// planner may otherwise pick an index led by those and read a range
		// of it per member.
		return "(SELECT pc_id AS gpc FROM agent_group_members WHERE group_name = ?) AS gm " +
			"CROSS JOIN agents INDEXED BY sqlite_autoindex_agents_1 ON agents.pc_id = gm.gpc", []any{f.Group}, "gm.gpc"
	}
	return "agents", nil, "pc_id"
}

// listSQL builds the page statement reading columns (agentJSONColumns,
// whose one argument comes first); after is the decoded cursor or nil.
func (f AgentFilter) listSQL(after *pageKey, src agentSource, columns string, columnArgs ...any) (string, []any, error) {
	expr, err := f.orderExpr()
	if err != nil {
		return "", nil, err
	}
	conds, args, err := f.where(expr == "last_heartbeat", false, src.group || src.keyed)
	if err != nil {
		return "", nil, err
	}
	from, fromArgs, pc := src.from(f)
	if src.keyed && expr != "" {
		expr = "gm.gk"
	}
	dir, cmp := "ASC", ">"
	if f.Desc {
		dir, cmp = "DESC", "<"
	}
	order := pc + " " + dir
	if expr != "" {
		order = expr + " " + dir + ", " + order
	}
	if after != nil {
		if expr == "" {
			conds, args = append(conds, pc+" "+cmp+" ?"), append(args, *after.ID)
		} else {
			// Not the row value (expr, pc_id) > (?, ?), which SQLite tests
			// entry by entry from the index's start: the first term is a range
			// of the index, the second sorts out the ties at its start.
			conds = append(conds, expr+" "+cmp+"= ?", "("+expr+" "+cmp+" ? OR "+pc+" "+cmp+" ?)")
			args = append(args, *after.V, *after.V, *after.ID)
		}
	}
	if len(conds) == 0 {
		conds = []string{"1 = 1"}
	}
	args = append(args, f.Limit+1)
	where := ` WHERE ` + strings.Join(conds, " AND ") + ` ORDER BY ` + order + ` LIMIT ?`
	if src.hits != nil || (src.group && expr != "") {
		// Candidates are sorted: the sort carries only each one's rowid and
		// the page's rows are read after, rather than a record of every
		// column built for each of up to 2,000 candidates (a third of the
		// statement's time).
		outer := "pc_id " + dir
		if expr != "" {
			outer = expr + " " + dir + ", " + outer
		}
		return `SELECT ` + columns + ` FROM (SELECT agents.rowid AS r FROM ` + from + where +
			`) AS pg CROSS JOIN agents ON agents.rowid = pg.r ORDER BY ` + outer, append(append(columnArgs, fromArgs...), args...), nil
	}
	return `SELECT ` + columns + ` FROM ` + from + where, append(append(columnArgs, fromArgs...), args...), nil
}

// orderExpr is the expression f's rows are ordered by before pc_id, ""
// for pc_id alone. With the sort's own column fixed by a filter, the order
// is pc_id's (the filter's index walks it); the cursor keeps the value all
// the same.
func (f AgentFilter) orderExpr() (string, error) {
	expr, ok := agentSortExpr[f.Sort]
	if f.Sort == "" {
		expr, ok = "", true
	}
	if !ok {
		return "", fmt.Errorf("unknown sort %q", f.Sort)
	}
	if (f.Sort == AgentSortOS && f.OS != "") || (f.Sort == AgentSortVersion && f.Version != "") {
		expr = ""
	}
	return expr, nil
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

// ListAgentsJSON appends to dst a page of the roster in f's order as the
// API's JSON: kanade.Page[kanade.Agent] as encoding/json writes it (without
// HTML escaping, as huma's encoder), field for field and number for number.
// dst lets the caller reuse a buffer: a 500-row page is 300 KB.
func (db *DB) ListAgentsJSON(ctx context.Context, dst []byte, f AgentFilter) ([]byte, error) {
	return db.listAgents(ctx, dst, f, &searchOnce{})
}

// ListAndCountAgentsJSON is ListAgentsJSON and CountAgents of f, with a
// search's candidates read once for both.
func (db *DB) ListAndCountAgentsJSON(ctx context.Context, dst []byte, f AgentFilter) ([]byte, int64, error) {
	search := &searchOnce{}
	page, err := db.listAgents(ctx, dst, f, search)
	if err != nil {
		return nil, 0, err
	}
	n, err := db.countAgents(ctx, f, search)
	return page, n, err
}

// agentJSONColumns are a roster row as the API's JSON object in two
// halves, either side of agent_cpu_pct, and that column between them.
// SQLite builds the halves, so a row costs the driver three values instead
// of sixteen and the page no reflection: at 500 rows a page, reading the
// columns one by one and encoding them with encoding/json were over half of
// a request's CPU (issue 13). The float is left to Go because SQLite prints
// a REAL with 15 significant digits, which is not always the same float64
// again; appendJSONFloat writes it as encoding/json does. The one argument
// is the online cutoff, compared as scanAgent compares it. json('true') and
// json('false') are constants, computed once a statement.
//
// The three string arrays (JSON text, NULL: null) are written as
// encoding/json writes the []string stringList decodes from them. json()
// keeps a text's escapes as they are written (\u00e9, or \u003c from an
// encoder that escapes HTML) and only drops the spaces; a text without a
// backslash has no escapes, so that is already encoding/json's form (but for
// U+2028 and U+2029, see appendJSONText). One with a backslash is decoded
// and written again element by element (and given to json() again: a
// subquery's value loses its JSON subtype, and json_object would quote it as
// a string). Malformed JSON is an error either way, as in stringList.
const agentJSONColumns = `json_object('pc_id', pc_id, 'hostname', hostname, 'os_family', os_family,
	'agent_version', agent_version, 'last_heartbeat', last_heartbeat,
	'online', iif(last_heartbeat >= ?, json('true'), json('false'))),
	agent_cpu_pct,
	json_object('agent_rss_bytes', agent_rss_bytes, 'agent_disk_read_bytes', agent_disk_read_bytes,
	'agent_disk_written_bytes', agent_disk_written_bytes,
	'quarantined_versions', CASE WHEN instr(quarantined_versions, '\') THEN json((SELECT json_group_array(value) FROM json_each(quarantined_versions))) ELSE json(quarantined_versions) END,
	'last_logon_user', last_logon_user, 'last_logon_display_name', last_logon_display_name,
	'command_keys', CASE WHEN instr(command_keys, '\') THEN json((SELECT json_group_array(value) FROM json_each(command_keys))) ELSE json(command_keys) END,
	'command_protocols', CASE WHEN instr(command_protocols, '\') THEN json((SELECT json_group_array(value) FROM json_each(command_protocols))) ELSE json(command_protocols) END,
	'enforcing', CASE WHEN enforcing IS NULL THEN NULL WHEN enforcing THEN json('true') ELSE json('false') END,
	'updated_at', updated_at)`

func (db *DB) listAgents(ctx context.Context, dst []byte, f AgentFilter, search *searchOnce) ([]byte, error) {
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	after, err := f.cursor()
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	expr, err := f.orderExpr()
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	src, err := db.source(ctx, f, expr == "", search)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	q, args, err := f.listSQL(after, src, agentJSONColumns, kanade.FormatTime(f.OnlineSince))
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	// A prepared statement per distinct text: every value is an argument,
	// so the texts are the combinations of sort, order, cursor or not, each
	// filter present or not and the search's mode, a few thousand at most
	// and a few dozen in practice. Parsing the statement was an eighth of a
	// page's CPU.
	rows, err := db.cached(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	defer rows.Close()
	// About 600 bytes a row with every field filled.
	b := slices.Grow(dst, 64+min(f.Limit, 500)*640)
	b = append(b, `{"items":[`...)
	var head, tail sql.RawBytes
	var cpu sql.NullFloat64
	n, last, more := 0, 0, false
	for rows.Next() {
		if n == f.Limit {
			more = true // the row past the page: there is a next one
			break
		}
		if err := rows.Scan(&head, &cpu, &tail); err != nil {
			return nil, fmt.Errorf("list agents: %w", err)
		}
		if n > 0 {
			b = append(b, ',')
		}
		last = len(b)
		if len(head) < 2 || len(tail) < 2 {
			return nil, fmt.Errorf("list agents: row %d: not a JSON object", n)
		}
		b = appendJSONText(b, head[:len(head)-1])
		b = append(b, `,"agent_cpu_pct":`...)
		if b, err = appendJSONFloat(b, cpu); err != nil {
			return nil, fmt.Errorf("list agents: row %d: agent_cpu_pct: %w", n, err)
		}
		b = append(b, ',')
		b = appendJSONText(b, tail[1:])
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	b = append(b, `],"next_cursor":`...)
	if !more {
		return append(b, "null}"...), nil
	}
	// The cursor is the last row's keys, read back from its JSON.
	var a kanade.Agent
	if err := json.Unmarshal(b[last:len(b)-len(`],"next_cursor":`)], &a); err != nil {
		return nil, fmt.Errorf("list agents: the page's last row: %w", err)
	}
	k := pageKey{Kind: "agents", S: f.sortKey(), ID: &a.PCID}
	if agentSortExpr[f.Sort] != "" {
		v := agentSortValue(f.Sort, &a)
		k.V = &v
	}
	c, err := json.Marshal(encodeCursor(k))
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	b = append(b, c...)
	return append(b, '}'), nil
}

// appendJSONText appends JSON text SQLite wrote, with U+2028 and U+2029
// escaped and each byte that is not UTF-8 written as \ufffd, as
// encoding/json does (SQLite copies both as they are: JSON allows the two
// characters, and it does not check its text). SQLite writes every other
// character of a string as encoding/json does without HTML escaping
// (checked by TestAgentsPageIsEncodingJSONOfItsRows), and these occur only
// inside strings, so they can be replaced wherever they are. (The
// projector's decoder already replaces bytes that are not UTF-8; a row
// written by other means may still hold them.)
func appendJSONText(b, text []byte) []byte {
	if !utf8.Valid(text) {
		fixed := make([]byte, 0, len(text)+16)
		for len(text) > 0 {
			r, size := utf8.DecodeRune(text)
			if r == utf8.RuneError && size == 1 {
				fixed = append(fixed, `\ufffd`...)
			} else {
				fixed = append(fixed, text[:size]...)
			}
			text = text[size:]
		}
		text = fixed
	}
	for {
		i := bytes.Index(text, lineSeparatorPrefix)
		if i < 0 || i+2 >= len(text) {
			return append(b, text...)
		}
		b = append(b, text[:i]...)
		switch text[i+2] {
		case 0xa8:
			b = append(b, `\u2028`...)
		case 0xa9:
			b = append(b, `\u2029`...)
		default:
			b = append(b, text[i:i+3]...)
		}
		text = text[i+3:]
	}
}

// lineSeparatorPrefix is the UTF-8 of U+2028 and U+2029 but their last byte.
var lineSeparatorPrefix = []byte{0xe2, 0x80}

// appendJSONFloat appends f as encoding/json writes a float64: the
// shortest text that reads back as the same float64, in exponent form
// below 1e-6 and from 1e21 in magnitude; NULL as null. Infinities are an
// error, as there.
func appendJSONFloat(b []byte, f sql.NullFloat64) ([]byte, error) {
	if !f.Valid {
		return append(b, "null"...), nil
	}
	v := f.Float64
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return b, fmt.Errorf("%v has no JSON form", v)
	}
	format := byte('f')
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, v, format, -1, 64)
	if format == 'e' {
		// e-09 as e-9, as encoding/json.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// CountAgents returns how many agents match f's filters (its paging and
// sort are ignored). Without OS, version, group or search it reads the
// fleet summaries of 0001/0008 (a few rows at any fleet size), and with a
// group alone (or with a status) the group's of 0009; a search
// with at most searchCandidatesMax candidates counts those; otherwise it
// counts the entries of the narrowest index of 0013 the filters allow,
// never a table row.
func (db *DB) CountAgents(ctx context.Context, f AgentFilter) (int64, error) {
	return db.countAgents(ctx, f, &searchOnce{})
}

func (db *DB) countAgents(ctx context.Context, f AgentFilter, search *searchOnce) (int64, error) {
	if f.OS == "" && f.Version == "" && f.Group == "" && f.Query == "" && f.Status == "" {
		var known int64
		if err := db.read.QueryRowContext(ctx, `SELECT value FROM fleet_counters WHERE name = 'agents'`).Scan(&known); err != nil {
			return 0, fmt.Errorf("count agents: %w", err)
		}
		return known, nil
	}
	if f.OS == "" && f.Version == "" && f.Group == "" && f.Query == "" {
		var known, active *int64
		e := edgeOf(f.OnlineSince)
		if err := db.read.QueryRowContext(ctx, e.pick(agentCountsAdd, agentCountsSub), e.minute, e.from, e.to).Scan(&known, &active); err != nil {
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
	if f.OS == "" && f.Version == "" && f.Query == "" {
		return db.countGroup(ctx, f)
	}
	// The search's candidates, if any; a group drives the count by its
	// members whatever its size (countSQL).
	g := f
	g.Group = ""
	src, err := db.source(ctx, g, true, search)
	if err != nil {
		return 0, fmt.Errorf("count agents: %w", err)
	}
	q, args, err := f.countSQL(src)
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

func (f AgentFilter) countSQL(src agentSource) (string, []any, error) {
	// The status may drive the heartbeat index when nothing narrower does.
	conds, args, err := f.where(f.OS == "" && f.Version == "" && f.Group == "", true, false)
	if err != nil {
		return "", nil, err
	}
	if len(conds) == 0 {
		conds = []string{"1 = 1"}
	}
	from, fromArgs, _ := src.from(f)
	return `SELECT COUNT(*) FROM ` + from + ` WHERE ` + strings.Join(conds, " AND "), append(fromArgs, args...), nil
}

// groupCountQuery counts a group's members that have an agents row, and
// those of them online, from group_minutes (0009, by the index of 0020):
// all its minutes, and the minutes after the cutoff's (op ">", sign "+")
// or from it on (">=", "-") with the members of the cutoff's minute on the
// edge's side of the cutoff added or taken away, the shorter part of the
// minute as edgeOf picks it for the fleet's count.
func groupCountQuery(op, sign string) string {
	return `SELECT
	(SELECT COALESCE(SUM(agents), 0) FROM group_minutes WHERE group_name = ?1),
	(SELECT COALESCE(SUM(agents), 0) FROM group_minutes WHERE group_name = ?1 AND minute ` + op + ` ?2)
	` + sign + ` (SELECT COUNT(*) FROM agents AS a CROSS JOIN agent_group_members AS gm
	   ON gm.group_name = ?1 AND gm.pc_id = a.pc_id
	   WHERE a.last_heartbeat >= ?3 AND a.last_heartbeat < ?4)`
}

var (
	groupCountAdd = groupCountQuery(">", "+")
	groupCountSub = groupCountQuery(">=", "-")
)

// groupKnownSQL is groupCountQuery's first column alone: without a status
// the cutoff's minute need not be read.
const groupKnownSQL = `SELECT COALESCE(SUM(agents), 0) FROM group_minutes WHERE group_name = ?`

// countGroup counts the members of f.Group with f.Status, f having no
// other filter.
func (db *DB) countGroup(ctx context.Context, f AgentFilter) (int64, error) {
	var known, active int64
	if f.Status == "" {
		if err := db.cachedRow(ctx, groupKnownSQL, []any{f.Group}, &known); err != nil {
			return 0, fmt.Errorf("count agents of group %q: %w", f.Group, err)
		}
		return known, nil
	}
	e := edgeOf(f.OnlineSince)
	if err := db.cachedRow(ctx, e.pick(groupCountAdd, groupCountSub), []any{f.Group, e.minute, e.from, e.to}, &known, &active); err != nil {
		return 0, fmt.Errorf("count agents of group %q: %w", f.Group, err)
	}
	switch f.Status {
	case "":
		return known, nil
	case AgentsOnline:
		return active, nil
	case AgentsOffline, AgentsStale:
		return known - active, nil
	}
	return 0, fmt.Errorf("count agents: unknown status %q", f.Status)
}
