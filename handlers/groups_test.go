package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/groupmirror"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// kvOther is a second client of the test's NATS server, on its own
// connection: what the routes stored is read back through it, never
// through the handler's client.
func (e *manageEnv) kvOther(bucket string) jetstream.KeyValue {
	e.t.Helper()
	nc, err := nats.Connect(e.nats.URL)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	kv, err := js.KeyValue(e.t.Context(), bucket)
	if err != nil {
		e.t.Fatal(err)
	}
	return kv
}

// stored is the value of key as another client reads it ("" and revision
// 0 when there is none).
func stored(t *testing.T, kv jetstream.KeyValue, key string) (string, uint64) {
	t.Helper()
	v, err := kv.Get(t.Context(), key)
	if err != nil {
		if err == jetstream.ErrKeyNotFound {
			return "", 0
		}
		t.Fatalf("get %s: %v", key, err)
	}
	return string(v.Value()), v.Revision()
}

// groupsOf decodes a {"groups": […]} answer.
func groupsOf(t *testing.T, rec *httptest.ResponseRecorder) []string {
	t.Helper()
	var b struct {
		Groups []string `json:"groups"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Groups == nil {
		t.Fatalf("body %s: %v (groups must be an array)", rec.Body, err)
	}
	return b.Groups
}

func TestAgentGroupsReadAndEdit(t *testing.T) {
	e := newManageEnv(t, nil)
	kv := e.kvOther(kanade.BucketAgentGroups)
	const path = "/api/agents/PC-1/groups"

	if got := groupsOf(t, e.must(http.StatusOK, http.MethodGet, path, "")); len(got) != 0 {
		t.Errorf("unknown PC = %v, want []", got)
	}
	rec := e.send(http.MethodPut, path, "application/json", `{"groups":["wave1","canary","wave1"],"extra":1}`)
	if rec.Code != http.StatusOK || !cmp.Equal(groupsOf(t, rec), []string{"canary", "wave1"}) {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	v, rev := stored(t, kv, "PC-1")
	if v != `{"groups":["canary","wave1"]}` {
		t.Errorf("stored %s", v)
	}
	// The same set again: nothing written.
	e.must(http.StatusOK, http.MethodPut, path, `{"groups":["canary","wave1"]}`)
	if _, again := stored(t, kv, "PC-1"); again != rev {
		t.Errorf("an identical PUT moved the revision %d → %d", rev, again)
	}
	if got := groupsOf(t, e.must(http.StatusOK, http.MethodGet, path, "")); !cmp.Equal(got, []string{"canary", "wave1"}) {
		t.Errorf("GET = %v", got)
	}

	rec = e.send(http.MethodPost, path, "application/json", `{"group":"kiosk"}`)
	if rec.Code != http.StatusOK || !cmp.Equal(groupsOf(t, rec), []string{"canary", "kiosk", "wave1"}) {
		t.Fatalf("POST = %d %s", rec.Code, rec.Body)
	}
	v, rev = stored(t, kv, "PC-1")
	if v != `{"groups":["canary","kiosk","wave1"]}` {
		t.Errorf("stored after add: %s", v)
	}
	e.must(http.StatusOK, http.MethodPost, path, `{"group":"kiosk"}`) // present already
	if _, again := stored(t, kv, "PC-1"); again != rev {
		t.Errorf("adding a present group moved the revision %d → %d", rev, again)
	}

	rec = e.send(http.MethodDelete, path+"/canary", "", "")
	if rec.Code != http.StatusOK || !cmp.Equal(groupsOf(t, rec), []string{"kiosk", "wave1"}) {
		t.Fatalf("DELETE = %d %s", rec.Code, rec.Body)
	}
	if v, _ := stored(t, kv, "PC-1"); v != `{"groups":["kiosk","wave1"]}` {
		t.Errorf("stored after remove: %s", v)
	}
	_, rev = stored(t, kv, "PC-1")
	e.must(http.StatusOK, http.MethodDelete, path+"/canary", "") // absent: 200, nothing written
	if _, again := stored(t, kv, "PC-1"); again != rev {
		t.Errorf("removing an absent group moved the revision %d → %d", rev, again)
	}
	// A PC without a key: 200 and [], still no key.
	if got := groupsOf(t, e.must(http.StatusOK, http.MethodDelete, "/api/agents/PC-2/groups/canary", "")); len(got) != 0 {
		t.Errorf("remove from a PC without groups = %v", got)
	}
	if v, _ := stored(t, kv, "PC-2"); v != "" {
		t.Errorf("removing from a PC without groups wrote %s", v)
	}
	// A path segment is URL-decoded; a name stored by other means (a dot)
	// can still be removed.
	e.kvPut(kanade.BucketAgentGroups, "PC-3", `{"groups":["a.b","東京"]}`)
	if got := groupsOf(t, e.must(http.StatusOK, http.MethodDelete, "/api/agents/PC-3/groups/%E6%9D%B1%E4%BA%AC", "")); !cmp.Equal(got, []string{"a.b"}) {
		t.Errorf("remove 東京 = %v", got)
	}
	if got := groupsOf(t, e.must(http.StatusOK, http.MethodDelete, "/api/agents/PC-3/groups/a.b", "")); len(got) != 0 {
		t.Errorf("remove a.b = %v", got)
	}
	// An empty list is stored as one.
	e.must(http.StatusOK, http.MethodPut, path, `{"groups":[]}`)
	if v, _ := stored(t, kv, "PC-1"); v != `{"groups":[]}` {
		t.Errorf("stored empty list: %q", v)
	}
	// A delete marker reads as no groups, and an add over it creates.
	if err := kv.Delete(t.Context(), "PC-1"); err != nil {
		t.Fatal(err)
	}
	if got := groupsOf(t, e.must(http.StatusOK, http.MethodGet, path, "")); len(got) != 0 {
		t.Errorf("deleted key = %v", got)
	}
	e.must(http.StatusOK, http.MethodPost, path, `{"group":"wave2"}`)
	if v, _ := stored(t, kv, "PC-1"); v != `{"groups":["wave2"]}` {
		t.Errorf("stored after an add over a delete marker: %s", v)
	}
	// Unknown members of a stored value are ignored on read.
	e.kvPut(kanade.BucketAgentGroups, "PC-4", `{"groups":["b","a"],"owner":"x"}`)
	if got := groupsOf(t, e.must(http.StatusOK, http.MethodGet, "/api/agents/PC-4/groups", "")); !cmp.Equal(got, []string{"a", "b"}) {
		t.Errorf("GET of a value with metadata = %v", got)
	}

	got := e.auditLines()
	for i := range got {
		got[i] = strings.Replace(got[i], `,"source":"cli"`, "", 1)
		got[i] = strings.Replace(got[i], `,"sub":"service-token"`, "", 1)
	}
	want := []string{
		`audit.operator.agent_groups_put.PC-1 {"changed":true,"groups":["canary","wave1"]}`,
		`audit.operator.agent_groups_put.PC-1 {"changed":false,"groups":["canary","wave1"]}`,
		`audit.operator.agent_group_add.PC-1 {"changed":true,"group":"kiosk"}`,
		`audit.operator.agent_group_add.PC-1 {"changed":false,"group":"kiosk"}`,
		`audit.operator.agent_group_remove.PC-1 {"changed":true,"group":"canary"}`,
		`audit.operator.agent_group_remove.PC-1 {"changed":false,"group":"canary"}`,
		`audit.operator.agent_group_remove.PC-2 {"changed":false,"group":"canary"}`,
		`audit.operator.agent_group_remove.PC-3 {"changed":true,"group":"東京"}`,
		`audit.operator.agent_group_remove.PC-3 {"changed":true,"group":"a.b"}`,
		`audit.operator.agent_groups_put.PC-1 {"changed":true,"groups":[]}`,
		`audit.operator.agent_group_add.PC-1 {"changed":true,"group":"wave2"}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

// statusCase is one request and the answer the contract gives it.
type statusCase struct {
	name, method, path, ct, body string
	status                       int
	// says is part of the problem's detail; at is its first location.
	says, at string
}

func (e *manageEnv) checkStatuses(t *testing.T, cases []statusCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.send(tt.method, tt.path, tt.ct, tt.body)
			if rec.Code != tt.status {
				t.Fatalf("%s %s: status %d, want %d: %s", tt.method, tt.path, rec.Code, tt.status, rec.Body)
			}
			if tt.status < 300 {
				return
			}
			p := problemOf(t, rec)
			if !strings.Contains(p.Detail, tt.says) {
				t.Errorf("detail %q does not say %q", p.Detail, tt.says)
			}
			if tt.at != "" && (len(p.Errors) == 0 || p.Errors[0].Location != tt.at) {
				t.Errorf("location %+v, want %s", p.Errors, tt.at)
			}
		})
	}
}

