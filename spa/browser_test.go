package spa_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/auth/password"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/spa"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
	"github.com/nats-io/nats.go/jetstream"
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
	var err error
	for {
		_, err = chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingInterval(50*time.Millisecond)))
		// A poll that began as the previous document went away loses its
		// execution context (the page is still loading, not broken): poll
		// again in the new one.
		if err == nil || ctx.Err() != nil || !lostContext(err) {
			break
		}
	}
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

// clickCSS clicks the first element matching sel once it exists, from the
// page's own script in one step: a mouse click (chromedp.Click) finds the
// node, then its box, then clicks there, and a refresh that replaces the
// node in between (the pages patch what changed every few seconds) leaves
// it waiting on a node that is gone.
func clickCSS(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](`(() => { const e = document.querySelector(`+jsString(sel)+`); if (!e) return false; e.click(); return true })()`,
		chromedp.WithPollingInterval(50*time.Millisecond))
}

// lostContext reports whether err is Chromium's answer to a script run in
// a document that navigation has since replaced.
func lostContext(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Cannot find context with specified id") ||
		strings.Contains(msg, "Execution context was destroyed") ||
		strings.Contains(msg, "Inspected target navigated or closed")
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

// The job manifests and schedules seeded into the KV buckets. disk-check's
// description and script are markup, which the pages must show as text.
const (
	hostileDescription = `<img src=x onerror=alert(1)>`
	diskCheckScript    = "df -h\n<img src=x onerror=\"document.body.dataset.pwned=4\">\necho done"
	diskCheckJob       = `{"id":"disk-check","version":"v7","description":"<img src=x onerror=alert(1)>",` +
		`"execute":{"shell":"sh","script":"df -h\n<img src=x onerror=\"document.body.dataset.pwned=4\">\necho done","timeout":"2m"},` +
		`"target":{"groups":["lab"],"pcs":["PC-3"]},"owner":"it-ops"}`
	inventoryJob = `{"id":"inventory","version":"v3","description":"Count installed packages",` +
		`"execute":{"shell":"pwsh","script":"Get-Package | Measure-Object","timeout":"5m","run_as":"system"},"target":{"all":true}}`
	garbledJob     = `not json {`
	brokenSchedule = `{"id":"s-broken","when":{"calendar":{"at":"25:00"}},"job_id":"inventory","target":{"all":true}}`
	// browserZone is the zone the browser formats times in: not UTC, so a
	// page that printed the API's UTC instants as they are would be caught.
	browserZone = "Asia/Tokyo"
)

// kvSeeded is what kvSeed wrote that the assertions depend on.
type kvSeeded struct {
	oneShot   time.Time // the single firing of s-oneshot
	daily     time.Time // the first firing of s-daily, then every 24 h
	dailyAt   string    // s-daily's calendar.at
	brokenErr string    // why s-broken does not validate
}

// kvSeed puts three jobs (one not JSON at all) and six schedules (one that
// does not validate) into the KV buckets the manage endpoints read. The two
// calendar schedules the worker fires are placed relative to now, the fake
// clock of the handler: s-oneshot once in 90 minutes, s-daily every day at
// the minute 5 h 30 min from now. s-berlin is disabled and s-agent runs on
// the agents, so neither has firings listed; per-PC and per-target
// schedules never do.
func kvSeed(t *testing.T, js jetstream.JetStream, now time.Time) kvSeeded {
	t.Helper()
	ctx := t.Context()
	oneShot := now.Add(90 * time.Minute).Truncate(time.Minute)
	daily := now.Add(5*time.Hour + 30*time.Minute).Truncate(time.Minute)
	seed := kvSeeded{oneShot: oneShot, daily: daily, dailyAt: daily.Format("15:04")}
	_, err := kanade.ParseSchedule("s-broken", []byte(brokenSchedule))
	if err == nil {
		t.Fatal("s-broken validates; the test needs a broken schedule")
	}
	seed.brokenErr = err.Error()
	put := func(bucket string, entries [][2]string) {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatalf("open KV %s: %v", bucket, err)
		}
		for _, e := range entries {
			if _, err := kv.Put(ctx, e[0], []byte(e[1])); err != nil {
				t.Fatalf("put %s/%s: %v", bucket, e[0], err)
			}
		}
	}
	put(kanade.BucketJobs, [][2]string{
		{"inventory", inventoryJob},
		{"disk-check", diskCheckJob},
		{"j-garbled", garbledJob},
	})
	put(kanade.BucketSchedules, [][2]string{
		{"s-daily", `{"id":"s-daily","when":{"calendar":{"at":"` + seed.dailyAt + `"}},"tz":"utc","job_id":"inventory","target":{"all":true}}`},
		{"s-oneshot", `{"id":"s-oneshot","when":{"calendar":{"at":"` + oneShot.Format("2006-01-02 15:04") + `"}},"tz":"utc",` +
			`"job_id":"disk-check","target":{"pcs":["PC-3"]}}`},
		{"s-berlin", `{"id":"s-berlin","when":{"calendar":{"at":"09:00","days":["mon-fri"]}},"tz":"Europe/Berlin",` +
			`"job_id":"inventory","target":{"groups":["lab","office"]},"enabled":false}`},
		{"s-agent", `{"id":"s-agent","when":{"per_pc":"once"},"runs_on":"agent","job_id":"inventory","target":{"all":true}}`},
		{"s-every", `{"id":"s-every","when":{"per_target":{"every":"1d"}},"job_id":"disk-check","target":{"groups":["lab"]}}`},
		{"s-broken", brokenSchedule},
	})
	return seed
}

