package handlers_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/storage"
)

// TestFleetHealthSeesAStalledProjection: when what agents send stops
// reaching the database (a full disk, a dead worker), the counts alone
// would show a quiet fleet. The rollup rebuilds each projection's progress
// from the database offset and the stream, and degrades only when messages
// wait and the offset has not moved for the stall threshold.
func TestFleetHealthSeesAStalledProjection(t *testing.T) {
	type consumer struct {
		Applied, Pending float64
		Stalled          bool
		LastError        any
	}
	tests := []struct {
		name string
		// progressAgo is how long before the messages were published the
		// results offset last moved; nowAfter is how long after them the
		// rollup is asked.
		progressAgo, nowAfter time.Duration
		dbError               string
		localError            string
		wantCode              int
		wantResults           consumer
		wantInError           []string
	}{
		{name: "messages waiting past the threshold with no progress degrade", progressAgo: 10 * time.Minute, nowAfter: 5 * time.Minute,
			wantCode: http.StatusServiceUnavailable, wantResults: consumer{1, 2, true, nil},
			wantInError: []string{kanade.ProjectionResults, "no progress for 15m0s", "2 pending"}},
		{name: "the error the worker recorded is named", progressAgo: 10 * time.Minute, nowAfter: 5 * time.Minute,
			dbError: "apply batch of 2: commit: database is locked", wantCode: http.StatusServiceUnavailable,
			wantResults: consumer{1, 2, true, "apply batch of 2: commit: database is locked"}, wantInError: []string{"database is locked"}},
		{name: "an in-process worker's newer error wins over the database's", progressAgo: 10 * time.Minute, nowAfter: 5 * time.Minute,
			dbError: "older", localError: "commit: database or disk is full", wantCode: http.StatusServiceUnavailable,
			wantResults: consumer{1, 2, true, "commit: database or disk is full"}, wantInError: []string{"disk is full"}},
		{name: "a backlog that moved recently is draining, not stalled", progressAgo: -4 * time.Minute, nowAfter: 5 * time.Minute,
			wantCode: http.StatusOK, wantResults: consumer{1, 2, false, nil}},
		{name: "a message that just arrived is not a stall however old the offset", progressAgo: 3 * time.Hour, nowAfter: 10 * time.Second,
			wantCode: http.StatusOK, wantResults: consumer{1, 2, false, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			var local func() []kanade.ProjectionProgress
			var localAt time.Time
			if tt.localError != "" {
				local = func() []kanade.ProjectionProgress {
					return []kanade.ProjectionProgress{{Name: kanade.ProjectionResults, LastError: tt.localError, LastErrorAt: localAt}}
				}
			}
			e := newEnv(t, func(c *handlers.Config) { c.Progress = local })
			for range 3 {
				if _, err := e.nats.JS.Publish(ctx, "results.q", []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
			}
			published := time.Now()
			e.clock.t = published.Add(-tt.progressAgo)
			if err := e.db.Update(ctx, func(tx *storage.Tx) error {
				return tx.Advance(ctx, kanade.ProjectionResults, 1, "")
			}); err != nil {
				t.Fatal(err)
			}
			if tt.dbError != "" {
				if err := e.db.RecordProjectionError(ctx, kanade.ProjectionResults, tt.dbError, published.Add(-time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			localAt = published
			e.clock.t = published.Add(tt.nowAfter)

			rec := e.get("/api/health/fleet")
			if rec.Code != tt.wantCode {
				t.Fatalf("code %d, want %d; body %s", rec.Code, tt.wantCode, rec.Body)
			}
			body := decode(t, rec)
			p := body["projection"].(map[string]any)
			cs := p["consumers"].([]any)
			res := cs[0].(map[string]any)
			got := consumer{res["applied_seq"].(float64), res["pending"].(float64), res["stalled"].(bool), res["last_error"]}
			if got != tt.wantResults {
				t.Errorf("results consumer = %+v, want %+v; body %s", got, tt.wantResults, rec.Body)
			}
			if age, _ := res["oldest_unapplied_age_seconds"].(float64); age < tt.nowAfter.Seconds()-5 || age > tt.nowAfter.Seconds()+5 {
				t.Errorf("oldest unapplied age %v s, want about %v", res["oldest_unapplied_age_seconds"], tt.nowAfter.Seconds())
			}
			if p["all_ok"] != !tt.wantResults.Stalled {
				t.Errorf("all_ok = %v with stalled %v", p["all_ok"], tt.wantResults.Stalled)
			}
			// The other projections have nothing waiting.
			for _, c := range cs[1:] {
				if c := c.(map[string]any); c["stalled"] != false || c["pending"] != 0.0 {
					t.Errorf("%v: %v", c["name"], c)
				}
			}
			errs, _ := body["errors"].(map[string]any)
			msg, _ := errs["projection"].(string)
			if (msg != "") != tt.wantResults.Stalled {
				t.Errorf("errors.projection = %q with stalled %v", msg, tt.wantResults.Stalled)
			}
			for _, w := range tt.wantInError {
				if !strings.Contains(msg, w) {
					t.Errorf("errors.projection = %q, want it to say %q", msg, w)
				}
			}
			ietf := decode(t, e.get("/api/health/fleet", "Accept", "application/health+json"))
			check := ietf["checks"].(map[string]any)["projection:backlog"].([]any)[0].(map[string]any)
			if want := map[bool]string{true: "fail", false: "pass"}[tt.wantResults.Stalled]; check["status"] != want || check["observedValue"] != 2.0 {
				t.Errorf("projection:backlog check = %v, want %s with 2 waiting", check, want)
			}
		})
	}
}
