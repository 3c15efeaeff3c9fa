package storage_test

import (
	"errors"
	"maps"
	"math/rand/v2"
	"slices"

	"context"
	"fmt"
	"github.com/kanade-fleet/backend"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// agentFilterCases are every combination of the roster's filters: each
// status or none, and each of OS, version, group and search present or
// not, named by the filters present ("none" for none).
var agentFilterCases = func() map[string]storage.AgentFilter {
	out := map[string]storage.AgentFilter{}
	for _, status := range []storage.AgentStatus{"", storage.AgentsOnline, storage.AgentsOffline} {
		for bits := range 1 << 4 {
			f := storage.AgentFilter{Status: status}
			var name []string
			if status != "" {
				name = append(name, string(status))
			}
			if bits&1 != 0 {
				f.OS, name = "windows", append(name, "os")
			}
			if bits&2 != 0 {
				f.Version, name = "0.43.56", append(name, "version")
			}
			if bits&4 != 0 {
				f.Group, name = "lab", append(name, "group")
			}
			if bits&8 != 0 {
				f.Query, name = "pc-01", append(name, "q")
			}
			if len(name) == 0 {
				name = []string{"none"}
			}
			out[strings.Join(name, "+")] = f
		}
	}
	return out
}()

// TestAgentsListQueryPlans proves every sort, in both orders, with every
// combination of filters, first page and next, walks an index in order
// when served by the sort's walk: no table scan and no sort of the rows
// (no temp B-tree). (A search or group with few matches is served from its
// candidates instead: TestAgentsSearchCandidatesPlans, TestAgentsGroupPlans.)
func TestAgentsListQueryPlans(t *testing.T) {
	storagetest.AnswersOnly(t)
	db := storagetest.Open(t, nil)
	if db.Remote() {
		t.Skip("EXPLAIN QUERY PLAN is checked on SQLite")
	}
	ctx := context.Background()
	forEachPlanCase(t, func(what string, f storage.AgentFilter, next bool) {
		page, count, err := storage.AgentsListPlanForTest(ctx, db, f, next)
		if err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(page, " | ")
		t.Logf("%s: %s", what, plan)
		if strings.Contains(plan, "TEMP B-TREE") || !strings.Contains(plan, "INDEX") {
			t.Errorf("%s: plan %q, want an index walk without a sort", what, plan)
		}
		if next && f.Sort != storage.AgentSortPCID && !strings.Contains(plan, "SEARCH agents") {
			t.Errorf("%s: plan %q, want the cursor to start a range of the index", what, plan)
		}
		for _, step := range page {
			if strings.HasPrefix(step, "SCAN agents") && !strings.Contains(step, "INDEX") {
				t.Errorf("%s: plan %q scans the table", what, plan)
			}
		}
		// Without OS, version or search the count reads the summaries
		// (fleet or group), not this statement.
		if !next && !f.Desc && (f.OS != "" || f.Version != "" || f.Query != "") {
			cplan := strings.Join(count, " | ")
			t.Logf("%s count: %s", what, cplan)
			// A count reads a range of an index, or searches one per
			// member of a group; only a search with many matches walks
			// a whole index, a covering one. (A group alone or with a
			// status is counted from group_minutes: TestAgentsGroupPlans.)
			for _, step := range count {
				if strings.HasPrefix(step, "SCAN") && !strings.Contains(step, "COVERING INDEX") ||
					strings.Contains(step, "TEMP B-TREE") {
					t.Errorf("%s: count plan %q, want index ranges or a covering index", what, cplan)
				}
			}
			if f.Query == "" && strings.HasPrefix(cplan, "SCAN") {
				t.Errorf("%s: count plan %q walks an index without a search", what, cplan)
			}
		}
	})
}

// refAgent is the test's own copy of a roster row.
type refAgent struct {
	pc                string
	host, os, version *string
	beat              string
	groups            map[string]bool
}

// refSortValue is the reference's sort column: a NULL sorts as "".
func refSortValue(a refAgent, s storage.AgentSort) string {
	v := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	switch s {
	case storage.AgentSortHostname:
		return v(a.host)
	case storage.AgentSortOS:
		return v(a.os)
	case storage.AgentSortVersion:
		return v(a.version)
	case storage.AgentSortHeartbeat, storage.AgentSortStatus:
		return a.beat
	}
	return ""
}

// refLess orders by (sort value, pc_id), reversed when desc.
func refLess(a, b refAgent, s storage.AgentSort, desc bool) bool {
	va, vb := refSortValue(a, s), refSortValue(b, s)
	if va == vb {
		va, vb = a.pc, b.pc
	}
	if desc {
		return va > vb
	}
	return va < vb
}

func refMatch(a refAgent, f storage.AgentFilter) bool {
	cutoff := f.OnlineSince.UTC().Format("2006-01-02T15:04:05.000000000Z")
	switch f.Status {
	case storage.AgentsOnline:
		if a.beat < cutoff {
			return false
		}
	case storage.AgentsOffline, storage.AgentsStale:
		if a.beat >= cutoff {
			return false
		}
	}
	eq := func(p *string, want string) bool {
		return want == "" || (p == nil && want == "") || (p != nil && *p == want)
	}
	if !eq(a.os, f.OS) || !eq(a.version, f.Version) {
		return false
	}
	if f.Group != "" && !a.groups[f.Group] {
		return false
	}
	if f.Query != "" {
		q := strings.ToLower(f.Query)
		host := ""
		if a.host != nil {
			host = *a.host
		}
		if !strings.Contains(strings.ToLower(a.pc), q) && !strings.Contains(strings.ToLower(host), q) {
			return false
		}
	}
	return true
}

// TestListAgentsMatchesReference pages the roster in every sort, both
// orders, with random filters and page sizes, inserting rows between pages,
// and checks each page against a Go reference over the rows as they are
// when the page is read: the page is the first rows after the cursor's row
// in the sort, so nothing repeats and nothing that was there is skipped.
// The count is checked against the reference for every filter.
func TestListAgentsMatchesReference(t *testing.T) {
	storagetest.AnswersOnly(t)
	t.Parallel() // beside the other brute-force tests (storagetest.AnswersOnly)
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(13, 13))
	base := time.Date(2026, 6, 20, 12, 0, 0, 0, time.UTC)
	hosts := []string{"alpha", "Beta", "gamma", "pc-01-host", "delta"}
	oses := []string{"windows", "linux", "darwin"}
	versions := []string{"0.43.55", "0.43.56", "0.44.0"}
	groups := []string{"lab", "office", "kiosk"}
	pick := func(xs []string) *string {
		if r.IntN(6) == 0 {
			return nil // NULL columns sort as ""
		}
		v := xs[r.IntN(len(xs))]
		return &v
	}
	ref := map[string]refAgent{}
	gone := map[string]bool{} // deleted agents whose memberships stay
	next := 0
	insert := func(n int) {
		var vals []string
		var args []any
		var members [][2]string
		for range n {
			next++
			a := refAgent{pc: fmt.Sprintf("PC-%04d", r.IntN(10000)*10+next%10), host: pick(hosts), os: pick(oses),
				version: pick(versions), groups: map[string]bool{}}
			if _, dup := ref[a.pc]; dup || gone[a.pc] {
				continue
			}
			// Few distinct instants: many ties on the heartbeat, some on each
			// side of the cutoff.
			a.beat = kanade.FormatTime(base.Add(-time.Duration(r.IntN(8)) * 30 * time.Second))
			for _, g := range groups {
				if r.IntN(3) == 0 {
					a.groups[g] = true
					members = append(members, [2]string{g, a.pc})
				}
			}
			ref[a.pc] = a
			vals = append(vals, "(?, ?, ?, ?, ?, ?)")
			args = append(args, a.pc, a.host, a.os, a.version, a.beat, a.beat)
		}
		if len(vals) > 0 {
			mustExec(t, db, `INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at) VALUES `+
				strings.Join(vals, ", "), args...)
		}
		for _, m := range members {
			mustExec(t, db, `INSERT INTO agent_group_members (group_name, pc_id) VALUES (?, ?)`, m[0], m[1])
		}
	}
	insert(150)
	// mutate changes what the members of a group carry of their agent
	// (0025) in every way it can change: an UPDATE of the sorted columns, a
	// heartbeat's upsert naming an agent, an agent deleted and back with
	// other values, a membership written before its agent, and an agent
	// deleted for good under its memberships.
	mutate := func(n int) {
		for range n {
			keys := slices.Sorted(maps.Keys(ref))
			pc := keys[r.IntN(len(keys))]
			a := ref[pc]
			switch r.IntN(5) {
			case 0:
				a.host, a.os, a.version = pick(hosts), pick(oses), pick(versions)
				mustExec(t, db, `UPDATE agents SET hostname = ?, os_family = ?, agent_version = ? WHERE pc_id = ?`, a.host, a.os, a.version, pc)
			case 1:
				// storage.md: a heartbeat's hostname names only an agent without one.
				h, v := hosts[r.IntN(len(hosts))], versions[r.IntN(len(versions))]
				if a.host == nil {
					a.host = &h
				}
				a.version = &v
				at, err := time.Parse(time.RFC3339Nano, a.beat)
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Update(ctx, func(tx *storage.Tx) error {
					return tx.UpsertHeartbeats(ctx, []kanade.Heartbeat{{PcID: pc, At: kanade.Timestamp{Time: at}, AgentVersion: v, Hostname: &h}})
				}); err != nil {
					t.Fatal(err)
				}
			case 2:
				mustExec(t, db, `DELETE FROM agents WHERE pc_id = ?`, pc)
				a.host, a.os, a.version = pick(hosts), pick(oses), pick(versions)
				mustExec(t, db, `INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
					pc, a.host, a.os, a.version, a.beat, a.beat)
			case 3:
				next++
				b := refAgent{pc: fmt.Sprintf("PC-%04d", r.IntN(10000)*10+next%10), host: pick(hosts), os: pick(oses),
					version: pick(versions), groups: map[string]bool{groups[r.IntN(len(groups))]: true}, beat: a.beat}
				if _, dup := ref[b.pc]; dup || gone[b.pc] {
					continue
				}
				for g := range b.groups {
					mustExec(t, db, `INSERT INTO agent_group_members (group_name, pc_id) VALUES (?, ?)`, g, b.pc)
				}
				mustExec(t, db, `INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
					b.pc, b.host, b.os, b.version, b.beat, b.beat)
				ref[b.pc] = b
				continue
			case 4:
				mustExec(t, db, `DELETE FROM agents WHERE pc_id = ?`, pc)
				delete(ref, pc)
				gone[pc] = true
				continue
			}
			ref[pc] = a
		}
	}
	// The cutoff moves between rounds: on a minute, and at 10 s and 30 s
	// into one, so the counts' edge (edgeOf) is taken on both sides of the
	// cutoff with heartbeats in it (they fall on :00 and :30).
	cutoffs := []time.Time{base.Add(-2 * time.Minute), base.Add(-110 * time.Second), base.Add(-150 * time.Second)}
	cutoff := cutoffs[0]
	randomFilter := func() storage.AgentFilter {
		f := storage.AgentFilter{OnlineSince: cutoff}
		if r.IntN(3) == 0 {
			f.Status = []storage.AgentStatus{storage.AgentsOnline, storage.AgentsOffline, storage.AgentsStale}[r.IntN(3)]
		}
		if r.IntN(4) == 0 {
			f.OS = oses[r.IntN(len(oses))]
		}
		if r.IntN(4) == 0 {
			f.Version = versions[r.IntN(len(versions))]
		}
		if r.IntN(4) == 0 {
			f.Group = groups[r.IntN(len(groups))]
		}
		if r.IntN(5) == 0 {
			f.Query = []string{"PC-1", "pc-01", "ETA", "a", "0_", "%"}[r.IntN(6)]
		}
		return f
	}
	// refCount is the reference's count of the agents f matches.
	refCount := func(f storage.AgentFilter) int64 {
		var n int64
		for _, a := range ref {
			if refMatch(a, f) {
				n++
			}
		}
		return n
	}
	defer storage.SetGroupCandidatesMaxForTest(2000)()
	for round := range 6 {
		// Odd rounds serve a group (about 50 members) by the sort's walk,
		// even ones from its members.
		storage.SetGroupCandidatesMaxForTest([]int{2000, 20}[round%2])
		cutoff = cutoffs[round%3]
		if round > 0 {
			mutate(20)
		}
		for _, sort := range storage.AgentSorts {
			for _, desc := range []bool{false, true} {
				f := randomFilter()
				if round == 0 {
					f = storage.AgentFilter{OnlineSince: cutoff} // every sort unfiltered
				}
				f.Sort, f.Desc = sort, desc
				what := fmt.Sprintf("round %d sort %s desc %v filter %+v", round, sort, desc, f)
				var last *refAgent
				for pageNo := 0; ; pageNo++ {
					f.Limit = 1 + r.IntN(60)
					var want []refAgent
					for _, a := range ref {
						if refMatch(a, f) && (last == nil || refLess(*last, a, sort, desc)) {
							want = append(want, a)
						}
					}
					slices.SortFunc(want, func(a, b refAgent) int {
						if refLess(a, b, sort, desc) {
							return -1
						}
						return 1
					})
					page, err := db.ListAgents(ctx, f)
					if err != nil {
						t.Fatalf("%s page %d: %v", what, pageNo, err)
					}
					n := min(f.Limit, len(want))
					got := make([]string, len(page.Items))
					for i, a := range page.Items {
						got[i] = a.PCID
						if a.Online != (a.LastHeartbeat >= kanade.FormatTime(cutoff)) {
							t.Fatalf("%s: %s online %v", what, a.PCID, a.Online)
						}
					}
					wantIDs := make([]string, n)
					for i := range n {
						wantIDs[i] = want[i].pc
					}
					if !slices.Equal(got, wantIDs) {
						t.Fatalf("%s page %d limit %d:\n got %v\nwant %v", what, pageNo, f.Limit, got, wantIDs)
					}
					if (page.NextCursor != nil) != (len(want) > f.Limit) {
						t.Fatalf("%s page %d: next cursor %v with %d rows left of limit %d", what, pageNo, page.NextCursor, len(want), f.Limit)
					}
					if page.NextCursor == nil {
						break
					}
					if pageNo > 2000 {
						t.Fatalf("%s: still paging at page %d (%d rows)", what, pageNo, len(ref))
					}
					l := ref[got[len(got)-1]]
					last = &l
					f.Cursor = *page.NextCursor
					if r.IntN(4) == 0 && len(ref) < 400 {
						insert(1 + r.IntN(3)) // rows arrive between pages
					}
				}
				f.Cursor = ""
				want := refCount(f)
				got, err := db.CountAgents(ctx, f)
				if err != nil || got != want {
					t.Fatalf("%s: count %d, %v; want %d", what, got, err, want)
				}
			}
		}
	}
	// Every count the summaries answer (a status alone, a group with or
	// without one) at every cutoff: the random filters reach these few.
	for _, cut := range cutoffs {
		for _, g := range append([]string{""}, groups...) {
			for _, st := range append([]storage.AgentStatus{""}, storage.AgentStatuses...) {
				f := storage.AgentFilter{OnlineSince: cut, Group: g, Status: st}
				want := refCount(f)
				got, err := db.CountAgents(ctx, f)
				if err != nil || got != want {
					t.Fatalf("count of group %q status %q at %s: %d, %v; want %d", g, st, kanade.FormatTime(cut), got, err, want)
				}
			}
		}
	}
}

