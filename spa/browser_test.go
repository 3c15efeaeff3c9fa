package spa_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/spa"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

const (
	browserToken = "browser-test-token-5f3c9a1e7d2b4c68"
	// The hostname of PC-3 is markup: the dashboard must show it as text.
	hostileHostname = `<img src=x onerror="document.body.dataset.pwned=1">`
	failedStdout    = "checking disk C:\n<script>document.body.dataset.pwned=2</script>\nerror: 3 files locked\n"
	auditPayload    = `{"note":"<b onmouseover=alert(1)>bold</b>"}`
	stepTimeout     = 30 * time.Second
)

// chromiumPath finds the browser, or skips the test when there is none and
// KANADE_BROWSER_TESTS is unset. CI sets it, so there a missing browser fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("KANADE_BROWSER_TESTS") == "" {
		t.Skip("chromium is not installed (/usr/bin/chromium); install it (apt-get install chromium) or set KANADE_BROWSER_TESTS=1 to make this a failure")
	}
	t.Fatal("KANADE_BROWSER_TESTS is set but chromium is not installed at /usr/bin/chromium")
	return ""
}

// browserSeed writes three agents (two fresh, one stale) in SQL, the way the
// projection would have, and three runs through the projection's own
// ApplyResults, which also feeds the run-duration summaries.
func browserSeed(t *testing.T, db *storage.DB, now time.Time) {
	t.Helper()
	ctx := context.Background()
	agents := []struct {
		pcID, host, os string
		beat           time.Duration
	}{
		{"PC-1", "reception-01", "windows", 30 * time.Second},
		{"PC-2", "lab-mac-02", "macos", time.Minute},
		{"PC-3", hostileHostname, "linux", time.Hour},
	}
	runs := []struct {
		id, pcID, job string
		exit          int64
		stdout        string
		started, took time.Duration
	}{
		{"r-ok-1", "PC-1", "inventory", 0, "42 packages\n", 10 * time.Minute, 1500 * time.Millisecond},
		{"r-ok-2", "PC-2", "inventory", 0, "40 packages\n", 9 * time.Minute, 2300 * time.Millisecond},
		{"r-fail-3", "PC-3", "disk-check", 3, failedStdout, 5 * time.Minute, 61 * time.Second},
	}
	var batch []storage.Result
	for _, r := range runs {
		started := now.Add(-r.started)
		finished := started.Add(r.took)
		batch = append(batch, storage.Result{
			ExecResult: kanade.ExecResult{
				ResultID: r.id, RequestID: "req-" + r.id, PcID: r.pcID, ManifestID: r.job,
				ExitCode: &r.exit, Stdout: r.stdout,
				StartedAt: kanade.Timestamp{Time: started}, FinishedAt: kanade.Timestamp{Time: finished},
			},
			RecordedAt: finished,
		})
	}
	err := db.Update(ctx, func(tx *storage.Tx) error {
		for _, a := range agents {
			if _, err := tx.Exec(ctx,
				`INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at)
				 VALUES (?, ?, ?, '1.4.2', ?, ?)`,
				a.pcID, a.host, a.os, kanade.FormatTime(now.Add(-a.beat)), kanade.FormatTime(now)); err != nil {
				return fmt.Errorf("insert agent %s: %w", a.pcID, err)
			}
		}
		if _, err := tx.ApplyResults(ctx, batch); err != nil {
			return fmt.Errorf("apply results: %w", err)
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO executions (exec_id, job_id, version, initiated_by, initiated_at, target_count,
			     success_count, failure_count, status)
			 VALUES ('x-1', 'inventory', 'v3', 'alice', ?, 3, 2, 1, 'done')`,
			kanade.FormatTime(now.Add(-11*time.Minute))); err != nil {
			return fmt.Errorf("insert execution: %w", err)
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO audit_log (actor, action, target, payload, occurred_at) VALUES ('alice', 'job_upsert', 'inventory', ?, ?)`,
			auditPayload, kanade.FormatTime(now.Add(-20*time.Minute))); err != nil {
			return fmt.Errorf("insert audit event: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
}

// browser is one headless Chromium tab and what it reported.
type browser struct {
	ctx  context.Context
	mu   sync.Mutex
	errs []string // uncaught exceptions and console.error calls
}

func newBrowser(t *testing.T) *browser {
	path := chromiumPath(t)
	// The profile directory is removed with retries: Chromium's helper
	// processes can still write there for a moment after it exits, which
	// would make t.TempDir's cleanup fail.
	profile, err := os.MkdirTemp("", "kanade-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// Everything, including the browser's start, is bounded.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 860),
	)
	t.Cleanup(cancelAlloc)
	b := &browser{}
	ctx, cancelTab := chromedp.NewContext(ctx, chromedp.WithListener(b.listen))
	t.Cleanup(cancelTab)
	b.ctx = ctx
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

func (b *browser) listen(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg = "exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError {
			return
		}
		msg = "console.error:"
		for _, a := range ev.Args {
			msg += " " + string(a.Value) + a.Description
		}
	default:
		return
	}
	b.mu.Lock()
	b.errs = append(b.errs, msg)
	b.mu.Unlock()
}

// do runs steps with a 30 s bound.
func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// browserRun runs one action that returns a value, with a 30 s bound.
func browserRun[T any](t *testing.T, b *browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitFor polls a JavaScript predicate until it is truthy. On a timeout it
// reports what the page shows, which is what one needs to see why.
func (b *browser) waitFor(t *testing.T, what, predicate string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingInterval(50*time.Millisecond)))
	if err == nil {
		return
	}
	shown := "(unreadable)"
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		ctx2, cancel2 := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel2()
		if s, err2 := chromedp.Run(ctx2, chromedp.Evaluate[string](`document.getElementById('app').innerText`)); err2 == nil {
			shown = s
		}
	}
	t.Fatalf("waiting for %s: %v; the page shows:\n%.600s", what, err, shown)
}

// texts returns the textContent of every element matching a CSS selector.
func (b *browser) texts(t *testing.T, selector string) []string {
	t.Helper()
	return browserRun(t, b, "read "+selector, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll(`+jsString(selector)+`)].map(e => e.textContent.trim())`))
}

func (b *browser) path(t *testing.T) string {
	t.Helper()
	loc := browserRun(t, b, "location", chromedp.Location())
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("parse location %q: %v", loc, err)
	}
	if u.Fragment != "" {
		return u.RequestURI() + "#" + u.Fragment
	}
	return u.RequestURI()
}

// testLog sends the handler's log lines (a 500 is logged, not answered in
// detail) to the test output.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`)
	return "'" + r.Replace(s) + "'"
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestDashboardInABrowser(t *testing.T) {
	b := newBrowser(t)

	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	db := storagetest.Open(t, clock)
	browserSeed(t, db, now)
	h, err := handlers.New(handlers.Config{
		DB:    db,
		Clock: clock,
		// No JetStream prober: every resource counts as missing, so the
		// fleet is degraded and /api/health/fleet answers 503 with its body,
		// which the dashboard must still show.
		Auth:   auth.Config{StaticToken: browserToken},
		SPA:    spa.FS(),
		Logger: slog.New(slog.NewTextHandler(testLog{t}, nil)),
	})
	if err != nil {
		t.Fatalf("handlers.New: %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	base := srv.URL // http://127.0.0.1:port

	// The steps share one tab and build on each other's page, so after a
	// failure the rest are skipped instead of each waiting out its timeout.
	step := func(name string, fn func(t *testing.T)) {
		if t.Failed() {
			t.Run(name, func(t *testing.T) { t.Skip("skipped: an earlier step failed") })
			return
		}
		t.Run(name, fn)
	}

	step("the first-run address logs in and shows the fleet", func(t *testing.T) {
		b.do(t, "open the dashboard", chromedp.Navigate(base+"/#token="+browserToken))
		b.waitFor(t, "the fleet status", `document.querySelector('#fleet-status')`)
		if diff := cmp.Diff([]string{"degraded"}, b.texts(t, "#fleet-status")); diff != "" {
			t.Errorf("fleet status (-want +got):\n%s", diff)
		}
		b.waitFor(t, "the agent counts", `document.querySelectorAll('#fleet-agents .stat').length === 3`)
		counts := browserRun(t, b, "agent counts", chromedp.Evaluate[[]string](
			`[...document.querySelectorAll('#fleet-agents .stat')].map(s => s.querySelector('.num').textContent + ' ' + s.querySelector('.label').textContent)`))
		if diff := cmp.Diff([]string{"3 known", "2 active", "1 stale"}, counts); diff != "" {
			t.Errorf("agent counts (-want +got):\n%s", diff)
		}
		results := browserRun(t, b, "result counts", chromedp.Evaluate[[]string](
			`[...document.querySelectorAll('#fleet-results .stat')].map(s => s.querySelector('.num').textContent + ' ' + s.querySelector('.label').textContent)`))
		if diff := cmp.Diff([]string{"3 total", "1 failed"}, results); diff != "" {
			t.Errorf("result counts (-want +got):\n%s", diff)
		}
		if missing := b.texts(t, ".fleet .problems code"); len(missing) == 0 {
			t.Error("the degraded fleet lists no missing JetStream resources")
		}
		// Sorted by p95 descending: disk-check (61 s) before inventory; times
		// under a minute in seconds, longer ones in minutes and seconds.
		b.waitFor(t, "the duration table", `document.querySelector('#durations tbody tr')`)
		durations := browserRun(t, b, "duration rows", chromedp.Evaluate[[][]string](
			`[...document.querySelectorAll('#durations tbody tr')].map(tr => [...tr.cells].map(td => td.textContent))`))
		want := [][]string{
			{"disk-check", "1", "1 min 1 s", "1 min 1 s", "1 min 1 s", "1 min 1 s", "1 min 1 s", "1 min 1 s"},
			{"inventory", "2", "1.50 s", "1.50 s", "2.30 s", "2.30 s", "2.30 s", "1.90 s"},
		}
		if diff := cmp.Diff(want, durations); diff != "" {
			t.Errorf("duration table (-want +got):\n%s", diff)
		}
		maxLinks := b.texts(t, `#durations a[href="/results/r-fail-3"]`)
		if diff := cmp.Diff([]string{"1 min 1 s"}, maxLinks); diff != "" {
			t.Errorf("link of the slowest run (-want +got):\n%s", diff)
		}
	})

	step("the token leaves the address bar and stays in localStorage", func(t *testing.T) {
		if got := b.path(t); got != "/" {
			t.Errorf("address after login = %q, want / (no token)", got)
		}
		stored := browserRun(t, b, "stored token", chromedp.Evaluate[string](`localStorage.getItem('kanade.token')`))
		if stored != browserToken {
			t.Errorf("localStorage kanade.token = %q, want the token", stored)
		}
	})

	wantAgents := []string{"PC-1", "PC-2", "PC-3"}
	agentRows := `document.querySelectorAll('table.list tbody tr').length === 3`

	step("the agents view lists the seeded agents, markup as text", func(t *testing.T) {
		b.do(t, "open Agents", chromedp.Click(chromedp.CSS(`#nav a[data-nav="agents"]`)))
		b.waitFor(t, "three agent rows", agentRows)
		if diff := cmp.Diff(wantAgents, sorted(b.texts(t, "table.list tbody td:first-child"))); diff != "" {
			t.Errorf("pc_ids (-want +got):\n%s", diff)
		}
		if got := b.path(t); got != "/agents" {
			t.Errorf("address = %q, want /agents", got)
		}
		if !slices.Contains(b.texts(t, "table.list tbody td:nth-child(2)"), hostileHostname) {
			t.Errorf("the hostname %q is not shown as text", hostileHostname)
		}
		if n := browserRun(t, b, "count images", chromedp.Evaluate[int](`document.querySelectorAll('#app img').length`)); n != 0 {
			t.Errorf("a hostname became %d <img> element(s)", n)
		}
	})

	step("an agent's page shows the agent", func(t *testing.T) {
		b.do(t, "open PC-1", chromedp.Click(chromedp.CSS(`table.list a[href="/agents/PC-1"]`)))
		b.waitFor(t, "the agent's fields", `document.querySelector('table.kv')`)
		if got := b.path(t); got != "/agents/PC-1" {
			t.Errorf("address = %q, want /agents/PC-1", got)
		}
		if hosts := b.texts(t, `table.kv td`); !slices.Contains(hosts, "reception-01") {
			t.Errorf("the fields of PC-1 %q lack its hostname", hosts)
		}
		b.do(t, "go back", chromedp.NavigateBack())
		b.waitFor(t, "three agent rows after going back", agentRows)
	})

	step("a reload on /agents gets the dashboard again", func(t *testing.T) {
		b.do(t, "reload", chromedp.Reload())
		b.waitFor(t, "three agent rows after the reload", agentRows)
		if diff := cmp.Diff(wantAgents, sorted(b.texts(t, "table.list tbody td:first-child"))); diff != "" {
			t.Errorf("pc_ids after reload (-want +got):\n%s", diff)
		}
	})

	step("the offline filter keeps the stale agent and goes into the address", func(t *testing.T) {
		b.do(t, "choose offline", chromedp.SetValue(chromedp.CSS(`select[name="status"]`), "offline"))
		b.do(t, "fire change", chromedp.Evaluate[chromedp.Void](
			`void document.querySelector('select[name="status"]').dispatchEvent(new Event('change'))`))
		b.waitFor(t, "one agent row", `document.querySelectorAll('table.list tbody tr').length === 1`)
		if diff := cmp.Diff([]string{"PC-3"}, b.texts(t, "table.list tbody td:first-child")); diff != "" {
			t.Errorf("offline agents (-want +got):\n%s", diff)
		}
		if got := b.path(t); got != "/agents?status=offline" {
			t.Errorf("address = %q, want /agents?status=offline", got)
		}
	})

	step("a result's detail shows its output as text", func(t *testing.T) {
		b.do(t, "open Results", chromedp.Click(chromedp.CSS(`#nav a[data-nav="results"]`)))
		b.waitFor(t, "three result rows", `document.querySelectorAll('table.list tbody tr').length === 3`)
		b.do(t, "open the failed run", chromedp.Click(chromedp.CSS(`table.list tbody a[href="/results/r-fail-3"]`)))
		b.waitFor(t, "stdout", `document.querySelector('pre#stdout')`)
		if diff := cmp.Diff([]string{strings.TrimSpace(failedStdout)}, b.texts(t, "pre#stdout")); diff != "" {
			t.Errorf("stdout (-want +got):\n%s", diff)
		}
		if got := b.path(t); got != "/results/r-fail-3" {
			t.Errorf("address = %q, want /results/r-fail-3", got)
		}
		b.do(t, "reload the detail", chromedp.Reload())
		b.waitFor(t, "stdout after a reload", `document.querySelector('pre#stdout')`)
		pwned := browserRun(t, b, "check for injected script", chromedp.Evaluate[string](`document.body.dataset.pwned || ''`))
		if pwned != "" {
			t.Errorf("server text ran as script (marker %q)", pwned)
		}
	})

	step("executions and the audit log are listed", func(t *testing.T) {
		b.do(t, "open Executions", chromedp.Click(chromedp.CSS(`#nav a[data-nav="executions"]`)))
		b.waitFor(t, "one execution row", `document.querySelectorAll('table.list tbody tr').length === 1`)
		if diff := cmp.Diff([]string{"x-1"}, b.texts(t, "table.list tbody td:first-child")); diff != "" {
			t.Errorf("executions (-want +got):\n%s", diff)
		}
		b.do(t, "open Audit", chromedp.Click(chromedp.CSS(`#nav a[data-nav="audit"]`)))
		b.waitFor(t, "one audit row", `document.querySelectorAll('table.list tbody tr').length === 1`)
		if diff := cmp.Diff([]string{auditPayload}, b.texts(t, "table.list tbody td:last-child")); diff != "" {
			t.Errorf("audit payload (-want +got):\n%s", diff)
		}
		if n := browserRun(t, b, "count <b>", chromedp.Evaluate[int](`document.querySelectorAll('#app b').length`)); n != 0 {
			t.Errorf("an audit payload became %d <b> element(s)", n)
		}
	})

	step("without a token the dashboard asks for one", func(t *testing.T) {
		b.do(t, "forget the token", chromedp.Evaluate[chromedp.Void](`localStorage.removeItem('kanade.token')`))
		b.do(t, "open Agents", chromedp.Navigate(base+"/agents"))
		b.waitFor(t, "the token prompt", `document.querySelector('form.auth input')`)
		b.do(t, "enter the token",
			chromedp.SendKeys(chromedp.CSS(`form.auth input`), browserToken),
			chromedp.Click(chromedp.CSS(`form.auth button`)))
		b.waitFor(t, "three agent rows after the prompt", agentRows)
	})

	step("screenshot of the overview", func(t *testing.T) {
		b.do(t, "open the overview", chromedp.Click(chromedp.CSS(`#nav a[data-nav="overview"]`)))
		b.waitFor(t, "the fleet status", `document.querySelector('#fleet-status')`)
		png := browserRun(t, b, "screenshot", chromedp.CaptureScreenshot())
		if err := os.WriteFile("/tmp/kanade-overview.png", png, 0o644); err != nil {
			t.Errorf("write screenshot: %v", err)
		}
	})

	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(b.errs, "\n"))
	}
}
