package spa_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
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

// meDelay holds back every GET /api/auth/me, so that on a fresh page load
// a view's own reads answer well before the caller's role is known: the
// order that the dashboard must draw right.
const meDelay = 400 * time.Millisecond

// controlsSeen is run in every new document before the dashboard's own
// scripts: it keeps the most write controls that were ever in the page,
// so a control drawn for one frame and taken away again is still counted.
const controlsSeen = `window.__controls = 0;
new MutationObserver(() => {
	window.__controls = Math.max(window.__controls, document.querySelectorAll('.act, [data-act], #freeze-banner button').length);
}).observe(document, { subtree: true, childList: true });`

// meAnswered is whether a read of the page began before /api/auth/me was
// answered (the reads do not wait for the role), from the browser's own
// resource timings.
const meAnswered = `(() => {
	const api = performance.getEntriesByType('resource').filter((e) => new URL(e.name).pathname.startsWith('/api/'));
	const me = api.find((e) => new URL(e.name).pathname === '/api/auth/me');
	const reads = api.filter((e) => e !== me);
	return Boolean(me) && reads.length > 0 && Math.min(...reads.map((e) => e.startTime)) < me.responseEnd;
})()`

// TestViewsReadBesideTheRole loads pages afresh with /api/auth/me slow: a
// page's reads start beside it (issue 13: one round trip less per load),
// a viewer is never offered a write control, not even for a frame, and an
// admin still gets them once the role is known.
func TestViewsReadBesideTheRole(t *testing.T) {
	b := newBrowser(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	db := storagetest.Open(t, clock)
	browserSeed(t, db, now)
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
		Logger:       slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelError})),
		Auth:         auth.Config{StaticToken: browserToken, JWTSecret: []byte(browserJWTSecret)},
		PasswordCost: testPasswordCost,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/auth/me" {
			time.Sleep(meDelay)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	login, err := json.Marshal(map[string]string{"username": "vera", "password": veraPassword})
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Post(srv.URL+"/api/auth/login", "application/json", bytes.NewReader(login))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	err = json.NewDecoder(res.Body).Decode(&tok)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || tok.Token == "" {
		t.Fatalf("viewer login: %d %v", res.StatusCode, err)
	}

	b.do(t, "watch for controls", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: controlsSeen})
		return chromedp.Void{}, err
	})
	pages := []struct{ path, ready string }{
		{"/", `document.querySelector('#versions') && document.querySelector('#recent-execs')`},
		{"/schedules", `document.querySelector('table#schedules tbody tr')`},
		{"/schedules/s-daily", `document.querySelector('table.kv')`},
		{"/jobs/inventory", `document.querySelector('pre#raw')`},
		{"/agents/PC-1", `document.querySelector('#agent-config')`},
	}
	// open loads path afresh (me unknown) and waits for its data and the
	// role in the header.
	open := func(t *testing.T, path, ready, role string) {
		t.Helper()
		b.do(t, "blank", chromedp.Navigate("about:blank"))
		b.do(t, "open "+path, chromedp.Navigate(srv.URL+path))
		b.waitFor(t, path, ready+` && document.documentElement.dataset.me === '`+role+`'`)
		if !browserRun(t, b, "timings", chromedp.Evaluate[bool](meAnswered)) {
			t.Errorf("%s: no read began before /api/auth/me answered", path)
		}
	}
	step := steps(t)
	step("a viewer is never offered a write control", func(t *testing.T) {
		b.do(t, "viewer token", chromedp.Navigate(srv.URL+"/#token="+tok.Token))
		for _, p := range pages {
			open(t, p.path, p.ready, "viewer")
			// A last frame for anything drawn after the data.
			time.Sleep(100 * time.Millisecond)
			if n := browserRun(t, b, "controls", chromedp.Evaluate[int](`window.__controls`)); n != 0 {
				t.Errorf("%s offered a viewer %d write controls", p.path, n)
			}
		}
	})
	step("an admin gets them once the role is known", func(t *testing.T) {
		b.do(t, "admin token", chromedp.Navigate(srv.URL+"/#token="+browserToken))
		// The controls come with the data, not with a later refresh.
		for _, p := range []struct{ path, ready, control string }{
			{"/schedules", `document.querySelector('table#schedules tbody tr')`, `table#schedules .act`},
			{"/jobs/inventory", `document.querySelector('pre#raw')`, `[data-act="edit"]`},
		} {
			open(t, p.path, p.ready, "admin")
			if !browserRun(t, b, "control", chromedp.Evaluate[bool](`Boolean(document.querySelector(`+jsString(p.control)+`))`)) {
				t.Errorf("%s shows its data without %s to an admin", p.path, p.control)
			}
		}
	})
	step("the overview asks for all of its cards at once", func(t *testing.T) {
		open(t, "/", `document.querySelector('#versions') && document.querySelector('#recent-execs')`, "admin")
		// Every read a card needs has begun before the slow me answered:
		// none waits for another. (The status reads of Next up need the
		// schedule list, which answers only with the role.)
		early := browserRun(t, b, "early reads", chromedp.Evaluate[[]string](`(() => {
			const api = performance.getEntriesByType('resource').filter((e) => new URL(e.name).pathname.startsWith('/api/'));
			const me = api.find((e) => new URL(e.name).pathname === '/api/auth/me');
			return api.filter((e) => e !== me && e.startTime < me.responseEnd).map((e) => { const u = new URL(e.name); return u.pathname + u.search; }).sort();
		})()`))
		want := []string{"/api/agents/versions", "/api/executions?limit=5", "/api/freeze", "/api/health/fleet", "/api/health/scan_durations",
			"/api/results?status=failure&limit=200", "/api/schedules", "/api/schedules/upcoming?limit=100"}
		if diff := cmp.Diff(want, early); diff != "" {
			t.Errorf("reads begun before /api/auth/me answered (-want +got):\n%s", diff)
		}
	})
	b.noPageErrors(t)
}