// TestListAgentsRefusesCursorOfAnotherSort: a cursor names its sort and
// order, so it cannot page another (400 at the handler), and bad sorts and
// statuses are errors.
func TestListAgentsRefusesCursorOfAnotherSort(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	for i := range 5 {
		mustExec(t, db, `INSERT INTO agents (pc_id, hostname, last_heartbeat, updated_at) VALUES (?, ?, ?, ?)`,
			fmt.Sprintf("PC-%d", i), fmt.Sprintf("h%d", 5-i), "2026-01-01T00:00:00.000000000Z", "2026-01-01T00:00:00.000000000Z")
	}
	for _, from := range storage.AgentSorts {
		for _, fromDesc := range []bool{false, true} {
			p, err := db.ListAgents(ctx, storage.AgentFilter{PageRequest: storage.PageRequest{Limit: 2}, Sort: from, Desc: fromDesc})
			if err != nil || p.NextCursor == nil {
				t.Fatalf("%s: %v %v", from, p.NextCursor, err)
			}
			for _, to := range storage.AgentSorts {
				for _, toDesc := range []bool{false, true} {
					_, err := db.ListAgents(ctx, storage.AgentFilter{PageRequest: storage.PageRequest{Limit: 2, Cursor: *p.NextCursor}, Sort: to, Desc: toDesc})
					same := from == to && fromDesc == toDesc
					if same != (err == nil) || (!same && !errors.Is(err, storage.ErrInvalidCursor)) {
						t.Errorf("cursor of %s desc %v given to %s desc %v: %v", from, fromDesc, to, toDesc, err)
					}
				}
			}
		}
	}
	if _, err := db.ListAgents(ctx, storage.AgentFilter{PageRequest: storage.PageRequest{Limit: 2}, Sort: "uptime"}); err == nil {
		t.Error("unknown sort accepted")
	}
	if _, err := db.ListAgents(ctx, storage.AgentFilter{PageRequest: storage.PageRequest{Limit: 2}, Status: "asleep"}); err == nil {
		t.Error("unknown status accepted")
	}
}

// forEachPlanCase calls check for every sort, order, filter of
// agentFilterCases and first or next page of the agents list, with what
// naming the case: the plan tests of the list, the search and the groups
// walk the same combinations.
func forEachPlanCase(t *testing.T, check func(what string, f storage.AgentFilter, next bool)) {
	t.Helper()
	for _, sort := range storage.AgentSorts {
		for _, desc := range []bool{false, true} {
			for name, f := range agentFilterCases {
				for _, next := range []bool{false, true} {
					f.Sort, f.Desc, f.Limit = sort, desc, 50
					f.OnlineSince = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
					check(fmt.Sprintf("sort %s desc %v filter %s next %v", sort, desc, name, next), f, next)
				}
			}
		}
	}
}
