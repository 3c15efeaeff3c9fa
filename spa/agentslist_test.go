package spa_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// listAgent is one agent of the roster test, as seeded.
type listAgent struct {
	pc, host, os string
	age          time.Duration
}

// seedRoster writes n agents whose orders all differ: pc_id ascending,
// hostnames descending, heartbeats scattered over the last 400 s (13 s
// apart modulo 400, all distinct), three OS families, two versions, and
// every fourth PC in the group "lab".
func seedRoster(t *testing.T, db *storage.DB, now time.Time, n int) []listAgent {
	t.Helper()
	ctx := context.Background()
	var out []listAgent
	err := db.Update(ctx, func(tx *storage.Tx) error {
		for i := range n {
			a := listAgent{pc: fmt.Sprintf("A-%03d", i), host: fmt.Sprintf("h-%03d", n-i),
				os: []string{"windows", "linux", "darwin"}[i%3], age: time.Duration(i*13%400) * time.Second}
			out = append(out, a)
			if _, err := tx.Exec(ctx, `INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at)
				VALUES (?, ?, ?, ?, ?, ?)`, a.pc, a.host, a.os, []string{"1.0.0", "1.1.0"}[i%2],
				kanade.FormatTime(now.Add(-a.age)), kanade.FormatTime(now)); err != nil {
				return err
			}
			if i%4 == 0 {
				if _, err := tx.Exec(ctx, `INSERT INTO agent_group_members (group_name, pc_id) VALUES ('lab', ?)`, a.pc); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed agents: %v", err)
	}
	return out
}

// TestAgentsListInABrowser covers the roster at scale (issue 13) at 1440
// and 390 px: the total, sorting by a column header (aria-sort, oldest
// heartbeat first, reversed on a second click), the status, OS, version and
// group filters, More following the cursor in the sort, Back keeping the
// rows, and on a phone the state and heartbeat columns on screen.
func TestAgentsListInABrowser(t *testing.T) {
	b := newBrowser(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	db := storagetest.Open(t, clock)
	const n = 130
	roster := seedRoster(t, db, now, n)
	base := dashboard(t, db, clock, nil)
	stale := kanade.DefaultStaleThreshold

	oldest := slices.MaxFunc(roster, func(a, b listAgent) int { return int(a.age - b.age) })
	newest := slices.MinFunc(roster, func(a, b listAgent) int { return int(a.age - b.age) })
	count := func(keep func(listAgent) bool) int {
		k := 0
		for _, a := range roster {
			if keep(a) {
				k++
			}
		}
		return k
	}
	offline := count(func(a listAgent) bool { return a.age > stale })
	linuxOffline := count(func(a listAgent) bool { return a.age > stale && a.os == "linux" })

	step := steps(t)
	firstCells := func(t *testing.T, col int) []string {
		t.Helper()
		return browserRun(t, b, "column", chromedp.Evaluate[[]string](
			fmt.Sprintf(`[...document.querySelectorAll('table#agents tbody tr')].map(tr => tr.cells[%d].textContent.trim())`, col)))
	}
	setFilter := func(t *testing.T, name, value string) {
		t.Helper()
		b.do(t, "filter "+name, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
			`void (() => { const e = document.querySelector('form.filters [name=%q]'); e.value = %q; e.dispatchEvent(new Event(e.tagName === 'SELECT' ? 'change' : 'input')); })()`, name, value)))
	}
	for _, w := range []int64{1440, 390} {
		step(fmt.Sprintf("at %d px: the total, sorting by heartbeat both ways", w), func(t *testing.T) {
			b.do(t, "viewport", chromedp.EmulateViewport(w, 900))
			b.do(t, "open", chromedp.Navigate(base+"/#token="+browserToken))
			b.waitFor(t, "the overview", `document.querySelector('#fleet .stat')`)
			b.do(t, "open Agents", chromedp.Navigate(base+"/agents"))
			b.waitFor(t, "50 agents and the total", fmt.Sprintf(`document.querySelectorAll('table#agents tbody tr').length === 50
				&& document.getElementById('list-count').textContent === '50 of %d'`, n))
			b.do(t, "sort by heartbeat", clickCSS(`th button[data-sort="last_heartbeat"]`))
			b.waitFor(t, "oldest first", fmt.Sprintf(`document.querySelector('table#agents tbody tr td').textContent === %q
				&& document.querySelector('th:has(button[data-sort="last_heartbeat"])').getAttribute('aria-sort') === 'ascending'`, oldest.pc))
			if got := b.path(t); got != "/agents?sort=last_heartbeat&order=asc" {
				t.Errorf("address %q", got)
			}
			b.do(t, "reverse", clickCSS(`th button[data-sort="last_heartbeat"]`))
			b.waitFor(t, "newest first", fmt.Sprintf(`document.querySelector('table#agents tbody tr td').textContent === %q
				&& document.querySelector('th:has(button[data-sort="last_heartbeat"])').getAttribute('aria-sort') === 'descending'
				&& document.querySelector('th:has(button[data-sort="pc_id"])').getAttribute('aria-sort') === 'none'`, newest.pc))
		})
		step(fmt.Sprintf("at %d px: filters by status, OS, group and version", w), func(t *testing.T) {
			setFilter(t, "status", "offline")
			b.waitFor(t, "offline only", fmt.Sprintf(`document.getElementById('list-count').textContent === '%d of %d'`, min(offline, 50), offline))
			setFilter(t, "os", "linux")
			b.waitFor(t, "offline linux", fmt.Sprintf(`document.getElementById('list-count').textContent === '%d of %d'`, linuxOffline, linuxOffline))
			for _, os := range firstCells(t, 4) {
				if os != "linux" {
					t.Errorf("os filter shows %q", os)
				}
			}
			for _, st := range firstCells(t, 1) {
				if st != "offline" {
					t.Errorf("status filter shows %q", st)
				}
			}
			setFilter(t, "status", "")
			setFilter(t, "os", "")
			setFilter(t, "group", "lab")
			lab := count(func(a listAgent) bool { var i int; fmt.Sscanf(a.pc, "A-%d", &i); return i%4 == 0 })
			b.waitFor(t, "the lab group", fmt.Sprintf(`document.getElementById('list-count').textContent === '%d of %d'`, min(lab, 50), lab))
			setFilter(t, "group", "")
			setFilter(t, "version", "1.1.0")
			b.waitFor(t, "version 1.1.0", fmt.Sprintf(`document.getElementById('list-count').textContent === '50 of %d'`, n/2))
			for _, v := range firstCells(t, 5) {
				if v != "1.1.0" {
					t.Errorf("version filter shows %q", v)
				}
			}
			setFilter(t, "version", "")
			b.waitFor(t, "everything again", fmt.Sprintf(`document.getElementById('list-count').textContent === '50 of %d'`, n))
		})
		step(fmt.Sprintf("at %d px: More follows the sort, Back keeps the rows", w), func(t *testing.T) {
			b.do(t, "sort by hostname", clickCSS(`th button[data-sort="hostname"]`))
			b.waitFor(t, "hostname order", `document.querySelector('table#agents tbody tr td:nth-child(4)').textContent === 'h-001'`)
			b.do(t, "More", clickCSS(`button.more`))
			b.waitFor(t, "100 agents", fmt.Sprintf(`document.querySelectorAll('table#agents tbody tr').length === 100
				&& document.getElementById('list-count').textContent === '100 of %d'`, n))
			hosts := firstCells(t, 3)
			want := make([]string, 100)
			for i := range want {
				want[i] = fmt.Sprintf("h-%03d", i+1)
			}
			if !slices.Equal(hosts, want) {
				t.Errorf("hostnames over two pages: %v", hosts)
			}
			b.do(t, "open an agent", chromedp.Evaluate[chromedp.Void](`void document.querySelector('table#agents tbody tr:nth-child(80) a').click()`))
			b.waitFor(t, "the agent", `document.querySelector('table.kv')`)
			b.do(t, "back", chromedp.NavigateBack())
			b.waitFor(t, "100 agents again, still by hostname", `document.querySelectorAll('table#agents tbody tr').length === 100
				&& document.querySelector('table#agents tbody tr td:nth-child(4)').textContent === 'h-001'
				&& document.querySelector('th:has(button[data-sort="hostname"])').getAttribute('aria-sort') === 'ascending'`)
			if w == 390 {
				// State and heartbeat follow the id: on a phone they are on screen
				// without scrolling the table, and the page itself is not wider
				// than the phone.
				right := browserRun(t, b, "cells", chromedp.Evaluate[[]float64](
					`[1, 2].map(i => document.querySelector('table#agents tbody tr').cells[i].getBoundingClientRect().right)`))
				for i, r := range right {
					if r > 390 {
						t.Errorf("column %d ends at %.0f px, off a 390 px screen", i+1, r)
					}
				}
				if sw := browserRun(t, b, "page width", chromedp.Evaluate[float64](`document.documentElement.scrollWidth`)); sw > 390 {
					t.Errorf("page is %.0f px wide at 390 px", sw)
				}
			}
			b.noPageErrors(t)
		})
	}
}
