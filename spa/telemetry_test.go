package spa_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/auth/password"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/projection"
	"github.com/kanade-fleet/backend/sim"
	"github.com/kanade-fleet/backend/spa"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
	"github.com/nats-io/nats.go"
)

// simClock is the simulated fleet's clock, moved by the test.
type simClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *simClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *simClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestTelemetryPagesInABrowser shows the telemetry pages (issue 15 item 6)
// with what the simulator sends through NATS and the projection: a PC's
// 24-hour chart on its agent page, the timeline with its filters and More,
// the compliance table after a check ran, and a notification published
// from the page with the users who confirmed it; every page at 1440 and
// 390 px, and a viewer who gets no publish control.
func TestTelemetryPagesInABrowser(t *testing.T) {
	b := newBrowser(t)
	ctx := t.Context()
	db := storagetest.Open(t, time.Now)
	natsSrv := bustest.StartBootstrapped(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	w, err := projection.New(projection.Config{DB: db, Bus: natsSrv.Bus, Logger: quiet, Housekeeping: -1})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan struct{})
	go func() { defer close(workerDone); _ = w.Run(wctx) }()
	t.Cleanup(func() { stopWorker(); <-workerDone })

	hashed, err := password.Hash(veraPassword, testPasswordCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateAccount(ctx, storage.NewAccount{Username: "vera", Hash: hashed, Role: kanade.RoleViewer}); err != nil {
		t.Fatal(err)
	}
	h, err := handlers.New(handlers.Config{
		DB: db, Clock: time.Now, Bus: busOf(natsSrv.Bus), SPA: spa.FS(),
		Logger:       slog.New(slog.NewTextHandler(testLog{t}, nil)),
		Auth:         auth.Config{StaticToken: browserToken, JWTSecret: []byte(browserJWTSecret)},
		PasswordCost: testPasswordCost,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	base := srv.URL

	// The simulated fleet starts six hours ago and catches up to a few
	// minutes ago at once (a host sample every 5 minutes per agent, logons
	// about every 20), then its clock runs 60 times faster than the wall
	// clock, so the users confirm a notification within seconds.
	nc, err := nats.Connect(natsSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	simBus, err := bus.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(simBus.Close)
	const agents = 8
	clock := &simClock{t: time.Now().Add(-6 * time.Hour)}
	simCtx, stopSim := context.WithCancel(ctx)
	simDone := make(chan error, 1)
	go func() {
		simDone <- sim.Run(simCtx, simBus, sim.Config{Agents: agents, Seed: 15, Clock: clock.now, Step: 2 * time.Millisecond,
			PerfInterval: 5 * time.Minute, ObsInterval: 20 * time.Minute, RunInterval: 100_000 * time.Hour,
			FailureRate: -1, DuplicateRate: -1, Jobs: append(sim.DefaultJobs(), sim.DemoJob)})
	}()
	t.Cleanup(func() {
		stopSim()
		if err := <-simDone; err != nil {
			t.Errorf("sim.Run: %v", err)
		}
	})
	for clock.now().Before(time.Now().Add(-5 * time.Minute)) {
		clock.add(time.Minute)
		time.Sleep(4 * time.Millisecond)
	}
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-simCtx.Done():
				return
			case <-tick.C:
				clock.add(600 * time.Millisecond)
			}
		}
	}()

	call := func(t *testing.T, method, path, token string, body any) (int, []byte) {
		t.Helper()
		var in io.Reader
		if body != nil {
			data, _ := json.Marshal(body)
			in = bytes.NewReader(data)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, in)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return res.StatusCode, out
	}
	// waitAPI polls a GET until ok says its body is there.
	waitAPI := func(t *testing.T, what, path string, ok func([]byte) bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, body := call(t, http.MethodGet, path, browserToken, nil)
			if code == http.StatusOK && ok(body) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %d %s", what, code, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	step := steps(t)
	eval := func(t *testing.T, what, expr string) string {
		t.Helper()
		return browserRun(t, b, what, chromedp.Evaluate[string](expr))
	}
	count := func(t *testing.T, sel string) int {
		t.Helper()
		return browserRun(t, b, "count "+sel, chromedp.Evaluate[int](`document.querySelectorAll(`+jsString(sel)+`).length`))
	}
	pc := sim.NewFleet(sim.Config{Agents: agents}).PcID(1)

	step("the projection has the simulator's samples, events and a check's results", func(t *testing.T) {
		waitAPI(t, "samples", "/api/agents/"+pc+"/perf?from="+time.Now().Add(-24*time.Hour).UTC().Format(time.RFC3339), func(b []byte) bool {
			return strings.Count(string(b), `"cpu_pct":`) >= 40
		})
		waitAPI(t, "events", "/api/obs_events?limit=100", func(b []byte) bool { return strings.Count(string(b), `"kind":`) >= 60 })
		waitAPI(t, "alive agents", "/api/agents", func(b []byte) bool { return strings.Count(string(b), `"pc_id":`) == agents })
		if code, body := call(t, http.MethodPost, "/api/exec/"+sim.DemoJob.ID, browserToken, map[string]any{"target": map[string]any{"all": true}}); code != http.StatusOK {
			t.Fatalf("exec the check: %d %s", code, body)
		}
		waitAPI(t, "check states", "/api/checks?include_ok=true", func(b []byte) bool {
			return strings.Count(string(b), `"check_name":"sim_compliance","status"`) == agents
		})
	})

	step("an agent's page charts its CPU, memory and disk over 24 h", func(t *testing.T) {
		b.do(t, "open", chromedp.Navigate(base+"/#token="+browserToken))
		b.do(t, "refresh every 500 ms", chromedp.Evaluate[chromedp.Void](`localStorage.setItem('kanade.refresh_ms', '500')`))
		b.do(t, "open the agent", chromedp.Navigate(base+"/agents/"+pc))
		b.waitFor(t, "the charts", `document.querySelectorAll('#agent-perf svg.chart polyline').length >= 3`)
		for _, id := range []string{"perf-cpu", "perf-mem", "perf-disk"} {
			pts := browserRun(t, b, "points of "+id, chromedp.Evaluate[int](
				`[...document.querySelectorAll('#`+id+` polyline')].reduce((n, p) => n + p.points.numberOfItems, 0)`))
			if pts < 40 {
				t.Errorf("%s draws %d points, want the ~70 five-minute buckets of six hours", id, pts)
			}
			label := eval(t, "label of "+id, `document.getElementById('`+id+`').getAttribute('aria-label')`)
			if !strings.Contains(label, "latest") || strings.Contains(label, "NaN") || strings.Contains(label, "–") {
				t.Errorf("%s label %q", id, label)
			}
		}
		cpu := eval(t, "cpu label", `document.getElementById('perf-cpu').getAttribute('aria-label')`)
		if !strings.HasPrefix(cpu, "CPU: latest ") || !strings.HasSuffix(cpu, "%") {
			t.Errorf("CPU label %q", cpu)
		}
		b.do(t, "mark the chart", chromedp.Evaluate[chromedp.Void](`void (document.getElementById('perf-cpu').kanadeMark = 'kept')`))
		time.Sleep(1200 * time.Millisecond) // refreshes at 500 ms reuse the cached series
		if got := eval(t, "mark", `document.getElementById('perf-cpu')?.kanadeMark || ''`); got != "kept" {
			t.Error("a refresh of the agent page redrew the chart")
		}
	})

	step("the timeline filters by kind, source and PC and pages with More", func(t *testing.T) {
		b.do(t, "open Timeline", clickCSS(`#nav a[data-nav="timeline"]`))
		b.waitFor(t, "50 events", `document.querySelectorAll('table#timeline tbody tr').length === 50`)
		b.do(t, "More", clickCSS(`button.more`))
		b.waitFor(t, "more events", `document.querySelectorAll('table#timeline tbody tr').length > 50`)
		b.waitFor(t, "the kinds offered", `document.querySelectorAll('datalist#obs-kinds option').length >= 2`)
		b.do(t, "kind logon", chromedp.SendKeys(chromedp.CSS(`input[name="kind"]`), "logon"))
		b.waitFor(t, "the filter in the address", `location.search === '?kind=logon'`)
		b.waitFor(t, "only logons", `(() => { const k = [...document.querySelectorAll('table#timeline tbody tr td:nth-child(3)')].map(e => e.textContent);
			return k.length > 0 && k.every(x => x === 'logon') })()`)
		b.do(t, "open with source and pc", chromedp.Navigate(base+"/timeline?source=agent:internal&pc_id="+pc))
		b.waitFor(t, "one agent_started", `document.querySelectorAll('table#timeline tbody tr').length === 1`)
		if got := b.texts(t, "table#timeline tbody td:nth-child(3)"); len(got) != 1 || got[0] != "agent_started" {
			t.Errorf("kinds = %q", got)
		}
	})

	step("the compliance table counts every PC's state and lists them", func(t *testing.T) {
		b.do(t, "open Compliance", clickCSS(`#nav a[data-nav="compliance"]`))
		b.waitFor(t, "the counts", `document.querySelector('#check-counts tr[data-check="sim_compliance"]')`)
		nums := b.texts(t, `#check-counts tr[data-check="sim_compliance"] td.num`)
		total := 0
		for _, n := range nums {
			var v int
			fmt.Sscan(n, &v)
			total += v
		}
		if len(nums) != 4 || total != agents {
			t.Errorf("counts %q, want four summing to %d", nums, agents)
		}
		notOK := count(t, "#check-rows tbody tr")
		b.do(t, "include ok", clickCSS(`#include-ok`))
		b.waitFor(t, "every PC", fmt.Sprintf(`document.querySelectorAll('#check-rows tbody tr').length === %d`, agents))
		if got := b.path(t); got != "/compliance?include_ok=true" {
			t.Errorf("address = %q", got)
		}
		if notOK >= agents {
			t.Errorf("without ok the table listed %d of %d rows", notOK, agents)
		}
	})

	step("an operator publishes a notification and sees who confirmed it", func(t *testing.T) {
		b.do(t, "open Notifications", clickCSS(`#nav a[data-nav="notifications"]`))
		b.waitFor(t, "the publish control", `document.querySelector('#notify button[data-act="start"]')`)
		b.do(t, "start", clickCSS(`#notify button[data-act="start"]`))
		b.do(t, "title", chromedp.SendKeys(chromedp.CSS(`#notify-title`), "Network maintenance"))
		b.do(t, "body", chromedp.SendKeys(chromedp.CSS(`#notify-body`), "Offline 22:00–22:30"))
		b.do(t, "ask to confirm", clickCSS(`#notify-ack`))
		b.do(t, "everyone", clickCSS(`#notify-all`))
		b.do(t, "confirm", clickCSS(`#notify button[data-act="confirm"]`))
		b.waitFor(t, "the note", `document.querySelector('#flash.note')`)
		if got := eval(t, "note", `document.querySelector('#flash').textContent`); !strings.Contains(got, "sent to 1 subjects") {
			t.Errorf("note %q", got)
		}
		b.waitFor(t, "the history", `document.querySelectorAll('table#notifications tbody tr').length === 1`)
		b.do(t, "open it", clickCSS(`table#notifications tbody a`))
		b.waitFor(t, "the confirmations", `document.querySelectorAll('table#acks tbody tr').length > 0`)
		if got := eval(t, "title", `document.getElementById('notify-title').textContent`); got != "Network maintenance" {
			t.Errorf("title %q", got)
		}
	})

	pages := []struct{ path, ready string }{
		{"/agents/" + pc, `document.querySelector('#agent-perf svg.chart polyline')`},
		{"/timeline", `document.querySelector('table#timeline tbody tr')`},
		{"/compliance?include_ok=true", `document.querySelector('#check-rows tbody tr')`},
		{"/notifications", `document.querySelector('table#notifications tbody tr')`},
	}
	step("every telemetry page fits 1440 and 390 px", func(t *testing.T) {
		for _, wd := range []int64{1440, 390} {
			b.do(t, "viewport", chromedp.EmulateViewport(wd, 900))
			for _, p := range pages {
				b.do(t, "open "+p.path, chromedp.Navigate(base+p.path))
				b.waitFor(t, p.path, p.ready)
				if sw := browserRun(t, b, "page width", chromedp.Evaluate[int64](`document.documentElement.scrollWidth`)); sw > wd {
					t.Errorf("at %d px %s is %d px wide", wd, p.path, sw)
				}
			}
			b.do(t, "open the notification", chromedp.Evaluate[chromedp.Void](`void document.querySelector('table#notifications tbody a').click()`))
			b.waitFor(t, "its acks", `document.querySelector('table#acks tbody tr')`)
			if sw := browserRun(t, b, "page width", chromedp.Evaluate[int64](`document.documentElement.scrollWidth`)); sw > wd {
				t.Errorf("at %d px the notification is %d px wide", wd, sw)
			}
		}
	})

	step("a viewer sees the pages but no publish control", func(t *testing.T) {
		code, body := call(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": "vera", "password": veraPassword})
		if code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		var login struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal(body, &login); err != nil || login.Token == "" {
			t.Fatalf("login body %s: %v", body, err)
		}
		b.do(t, "as vera", chromedp.Navigate(base+"/#token="+login.Token))
		b.waitFor(t, "signed in", `document.documentElement.dataset.me === 'viewer'`)
		for _, p := range pages {
			b.do(t, "open "+p.path, chromedp.Navigate(base+p.path))
			b.waitFor(t, p.path, p.ready)
			if n := count(t, `.act, [data-act], #notify`); n != 0 {
				t.Errorf("%s offers a viewer %d write controls", p.path, n)
			}
		}
		if code, _ := call(t, http.MethodPost, "/api/notifications", login.Token, map[string]any{"priority": "info", "title": "x", "body": "",
			"target": map[string]any{"all": true}}); code != http.StatusForbidden {
			t.Errorf("a viewer's publish answered %d, want 403", code)
		}
	})

	if os.Getenv("KANADE_SCREENSHOTS") != "" {
		step("screenshots at 1440 px into /tmp", func(t *testing.T) {
			b.do(t, "viewport", chromedp.EmulateViewport(1440, 900))
			for i, p := range pages {
				b.do(t, "open "+p.path, chromedp.Navigate(base+p.path))
				b.waitFor(t, p.path, p.ready)
				time.Sleep(300 * time.Millisecond)
				png := browserRun(t, b, "screenshot", chromedp.FullScreenshot(100)) // 100: PNG
				if err := os.WriteFile(fmt.Sprintf("/tmp/kanade-telemetry-%d.png", i), png, 0o644); err != nil {
					t.Error(err)
				}
			}
		})
	}

	b.noPageErrors(t)
}
