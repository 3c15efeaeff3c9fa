package spa_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/auth/password"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/spa"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// switchable serves the real handler until down is set; then every
// connection is dropped unanswered, as a stopped server's would be.
type switchable struct {
	h    http.Handler
	down atomic.Bool
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.down.Load() {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		http.Error(w, "down", http.StatusBadGateway)
		return
	}
	s.h.ServeHTTP(w, r)
}

// consoleAgents writes n more agents (C-000 …), all fresh, so the agents
// list has pages to follow.
func consoleAgents(t *testing.T, db *storage.DB, now time.Time, n int) {
	t.Helper()
	ctx := context.Background()
	err := db.Update(ctx, func(tx *storage.Tx) error {
		for i := range n {
			if _, err := tx.Exec(ctx,
				`INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at)
				 VALUES (?, ?, 'windows', '1.5.0', ?, ?)`,
				fmt.Sprintf("C-%03d", i), fmt.Sprintf("desk-%03d", i), kanade.FormatTime(now.Add(-10*time.Second)), kanade.FormatTime(now)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed agents: %v", err)
	}
}

// TestConsoleInABrowser covers the console of issue 13 against the real
// handler: live refresh and the stale state when the server stops, the
// token prompt a refresh must not wipe, a DOM not rebuilt when nothing
// changed, paging kept across Back, linked tiles and triage, execution
// progress, schedule actions with confirmation, every page at 390 px, dark
// mode, Japanese, and a viewer who sees no write control.
func TestConsoleInABrowser(t *testing.T) {
	b := newBrowser(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	db := storagetest.Open(t, clock)
	browserSeed(t, db, now)
	consoleAgents(t, db, now, 120)
	natsSrv := bustest.StartBootstrapped(t)
	kvSeed(t, natsSrv.JS, now)

	hashed, err := password.Hash(veraPassword, testPasswordCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateAccount(context.Background(), storage.NewAccount{Username: "vera", Hash: hashed, Role: kanade.RoleViewer}); err != nil {
		t.Fatal(err)
	}
	h, err := handlers.New(handlers.Config{
		DB: db, Clock: clock, Bus: busOf(natsSrv.Bus), SPA: spa.FS(),
		Logger: slog.New(slog.NewTextHandler(testLog{t}, nil)),
		Auth:   auth.Config{StaticToken: browserToken, JWTSecret: []byte(browserJWTSecret)},

		PasswordCost: testPasswordCost,
	})
	if err != nil {
		t.Fatal(err)
	}
	sw := &switchable{h: h}
	srv := httptest.NewServer(sw)
	t.Cleanup(srv.Close)
	base := srv.URL

	step := steps(t)
	eval := func(t *testing.T, what, expr string) string {
		t.Helper()
		return browserRun(t, b, what, chromedp.Evaluate[string](expr))
	}
	width := func(t *testing.T, w, hgt int64) {
		t.Helper()
		b.do(t, "set the viewport", chromedp.EmulateViewport(w, hgt))
	}
	tableRows := func(t *testing.T, selector string) [][]string {
		t.Helper()
		return browserRun(t, b, "rows of "+selector, chromedp.Evaluate[[][]string](
			`[...document.querySelectorAll(`+jsString(selector+" tbody tr")+`)].map(tr => [...tr.cells].map(td => td.textContent.trim()))`))
	}

	step("a quick refresh for the test, and the overview's linked tiles", func(t *testing.T) {
		b.do(t, "open", chromedp.Navigate(base+"/#token="+browserToken))
		b.do(t, "refresh every 300 ms", chromedp.Evaluate[chromedp.Void](`localStorage.setItem('kanade.refresh_ms', '300')`))
		b.do(t, "reload", chromedp.Reload())
		b.waitFor(t, "the fleet", `document.querySelector('#fleet-status')`)
		hrefs := browserRun(t, b, "tile links", chromedp.Evaluate[map[string]string](
			`Object.fromEntries([...document.querySelectorAll('#fleet a.stat')].map(a => [a.dataset.stat, a.getAttribute('href')]))`))
		want := map[string]string{"known": "/agents", "active": "/agents?status=online", "stale": "/agents?status=offline",
			"total": "/results", "failed": "/results?status=failure", "healthy": "#attention"}
		if diff := cmp.Diff(want, hrefs); diff != "" {
			t.Errorf("tile links (-want +got):\n%s", diff)
		}
		b.waitFor(t, "needs attention", `document.querySelector('#attention ul.attention')`)
		items := b.texts(t, "#attention li")
		if diff := cmp.Diff([]string{fmt.Sprintf("%d JetStream resources are missing", len(kanade.Resources(1))), "1 PCs have not sent a heartbeat recently", "disk-check: exit 3 on 1 PCs"}, items); diff != "" {
			t.Errorf("needs attention (-want +got):\n%s", diff)
		}
		b.waitFor(t, "recent executions", `document.querySelector('#recent-execs .progress')`)
		if got := eval(t, "progress label", `document.querySelector('#recent-execs .progress').getAttribute('aria-label')`); got != "3 of 3 PCs answered: 2 succeeded, 1 failed, 0 skipped" {
			t.Errorf("progress = %q", got)
		}
		if got := b.texts(t, "#versions th"); !cmp.Equal(got, []string{"1.5.0", "1.4.2"}) && !cmp.Equal(got, []string{"1.4.2", "1.5.0"}) {
			t.Errorf("version histogram rows = %q", got)
		}
	})

	step("the overview is not rebuilt when nothing changed, and only the status region is live", func(t *testing.T) {
		b.do(t, "mark a node", chromedp.Evaluate[chromedp.Void](`void (document.querySelector('#fleet-agents .num').kanadeMark = 'kept')`))
		time.Sleep(1500 * time.Millisecond) // several refreshes at 300 ms
		if got := eval(t, "mark", `document.querySelector('#fleet-agents .num').kanadeMark || ''`); got != "kept" {
			t.Error("the fleet card was rebuilt though nothing changed (bug 9)")
		}
		if got := eval(t, "aria-live", `[...document.querySelectorAll('[aria-live]')].map(e => e.id).join(',')`); got != "live" {
			t.Errorf("aria-live regions = %q, want only #live", got)
		}
		if got := eval(t, "state", `document.querySelector('#live').dataset.state`); got != "live" {
			t.Errorf("#live state = %q, want live", got)
		}
	})

	step("the server stopping leaves the last data marked stale, and its return makes it live", func(t *testing.T) {
		sw.down.Store(true)
		b.waitFor(t, "stale", `document.querySelector('#live').dataset.state === 'stale'`)
		if got := eval(t, "status text", `document.querySelector('#live').textContent`); !strings.HasPrefix(got, "stale since ") {
			t.Errorf("#live = %q", got)
		}
		time.Sleep(700 * time.Millisecond)
		if got := b.texts(t, "#fleet-agents .num"); !cmp.Equal(got, []string{"123", "122", "1"}) {
			t.Errorf("the last good numbers are gone while stale: %q", got)
		}
		if n := browserRun(t, b, "error boxes", chromedp.Evaluate[int](`document.querySelectorAll('#app .error').length`)); n != 0 {
			t.Errorf("%d error boxes replaced the data", n)
		}
		sw.down.Store(false)
		b.waitFor(t, "live again", `document.querySelector('#live').dataset.state === 'live'`)
	})

	step("new runs appear on the results page without a reload", func(t *testing.T) {
		b.do(t, "open Results", clickCSS(`#nav a[data-nav="results"]`))
		b.waitFor(t, "three runs", `document.querySelectorAll('table#results tbody tr').length === 3`)
		code := int64(7)
		err := db.Update(context.Background(), func(tx *storage.Tx) error {
			_, err := tx.ApplyResults(context.Background(), []storage.Result{{ExecResult: kanade.ExecResult{
				ResultID: "r-new", RequestID: "req-new", PcID: "PC-2", ManifestID: "disk-check", ExitCode: &code,
				Stderr: "disk full on D:\nmore", StartedAt: kanade.Timestamp{Time: now.Add(-time.Minute)},
				FinishedAt: kanade.Timestamp{Time: now.Add(-30 * time.Second)}}, RecordedAt: now}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		b.waitFor(t, "the new run", `document.querySelectorAll('table#results tbody tr').length === 4`)
	})

	step("the failed tile leads to failures grouped by job and exit code", func(t *testing.T) {
		b.do(t, "open the overview", clickCSS(`#nav a[data-nav="overview"]`))
		b.waitFor(t, "the tile", `document.querySelector('#fleet a[data-stat="failed"]')`)
		b.do(t, "click failed", clickCSS(`#fleet a[data-stat="failed"]`))
		b.waitFor(t, "triage", `document.querySelectorAll('table#triage-table tbody tr').length === 2`)
		want := [][]string{
			{"disk-check", "3", "1", "1", "checking disk C:"},
			{"disk-check", "7", "1", "1", "disk full on D:"},
		}
		got := tableRows(t, "table#triage-table")
		if len(got) == 2 && got[0][1] == "7" {
			got[0], got[1] = got[1], got[0]
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("triage (-want +got):\n%s", diff)
		}
		if got := b.path(t); got != "/results?status=failure" {
			t.Errorf("address = %q", got)
		}
	})

	step("Back after More keeps the loaded rows and the scroll position", func(t *testing.T) {
		b.do(t, "open Agents", chromedp.Navigate(base+"/agents"))
		b.waitFor(t, "50 agents", `document.querySelectorAll('table#agents tbody tr').length === 50`)
		b.do(t, "More", clickCSS(`button.more`))
		b.waitFor(t, "100 agents", `document.querySelectorAll('table#agents tbody tr').length === 100`)
		b.do(t, "scroll", chromedp.Evaluate[chromedp.Void](`void window.scrollTo(0, 1500)`))
		y := browserRun(t, b, "scrollY", chromedp.Evaluate[float64](`window.scrollY`))
		b.do(t, "open an agent", chromedp.Evaluate[chromedp.Void](`void document.querySelector('table#agents tbody tr:nth-child(80) a').click()`))
		b.waitFor(t, "the agent", `document.querySelector('table.kv')`)
		b.do(t, "back", chromedp.NavigateBack())
		b.waitFor(t, "100 agents again", `document.querySelectorAll('table#agents tbody tr').length === 100`)
		b.waitFor(t, "the scroll position", fmt.Sprintf(`Math.abs(window.scrollY - %f) < 5`, y))
	})

	step("an execution shows its progress against the target and links to its job", func(t *testing.T) {
		b.do(t, "open x-1", chromedp.Navigate(base+"/executions/x-1"))
		b.waitFor(t, "progress", `document.querySelector('#exec-progress .progress')`)
		if got := eval(t, "label", `document.querySelector('#exec-progress .progress').getAttribute('aria-label')`); got != "3 of 3 PCs answered: 2 succeeded, 1 failed, 0 skipped" {
			t.Errorf("progress = %q", got)
		}
		if n := browserRun(t, b, "job link", chromedp.Evaluate[int](`document.querySelectorAll('a[href="/jobs/inventory"]').length`)); n == 0 {
			t.Error("no link to the execution's job")
		}
	})

	step("disabling a schedule asks first, then says so and shows it disabled", func(t *testing.T) {
		b.do(t, "open s-every", chromedp.Navigate(base+"/schedules/s-every"))
		b.waitFor(t, "the toggle", `document.querySelector('#toggle-s-every button[data-act="start"]')`)
		b.do(t, "click Disable", clickCSS(`#toggle-s-every button[data-act="start"]`))
		b.waitFor(t, "the question", `document.querySelector('#toggle-s-every.confirming button[data-act="confirm"]')`)
		time.Sleep(700 * time.Millisecond) // refreshes must not close the question
		b.do(t, "confirm", clickCSS(`#toggle-s-every button[data-act="confirm"]`))
		b.waitFor(t, "the note", `document.querySelector('#flash.note')`)
		if diff := cmp.Diff([]string{"s-every is disabled."}, b.texts(t, "#flash")); diff != "" {
			t.Errorf("note (-want +got):\n%s", diff)
		}
		b.waitFor(t, "the disabled badge", `[...document.querySelectorAll('.card-head .badge')].some(e => e.textContent === 'disabled')`)
	})

	step("the token prompt survives refreshes while it is typed into", func(t *testing.T) {
		b.do(t, "forget the token", chromedp.Evaluate[chromedp.Void](`localStorage.removeItem('kanade.token')`))
		b.do(t, "open the overview", chromedp.Navigate(base+"/"))
		b.waitFor(t, "sign-in", `document.querySelector('form#login input')`)
		b.do(t, "type", chromedp.SendKeys(chromedp.CSS(`form#login input[autocomplete="username"]`), "vera"))
		time.Sleep(1500 * time.Millisecond)
		if got := eval(t, "typed", `document.querySelector('form#login input[autocomplete="username"]')?.value || ''`); got != "vera" {
			t.Errorf("the sign-in form lost what was typed: %q (bug 2)", got)
		}
	})

	step("a viewer sees no write control", func(t *testing.T) {
		b.do(t, "password", chromedp.SendKeys(chromedp.CSS(`form#login input[type="password"]`), veraPassword))
		b.do(t, "sign in", clickCSS(`form#login button[type="submit"]`))
		b.waitFor(t, "the overview", `document.querySelector('#fleet-status')`)
		for _, p := range []struct{ path, ready string }{
			{"/", `document.querySelector('#versions')`},
			{"/schedules", `document.querySelector('table#schedules')`},
			{"/schedules/s-daily", `document.querySelector('table.kv')`},
			{"/jobs/inventory", `document.querySelector('pre#raw')`},
			{"/executions/x-1", `document.querySelector('#exec-progress')`},
			{"/agents/PC-1", `document.querySelector('#agent-config')`},
		} {
			b.do(t, "open "+p.path, chromedp.Navigate(base+p.path))
			b.waitFor(t, p.path, p.ready)
			n := browserRun(t, b, "controls", chromedp.Evaluate[int](`document.querySelectorAll('.act, [data-act], #freeze-banner button').length`))
			if n != 0 {
				t.Errorf("%s offers a viewer %d write controls", p.path, n)
			}
		}
	})

	// Back to the admin token for the layout checks.
	b.do(t, "admin again", chromedp.Navigate(base+"/#token="+browserToken))
	pages := []struct{ path, ready string }{
		{"/", `document.querySelector('#durations')`},
		{"/agents", `document.querySelector('table#agents tbody tr')`},
		{"/agents/PC-1", `document.querySelector('#agent-config table')`},
		{"/results", `document.querySelector('table#results tbody tr')`},
		{"/results/r-fail-3", `document.querySelector('pre#stdout')`},
		{"/executions", `document.querySelector('table#executions tbody tr')`},
		{"/executions/x-1", `document.querySelector('#exec-runs')`},
		{"/jobs", `document.querySelector('table#jobs tbody tr')`},
		{"/jobs/disk-check", `document.querySelector('pre#raw')`},
		{"/schedules", `document.querySelector('table#schedules tbody tr')`},
		{"/schedules/s-daily", `document.querySelector('table#next-firings')`},
		{"/groups", `document.querySelector('#fleet-config')`},
		{"/releases", `document.querySelector('#versions')`},
		{"/audit", `document.querySelector('table#audit tbody tr')`},
		{"/accounts", `document.querySelector('table#accounts tbody tr')`},
	}

	step("every page fits 390 px and 1440 px: wide tables scroll inside their card", func(t *testing.T) {
		for _, w := range []int64{390, 1440} {
			width(t, w, 900)
			for _, p := range pages {
				b.do(t, "open "+p.path, chromedp.Navigate(base+p.path))
				b.waitFor(t, p.path, p.ready)
				sw := browserRun(t, b, "page width", chromedp.Evaluate[int64](`document.documentElement.scrollWidth`))
				if sw > w {
					t.Errorf("at %d px %s is %d px wide (bug 1)", w, p.path, sw)
				}
			}
		}
	})

	step("every control has a name and the focus is visible", func(t *testing.T) {
		for _, p := range pages {
			b.do(t, "open "+p.path, chromedp.Navigate(base+p.path))
			b.waitFor(t, p.path, p.ready)
			unnamed := eval(t, "unnamed controls", `[...document.querySelectorAll('button, input, select, a[href]')].filter(e =>
				e.checkVisibility() && !(e.getAttribute('aria-label') || e.textContent.trim() || e.labels?.length || e.placeholder)).map(e => e.outerHTML.slice(0, 80)).join('\n')`)
			if unnamed != "" {
				t.Errorf("%s has controls without a name:\n%s", p.path, unnamed)
			}
		}
		b.do(t, "tab", chromedp.KeyEvent("\t"))
		if got := eval(t, "outline", `getComputedStyle(document.activeElement).outlineStyle`); got == "none" {
			t.Error("the focused element has no outline")
		}
	})

	step("dark mode and Japanese", func(t *testing.T) {
		b.do(t, "dark", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
			return err
		}))
		width(t, 1440, 1100)
		b.do(t, "open the overview", chromedp.Navigate(base+"/"))
		b.waitFor(t, "the fleet", `document.querySelector('#durations')`)
		if bg := eval(t, "background", `getComputedStyle(document.body).backgroundColor`); bg != "rgb(20, 23, 28)" {
			t.Errorf("dark background = %q", bg)
		}
		shot(t, b, "/tmp/kanade-console-dark.jpg")
		b.do(t, "choose Japanese", chromedp.SetValue(chromedp.CSS(`#lang`), "ja"),
			chromedp.Evaluate[chromedp.Void](`void document.querySelector('#lang').dispatchEvent(new Event('change'))`))
		b.waitFor(t, "Japanese", `document.querySelector('#fleet h2')?.textContent === 'フリート'`)
		if got := eval(t, "lang", `document.documentElement.lang`); got != "ja" {
			t.Errorf("html lang = %q", got)
		}
		if diff := cmp.Diff("概要", eval(t, "nav", `document.querySelector('#nav a[data-nav="overview"]').textContent`)); diff != "" {
			t.Errorf("nav (-want +got):\n%s", diff)
		}
		b.do(t, "open Agents", chromedp.Navigate(base+"/agents"))
		b.waitFor(t, "rows", `document.querySelector('table#agents tbody tr')`)
		if got := eval(t, "heading", `document.querySelector('#app h2').textContent`); got != "エージェント" {
			t.Errorf("agents heading = %q", got)
		}
		if got := eval(t, "ago", `document.querySelector('table#agents time[data-ago]').textContent`); !strings.HasSuffix(got, "前") {
			t.Errorf("relative time in Japanese = %q", got)
		}
		b.do(t, "back to English", chromedp.Evaluate[chromedp.Void](`localStorage.setItem('kanade.lang', 'en')`))
	})

	step("screenshots for the README at 1440 and 390 px", func(t *testing.T) {
		b.do(t, "light", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "light"}}})
			return err
		}))
		for _, s := range []struct {
			w    int64
			path string
			file string
		}{
			{1440, "/", "docs/screenshots/overview-1440.jpg"},
			{390, "/", "docs/screenshots/overview-390.jpg"},
			{1440, "/schedules", "docs/screenshots/schedules-1440.jpg"},
			{1440, "/results?status=failure", "docs/screenshots/triage-1440.jpg"},
		} {
			width(t, s.w, 900)
			b.do(t, "open "+s.path, chromedp.Navigate(base+s.path))
			b.waitFor(t, s.path, `document.querySelector('#live').dataset.state === 'live' && !document.querySelector('#app .body:empty')`)
			time.Sleep(400 * time.Millisecond)
			if os.Getenv("KANADE_SCREENSHOTS") != "" {
				shot(t, b, "../"+s.file)
			}
		}
	})

	b.noPageErrors(t)
}

// shot writes a full-page screenshot (JPEG, quality 90) to file.
func shot(t *testing.T, b *browser, file string) {
	t.Helper()
	png := browserRun(t, b, "screenshot", chromedp.FullScreenshot(90))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Errorf("write screenshot: %v", err)
	}
}