func TestAgentGroupsStatusCodes(t *testing.T) {
	e := newManageEnv(t, nil)
	const js = "application/json"
	long := strings.Repeat("g", 129)
	e.checkStatuses(t, []statusCase{
		{"GET bad pc_id", "GET", "/api/agents/PC.1/groups", "", "", 400, "pc_id", "path.pc_id"},
		{"PUT bad pc_id", "PUT", "/api/agents/PC.1/groups", js, `{"groups":[]}`, 400, "pc_id", "path.pc_id"},
		{"POST bad pc_id", "POST", "/api/agents/PC%201/groups", js, `{"group":"a"}`, 400, "pc_id", "path.pc_id"},
		{"DELETE bad pc_id", "DELETE", "/api/agents/" + strings.Repeat("p", 129) + "/groups/a", "", "", 400, "pc_id", "path.pc_id"},
		{"PUT a dotted name", "PUT", "/api/agents/PC-1/groups", js, `{"groups":["ok","a.b"]}`, 400, "groups[1]", "body.groups[1]"},
		{"PUT a wildcard", "PUT", "/api/agents/PC-1/groups", js, `{"groups":["a>"]}`, 400, "groups[0]", "body.groups[0]"},
		{"PUT a long name", "PUT", "/api/agents/PC-1/groups", js, `{"groups":["` + long + `"]}`, 400, "groups[0]", "body.groups[0]"},
		{"PUT an empty name", "PUT", "/api/agents/PC-1/groups", js, `{"groups":[""]}`, 400, "groups[0]", "body.groups[0]"},
		{"PUT without groups", "PUT", "/api/agents/PC-1/groups", js, `{"group":["a"]}`, 422, "groups is required", "body.groups"},
		{"PUT groups null", "PUT", "/api/agents/PC-1/groups", js, `{"groups":null}`, 422, "groups is required", "body.groups"},
		{"PUT groups a string", "PUT", "/api/agents/PC-1/groups", js, `{"groups":"canary"}`, 422, "must be an array", "body.groups"},
		{"PUT a number in groups", "PUT", "/api/agents/PC-1/groups", js, `{"groups":[1]}`, 422, "must be a string", "body.groups"},
		{"PUT an array body", "PUT", "/api/agents/PC-1/groups", js, `["canary"]`, 422, "must be a JSON object", "body"},
		{"PUT a null body", "PUT", "/api/agents/PC-1/groups", js, `null`, 422, "must be a JSON object", "body"},
		{"PUT malformed JSON", "PUT", "/api/agents/PC-1/groups", js, `{"groups":[`, 400, "not JSON", "body"},
		{"PUT no body", "PUT", "/api/agents/PC-1/groups", js, ``, 400, "body", ""},
		{"PUT text/plain", "PUT", "/api/agents/PC-1/groups", "text/plain", `{"groups":[]}`, 415, "application/json", ""},
		{"PUT no content type", "PUT", "/api/agents/PC-1/groups", "", `{"groups":[]}`, 415, "application/json", ""},
		{"POST a blank name", "POST", "/api/agents/PC-1/groups", js, `{"group":"  "}`, 400, "group", "body.group"},
		{"POST an empty name", "POST", "/api/agents/PC-1/groups", js, `{"group":""}`, 400, "group", "body.group"},
		{"POST a name with a space", "POST", "/api/agents/PC-1/groups", js, `{"group":" canary"}`, 400, "group", "body.group"},
		{"POST without group", "POST", "/api/agents/PC-1/groups", js, `{}`, 422, "group is required", "body.group"},
		{"POST group a number", "POST", "/api/agents/PC-1/groups", js, `{"group":7}`, 422, "must be a string", "body.group"},
		{"POST malformed", "POST", "/api/agents/PC-1/groups", js, `{"group":`, 400, "not JSON", "body"},
		{"POST form", "POST", "/api/agents/PC-1/groups", "application/x-www-form-urlencoded", `group=a`, 415, "application/json", ""},
		{"POST a Japanese name", "POST", "/api/agents/PC-1/groups", js, `{"group":"東京"}`, 200, "", ""},
		{"PUT json with charset", "PUT", "/api/agents/PC-1/groups", "application/json; charset=utf-8", `{"groups":["a"]}`, 200, "", ""},
	})
	if got := e.auditLines(); len(got) != 2 {
		t.Errorf("audit after refused requests: %v (want only the two that succeeded)", got)
	}

	// A stored value that does not decode: 500 on read and on an edit
	// that starts from it; a replace does not read it and repairs it.
	e.kvPut(kanade.BucketAgentGroups, "PC-9", `{"groups":"oops"}`)
	e.checkStatuses(t, []statusCase{
		{"GET undecodable", "GET", "/api/agents/PC-9/groups", "", "", 500, "do not decode", ""},
		{"POST onto undecodable", "POST", "/api/agents/PC-9/groups", js, `{"group":"a"}`, 500, "do not decode", ""},
		{"DELETE from undecodable", "DELETE", "/api/agents/PC-9/groups/a", "", "", 500, "do not decode", ""},
		{"PUT over undecodable", "PUT", "/api/agents/PC-9/groups", js, `{"groups":["a"]}`, 200, "", ""},
		{"GET repaired", "GET", "/api/agents/PC-9/groups", "", "", 200, "", ""},
	})

	// The bucket cannot be opened: 503 naming it.
	if err := e.nats.JS.DeleteKeyValue(t.Context(), kanade.BucketAgentGroups); err != nil {
		t.Fatal(err)
	}
	e.checkStatuses(t, []statusCase{
		{"GET no bucket", "GET", "/api/agents/PC-1/groups", "", "", 503, "agent_groups", ""},
		{"PUT no bucket", "PUT", "/api/agents/PC-1/groups", js, `{"groups":["a"]}`, 503, "agent_groups", ""},
		{"POST no bucket", "POST", "/api/agents/PC-1/groups", js, `{"group":"a"}`, 503, "agent_groups", ""},
		{"DELETE no bucket", "DELETE", "/api/agents/PC-1/groups/a", "", "", 503, "agent_groups", ""},
		{"list no bucket", "GET", "/api/groups", "", "", 503, "agent_groups", ""},
	})
}

