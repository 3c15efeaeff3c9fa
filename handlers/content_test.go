package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go/jetstream"
)

func strp(s string) *string { return &s }

// seedChecks applies check states the way the projector does.
func (e *manageEnv) seedChecks(states ...storage.CheckState) {
	e.t.Helper()
	if err := e.db.Update(context.Background(), func(tx *storage.Tx) error { return tx.ApplyChecks(context.Background(), states) }); err != nil {
		e.t.Fatal(err)
	}
}

func TestChecksCountsRowsAndClear(t *testing.T) {
	e := newManageEnv(t, nil)
	e.must(http.StatusOK, http.MethodGet, "/api/checks", "")
	if got := e.do(http.MethodGet, "/api/checks", "").Body.String(); strings.TrimSpace(got) != `{"counts":[],"rows":[]}` {
		t.Errorf("empty = %s", got)
	}
	at := manageNow.Add(-time.Hour)
	e.seedChecks(
		storage.CheckState{PcID: "PC-2", CheckName: "bitlocker", Status: "ok", RecordedAt: at},
		storage.CheckState{PcID: "PC-1", CheckName: "bitlocker", Status: "fail", Detail: strp("C: not encrypted"), RecordedAt: at},
		storage.CheckState{PcID: "PC-3", CheckName: "bitlocker", Status: "ok", RecordedAt: at},
		storage.CheckState{PcID: "PC-1", CheckName: "defender_rtp", Status: "warn", RecordedAt: at},
		storage.CheckState{PcID: "PC-2", CheckName: "defender_rtp", Status: "weird", RecordedAt: at},
	)
	stamp := at.Format(time.RFC3339)
	want := `{"counts":[{"check_name":"bitlocker","ok":2,"warn":0,"fail":1,"unknown":0},
		{"check_name":"defender_rtp","ok":0,"warn":1,"fail":0,"unknown":1}],
		"rows":[{"pc_id":"PC-1","check_name":"bitlocker","status":"fail","detail":"C: not encrypted","recorded_at":"` + stamp + `"},
		{"pc_id":"PC-1","check_name":"defender_rtp","status":"warn","detail":null,"recorded_at":"` + stamp + `"},
		{"pc_id":"PC-2","check_name":"defender_rtp","status":"weird","detail":null,"recorded_at":"` + stamp + `"}]}`
	if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, e.must(http.StatusOK, http.MethodGet, "/api/checks", "").Body.String())); diff != "" {
		t.Errorf("GET /api/checks (-want +got):\n%s", diff)
	}
	// One check, ok rows included; counts stay complete.
	var got struct {
		Counts []map[string]any
		Rows   []struct {
			PcID   string `json:"pc_id"`
			Status string
		}
	}
	if err := json.Unmarshal(e.must(http.StatusOK, http.MethodGet, "/api/checks?check=%20bitlocker%20&include_ok=true", "").Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Counts) != 1 || got.Counts[0]["ok"] != 2.0 || len(got.Rows) != 3 || got.Rows[0].PcID != "PC-1" || got.Rows[2].PcID != "PC-3" {
		t.Errorf("one check with ok rows = %+v", got)
	}
	for _, q := range []string{"include_ok=yes", "include_ok=1", "check=%01"} {
		e.must(http.StatusBadRequest, http.MethodGet, "/api/checks?"+q, "")
	}

	// The clean-up: one PC, then the rest; 0 is 200 too.
	cleared := func(path string) string {
		return strings.TrimSpace(e.must(http.StatusOK, http.MethodDelete, path, "").Body.String())
	}
	if got := cleared("/api/checks/bitlocker?pc_id=PC-1"); got != `{"deleted":1}` {
		t.Errorf("clear one PC = %s", got)
	}
	if got := cleared("/api/checks/%20bitlocker%20"); got != `{"deleted":2}` {
		t.Errorf("clear the check = %s", got)
	}
	if got := cleared("/api/checks/bitlocker"); got != `{"deleted":0}` {
		t.Errorf("clear it again = %s", got)
	}
	for _, p := range []string{"/api/checks/%20", "/api/checks/a%00b", "/api/checks/x?pc_id=%0a", "/api/checks/" + strings.Repeat("x", 129)} {
		e.must(http.StatusBadRequest, http.MethodDelete, p, "")
	}
	// A hostile name is only ever a bound parameter: it deletes nothing.
	if got := cleared("/api/checks/x'%20OR%20'1'='1"); got != `{"deleted":0}` {
		t.Errorf("an injection attempt = %s", got)
	}
	if got := e.must(http.StatusOK, http.MethodGet, "/api/checks?include_ok=true", "").Body.String(); !strings.Contains(got, "defender_rtp") {
		t.Errorf("the other check went too: %s", got)
	}
}