// busOf is the handler's provider of c; nil leaves NATS out.
func busOf(c *bus.Client) func() (*bus.Client, error) {
	if c == nil {
		return nil
	}
	return bus.Static(c)
}

// dashboard serves the real handler on a loopback test server and returns
// its base URL (http://127.0.0.1:port). js reaches the KV buckets of the
// manage endpoints; nil leaves NATS out, so those answer 503.
func dashboard(t *testing.T, db *storage.DB, clock kanade.Clock, js *bus.Client) string {
	t.Helper()
	return serve(t, handlers.Config{
		DB:    db,
		Clock: clock,
		Bus:   busOf(js),
		// No JetStream prober: every resource counts as missing, so the
		// fleet is degraded and /api/health/fleet answers 503 with its body,
		// which the dashboard must still show.
		Auth: auth.Config{StaticToken: browserToken},
	})
}

// serve builds the handler of cfg with the dashboard and a logger that
// writes to the test, serves it on a loopback test server and returns its
// base URL.
func serve(t *testing.T, cfg handlers.Config) string {
	t.Helper()
	cfg.SPA = spa.FS()
	cfg.Logger = slog.New(slog.NewTextHandler(testLog{t}, nil))
	h, err := handlers.New(cfg)
	if err != nil {
		t.Fatalf("handlers.New: %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// steps returns a runner of t's subtests. The steps share one tab and build
// on each other's page, so after a failure the rest are skipped instead of
// each waiting out its timeout.
func steps(t *testing.T) func(name string, fn func(t *testing.T)) {
	return func(name string, fn func(t *testing.T)) {
		if t.Failed() {
			t.Run(name, func(t *testing.T) { t.Skip("skipped: an earlier step failed") })
			return
		}
		t.Run(name, fn)
	}
}

// noPageErrors fails t for every uncaught exception and console.error the
// page reported.
func (b *browser) noPageErrors(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(b.errs, "\n"))
	}
}

func TestDashboardInABrowser(t *testing.T) {
	b := newBrowser(t)

	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	db := storagetest.Open(t, clock)
	browserSeed(t, db, now)
	natsSrv := bustest.StartBootstrapped(t)
	kv := kvSeed(t, natsSrv.JS, now)
	base := dashboard(t, db, clock, natsSrv.Bus)

	step := steps(t)

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

	step("the header names the static token, an admin", func(t *testing.T) {
		if diff := cmp.Diff([]string{"service-token", "admin"}, b.texts(t, "#who-name, #who-role")); diff != "" {
			t.Errorf("caller in the header (-want +got):\n%s", diff)
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
		b.do(t, "open Agents", clickCSS(`#nav a[data-nav="agents"]`))
		b.waitFor(t, "three agent rows", agentRows)
		if diff := cmp.Diff(wantAgents, sorted(b.texts(t, "table.list tbody td:first-child"))); diff != "" {
			t.Errorf("pc_ids (-want +got):\n%s", diff)
		}
		if got := b.path(t); got != "/agents" {
			t.Errorf("address = %q, want /agents", got)
		}
		// State and heartbeat come second and third (what a phone shows first).
		if !slices.Contains(b.texts(t, "table.list tbody td:nth-child(4)"), hostileHostname) {
			t.Errorf("the hostname %q is not shown as text", hostileHostname)
		}
		if n := browserRun(t, b, "count images", chromedp.Evaluate[int](`document.querySelectorAll('#app img').length`)); n != 0 {
			t.Errorf("a hostname became %d <img> element(s)", n)
		}
	})

	step("an agent's page shows the agent", func(t *testing.T) {
		b.do(t, "open PC-1", clickCSS(`table.list a[href="/agents/PC-1"]`))
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
		b.do(t, "open Results", clickCSS(`#nav a[data-nav="results"]`))
		b.waitFor(t, "three result rows", `document.querySelectorAll('table#results tbody tr').length === 3`)
		b.do(t, "open the failed run", clickCSS(`table.list tbody a[href="/results/r-fail-3"]`))
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
		b.do(t, "open Executions", clickCSS(`#nav a[data-nav="executions"]`))
		b.waitFor(t, "one execution row", `document.querySelectorAll('table.list tbody tr').length === 1`)
		if diff := cmp.Diff([]string{"x-1"}, b.texts(t, "table.list tbody td:first-child")); diff != "" {
			t.Errorf("executions (-want +got):\n%s", diff)
		}
		b.do(t, "open Audit", clickCSS(`#nav a[data-nav="audit"]`))
		b.waitFor(t, "one audit row", `document.querySelectorAll('table.list tbody tr').length === 1`)
		if diff := cmp.Diff([]string{auditPayload}, b.texts(t, "table.list tbody td:last-child")); diff != "" {
			t.Errorf("audit payload (-want +got):\n%s", diff)
		}
		if n := browserRun(t, b, "count <b>", chromedp.Evaluate[int](`document.querySelectorAll('#app b').length`)); n != 0 {
			t.Errorf("an audit payload became %d <b> element(s)", n)
		}
	})

	// The rows of a table as the operator reads them, one []string a row.
	tableRows := func(t *testing.T, selector string) [][]string {
		t.Helper()
		return browserRun(t, b, "rows of "+selector, chromedp.Evaluate[[][]string](
			`[...document.querySelectorAll(`+jsString(selector+" tbody tr")+`)].map(tr => [...tr.cells].map(td => td.textContent.trim()))`))
	}
	// kvFields reads a detail page's key/value table.
	kvFields := func(t *testing.T) map[string]string {
		t.Helper()
		return browserRun(t, b, "fields", chromedp.Evaluate[map[string]string](
			`Object.fromEntries([...document.querySelectorAll('table.kv tr')].map(tr => [tr.cells[0].textContent, tr.cells[1].textContent]))`))
	}
	noKVMeta := cmpopts.IgnoreMapEntries(func(k, _ string) bool { return strings.HasPrefix(k, "kv.") })
	tokyo, err := time.LoadLocation(browserZone)
	if err != nil {
		t.Fatal(err)
	}
	local := func(at time.Time) string { return at.In(tokyo).Format("2006-01-02 15:04:05") }
	noInjection := func(t *testing.T) {
		t.Helper()
		n := browserRun(t, b, "count injected elements", chromedp.Evaluate[int](`document.querySelectorAll('img, #app script').length`))
		pwned := browserRun(t, b, "check for injected script", chromedp.Evaluate[string](`document.body.dataset.pwned || ''`))
		if n != 0 || pwned != "" {
			t.Errorf("stored text became markup: %d <img>/<script> element(s), marker %q", n, pwned)
		}
	}

	step("the jobs view lists every job, the broken one flagged, markup as text", func(t *testing.T) {
		b.do(t, "format times in "+browserZone, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: browserZone})
			return err
		}))
		b.do(t, "open Jobs", clickCSS(`#nav a[data-nav="jobs"]`))
		b.waitFor(t, "the jobs table", `document.querySelector('table#jobs tbody tr')`)
		if got := b.path(t); got != "/jobs" {
			t.Errorf("address = %q, want /jobs", got)
		}
		want := [][]string{
			{"disk-check", "v7", "sh", "2m", "groups lab; pcs PC-3", hostileDescription},
			{"inventory", "v3", "pwsh", "5m", "all PCs", "Count installed packages"},
			{"j-garbled broken", "–", "–", "–", "–", "–"},
			{"Broken, the worker skips it: the stored value is not JSON: " + garbledJob},
		}
		if diff := cmp.Diff(want, tableRows(t, "table#jobs")); diff != "" {
			t.Errorf("jobs table (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"j-garbled broken"}, b.texts(t, "table#jobs tr.broken td:first-child")); diff != "" {
			t.Errorf("rows flagged broken (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"1 broken"}, b.texts(t, ".card-head .badge.bad")); diff != "" {
			t.Errorf("broken count in the heading (-want +got):\n%s", diff)
		}
		noInjection(t)
	})

	step("a job's page shows its fields, script, raw value and schedules", func(t *testing.T) {
		b.do(t, "open disk-check", clickCSS(`table#jobs a[href="/jobs/disk-check"]`))
		b.waitFor(t, "the job's fields", `document.querySelector('table.kv') && document.querySelector('#job-schedules')`)
		if got := b.path(t); got != "/jobs/disk-check" {
			t.Errorf("address = %q, want /jobs/disk-check", got)
		}
		want := map[string]string{
			"id": "disk-check", "version": "v7", "description": hostileDescription,
			"execute.shell": "sh", "execute.timeout": "2m", "execute.jitter": "–", "execute.run_as": "–", "execute.cwd": "–",
			"target": "groups lab; pcs PC-3", "rollout": "–", "owner": "it-ops",
		}
		fields := kvFields(t)
		if diff := cmp.Diff(want, fields, noKVMeta); diff != "" {
			t.Errorf("fields (-want +got):\n%s", diff)
		}
		if fields["kv.revision"] == "" || fields["kv.updated_at"] == "" {
			t.Errorf("the KV revision and time are missing: %q", fields)
		}
		if diff := cmp.Diff([]string{diskCheckScript}, b.texts(t, "pre#script")); diff != "" {
			t.Errorf("script (-want +got):\n%s", diff)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(diskCheckJob)); err != nil {
			t.Fatal(err)
		}
		raw := browserRun(t, b, "raw value", chromedp.Evaluate[string](`JSON.stringify(JSON.parse(document.querySelector('pre#raw').textContent))`))
		if raw != compact.String() {
			t.Errorf("raw value = %s, want %s", raw, compact.String())
		}
		if diff := cmp.Diff([]string{"runs of this job"}, b.texts(t, `a[href="/results?job_id=disk-check"]`)); diff != "" {
			t.Errorf("link to the job's runs (-want +got):\n%s", diff)
		}
		wantScheds := [][]string{
			{"s-every", "per target every 1d", "groups lab", "enabled", "backend"},
			{"s-oneshot", "calendar once " + kv.oneShot.Format("2006-01-02 15:04") + " (utc)", "pcs PC-3", "enabled", "backend"},
		}
		if diff := cmp.Diff(wantScheds, tableRows(t, "table#job-schedules")); diff != "" {
			t.Errorf("schedules that run the job (-want +got):\n%s", diff)
		}
		noInjection(t)
	})

	step("a job that is not JSON shows its stored text", func(t *testing.T) {
		b.do(t, "open j-garbled", chromedp.Navigate(base+"/jobs/j-garbled"))
		b.waitFor(t, "the broken job", `document.querySelector('pre#raw')`)
		if diff := cmp.Diff([]string{"Broken: the worker skips this job. the stored value is not JSON"}, b.texts(t, ".problems")); diff != "" {
			t.Errorf("problem (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{garbledJob}, b.texts(t, "pre#raw")); diff != "" {
			t.Errorf("stored text (-want +got):\n%s", diff)
		}
	})

	step("the schedules view lists what runs next, one row per schedule of every kind, and every schedule", func(t *testing.T) {
		b.do(t, "open Schedules", clickCSS(`#nav a[data-nav="schedules"]`))
		b.waitFor(t, "both tables", `document.querySelector('table#upcoming tbody tr') && document.querySelector('table#schedules tbody tr')`)
		if got := b.path(t); got != "/schedules" {
			t.Errorf("address = %q, want /schedules", got)
		}
		// Bug 13: the interval schedule s-every is listed with the calendar
		// ones (its job's last run plus its interval), and s-daily fills one
		// row, not 19. The status of a schedule reports its job's last run.
		invLast, diskLast := now.Add(-9*time.Minute), now.Add(-5*time.Minute)
		want := [][]string{
			{local(kv.oneShot), "in 1 h", "s-oneshot", "disk-check"},
			{local(kv.daily), "in 5 h", "s-daily", "inventory"},
			{local(diskLast.Add(24 * time.Hour)), "in 23 h", "s-every", "disk-check"},
		}
		if diff := cmp.Diff(want, tableRows(t, "table#upcoming")); diff != "" {
			t.Errorf("next up (-want +got):\n%s", diff)
		}
		// Bug 11: the times name their zone.
		if diff := cmp.Diff([]string{"at (" + browserZone + ")", "in", "Schedule", "job"}, b.texts(t, "table#upcoming th")); diff != "" {
			t.Errorf("next-up headings (-want +got):\n%s", diff)
		}
		wantScheds := [][]string{
			{"s-agent", "per PC once", "inventory", "all PCs", "enabled", "agent", local(invLast), "success", "–", "Disable"},
			{"s-berlin", "calendar 09:00 mon-fri (Europe/Berlin)", "inventory", "groups lab, office", "disabled", "backend", local(invLast), "success", "–", "Enable"},
			{"s-broken broken", "calendar 25:00 daily (local)", "inventory", "all PCs", "enabled", "backend", "–", "–", "–", "–"},
			{"Broken, the worker skips it: " + kv.brokenErr},
			{"s-daily", "calendar " + kv.dailyAt + " daily (utc)", "inventory", "all PCs", "enabled", "backend", local(invLast), "success", local(kv.daily), "Disable"},
			{"s-every", "per target every 1d", "disk-check", "groups lab", "enabled", "backend", local(diskLast), "exit 3", local(diskLast.Add(24 * time.Hour)), "Disable"},
			{"s-oneshot", "calendar once " + kv.oneShot.Format("2006-01-02 15:04") + " (utc)", "disk-check", "pcs PC-3", "enabled", "backend", local(diskLast), "exit 3", local(kv.oneShot), "Disable"},
		}
		if diff := cmp.Diff(wantScheds, tableRows(t, "table#schedules")); diff != "" {
			t.Errorf("schedules (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"s-broken broken"}, b.texts(t, "table#schedules tr.broken td:first-child")); diff != "" {
			t.Errorf("rows flagged broken (-want +got):\n%s", diff)
		}
	})

	step("a schedule's page shows its fields and its own next firings", func(t *testing.T) {
		b.do(t, "open s-daily", clickCSS(`table#schedules a[href="/schedules/s-daily"]`))
		b.waitFor(t, "the next firings", `document.querySelector('table#next-firings tbody tr')`)
		if got := b.path(t); got != "/schedules/s-daily" {
			t.Errorf("address = %q, want /schedules/s-daily", got)
		}
		want := map[string]string{
			"id": "s-daily", "when": "calendar " + kv.dailyAt + " daily (utc)", "job_id": "inventory",
			"target": "all PCs", "enabled": "yes", "runs_on": "backend", "tz": "utc",
			"jitter": "–", "starting_deadline": "–", "active": "–", "rollout": "–",
		}
		if diff := cmp.Diff(want, kvFields(t), noKVMeta); diff != "" {
			t.Errorf("fields (-want +got):\n%s", diff)
		}
		var next [][]string
		for i := range 10 {
			rel := "in 5 h"
			if i > 0 {
				rel = fmt.Sprintf("in %d d 5 h", i)
			}
			next = append(next, []string{local(kv.daily.Add(time.Duration(i) * 24 * time.Hour)), rel, "inventory"})
		}
		if diff := cmp.Diff(next, tableRows(t, "table#next-firings")); diff != "" {
			t.Errorf("next firings (-want +got):\n%s", diff)
		}
		b.do(t, "open s-broken", chromedp.Navigate(base+"/schedules/s-broken"))
		b.waitFor(t, "the broken schedule", `document.querySelector('pre#raw')`)
		if diff := cmp.Diff([]string{"Broken: the worker skips this schedule. " + kv.brokenErr}, b.texts(t, ".problems")); diff != "" {
			t.Errorf("problem (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"Broken: it does not fire."}, b.texts(t, "#next-firings")); diff != "" {
			t.Errorf("next firings of the broken schedule (-want +got):\n%s", diff)
		}
	})

	step("without a token the dashboard asks for one, and takes the access token instead", func(t *testing.T) {
		b.do(t, "forget the token", chromedp.Evaluate[chromedp.Void](`localStorage.removeItem('kanade.token')`))
		b.do(t, "open Agents", chromedp.Navigate(base+"/agents"))
		b.waitFor(t, "the sign-in form", `document.querySelector('form#login input')`)
		b.do(t, "switch to the access token", clickCSS(`#use-token`))
		b.waitFor(t, "the token form", `document.querySelector('form#token-form input')`)
		b.do(t, "enter the token",
			chromedp.SendKeys(chromedp.CSS(`form#token-form input`), browserToken),
			clickCSS(`form#token-form button[type="submit"]`))
		b.waitFor(t, "three agent rows after the prompt", agentRows)
	})

	step("screenshots of the overview, schedules and a job", func(t *testing.T) {
		b.do(t, "open the overview", clickCSS(`#nav a[data-nav="overview"]`))
		b.waitFor(t, "the fleet status", `document.querySelector('#fleet-status')`)
		png := browserRun(t, b, "screenshot", chromedp.CaptureScreenshot())
		if err := os.WriteFile("/tmp/kanade-overview.png", png, 0o644); err != nil {
			t.Errorf("write screenshot: %v", err)
		}
		for _, page := range []struct{ path, ready, file string }{
			{"/schedules", `document.querySelector('table#schedules')`, "/tmp/kanade-schedules.png"},
			{"/jobs/disk-check", `document.querySelector('pre#raw')`, "/tmp/kanade-job.png"},
		} {
			b.do(t, "open "+page.path, chromedp.Navigate(base+page.path))
			b.waitFor(t, page.path, page.ready)
			png := browserRun(t, b, "screenshot", chromedp.FullScreenshot(100))
			if err := os.WriteFile(page.file, png, 0o644); err != nil {
				t.Errorf("write screenshot: %v", err)
			}
		}
	})

	step("without NATS the jobs and schedules views say so", func(t *testing.T) {
		noNATS := dashboard(t, db, clock, nil)
		b.do(t, "open Jobs without NATS", chromedp.Navigate(noNATS+"/jobs#token="+browserToken))
		b.waitFor(t, "the error", `document.querySelector('#app .error')`)
		if diff := cmp.Diff([]string{"HTTP 503: NATS is not configured"}, b.texts(t, "#app .error")); diff != "" {
			t.Errorf("jobs error (-want +got):\n%s", diff)
		}
		b.do(t, "open Schedules without NATS", clickCSS(`#nav a[data-nav="schedules"]`))
		b.waitFor(t, "both errors", `document.querySelectorAll('#app .error').length === 2`)
		if diff := cmp.Diff([]string{"Next up", "Schedules"}, b.texts(t, "#app h2")); diff != "" {
			t.Errorf("cards (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"HTTP 503: NATS is not configured", "HTTP 503: NATS is not configured"}, b.texts(t, "#app .error")); diff != "" {
			t.Errorf("schedules errors (-want +got):\n%s", diff)
		}
	})

	b.noPageErrors(t)
}

// The accounts of TestAccountsInABrowser.
const (
	browserJWTSecret = "browser-test-jwt-secret-3e8a71c9f04b5d26"
	rootPassword     = "root-bootstrap-Qw3rty!"
	rootNewPassword  = "root-chose-this-7x4m"
	veraPassword     = "vera-password-5tq2"
)

// TestAccountsInABrowser signs in through the form as a viewer and as the
// bootstrap admin, and manages accounts on the Accounts page, against the
// real handler with a JWT secret and real SQLite.
// testPasswordCost keeps the browser tests' password hashes under a
// millisecond (the default takes seconds under -race on a busy machine);
// handlers' own tests check that servers hash at the default cost.
var testPasswordCost = password.Params{Time: 1, MemoryKiB: 64, Threads: 1}

func TestAccountsInABrowser(t *testing.T) {
	b := newBrowser(t)

	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	db := storagetest.Open(t, clock)
	ctx := t.Context()
	// root is the bootstrap admin, who must choose a new password; vera a
	// viewer with a password of her own.
	// As handlers.BootstrapAdmin makes the first admin, at the tests' cost.
	rootHash, err := password.Hash(rootPassword, testPasswordCost)
	if err != nil {
		t.Fatal(err)
	}
	if created, err := db.CreateFirstAdmin(ctx, "root", rootHash); err != nil || !created {
		t.Fatalf("first admin: %v, %v", created, err)
	}
	hash, err := password.Hash(veraPassword, testPasswordCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateAccount(ctx, storage.NewAccount{Username: "vera", Hash: hash, Role: kanade.RoleViewer}); err != nil {
		t.Fatal(err)
	}
	base := serve(t, handlers.Config{DB: db, Clock: clock, Auth: auth.Config{JWTSecret: []byte(browserJWTSecret)},
		PasswordCost: testPasswordCost})

	step := steps(t)
	js := func(t *testing.T, what, expr string) string {
		t.Helper()
		return browserRun(t, b, what, chromedp.Evaluate[string](expr))
	}
	visible := func(t *testing.T, selector string) bool {
		t.Helper()
		return browserRun(t, b, "visibility of "+selector, chromedp.Evaluate[bool](
			`[...document.querySelectorAll(`+jsString(selector)+`)].some(e => e.checkVisibility({ visibilityProperty: true }))`))
	}
	storedToken := func(t *testing.T) string {
		t.Helper()
		return js(t, "stored token", `localStorage.getItem('kanade.token') || ''`)
	}
	fill := func(t *testing.T, selector, text string) {
		t.Helper()
		b.do(t, "type into "+selector,
			chromedp.Evaluate[chromedp.Void](`void (document.querySelector(`+jsString(selector)+`).value = '')`),
			chromedp.SendKeys(chromedp.CSS(selector), text))
	}
	signIn := func(t *testing.T, user, pw string) {
		t.Helper()
		b.waitFor(t, "the sign-in form", `document.querySelector('form#login')`)
		fill(t, `#login input[autocomplete="username"]`, user)
		fill(t, `#login input[type="password"]`, pw)
		b.do(t, "sign in", clickCSS(`#login button[type="submit"]`))
	}
	account := func(t *testing.T, name string) kanade.Account {
		t.Helper()
		a, err := db.Account(ctx, name)
		if err != nil {
			t.Fatalf("account %s: %v", name, err)
		}
		return a
	}
	// accountRows reads the table as username, role, state, must change.
	accountRows := func(t *testing.T) [][]string {
		t.Helper()
		return browserRun(t, b, "account rows", chromedp.Evaluate[[][]string](
			`[...document.querySelectorAll('table#accounts tbody tr')].map(tr => [tr.dataset.username,
				tr.querySelector('select').value, tr.cells[2].textContent, tr.cells[3].textContent])`))
	}
	row := func(name string) string { return `table#accounts tr[data-username="` + name + `"] ` }
	statusNote := func(t *testing.T, want string) {
		t.Helper()
		b.waitFor(t, "the note "+want, `document.querySelector('#accounts-status .note')?.textContent === `+jsString(want))
	}

	step("a first visit shows the sign-in form and nothing else", func(t *testing.T) {
		b.do(t, "open the dashboard", chromedp.Navigate(base+"/"))
		b.waitFor(t, "the sign-in form", `document.querySelector('form#login')`)
		if visible(t, "#nav a") || visible(t, "#who") {
			t.Error("the navigation or the caller is shown before sign-in")
		}
		// Nothing native could submit: no input has a name.
		if n := browserRun(t, b, "named inputs", chromedp.Evaluate[int](`document.querySelectorAll('#login [name]').length`)); n != 0 {
			t.Errorf("%d element(s) of the sign-in form have a name attribute", n)
		}
	})

	step("a wrong password says invalid credentials", func(t *testing.T) {
		signIn(t, "vera", "not-her-password")
		b.waitFor(t, "the refusal", `document.querySelector('#login .error')`)
		if diff := cmp.Diff([]string{"invalid credentials"}, b.texts(t, "#login .error")); diff != "" {
			t.Errorf("refusal (-want +got):\n%s", diff)
		}
		if got := b.path(t); got != "/" {
			t.Errorf("address = %q, want /", got)
		}
		if tok := storedToken(t); tok != "" {
			t.Errorf("a failed sign-in stored a token %q", tok)
		}
		if pw := js(t, "password field", `document.querySelector('#login input[type="password"]').value`); pw != "" {
			t.Errorf("the refused password %q is still in its field", pw)
		}
	})

	step("a viewer signs in, is named in the header and sees no write control", func(t *testing.T) {
		signIn(t, "vera", veraPassword)
		b.waitFor(t, "the fleet status", `document.querySelector('#fleet-status')`)
		if diff := cmp.Diff([]string{"vera", "viewer"}, b.texts(t, "#who-name, #who-role")); diff != "" {
			t.Errorf("caller in the header (-want +got):\n%s", diff)
		}
		if tok := storedToken(t); strings.Count(tok, ".") != 2 {
			t.Errorf("stored token %q is not a JWT", tok)
		}
		if n := len(b.texts(t, "[data-role]")); n == 0 {
			t.Fatal("the page has no role-gated element; the check below would prove nothing")
		}
		if visible(t, "[data-role]") {
			t.Errorf("a viewer sees gated controls: %q", browserRun(t, b, "visible gated elements", chromedp.Evaluate[[]string](
				`[...document.querySelectorAll('[data-role]')].filter(e => e.checkVisibility({ visibilityProperty: true })).map(e => e.outerHTML)`)))
		}
		if visible(t, `#nav a[data-nav="accounts"]`) {
			t.Error("a viewer sees the Accounts link")
		}
		if !visible(t, `#nav a[data-nav="agents"]`) {
			t.Error("a viewer does not see the Agents link")
		}
	})

	step("a viewer who opens /accounts gets the refusal", func(t *testing.T) {
		b.do(t, "open /accounts", chromedp.Navigate(base+"/accounts"))
		b.waitFor(t, "the error", `document.querySelector('#app .error')`)
		if diff := cmp.Diff([]string{"HTTP 403: admin role required (caller is viewer)"}, b.texts(t, "#app .error")); diff != "" {
			t.Errorf("error (-want +got):\n%s", diff)
		}
	})

	step("logging out shows the sign-in form and forgets the token", func(t *testing.T) {
		b.do(t, "log out", clickCSS(`#logout`))
		b.waitFor(t, "the sign-in form", `document.querySelector('form#login')`)
		if tok := storedToken(t); tok != "" {
			t.Errorf("localStorage kanade.token = %q after logging out", tok)
		}
		if visible(t, "#who") {
			t.Error("the header still names the caller")
		}
	})

	step("the bootstrap admin chooses a new password before anything else", func(t *testing.T) {
		signIn(t, "root", rootPassword)
		b.waitFor(t, "the change-password form", `document.querySelector('form#change-password')`)
		if visible(t, "#nav a") {
			t.Error("the navigation is shown while a new password is owed")
		}
		if diff := cmp.Diff([]string{"root", "admin"}, b.texts(t, "#who-name, #who-role")); diff != "" {
			t.Errorf("caller in the header (-want +got):\n%s", diff)
		}
		fill(t, `#change-password input[aria-label="current password"]`, rootPassword)
		fill(t, `#change-password input[aria-label="new password"]`, rootNewPassword)
		fill(t, `#change-password input[aria-label="new password again"]`, rootNewPassword+"?")
		b.do(t, "submit", clickCSS(`#change-password button[type="submit"]`))
		b.waitFor(t, "the mismatch", `document.querySelector('#change-password .error')`)
		if diff := cmp.Diff([]string{"the new passwords differ"}, b.texts(t, "#change-password .error")); diff != "" {
			t.Errorf("mismatch (-want +got):\n%s", diff)
		}
		fill(t, `#change-password input[aria-label="new password again"]`, rootNewPassword)
		b.do(t, "submit", clickCSS(`#change-password button[type="submit"]`))
		// The address is still /accounts, where the viewer logged out.
		b.waitFor(t, "the accounts table", `document.querySelector('table#accounts tbody tr')`)
		if account(t, "root").MustChangePassword {
			t.Error("root must still change the password")
		}
	})

	step("an admin sees the Accounts link and every account", func(t *testing.T) {
		if !visible(t, `#nav a[data-nav="accounts"]`) {
			t.Error("an admin does not see the Accounts link")
		}
		want := [][]string{{"root", "admin", "enabled", "no"}, {"vera", "viewer", "enabled", "no"}}
		if diff := cmp.Diff(want, accountRows(t)); diff != "" {
			t.Errorf("accounts (-want +got):\n%s", diff)
		}
		stamp := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`)
		for _, s := range b.texts(t, "table#accounts tbody td:nth-child(5), table#accounts tbody td:nth-child(6)") {
			if !stamp.MatchString(s) {
				t.Errorf("timestamp cell %q", s)
			}
		}
	})

	step("an admin creates a viewer through the form", func(t *testing.T) {
		fill(t, `#new-account input[aria-label="username"]`, "carol")
		fill(t, `#new-account input[type="password"]`, "carol-initial-pw")
		b.do(t, "create", clickCSS(`#new-account button[type="submit"]`))
		statusNote(t, "carol is created.")
		want := [][]string{{"carol", "viewer", "enabled", "yes"}, {"root", "admin", "enabled", "no"}, {"vera", "viewer", "enabled", "no"}}
		if diff := cmp.Diff(want, accountRows(t)); diff != "" {
			t.Errorf("accounts (-want +got):\n%s", diff)
		}
		got := account(t, "carol")
		if got.Role != kanade.RoleViewer || !got.MustChangePassword || got.Disabled {
			t.Errorf("carol in the database: %+v", got)
		}
		if pw := js(t, "password field", `document.querySelector('#new-account input[type="password"]').value`); pw != "" {
			t.Errorf("the initial password %q stays in the form", pw)
		}
	})

	step("an admin disables an account and changes its role", func(t *testing.T) {
		b.do(t, "disable carol", clickCSS(row("carol")+`button[data-act="toggle"]`))
		statusNote(t, "carol is disabled.")
		if diff := cmp.Diff([]string{"Enable"}, b.texts(t, row("carol")+`button[data-act="toggle"]`)); diff != "" {
			t.Errorf("toggle (-want +got):\n%s", diff)
		}
		if !account(t, "carol").Disabled {
			t.Error("carol is not disabled in the database")
		}
		b.do(t, "make carol an operator", chromedp.SetValue(chromedp.CSS(row("carol")+"select"), "operator"),
			chromedp.Evaluate[chromedp.Void](`void document.querySelector(`+jsString(row("carol")+"select")+`).dispatchEvent(new Event('change'))`))
		statusNote(t, "carol is now operator.")
		if got := account(t, "carol"); got.Role != kanade.RoleOperator || !got.Disabled {
			t.Errorf("carol in the database: %+v", got)
		}
	})

	step("an admin resets a password", func(t *testing.T) {
		b.do(t, "reset vera's password", clickCSS(row("vera")+`button[data-act="reset"]`))
		fill(t, row("vera")+`input[type="password"]`, "vera-temporary-9k")
		b.do(t, "set it", clickCSS(row("vera")+`button[type="submit"]`))
		statusNote(t, "The password of vera is reset: they choose their own at the next sign-in.")
		if !account(t, "vera").MustChangePassword {
			t.Error("vera need not change the reset password")
		}
	})

	step("deleting asks first, and the last admin cannot be deleted", func(t *testing.T) {
		b.do(t, "delete carol", clickCSS(row("carol")+`button[data-act="delete"]`))
		b.waitFor(t, "the confirmation", `document.querySelector(`+jsString(row("carol")+`button[data-act="confirm-delete"]`)+`)`)
		if _, err := db.Account(ctx, "carol"); err != nil {
			t.Fatalf("carol is gone before the confirmation: %v", err)
		}
		b.do(t, "confirm", clickCSS(row("carol")+`button[data-act="confirm-delete"]`))
		statusNote(t, "carol is deleted.")
		if _, err := db.Account(ctx, "carol"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("carol after the delete: %v, want not found", err)
		}
		b.do(t, "delete root", clickCSS(row("root")+`button[data-act="delete"]`),
			clickCSS(row("root")+`button[data-act="confirm-delete"]`))
		b.waitFor(t, "the refusal", `document.querySelector('#accounts-status .error')`)
		if diff := cmp.Diff([]string{`HTTP 409: refused: "root" is the last enabled admin`}, b.texts(t, "#accounts-status .error")); diff != "" {
			t.Errorf("refusal (-want +got):\n%s", diff)
		}
		want := [][]string{{"root", "admin", "enabled", "no"}, {"vera", "viewer", "enabled", "yes"}}
		if diff := cmp.Diff(want, accountRows(t)); diff != "" {
			t.Errorf("accounts (-want +got):\n%s", diff)
		}
		account(t, "root")
		png := browserRun(t, b, "screenshot", chromedp.FullScreenshot(100))
		if err := os.WriteFile("/tmp/kanade-accounts.png", png, 0o644); err != nil {
			t.Errorf("write screenshot: %v", err)
		}
	})

	step("logging out returns to the sign-in form and clears localStorage", func(t *testing.T) {
		b.do(t, "log out", clickCSS(`#logout`))
		b.waitFor(t, "the sign-in form", `document.querySelector('form#login')`)
		if n := browserRun(t, b, "localStorage entries", chromedp.Evaluate[int](`localStorage.length`)); n != 0 {
			t.Errorf("localStorage keeps %d entries after logging out", n)
		}
		if visible(t, `#nav a[data-nav="accounts"]`) || visible(t, "#who") {
			t.Error("the Accounts link or the caller is still shown")
		}
		png := browserRun(t, b, "screenshot", chromedp.CaptureScreenshot())
		if err := os.WriteFile("/tmp/kanade-login.png", png, 0o644); err != nil {
			t.Errorf("write screenshot: %v", err)
		}
	})

	// Last, because it locks the loopback address out for the rest of the
	// (frozen) minute: the browser and this test share 127.0.0.1.
	step("too many failures show the wait the server asks for", func(t *testing.T) {
		for i := 0; ; i++ {
			res, err := http.Post(base+"/api/auth/login", "application/json", strings.NewReader(`{"username":"nobody","password":"wrong-password"}`))
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode == http.StatusTooManyRequests {
				break
			}
			if res.StatusCode != http.StatusUnauthorized || i == 20 {
				t.Fatalf("failed login %d: status %d", i, res.StatusCode)
			}
		}
		signIn(t, "vera", "vera-temporary-9k")
		b.waitFor(t, "the refusal", `document.querySelector('#login .error')`)
		got := strings.Join(b.texts(t, "#login .error"), "\n")
		if !strings.HasPrefix(got, "HTTP 429: too many failed attempts") || !strings.Contains(got, "retry after") {
			t.Errorf("refusal = %q, want the 429 detail with its wait", got)
		}
	})

	b.noPageErrors(t)
}
