package storage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// asciiLower folds A–Z only, as SQLite's LIKE does: the search is a
// case-insensitive substring in ASCII, and É and é stay different.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// searchPieces are the texts the search test builds names and searches
// from: LIKE's wildcards and escape, FTS5 query syntax, quotes, letters
// whose Unicode case folding differs from ASCII's (É/é, the Kelvin sign
// K that folds to k, ß, dotted İ), wide characters and spaces.
var searchPieces = []string{
	"host", "HOST", "pc", "-", "0", "12", "a", "B", "%", "_", `\`, `"`, `""`, "'", "*", "^", "NEAR", "near(", "OR",
	"AND", "NOT", "(", ")", ":", "+", "{", "}", "É", "é", "\u212a", "k", "ß", "SS", "İ", "i", "日本", "語", " ", "  ", ".",
}

// TestAgentsSearchMatchesReference checks q= against a Go brute force
// (an ASCII case-insensitive substring of pc_id or hostname) on random
// names built from hostile pieces, while the rows change between rounds:
// inserted, renamed by heartbeats and by UPDATE (in case only, too),
// given a pc_id, heartbeats that leave the name alone, and deleted. The
// searches are hostile strings, 1- and 2-character ones (served by
// agent_grams, or by the walk when common), and pieces of the stored names in random case. One common
// piece is in more than 2,000 names, so a search of it is served by the
// walk too and the rest by the trigram index's candidates. Every page of
// every sort and the count are compared.
func TestAgentsSearchMatchesReference(t *testing.T) {
	storagetest.AnswersOnly(t)
	t.Parallel() // beside the other brute-force tests (storagetest.AnswersOnly)
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(16, 16))
	at := time.Date(2026, 6, 20, 12, 0, 0, 0, time.UTC)
	name := func() string {
		var b strings.Builder
		for range 1 + r.IntN(5) {
			b.WriteString(searchPieces[r.IntN(len(searchPieces))])
		}
		return b.String()
	}
	hosts := map[string]*string{} // pc_id → hostname, the reference
	// More than 2,000 agents named "fleet-…": a search of "FLEET" has too
	// many candidates for the index and walks.
	mustExec(t, db, `WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 2099)
		INSERT INTO agents (pc_id, hostname, last_heartbeat, updated_at)
		SELECT printf('bulk-%04d', i), printf('fleet-%04d', i), ?, ? FROM s`, kanade.FormatTime(at), kanade.FormatTime(at))
	for i := range 2100 {
		h := fmt.Sprintf("fleet-%04d", i)
		hosts[fmt.Sprintf("bulk-%04d", i)] = &h
	}
	// Names longer than agent_grams cuts into pieces (256 characters): a
	// search of one or two characters must find them all the same.
	long := strings.Repeat("x", 300) + "Q9"
	hosts["long-name"] = &long
	mustExec(t, db, `INSERT INTO agents (pc_id, hostname, last_heartbeat, updated_at) VALUES ('long-name', ?, ?, ?)`,
		long, kanade.FormatTime(at), kanade.FormatTime(at))
	insert := func(n int) {
		for range n {
			pc := name() + fmt.Sprint(r.IntN(1000))
			if _, dup := hosts[pc]; dup {
				continue
			}
			var h *string
			if r.IntN(8) != 0 {
				v := name()
				h = &v
			}
			hosts[pc] = h
			mustExec(t, db, `INSERT INTO agents (pc_id, hostname, last_heartbeat, updated_at) VALUES (?, ?, ?, ?)`,
				pc, h, kanade.FormatTime(at), kanade.FormatTime(at))
		}
	}
	someAgent := func() string {
		keys := make([]string, 0, len(hosts))
		for pc := range hosts {
			if !strings.HasPrefix(pc, "bulk-") && pc != "long-name" {
				keys = append(keys, pc)
			}
		}
		slices.Sort(keys)
		return keys[r.IntN(len(keys))]
	}
	change := func(n int) {
		for range n {
			pc := someAgent()
			switch r.IntN(6) {
			case 0: // a heartbeat with a name: it names an agent that had none
				// (storage.md: the hostname keeps its first non-NULL value)
				at = at.Add(time.Second)
				h := name()
				if hosts[pc] == nil {
					hosts[pc] = &h
				}
				if err := db.Update(ctx, func(tx *storage.Tx) error {
					return tx.UpsertHeartbeats(ctx, []kanade.Heartbeat{{PcID: pc, At: kanade.Timestamp{Time: at}, AgentVersion: "1", Hostname: &h}})
				}); err != nil {
					t.Fatal(err)
				}
			case 1: // a heartbeat that leaves the name as it is
				at = at.Add(time.Second)
				if err := db.Update(ctx, func(tx *storage.Tx) error {
					return tx.UpsertHeartbeats(ctx, []kanade.Heartbeat{{PcID: pc, At: kanade.Timestamp{Time: at}, AgentVersion: "1", Hostname: hosts[pc]}})
				}); err != nil {
					t.Fatal(err)
				}
			case 2: // the same name in other case
				if h := hosts[pc]; h != nil {
					v := strings.ToUpper(*h)
					if r.IntN(2) == 0 {
						v = strings.ToLower(*h)
					}
					hosts[pc] = &v
					mustExec(t, db, `UPDATE agents SET hostname = ? WHERE pc_id = ?`, v, pc)
				}
			case 3: // the name cleared
				hosts[pc] = nil
				mustExec(t, db, `UPDATE agents SET hostname = NULL WHERE pc_id = ?`, pc)
			case 4: // a new pc_id
				to := name() + "#" + fmt.Sprint(r.IntN(1000))
				if _, dup := hosts[to]; !dup {
					hosts[to] = hosts[pc]
					delete(hosts, pc)
					mustExec(t, db, `UPDATE agents SET pc_id = ? WHERE pc_id = ?`, to, pc)
				}
			case 5:
				delete(hosts, pc)
				mustExec(t, db, `DELETE FROM agents WHERE pc_id = ?`, pc)
			}

		}
	}
	// piece is a random substring of a stored name, in random ASCII case.
	piece := func() string {
		pc := someAgent()
		s := pc
		if h := hosts[pc]; h != nil && r.IntN(2) == 0 {
			s = *h
		}
		rs := []rune(s)
		i := r.IntN(len(rs))
		j := i + 1 + r.IntN(min(6, len(rs)-i))
		out := []rune(string(rs[i:j]))
		for k, c := range out {
			if c < 128 && r.IntN(2) == 0 {
				out[k] = []rune(strings.ToUpper(string(c)))[0]
			}
		}
		return string(out)
	}
	insert(300)
	nulls := 0
	for _, h := range hosts {
		if h == nil {
			nulls++
		}
	}
	if nulls == 0 {
		t.Fatal("no agent without a hostname: the heartbeat that names one is not tested")
	}
	checked, walked := 0, 0
	// Five rounds of changes and ~75 searches each; two with a small sample
	// (storagetest.Small), where a round costs ~15 s.
	for round := range storagetest.Sample(5, 2) {
		if round > 0 {
			change(60)
			insert(20)
		}
		queries := []string{"FLEET", "eet-00", "fleet-0001", `"`, `""`, `"*"`, "*", "^", "NEAR", "near(", "a OR b", "OR", "AND NOT",
			"%", "_", `\`, "%_", `\%`, "é", "É", "K", "\u212a", "ß", "ss", "İ", "日本語", "host", "HOST-", "a", "ab", "zzzzzz", "q9", "Q", "9"}
		for range 30 {
			queries = append(queries, piece())
		}
		for range 10 {
			queries = append(queries, name())
		}
		for _, q := range queries {
			var want []string
			for pc, h := range hosts {
				host := ""
				if h != nil {
					host = *h
				}
				if strings.Contains(asciiLower(pc), asciiLower(q)) || strings.Contains(asciiLower(host), asciiLower(q)) {
					want = append(want, pc)
				}
			}
			slices.Sort(want)
			if len(want) > 2000 {
				walked++
			}
			sort := storage.AgentSorts[r.IntN(len(storage.AgentSorts))]
			f := storage.AgentFilter{Query: q, Sort: sort, Desc: r.IntN(2) == 0, OnlineSince: at}
			f.Limit = 1 + r.IntN(500)
			switch {
			case len(want) < 50:
				f.Limit = 1 + r.IntN(20)
			case len(want) > 2000:
				// Paging a walk a few rows at a time is what makes the
				// cursor's case; a few pages of it are enough, and a
				// thousand under the race detector cost minutes.
				f.Limit = 250 + r.IntN(251)
			}
			var got []string
			for pages := 0; ; pages++ {
				page, err := db.ListAgents(ctx, f)
				if err != nil {
					t.Fatalf("round %d q=%q sort %s: %v", round, q, sort, err)
				}
				for _, a := range page.Items {
					got = append(got, a.PCID)
				}
				if page.NextCursor == nil {
					break
				}
				if pages > 3000 {
					t.Fatalf("q=%q: still paging", q)
				}
				f.Cursor = *page.NextCursor
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {

				t.Fatalf("round %d q=%q sort %s desc %v: got %d agents, want %d; only got %q, only wanted %q",
					round, q, sort, f.Desc, len(got), len(want), clipList(minus(got, want)), clipList(minus(want, got)))
			}
			n, err := db.CountAgents(ctx, storage.AgentFilter{Query: q, OnlineSince: at})
			if err != nil || n != int64(len(want)) {
				t.Fatalf("round %d q=%q: count %d, %v; want %d", round, q, n, err, len(want))
			}
			// The handler's total=true: the same candidates serve the page and
			// the count.
			f.Cursor = ""
			b, n, err := db.ListAndCountAgentsJSON(ctx, nil, f)
			var first kanade.Page[kanade.Agent]
			if err == nil {
				err = json.Unmarshal(b, &first)
			}
			if err != nil || n != int64(len(want)) || len(first.Items) != min(f.Limit, len(want)) {
				t.Fatalf("round %d q=%q: list and count: %d rows, count %d, %v; want %d", round, q, len(first.Items), n, err, len(want))
			}
			checked++
		}
		checkPieceCounts(t, db, hosts)
	}
	if walked == 0 {
		t.Errorf("no search had more than 2,000 matches: the walk was not compared")
	}
	t.Logf("%d searches compared, %d of them with more than 2,000 matches", checked, walked)
}

// checkPieceCounts compares agent_piece_counts (0023), which only chooses
// how a search is served and so cannot fail a search, with the counts of
// the reference: for each piece of one to three characters of a name of
// at most 256, lowered in ASCII as SQL's lower(), the agents holding it.
func checkPieceCounts(t *testing.T, db *storage.DB, hosts map[string]*string) {
	t.Helper()
	want := map[string]int{}
	for pc, h := range hosts {
		names := []string{pc}
		if h != nil {
			names = append(names, *h)
		}
		held := map[string]bool{}
		for _, name := range names {
			rs := []rune(asciiLower(name))
			if len(rs) > 256 {
				continue
			}
			for n := 1; n <= 3; n++ {
				for i := 0; i+n <= len(rs); i++ {
					held[string(rs[i:i+n])] = true
				}
			}
		}
		for p := range held {
			want[p]++
		}
	}
	var js string
	if err := storage.QueryRowForTest(context.Background(), db,
		`SELECT json_group_object(gram, agents) FROM agent_piece_counts WHERE agents <> 0`, &js); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	if err := json.Unmarshal([]byte(js), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("agent_piece_counts differs from the reference (-want +got):\n%s", diff)
	}
}

// minus is the sorted a without the elements of the sorted b (repeats kept).
func minus(a, b []string) []string {
	var out []string
	for i, x := range a {
		if _, found := slices.BinarySearch(b, x); !found || (i > 0 && a[i-1] == x) {
			out = append(out, x)
		}
	}
	return out
}

func clipList(xs []string) []string {
	if len(xs) > 12 {
		return append(xs[:12:12], "…")
	}
	return xs
}

// TestAgentsSearchCandidatesPlans proves a search served from the trigram
// index's candidates reads each candidate's row by its rowid, with the
// candidates the outer loop, for every sort, order and filter combination:
// never a walk of the roster (the sort of the few candidates is expected).
func TestAgentsSearchCandidatesPlans(t *testing.T) {
	storagetest.AnswersOnly(t)
	db := storagetest.Open(t, nil)
	if db.Remote() {
		t.Skip("EXPLAIN QUERY PLAN is checked on SQLite")
	}
	ctx := context.Background()
	forEachPlanCase(t, func(what string, f storage.AgentFilter, next bool) {
		f.Query = "host-0123"
		page, count, err := storage.AgentsSearchPlanForTest(ctx, db, f, next)
		if err != nil {
			t.Fatal(err)
		}
		for kind, plan := range map[string][]string{"page": page, "count": count} {
			joined := strings.Join(plan, " | ")
			first := -1
			for i, step := range plan {
				if strings.Contains(step, "json_each") {
					first = i
					break
				}
			}
			by := slices.IndexFunc(plan, func(s string) bool {
				return strings.HasPrefix(s, "SEARCH agents USING INTEGER PRIMARY KEY (rowid=?)")
			})
			if first < 0 || by < first {
				t.Errorf("%s %s: plan %q, want the candidates outside and agents read by rowid", what, kind, joined)
			}
			for _, step := range plan {
				if strings.HasPrefix(step, "SCAN agents") {
					t.Errorf("%s %s: plan %q walks the roster", what, kind, joined)
				}
			}
		}
	})
}

// TestAgentsGroupPlans proves a group served from its members walks the
// membership key with each member's row read by pc_id: in pc_id order with
// no sort of the rows (the order is the key's), in another order sorting
// at most groupCandidatesMax members; and that the group's count (alone or
// with a status) reads group_minutes by its group index, and the one- and
// two-character search reads agent_grams by its key. Never a walk of the
// roster or a scan of those tables.
func TestAgentsGroupPlans(t *testing.T) {
	db := storagetest.Open(t, nil)
	if db.Remote() {
		t.Skip("EXPLAIN QUERY PLAN is checked on SQLite")
	}
	ctx := context.Background()
	for _, sort := range storage.AgentSorts {
		for _, desc := range []bool{false, true} {
			for name, f := range agentFilterCases {
				if f.Group == "" || f.Query != "" {
					continue // a search with candidates is served from those
				}
				for _, next := range []bool{false, true} {
					f := f
					f.Sort, f.Desc, f.Limit = sort, desc, 50
					f.OnlineSince = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
					page, _, err := storage.AgentsGroupPlanForTest(ctx, db, f, next)
					if err != nil {
						t.Fatal(err)
					}
					what := fmt.Sprintf("sort %s desc %v filter %s next %v", sort, desc, name, next)
					joined := strings.Join(page, " | ")
					// A sorted page sorts the members' rowids in a subquery and
					// reads the page's rows after.
					if len(page) > 0 && page[0] == "CO-ROUTINE pg" {
						page = page[1:]
					}
					pcOrder := sort == storage.AgentSortPCID || (sort == storage.AgentSortOS && f.OS != "") ||
						(sort == storage.AgentSortVersion && f.Version != "")
					// In pc_id order the members' key is walked; sorted, any
					// index leading with the group serves (those of 0025 are
					// narrower than the table).
					members := "SEARCH agent_group_members USING PRIMARY KEY (group_name=?"
					if !pcOrder {
						members = "SEARCH agent_group_members USING "
					}
					if len(page) < 2 || !strings.HasPrefix(page[0], members) || !strings.Contains(page[0], "(group_name=?") ||
						!strings.HasPrefix(page[1], "SEARCH agents USING INDEX sqlite_autoindex_agents_1 (pc_id=?)") {
						t.Errorf("%s: plan %q, want the group's members read by its key and each row by pc_id", what, joined)
					}
					if pcOrder && strings.Contains(joined, "TEMP B-TREE") {
						t.Errorf("%s: plan %q sorts the members, want the key's order", what, joined)
					}
					if pcOrder && next && !strings.Contains(page[0], "pc_id>?") && !strings.Contains(page[0], "pc_id<?") {
						t.Errorf("%s: plan %q, want the cursor to start a range of the members' key", what, joined)
					}
				}
			}
		}
	}
	// A group's page in a sort whose value its members carry (0025) is a
	// range of that sort's members index, in its order, each row read by
	// pc_id: no sort, whatever the group's size.
	keyIndex := map[storage.AgentSort]string{storage.AgentSortHostname: "agent_group_members_by_host",
		storage.AgentSortOS: "agent_group_members_by_os", storage.AgentSortVersion: "agent_group_members_by_version"}
	keyed := 0
	forEachPlanCase(t, func(what string, f storage.AgentFilter, next bool) {
		pcOrder := (f.Sort == storage.AgentSortOS && f.OS != "") || (f.Sort == storage.AgentSortVersion && f.Version != "")
		if f.Group == "" || f.Query != "" || !storage.GroupSortKeyed(f.Sort) || pcOrder {
			return
		}
		keyed++
		page, _, err := storage.AgentsKeyedGroupPlanForTest(ctx, db, f, next)
		if err != nil {
			t.Fatal(err)
		}
		joined := strings.Join(page, " | ")
		if len(page) != 2 || !strings.HasPrefix(page[0], "SEARCH agent_group_members USING COVERING INDEX "+keyIndex[f.Sort]+" (group_name=?") ||
			!strings.HasPrefix(page[1], "SEARCH agents USING INDEX sqlite_autoindex_agents_1 (pc_id=?)") {
			t.Errorf("%s: plan %q, want a range of %s and each row read by pc_id", what, joined, keyIndex[f.Sort])
		}
		col := map[storage.AgentSort]string{storage.AgentSortHostname: "host_key", storage.AgentSortOS: "os_key", storage.AgentSortVersion: "version_key"}[f.Sort]
		if next && !strings.Contains(page[0], col+">?") && !strings.Contains(page[0], col+"<?") {
			t.Errorf("%s: plan %q, want the cursor to start a range of the index", what, joined)
		}
	})
	if keyed == 0 {
		t.Error("no keyed group case: the plans were not checked")
	}
	plans, err := storage.AgentsCountPlansForTest(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"group count":          "SEARCH group_minutes USING INDEX group_minutes_by_group (group_name=?",
		"group count subtract": "SEARCH group_minutes USING INDEX group_minutes_by_group (group_name=?",
		"grams":                "SEARCH agent_grams USING PRIMARY KEY (gram=?)",
		"piece counts":         "SEARCH c USING PRIMARY KEY (gram=?)",
	}
	for name, plan := range plans {
		joined := strings.Join(plan, " | ")
		if !strings.Contains(joined, want[name]) {
			t.Errorf("%s: plan %q, want %q", name, joined, want[name])
		}
		for _, step := range plan {
			// The only scans allowed: a constant row, and json_each over the
			// search's own pieces.
			if strings.HasPrefix(step, "SCAN") && !strings.Contains(step, "CONSTANT ROW") && !strings.HasPrefix(step, "SCAN p VIRTUAL TABLE") {
				t.Errorf("%s: plan %q scans", name, joined)
			}
		}
	}
}