// The recency guard: an older state arriving later never overwrites a
// newer one; an equal time replays to the same row.
func TestCheckStatesOnlyMoveForward(t *testing.T) {
	e := newManageEnv(t, nil)
	t1, t2 := manageNow.Add(-2*time.Hour), manageNow.Add(-time.Hour)
	e.seedChecks(storage.CheckState{PcID: "PC-1", CheckName: "c", Status: "fail", RecordedAt: t2},
		storage.CheckState{PcID: "PC-1", CheckName: "c", Status: "ok", RecordedAt: t1})
	e.seedChecks(storage.CheckState{PcID: "PC-1", CheckName: "c", Status: "ok", RecordedAt: t1})
	body := e.must(http.StatusOK, http.MethodGet, "/api/checks", "").Body.String()
	if !strings.Contains(body, `"status":"fail"`) {
		t.Errorf("after a stale state: %s", body)
	}
	e.seedChecks(storage.CheckState{PcID: "PC-1", CheckName: "c", Status: "warn", RecordedAt: t2})
	if body := e.must(http.StatusOK, http.MethodGet, "/api/checks", "").Body.String(); !strings.Contains(body, `"status":"warn"`) {
		t.Errorf("a state of the same instant replaces it: %s", body)
	}
}

// notifications reads NOTIFICATIONS back, each title prefixed with the
// subject it was stored on.
func (e *manageEnv) notifications() []kanade.Notification {
	e.t.Helper()
	s, err := e.nats.JS.Stream(e.t.Context(), kanade.StreamNotifications)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []kanade.Notification
	info, err := s.Info(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(e.t.Context(), seq)
		if err != nil {
			e.t.Fatal(err)
		}
		var n kanade.Notification
		if err := json.Unmarshal(m.Data, &n); err != nil {
			e.t.Fatal(err)
		}
		n.Title = m.Subject + " " + n.Title // where it went, for the test
		out = append(out, n)
	}
	return out
}

