package spa_test

import (
	"bytes"
	"context"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/exeversion/petest"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/spa"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
	"github.com/nats-io/nats.go"
)

// TestEditorAndActionsInABrowser covers the YAML editor and the write
// actions of issue 13 against the real handler: a refused save marks the
// line the server's problem points at, a good one is stored; run now,
// kill, ping, freeze, group membership, the three config scopes, release
// rollout and script revoke each ask first and then show their outcome.
func TestEditorAndActionsInABrowser(t *testing.T) {
	b := newBrowser(t)
	t.Setenv("TMPDIR", t.TempDir()) // the release upload spools here
	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	db := storagetest.Open(t, clock)
	browserSeed(t, db, now)
	err := db.Update(context.Background(), func(tx *storage.Tx) error {
		_, err := tx.Exec(context.Background(),
			`INSERT INTO executions (exec_id, job_id, version, initiated_by, initiated_at, target_count, success_count, failure_count, status)
			 VALUES ('x-run', 'disk-check', 'v7', 'alice', ?, 3, 1, 0, 'running')`, kanade.FormatTime(now.Add(-time.Minute)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	natsSrv := bustest.StartBootstrapped(t)
	kvSeed(t, natsSrv.JS, now)
	// PC-1 answers pings as an agent would.
	sub, err := natsSrv.NC.Subscribe("agents.PC-1.ping", func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"pc_id":"PC-1","hostname":"reception-01","agent_version":"1.4.2","at":"` + kanade.FormatTime(now) + `"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	h, err := handlers.New(handlers.Config{
		DB: db, Clock: clock, Bus: busOf(natsSrv.Bus), SPA: spa.FS(),
		Logger: slog.New(slog.NewTextHandler(testLog{t}, nil)),
		Auth:   auth.Config{StaticToken: browserToken},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	base := srv.URL
	publishRelease(t, base, "0.43.56")

	step := steps(t)
	eval := func(t *testing.T, what, expr string) string {
		t.Helper()
		return browserRun(t, b, what, chromedp.Evaluate[string](expr))
	}
	// act clicks the action box id's button, fills its inputs by CSS
	// selector, confirms, and returns the outcome shown in #flash.
	act := func(t *testing.T, id string, inputs map[string]string) string {
		t.Helper()
		sel := "#" + id
		b.waitFor(t, id, `document.querySelector(`+jsString(sel+` button[data-act="start"]`)+`)`)
		b.do(t, "start "+id, chromedp.Evaluate[chromedp.Void](`void document.querySelector(`+jsString(sel+` button[data-act="start"]`)+`).click()`))
		b.waitFor(t, "the question", `document.querySelector(`+jsString(sel+`.confirming button[data-act="confirm"]`)+`)`)
		for in, v := range inputs {
			b.waitFor(t, "an editable "+in, `(e => e && !e.readOnly && e.value !== '…')(document.querySelector(`+jsString(sel+" "+in)+`))`)
			b.do(t, "fill "+in, chromedp.Evaluate[chromedp.Void](`void (e => { e.value = `+jsString(v)+`; e.dispatchEvent(new Event('input')) })(document.querySelector(`+jsString(sel+" "+in)+`))`))
		}
		b.do(t, "flash away", chromedp.Evaluate[chromedp.Void](`void document.querySelector('#flash')?.remove()`))
		b.do(t, "confirm "+id, chromedp.Evaluate[chromedp.Void](`void document.querySelector(`+jsString(sel+` button[data-act="confirm"]`)+`).click()`))
		b.waitFor(t, "the outcome of "+id, `document.querySelector('#flash')`)
		return eval(t, "flash", `document.querySelector('#flash').className + ': ' + document.querySelector('#flash').textContent`)
	}

	b.do(t, "open", chromedp.Navigate(base+"/#token="+browserToken))
	b.waitFor(t, "the overview", `document.querySelector('#fleet-status')`)

	step("the job editor marks the line of the field the server refused, and saves a good one", func(t *testing.T) {
		b.do(t, "open the job", chromedp.Navigate(base+"/jobs/inventory"))
		b.waitFor(t, "Edit YAML", `document.querySelector('a[data-act="edit"][href="/jobs/inventory/edit"]')`)
		b.do(t, "edit", clickCSS(`a[data-act="edit"][href="/jobs/inventory/edit"]`))
		b.waitFor(t, "the editor", `document.querySelector('textarea#yaml')?.value.includes('inventory')`)
		bad := "id: inventory\nversion: v4\n# the shell is wrong\nexecute:\n  shell: cobol\n  script: Get-Package\n  timeout: 5m\ntarget:\n  all: true\n"
		save := func(t *testing.T, text string) {
			t.Helper()
			b.do(t, "type", chromedp.Evaluate[chromedp.Void](`void (e => { e.value = `+jsString(text)+`; e.dispatchEvent(new Event('input')) })(document.querySelector('#yaml'))`))
			b.do(t, "save", clickCSS(`#yaml-save`))
		}
		save(t, bad)
		b.waitFor(t, "the errors", `document.querySelector('#yaml-errors li')`)
		if got := eval(t, "error", `(l => l.dataset.location + ' @' + l.dataset.line + ':' + l.dataset.col)(document.querySelector('#yaml-errors li'))`); got != "body.execute.shell @5:3" {
			t.Errorf("the error points at %q, want body.execute.shell @5:3", got)
		}
		if got := b.texts(t, "#yaml-gutter li.err"); !cmp.Equal(got, []string{"5"}) {
			t.Errorf("marked lines = %q, want [5]", got)
		}
		if got := eval(t, "caret", `(e => e.value.slice(0, e.selectionStart).split('\n').length + '')(document.querySelector('#yaml'))`); got != "5" {
			t.Errorf("the caret is on line %s, want 5", got)
		}
		save(t, "id: inventory\nversion: v4\nexecute:\n  shell: [sh\n")
		b.waitFor(t, "the syntax error", `(l => l && l.dataset.line !== '5')(document.querySelector('#yaml-errors li'))`)
		if got := eval(t, "line", `document.querySelector('#yaml-errors li').dataset.line`); got != "4" {
			t.Errorf("a YAML syntax error is on line %s: %s", got, eval(t, "text", `document.querySelector('#yaml-errors').textContent`))
		}
		save(t, strings.Replace(bad, "cobol", "pwsh", 1))
		b.waitFor(t, "back on the job", `location.pathname === '/jobs/inventory' && document.querySelector('#flash.note')`)
		if got := b.texts(t, "#flash"); !cmp.Equal(got, []string{"inventory is saved."}) {
			t.Errorf("flash = %q", got)
		}
		b.waitFor(t, "version v4", `document.querySelector('table.kv')?.textContent.includes('v4')`)
	})

	step("the schedule editor follows a location into a list", func(t *testing.T) {
		b.do(t, "new schedule", chromedp.Navigate(base+"/schedules"))
		b.waitFor(t, "New schedule", `document.querySelector('a[href="/new/schedules"]')`)
		b.do(t, "click", clickCSS(`a[href="/new/schedules"]`))
		b.waitFor(t, "the editor", `document.querySelector('textarea#yaml')`)
		text := "id: s-new\nwhen:\n  calendar:\n    at: \"09:00\"\n    days:\n      - mon\n      - someday\ntz: utc\njob_id: inventory\ntarget:\n  all: true\n"
		b.do(t, "type", chromedp.Evaluate[chromedp.Void](`void (document.querySelector('#yaml').value = `+jsString(text)+`)`))
		b.do(t, "save", clickCSS(`#yaml-save`))
		b.waitFor(t, "the errors", `document.querySelector('#yaml-errors li')`)
		got := eval(t, "error", `(l => l.dataset.location + ' @' + l.dataset.line)(document.querySelector('#yaml-errors li'))`)
		if got != "body.when.calendar.days[1] @7" {
			t.Errorf("the error is %q, want body.when.calendar.days[1] @7 (%s)", got, eval(t, "text", `document.querySelector('#yaml-errors').textContent`))
		}
		b.do(t, "fix", chromedp.Evaluate[chromedp.Void](`void (document.querySelector('#yaml').value = `+jsString(strings.Replace(text, "someday", "fri", 1))+`)`))
		b.do(t, "save", clickCSS(`#yaml-save`))
		b.waitFor(t, "the new schedule", `location.pathname === '/schedules/s-new' && document.querySelector('#flash.note')`)
	})

	step("run now, then kill a running execution", func(t *testing.T) {
		b.do(t, "open the job", chromedp.Navigate(base+"/jobs/inventory"))
		if got := act(t, "run-now", nil); !strings.HasPrefix(got, "note: Started execution ") {
			t.Errorf("run now: %q", got)
		}
		b.do(t, "open x-run", chromedp.Navigate(base+"/executions/x-run"))
		if got := act(t, "kill", nil); got != "note: Kill requested." {
			t.Errorf("kill: %q", got)
		}
	})

	step("ping answers with the round trip, and a PC that is not there says so", func(t *testing.T) {
		b.do(t, "open PC-1", chromedp.Navigate(base+"/agents/PC-1"))
		if got := act(t, "ping", nil); !strings.HasPrefix(got, "note: Pong in ") {
			t.Errorf("ping PC-1: %q", got)
		}
		b.do(t, "open PC-2", chromedp.Navigate(base+"/agents/PC-2"))
		if got := act(t, "ping", nil); !strings.HasPrefix(got, "error: HTTP 408") {
			t.Errorf("ping PC-2 (no agent): %q", got)
		}
	})

	step("group membership: add, then remove", func(t *testing.T) {
		b.do(t, "open PC-1", chromedp.Navigate(base+"/agents/PC-1"))
		if got := act(t, "group-add", map[string]string{"#group-name": "lab"}); got != "note: PC-1 is in: lab" {
			t.Errorf("add: %q", got)
		}
		b.waitFor(t, "lab listed", `[...document.querySelectorAll('#agent-groups li a')].some(a => a.textContent === 'lab')`)
		if got := act(t, "group-add", map[string]string{"#group-name": "bad group"}); !strings.HasPrefix(got, "error: HTTP 400") {
			t.Errorf("add a bad name: %q", got)
		}
		if got := act(t, "ungroup-lab", nil); got != "note: PC-1 left lab." {
			t.Errorf("remove: %q", got)
		}
		b.waitFor(t, "lab gone", `![...document.querySelectorAll('#agent-groups li a')].some(a => a.textContent === 'lab')`)
	})

	step("config scopes: global, group and PC", func(t *testing.T) {
		b.do(t, "open PC-1", chromedp.Navigate(base+"/agents/PC-1"))
		if got := act(t, "pc-config", map[string]string{"textarea": `{"heartbeat_interval": "45s"}`}); got != "note: Config saved." {
			t.Errorf("PC scope: %q", got)
		}
		b.waitFor(t, "the effective value", `document.querySelector('#agent-config table')?.textContent.includes('45s')`)
		b.do(t, "open Groups", chromedp.Navigate(base+"/groups"))
		if got := act(t, "global-config", map[string]string{"textarea": `{"heartbeat_interval": "soon"}`}); !strings.HasPrefix(got, "error: HTTP 4") || !strings.Contains(got, "heartbeat_interval") {
			t.Errorf("a bad global value: %q", got)
		}
		if got := act(t, "global-config", map[string]string{"textarea": `{"host_perf_interval": "2m"}`}); got != "note: Config saved." {
			t.Errorf("global scope: %q", got)
		}
		b.waitFor(t, "the fleet config", `document.querySelector('#fleet-config table')?.textContent.includes('2m')`)
	})

	step("a release rolls out to a group; the group's scope then has a config", func(t *testing.T) {
		b.do(t, "open Releases", chromedp.Navigate(base+"/releases"))
		got := act(t, "rollout-0\\.43\\.56", map[string]string{"select.rollout-type": "group", "input.rollout-value": "canary", "input.rollout-jitter": "30m"})
		if got != "note: 0.43.56 is the target of group:canary." {
			t.Errorf("rollout: %q", got)
		}
		b.do(t, "open Groups", chromedp.Navigate(base+"/groups"))
		b.waitFor(t, "canary", `document.querySelector('tr#canary')`)
		if got := act(t, "group-config-canary", map[string]string{"textarea": `{"target_version": "0.43.56", "heartbeat_interval": "20s"}`}); got != "note: Config saved." {
			t.Errorf("group scope: %q", got)
		}
	})

	step("revoke and unrevoke a job's script", func(t *testing.T) {
		b.do(t, "open the job", chromedp.Navigate(base+"/jobs/disk-check"))
		if got := act(t, "revoke", nil); got != "note: disk-check is revoked." {
			t.Errorf("revoke: %q", got)
		}
		b.waitFor(t, "the badge", `[...document.querySelectorAll('.card-head .badge')].some(e => e.textContent === 'revoked')`)
		if got := act(t, "revoke", nil); got != "note: disk-check is no longer revoked." {
			t.Errorf("unrevoke: %q", got)
		}
		b.waitFor(t, "no badge", `![...document.querySelectorAll('.card-head .badge')].some(e => e.textContent === 'revoked')`)
	})

	step("freeze and unfreeze from the banner", func(t *testing.T) {
		b.do(t, "open the overview", chromedp.Navigate(base+"/"))
		b.waitFor(t, "the switch", `document.querySelector('#freeze button[data-act="start"]')`)
		b.do(t, "freeze", clickCSS(`#freeze button[data-act="start"]`))
		b.do(t, "reason", chromedp.SendKeys(chromedp.CSS(`#freeze-reason`), "change window"))
		b.do(t, "confirm", clickCSS(`#freeze button[data-act="confirm"]`))
		b.waitFor(t, "the banner", `document.querySelector('#freeze-banner.frozen')?.textContent.includes('change window')`)
		b.do(t, "unfreeze", clickCSS(`#unfreeze button[data-act="start"]`))
		b.do(t, "confirm", clickCSS(`#unfreeze button[data-act="confirm"]`))
		b.waitFor(t, "unfrozen", `document.querySelector('#freeze-banner.unfrozen') && document.querySelector('#freeze')`)
	})

	b.noPageErrors(t)
}

// publishRelease uploads a synthetic Windows agent build of version.
func publishRelease(t *testing.T, base, version string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fw, err := w.CreateFormFile("file", "agent.exe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(petest.Version(version).Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, base+"/api/agents/publish", &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+browserToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("publish %s: %s", version, res.Status)
	}
}
