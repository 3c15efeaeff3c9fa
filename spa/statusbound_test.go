package spa_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/spa"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// TestScheduleStatusReadsAreBounded: with 40 schedules the overview and the
// schedules page ask for each one's status, but never more than 4 at once,
// and refreshes every 300 ms reuse what they read instead of asking again.
func TestScheduleStatusReadsAreBounded(t *testing.T) {
	b := newBrowser(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	db := storagetest.Open(t, clock)
	browserSeed(t, db, now)
	natsSrv := bustest.StartBootstrapped(t)
	kvSeed(t, natsSrv.JS, now)
	kv, err := natsSrv.JS.KeyValue(t.Context(), kanade.BucketSchedules)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		id := fmt.Sprintf("s-bulk-%02d", i)
		if _, err := kv.Put(t.Context(), id, []byte(`{"id":"`+id+`","when":{"per_target":{"every":"1h"}},"job_id":"inventory","target":{"all":true}}`)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	inFlight, maxInFlight, total := 0, 0, 0
	inner, err := handlers.New(handlers.Config{
		DB: db, Clock: clock, Bus: busOf(natsSrv.Bus), SPA: spa.FS(),
		Logger: slog.New(slog.NewTextHandler(testLog{t}, nil)),
		Auth:   auth.Config{StaticToken: browserToken},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/status") && strings.HasPrefix(r.URL.Path, "/api/schedules/") {
			mu.Lock()
			inFlight++
			total++
			maxInFlight = max(maxInFlight, inFlight)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond) // long enough for unbounded reads to overlap
			defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	b.do(t, "open", chromedp.Navigate(srv.URL+"/schedules#token="+browserToken))
	b.waitFor(t, "the schedules", `document.querySelectorAll('table#schedules tbody tr').length >= 40`)
	b.do(t, "refresh every 300 ms", chromedp.Evaluate[chromedp.Void](`localStorage.setItem('kanade.refresh_ms', '300')`))
	mu.Lock()
	total, maxInFlight = 0, 0
	mu.Unlock()
	b.do(t, "reload", chromedp.Reload())
	b.waitFor(t, "the schedules again", `document.querySelectorAll('table#schedules tbody tr').length >= 40`)
	time.Sleep(2 * time.Second) // about six refreshes
	mu.Lock()
	defer mu.Unlock()
	if maxInFlight > 4 {
		t.Errorf("%d status reads were in flight at once, want at most 4", maxInFlight)
	}
	// 45 valid schedules read once; six refreshes unbounded would be 300.
	if total > n+5 {
		t.Errorf("%d status reads for %d schedules over several refreshes, want each read once", total, n+5)
	}
}