func TestNotificationsPublishAndHistory(t *testing.T) {
	e := newManageEnv(t, nil)
	e.must(http.StatusOK, http.MethodGet, "/api/notifications", "")
	if got := strings.TrimSpace(e.do(http.MethodGet, "/api/notifications", "").Body.String()); got != `[]` {
		t.Errorf("empty history = %s", got)
	}
	rec := e.send(http.MethodPost, "/api/notifications", "application/json", `{"id":" maint-1 ","priority":"emergency","require_ack":true,
		"title":"Network maintenance","body":"Offline 22:00","issued_by":"infra","expires_at":"2026-06-23T00:00:00+09:00",
		"target":{"all":true,"groups":["tokyo","東京","tokyo"],"pcs":["PC-1","PC-1"]}}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("publish = %d %s", rec.Code, rec.Body)
	}
	want := `{"id":"maint-1","subjects":["notifications.all","notifications.group.tokyo","notifications.group.東京","notifications.pc.PC-1"]}`
	if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, rec.Body.String())); diff != "" {
		t.Errorf("publish (-want +got):\n%s", diff)
	}
	stored := e.notifications()
	if len(stored) != 4 {
		t.Fatalf("stored %d messages, want 4", len(stored))
	}
	n := stored[1]
	if n.ID != "maint-1" || n.Priority != "emergency" || !n.RequireAck || n.Title != "notifications.group.tokyo Network maintenance" ||
		!n.IssuedAt.Equal(manageNow) || n.IssuedBy == nil || *n.IssuedBy != "infra" || n.ExpiresAt == nil ||
		!n.ExpiresAt.Equal(time.Date(2026, 6, 22, 15, 0, 0, 0, time.UTC)) {
		t.Errorf("stored notification %+v", n)
	}

	// A minted id, then the same id again later: history collapses by id,
	// the later copy wins, newest first.
	rec = e.send(http.MethodPost, "/api/notifications", "application/json", `{"priority":"info","title":"Hello","body":"","target":{"pcs":["PC-2"]}}`)
	var minted struct{ ID string }
	if err := json.Unmarshal(rec.Body.Bytes(), &minted); err != nil || len(minted.ID) != 36 {
		t.Fatalf("minted = %d %s", rec.Code, rec.Body)
	}
	e.set(manageNow.Add(time.Minute))
	e.must(http.StatusOK, http.MethodPost, "/api/notifications", `{"id":"maint-1","priority":"warn","title":"Moved","body":"x","target":{"all":true}}`)
	var hist []map[string]any
	if err := json.Unmarshal(e.must(http.StatusOK, http.MethodGet, "/api/notifications", "").Body.Bytes(), &hist); err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0]["id"] != "maint-1" || hist[0]["title"] != "Moved" || hist[0]["require_ack"] != false ||
		hist[1]["id"] != minted.ID || hist[1]["issued_at"] != "2026-06-22T08:30:00Z" {
		t.Errorf("history = %v", hist)
	}
	if _, ok := hist[1]["expires_at"]; ok {
		t.Errorf("expires_at present without one: %v", hist[1])
	}
}

func TestNotificationsRefuse(t *testing.T) {
	e := newManageEnv(t, nil)
	ok := `"priority":"info","title":"T","body":"b"`
	for _, c := range []struct {
		name, body string
		want       int
	}{
		{"no target", `{` + ok + `,"target":{}}`, 400},
		{"an empty target", `{` + ok + `,"target":{"all":false,"groups":[],"pcs":[]}}`, 400},
		{"a blank title", `{"priority":"info","title":"  ","body":"b","target":{"all":true}}`, 400},
		{"expired", `{` + ok + `,"expires_at":"2026-06-22T08:30:00Z","target":{"all":true}}`, 400},
		{"a bare date", `{` + ok + `,"expires_at":"2026-06-23","target":{"all":true}}`, 400},
		{"an id with a dot", `{"id":"a.b",` + ok + `,"target":{"all":true}}`, 400},
		{"an id with a wildcard", `{"id":"a>",` + ok + `,"target":{"all":true}}`, 400},
		{"an id with a space", `{"id":"a b",` + ok + `,"target":{"all":true}}`, 400},
		{"a long id", `{"id":"` + strings.Repeat("x", 129) + `",` + ok + `,"target":{"all":true}}`, 400},
		{"a group with a dot", `{` + ok + `,"target":{"groups":["a.b"]}}`, 400},
		{"a group wildcard", `{` + ok + `,"target":{"groups":["*"]}}`, 400},
		{"a pc with a dot", `{` + ok + `,"target":{"pcs":["PC.1"]}}`, 400},
		{"a pc with a space", `{` + ok + `,"target":{"pcs":["PC 1"]}}`, 400},
		{"a long title", `{"priority":"info","title":"` + strings.Repeat("あ", 201) + `","body":"","target":{"all":true}}`, 400},
		{"a long body", `{"priority":"info","title":"t","body":"` + strings.Repeat("x", 64<<10+1) + `","target":{"all":true}}`, 400},
		{"a long issued_by", `{` + ok + `,"issued_by":"` + strings.Repeat("x", 129) + `","target":{"all":true}}`, 400},
		{"too many subjects", `{` + ok + `,"target":{"pcs":[` + manyPCs(1001) + `]}}`, 400},
		{"no priority", `{"title":"T","body":"b","target":{"all":true}}`, 422},
		{"an unknown priority", `{"priority":"unknown","title":"T","body":"b","target":{"all":true}}`, 422},
		{"no title", `{"priority":"info","body":"b","target":{"all":true}}`, 422},
		{"no target field", `{` + ok + `}`, 422},
		{"not JSON", `{`, 400},
		{"over the body cap", `{"priority":"info","title":"t","body":"` + strings.Repeat("x", 2<<20) + `","target":{"all":true}}`, 413},
	} {
		if rec := e.send(http.MethodPost, "/api/notifications", "application/json", c.body); rec.Code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, rec.Code, clipBody(rec.Body.String()), c.want)
		}
	}
	if rec := e.send(http.MethodPost, "/api/notifications", "text/plain", `{`+ok+`,"target":{"all":true}}`); rec.Code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain = %d", rec.Code)
	}
	if n := e.notifications(); len(n) != 0 {
		t.Errorf("refused requests published %d messages", len(n))
	}
	// Exactly 1000 subjects pass.
	e.must(http.StatusOK, http.MethodPost, "/api/notifications", `{`+ok+`,"target":{"pcs":[`+manyPCs(1000)+`]}}`)

	// Every publish failing is 502: the stream no longer takes pc subjects.
	ctx := t.Context()
	if _, err := e.nats.JS.UpdateStream(ctx, jetstream.StreamConfig{Name: kanade.StreamNotifications,
		Subjects: []string{"notifications.all"}}); err != nil {
		t.Fatal(err)
	}
	if rec := e.send(http.MethodPost, "/api/notifications", "application/json", `{`+ok+`,"target":{"pcs":["PC-1"]}}`); rec.Code != http.StatusBadGateway {
		t.Errorf("every publish failed = %d %s, want 502", rec.Code, rec.Body)
	}
	// One stored, one failed: 200 with the stored one.
	rec := e.send(http.MethodPost, "/api/notifications", "application/json", `{`+ok+`,"target":{"all":true,"pcs":["PC-1"]}}`)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"subjects":["notifications.all"]`) {
		t.Errorf("half published = %d %s", rec.Code, rec.Body)
	}
	// No stream: 503 for both routes.
	if err := e.nats.JS.DeleteStream(ctx, kanade.StreamNotifications); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ method, body string }{{http.MethodPost, `{` + ok + `,"target":{"all":true}}`}, {http.MethodGet, ""}} {
		if rec := e.send(r.method, "/api/notifications", "application/json", r.body); rec.Code != http.StatusServiceUnavailable ||
			!strings.Contains(rec.Body.String(), kanade.StreamNotifications) {
			t.Errorf("%s without the stream = %d %s, want 503 naming it", r.method, rec.Code, rec.Body)
		}
	}
}