// TestAgentGroupsConcurrentEditsOverHTTP sends 25 adds of new names and 25
// removes of names present before, interleaved, to one PC at once through
// a real HTTP server: compare-and-swap must lose none of them.
func TestAgentGroupsConcurrentEditsOverHTTP(t *testing.T) {
	e := newManageEnv(t, nil)
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	var before, added []string
	for i := range 25 {
		before = append(before, fmt.Sprintf("old-%02d", i))
		added = append(added, fmt.Sprintf("new-%02d", i))
	}
	keep := []string{"keep-a", "keep-b"}
	body, _ := json.Marshal(map[string]any{"groups": append(slices.Clone(before), keep...)})
	e.must(http.StatusOK, http.MethodPut, "/api/agents/PC-1/groups", string(body))

	type call struct{ method, path, body string }
	var calls []call
	for i := range 25 {
		calls = append(calls, call{http.MethodPost, "/api/agents/PC-1/groups", fmt.Sprintf(`{"group":%q}`, added[i])},
			call{http.MethodDelete, "/api/agents/PC-1/groups/" + before[i], ""})
	}
	rand.Shuffle(len(calls), func(i, j int) { calls[i], calls[j] = calls[j], calls[i] })
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, len(calls))
	for _, c := range calls {
		wg.Go(func() {
			<-start
			req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			if err != nil {
				errs <- err
				return
			}
			req.Header.Set("Authorization", "Bearer "+testToken)
			if c.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("%s %s: %d %s", c.method, c.path, resp.StatusCode, b)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := kanade.NormalizeGroups(append(slices.Clone(added), keep...))
	v, _ := stored(t, e.kvOther(kanade.BucketAgentGroups), "PC-1")
	if diff := cmp.Diff(string(kanade.EncodeAgentGroups(want)), v); diff != "" {
		t.Errorf("stored after 50 concurrent edits (-want +got):\n%s", diff)
	}
	// The write-throughs, in whatever order they landed, leave the
	// mirror's rows with the final set (each row keeps the newest
	// revision), and the route answers it.
	gs, err := e.db.GroupOverview(t.Context(), manageNow)
	if err != nil {
		t.Fatal(err)
	}
	var mirrored []string
	for _, g := range gs {
		if slices.Equal(g.Members, []string{"PC-1"}) {
			mirrored = append(mirrored, g.Name)
		}
	}
	if diff := cmp.Diff(want, mirrored); diff != "" {
		t.Errorf("mirror rows after 50 concurrent edits (-want +got):\n%s", diff)
	}
	var listed []string
	for _, r := range e.groups() {
		if slices.Equal(r.Members, []string{"PC-1"}) {
			listed = append(listed, r.Name)
		}
	}
	if diff := cmp.Diff(want, listed); diff != "" {
		t.Errorf("GET /api/groups after 50 concurrent edits (-want +got):\n%s", diff)
	}
}

// groupRow is one row of GET /api/groups.
type groupRow struct {
	Name      string   `json:"name"`
	Members   []string `json:"members"`
	HasConfig bool     `json:"has_config"`
	Alive     int64    `json:"alive"`
}

// groups serves GET /api/groups.
func (e *manageEnv) groups() []groupRow {
	e.t.Helper()
	rec := e.must(http.StatusOK, http.MethodGet, "/api/groups", "")
	var b struct {
		Groups []groupRow `json:"groups"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Groups == nil {
		e.t.Fatalf("GET /api/groups: %s (%v)", rec.Body, err)
	}
	for _, r := range b.Groups {
		if r.Members == nil {
			e.t.Fatalf("GET /api/groups: row %s has members null", r.Name)
		}
	}
	return b.Groups
}

// lines renders rows as "name: members (alive) config".
func lines(rows []groupRow) []string {
	out := []string{}
	for _, r := range rows {
		s := fmt.Sprintf("%s: %s (%d)", r.Name, strings.Join(r.Members, " "), r.Alive)
		if r.HasConfig {
			s += " config"
		}
		out = append(out, s)
	}
	return out
}

func TestListGroups(t *testing.T) {
	e := newManageEnv(t, nil)
	if got := e.groups(); len(got) != 0 {
		t.Errorf("empty fleet = %v", got)
	}
	// PC-1 and PC-2 beat 30 s ago (alive), PC-3 an hour ago; PC-4 never.
	e.fleet([]string{"PC-1", "PC-2"}, nil)
	ctx := context.Background()
	// PC-7 beat exactly at the stale threshold (alive), PC-8 a nanosecond
	// before it (not).
	old := []kanade.Heartbeat{{PcID: "PC-3", At: kanade.Timestamp{Time: manageNow.Add(-time.Hour)}, AgentVersion: "1"},
		{PcID: "PC-7", At: kanade.Timestamp{Time: manageNow.Add(-kanade.DefaultStaleThreshold)}, AgentVersion: "1"},
		{PcID: "PC-8", At: kanade.Timestamp{Time: manageNow.Add(-kanade.DefaultStaleThreshold - time.Nanosecond)}, AgentVersion: "1"}}
	if err := e.db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, old) }); err != nil {
		t.Fatal(err)
	}
	// Through the API and straight into the KV, as the CLI would.
	e.must(http.StatusOK, http.MethodPut, "/api/agents/PC-1/groups", `{"groups":["wave1","canary"]}`)
	e.kvPut(kanade.BucketAgentGroups, "PC-2", `{"groups":["wave1"]}`)
	e.kvPut(kanade.BucketAgentGroups, "PC-3", `{"groups":["canary","東京"]}`)
	e.kvPut(kanade.BucketAgentGroups, "PC-4", `{"groups":["canary"]}`)
	e.kvPut(kanade.BucketAgentGroups, "PC-5", `{"groups":[]}`)
	e.kvPut(kanade.BucketAgentGroups, "PC-6", `not json`) // skipped
	e.kvPut(kanade.BucketAgentGroups, "PC-7", `{"groups":["edge"]}`)
	e.kvPut(kanade.BucketAgentGroups, "PC-8", `{"groups":["edge"]}`)
	e.kvPut(kanade.BucketAgentConfig, kanade.GroupScopeKey("kiosk"), `{"heartbeat_interval":"10s"}`)
	e.kvPut(kanade.BucketAgentConfig, kanade.GroupScopeKey("canary"), `{}`)
	e.kvPut(kanade.BucketAgentConfig, kanade.ScopeKeyGlobal, `{}`)
	e.kvPut(kanade.BucketAgentConfig, kanade.PCScopeKey("PC-1"), `{}`)
	e.kvPut(kanade.BucketAgentConfig, kanade.LegacyTargetVersionKey, `"1.0"`)
	want := []string{
		"canary: PC-1 PC-3 PC-4 (1) config",
		"edge: PC-7 PC-8 (1)",
		"kiosk:  (0) config",
		"wave1: PC-1 PC-2 (2)",
		"東京: PC-3 (0)",
	}
	if diff := cmp.Diff(want, lines(e.groups())); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	// Time passes: nobody is alive any more.
	e.set(manageNow.Add(10 * time.Minute))
	if got := lines(e.groups()); got[3] != "wave1: PC-1 PC-2 (0)" {
		t.Errorf("ten minutes later: %v", got)
	}
	// No agent_config: no config pass, no error.
	if err := e.nats.JS.DeleteKeyValue(t.Context(), kanade.BucketAgentConfig); err != nil {
		t.Fatal(err)
	}
	want = []string{"canary: PC-1 PC-3 PC-4 (0)", "edge: PC-7 PC-8 (0)", "wave1: PC-1 PC-2 (0)", "東京: PC-3 (0)"}
	if diff := cmp.Diff(want, lines(e.groups())); diff != "" {
		t.Errorf("without agent_config (-want +got):\n%s", diff)
	}
}

// startMirror runs the worker's membership watch beside the handler until
// the returned stop is called (or the test ends).
func (e *manageEnv) startMirror() (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = groupmirror.Run(ctx, e.nats.Bus, groupmirror.Config{DB: e.db, Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
			Check: 50 * time.Millisecond, Settle: 10 * time.Millisecond, MaxStale: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return stop
}

// eventually polls GET /api/groups until it answers want.
func (e *manageEnv) eventually(want ...string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := lines(e.groups())
		if cmp.Equal(want, got) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("GET /api/groups (-want +got):\n%s", cmp.Diff(want, got))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestListGroupsFollowsTheBucketThroughTheMirror writes memberships
// straight into the KV, as the CLI or an older backend would, while the
// worker's watch keeps the mirror: they show in /api/groups, a deleted key
// disappears, and what happened while the watch was down is caught up
// when it starts again. The answer never comes from the bucket itself
// while the watch runs.
func TestListGroupsFollowsTheBucketThroughTheMirror(t *testing.T) {
	e := newManageEnv(t, nil)
	e.fleet([]string{"PC-1"}, nil)
	stop := e.startMirror()
	e.kvPut(kanade.BucketAgentGroups, "PC-1", `{"groups":["canary"]}`)
	e.kvPut(kanade.BucketAgentGroups, "PC-2", `{"groups":["canary","wave1"]}`)
	e.eventually("canary: PC-1 PC-2 (1)", "wave1: PC-2 (0)")
	e.must(http.StatusOK, http.MethodPost, "/api/agents/PC-3/groups", `{"group":"wave1"}`)
	e.eventually("canary: PC-1 PC-2 (1)", "wave1: PC-2 PC-3 (0)")
	kv := e.kvOther(kanade.BucketAgentGroups)
	if err := kv.Delete(t.Context(), "PC-2"); err != nil {
		t.Fatal(err)
	}
	e.eventually("canary: PC-1 (1)", "wave1: PC-3 (0)")
	if strings.Contains(e.logs.String(), "catching it up") {
		t.Errorf("/api/groups read the bucket while the watch ran:\n%s", e.logs)
	}

	// The worker is down: writes, a delete, a purge with its marker gone.
	stop()
	e.kvPut(kanade.BucketAgentGroups, "PC-4", `{"groups":["kiosk"]}`)
	if err := kv.Delete(t.Context(), "PC-3"); err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(t.Context(), "PC-1"); err != nil {
		t.Fatal(err)
	}
	if err := kv.PurgeDeletes(t.Context(), jetstream.DeleteMarkersOlderThan(-1)); err != nil {
		t.Fatal(err)
	}
	// It starts again and resyncs.
	e.startMirror()
	e.eventually("kiosk: PC-4 (0)")
}

// Without any worker the route still answers what the bucket holds, by
// catching the mirror up itself; after that the mirror serves.
func TestListGroupsWithoutAWorkerCatchesTheMirrorUp(t *testing.T) {
	e := newManageEnv(t, nil)
	e.kvPut(kanade.BucketAgentGroups, "PC-1", `{"groups":["canary"]}`)
	if diff := cmp.Diff([]string{"canary: PC-1 (0)"}, lines(e.groups())); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n := strings.Count(e.logs.String(), "catching it up"); n != 1 {
		t.Errorf("caught up %d times, want once:\n%s", n, e.logs)
	}
	// An edit through the API is the next revision: written through, the
	// mirror stays current and the bucket is not read again.
	e.must(http.StatusOK, http.MethodPost, "/api/agents/PC-2/groups", `{"group":"canary"}`)
	if diff := cmp.Diff([]string{"canary: PC-1 PC-2 (0)"}, lines(e.groups())); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n := strings.Count(e.logs.String(), "catching it up"); n != 1 {
		t.Errorf("caught up %d times after a written-through edit, want still once:\n%s", n, e.logs)
	}
	// A write behind the API's back: caught up again.
	e.kvPut(kanade.BucketAgentGroups, "PC-1", `{"groups":["wave1"]}`)
	if diff := cmp.Diff([]string{"canary: PC-2 (0)", "wave1: PC-1 (0)"}, lines(e.groups())); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Every route of groups and config needs NATS (but the defaults): without
// it, or on a server without the buckets, it answers 503 at once, saying
// why; a missing bucket is named.
func TestGroupsAndConfigWithoutNATS(t *testing.T) {
	notBootstrapped := bustest.Start(t).Bus
	requests := []struct{ method, path, body, bucket string }{
		{http.MethodGet, "/api/groups", "", "agent_groups"},
		{http.MethodGet, "/api/agents/PC-1/groups", "", "agent_groups"},
		{http.MethodPut, "/api/agents/PC-1/groups", `{"groups":["a"]}`, "agent_groups"},
		{http.MethodPost, "/api/agents/PC-1/groups", `{"group":"a"}`, "agent_groups"},
		{http.MethodDelete, "/api/agents/PC-1/groups/a", "", "agent_groups"},
		{http.MethodGet, "/api/agents/PC-1/effective_config", "", "agent_config"},
		{http.MethodGet, "/api/pcs/PC-1/config/inherited", "", "agent_config"},
		{http.MethodGet, "/api/groups/a/config/inherited", "", "agent_config"},
	}
	for _, base := range []string{"/api/config", "/api/groups/a/config", "/api/pcs/PC-1/config"} {
		requests = append(requests,
			struct{ method, path, body, bucket string }{http.MethodGet, base, "", "agent_config"},
			struct{ method, path, body, bucket string }{http.MethodPut, base, `{}`, "agent_config"},
			struct{ method, path, body, bucket string }{http.MethodDelete, base, "", "agent_config"},
			struct{ method, path, body, bucket string }{http.MethodPut, base + "/fields/heartbeat_interval", `{"value":"1m"}`, "agent_config"},
			struct{ method, path, body, bucket string }{http.MethodDelete, base + "/fields/heartbeat_interval", "", "agent_config"})
	}
	for _, tt := range []struct {
		name string
		bus  func() (*bus.Client, error)
	}{
		{"no NATS configured", nil},
		{"NATS not connected", func() (*bus.Client, error) { return nil, bus.ErrNotConnected }},
		{"a server without the buckets", bus.Static(notBootstrapped)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newManageEnv(t, func(c *handlers.Config) { c.Bus = tt.bus })
			for _, r := range requests {
				rec := e.do(r.method, r.path, r.body)
				if rec.Code != http.StatusServiceUnavailable {
					t.Errorf("%s %s: status %d, want 503; body %s", r.method, r.path, rec.Code, rec.Body)
					continue
				}
				if p := problemOf(t, rec); tt.name == "a server without the buckets" && !strings.Contains(p.Detail, r.bucket) {
					t.Errorf("%s %s: detail %q does not name %s", r.method, r.path, p.Detail, r.bucket)
				}
			}
			e.must(http.StatusOK, http.MethodGet, "/api/config/defaults", "")
		})
	}
}
