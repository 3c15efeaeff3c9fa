package spa_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// TestAPIDocsInABrowser (issue 13, bug 10): /api/docs, the link the API
// advertises, opens in a browser without a token and says how to get one;
// once the dashboard has saved a token it lists the operations of
// /api/openapi.json (read with that token) and filters them; a refused
// token is said as such. The page runs under the dashboard's CSP, so a
// script it needed inline would leave it at "Loading".
func TestAPIDocsInABrowser(t *testing.T) {
	b := newBrowser(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	db := storagetest.Open(t, clock)
	base := dashboard(t, db, clock, nil)
	step := steps(t)

	step("without a token the page says where to sign in", func(t *testing.T) {
		b.do(t, "open the docs", chromedp.Navigate(base+"/api/docs"))
		b.waitFor(t, "the sign-in note", `document.querySelector('#docs-signin a[href="/"]')`)
		if got := strings.Join(b.texts(t, "#docs-signin"), ""); !strings.Contains(got, "needs a token") {
			t.Errorf("the note says %q", got)
		}
	})
	step("with the dashboard's token it lists the operations", func(t *testing.T) {
		b.do(t, "log in", chromedp.Navigate(base+"/#token="+browserToken))
		b.waitFor(t, "the saved token", `localStorage.getItem('kanade.token') === `+jsString(browserToken))
		b.do(t, "open the docs", chromedp.Navigate(base+"/api/docs"))
		b.waitFor(t, "the operations", `document.querySelectorAll('#ops .op').length > 40`)
		ops := b.texts(t, "#ops .op summary")
		for _, want := range []string{"get/api/agents", "get/api/health/fleet", "post/api/exec/{job_id}"} {
			found := false
			for _, op := range ops {
				if strings.HasPrefix(strings.ReplaceAll(strings.ToLower(op), " ", ""), want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no operation %s among %d", want, len(ops))
			}
		}
		if got := strings.Join(b.texts(t, "h1"), ""); !strings.Contains(got, "kanade backend API") {
			t.Errorf("title %q", got)
		}
	})
	step("the filter narrows the list", func(t *testing.T) {
		b.do(t, "filter", chromedp.SendKeys("#filter", "health/fleet"))
		b.waitFor(t, "one visible operation", `[...document.querySelectorAll('#ops .op')].filter((e) => !e.hidden).length === 1`)
		b.do(t, "open it", chromedp.Click(`#ops .op:not([hidden]) summary`))
		b.waitFor(t, "its responses", `document.querySelector('#ops .op[open] table.responses')`)
	})
	step("a refused token is said as such", func(t *testing.T) {
		b.do(t, "spoil the token", chromedp.Evaluate[chromedp.Void](`localStorage.setItem('kanade.token', 'not-the-token')`))
		b.do(t, "reload", chromedp.Navigate(base+"/api/docs"))
		b.waitFor(t, "the refusal", `(document.querySelector('#docs-signin')?.textContent || '').includes('refused')`)
	})
	b.noPageErrors(t)
}