func manyPCs(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"PC-` + strconv.Itoa(i) + `"`)
	}
	return b.String()
}

func clipBody(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

func TestNotificationAckStatus(t *testing.T) {
	e := newManageEnv(t, nil)
	if got := strings.TrimSpace(e.must(http.StatusOK, http.MethodGet, "/api/notifications/never/ack_status", "").Body.String()); got != `{"id":"never","acks":[]}` {
		t.Errorf("unknown id = %s", got)
	}
	ack := func(pc, sid string, at time.Time) storage.NotificationAck {
		return storage.NotificationAck{NotificationAcked: kanade.NotificationAcked{NotificationID: "maint-1", PcID: pc, UserSID: sid,
			AckedAt: kanade.Timestamp{Time: at}}, RecordedAt: manageNow}
	}
	t1, t2 := manageNow.Add(-2*time.Minute), manageNow.Add(-time.Minute)
	err := e.db.Update(t.Context(), func(tx *storage.Tx) error {
		_, err := tx.InsertNotificationAcks(t.Context(), []storage.NotificationAck{ack("PC-2", "S-1", t1), ack("PC-1", "S-2", t2), ack("PC-1", "S-1", t1)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"maint-1","acks":[{"pc_id":"PC-1","user_sid":"S-1","acked_at":"2026-06-22T08:28:00Z"},
		{"pc_id":"PC-2","user_sid":"S-1","acked_at":"2026-06-22T08:28:00Z"},{"pc_id":"PC-1","user_sid":"S-2","acked_at":"2026-06-22T08:29:00Z"}]}`
	if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, e.must(http.StatusOK, http.MethodGet, "/api/notifications/maint-1/ack_status", "").Body.String())); diff != "" {
		t.Errorf("ack_status (-want +got):\n%s", diff)
	}
	for _, id := range []string{"a.b", "a%20b", "a*", "a%3E", strings.Repeat("x", 129), "a%00"} {
		e.must(http.StatusBadRequest, http.MethodGet, "/api/notifications/"+id+"/ack_status", "")
	}
}
