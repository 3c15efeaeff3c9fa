package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/bus/natsd"
	"github.com/kanade-fleet/backend/exeversion/petest"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/storage/storagetest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// observer is a connection of its own to the test's NATS server: what the
// release routes did is read back the way an agent or the CLI would see it,
// not through the client the handler used.
type observer struct {
	t   *testing.T
	js  jetstream.JetStream
	obs jetstream.ObjectStore
	kv  jetstream.KeyValue
}

func (e *manageEnv) observer() *observer {
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
	o := &observer{t: e.t, js: js}
	ctx := e.t.Context()
	if o.obs, err = js.ObjectStore(ctx, kanade.ObjectAgentReleases); err != nil {
		e.t.Fatal(err)
	}
	if o.kv, err = js.KeyValue(ctx, kanade.BucketAgentConfig); err != nil {
		e.t.Fatal(err)
	}
	return o
}

// object reads a release back whole (tests of small builds).
func (o *observer) object(name string) ([]byte, bool) {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(o.t.Context(), time.Minute)
	defer cancel()
	b, err := o.obs.GetBytes(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, false
	}
	if err != nil {
		o.t.Fatal(err)
	}
	return b, true
}

// scope reads an agent_config value and its revision (0 when absent).
func (o *observer) scope(key string) (string, uint64) {
	o.t.Helper()
	e, err := o.kv.Get(o.t.Context(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", 0
	}
	if err != nil {
		o.t.Fatal(err)
	}
	return string(e.Value()), e.Revision()
}

func (o *observer) putScope(key, value string) {
	o.t.Helper()
	if _, err := o.kv.PutString(o.t.Context(), key, value); err != nil {
		o.t.Fatal(err)
	}
}

// formPart is one field of a multipart form: a file part when file.
type formPart struct {
	name, value string
	file        bool
}

// form builds a multipart body in memory (small builds).
func form(t *testing.T, parts ...formPart) (contentType string, body []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.file {
			w, err = mw.CreateFormFile(p.name, "kanade-agent.exe")
		} else {
			w, err = mw.CreateFormField(p.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, p.value); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), b.Bytes()
}

func fileOf(b []byte) formPart { return formPart{name: "file", value: string(b), file: true} }

// publish posts a form to /api/agents/publish as the static-token caller.
func (e *manageEnv) publish(contentType string, body []byte) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.send(http.MethodPost, "/api/agents/publish", contentType, string(body))
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:])
}

// useTempDir points os.TempDir at a fresh directory and returns a check
// that the release routes left nothing in it.
func useTempDir(t *testing.T) func() {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	return func() {
		t.Helper()
		left, err := filepath.Glob(filepath.Join(dir, "*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Errorf("temporary files left behind: %v", left)
		}
	}
}

func TestReleasesPublishListRolloutDelete(t *testing.T) {
	e := newManageEnv(t, nil)
	o := e.observer()
	noTemp := useTempDir(t)

	if got := strings.TrimSpace(e.must(http.StatusOK, http.MethodGet, "/api/agents/releases", "").Body.String()); got != "[]" {
		t.Fatalf("an empty store lists %s, want []", got)
	}

	// A 64-bit build, with the version field the CLI sends: ignored,
	// the binary names the release.
	b64 := petest.Version("0.43.56").Bytes()
	ct, body := form(t, formPart{name: "version", value: "9.9.9"}, fileOf(b64))
	rec := e.publish(ct, body)
	if rec.Code != http.StatusOK {
		t.Fatalf("publish = %d %s", rec.Code, rec.Body)
	}
	want := fmt.Sprintf(`{"version":"0.43.56","size":%d,"digest":%q}`, len(b64), digestOf(b64))
	if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, rec.Body.String())); diff != "" {
		t.Errorf("publish answer (-want +got):\n%s", diff)
	}
	if got, ok := o.object("0.43.56"); !ok || !bytes.Equal(got, b64) {
		t.Fatalf("stored %d bytes (present %v), want the %d published", len(got), ok, len(b64))
	}
	if _, ok := o.object("9.9.9"); ok {
		t.Fatal("the version field named an object")
	}

	// A 32-bit build whose version has trailing NULs and blanks.
	im := petest.Version("0.43.57\x00 ")
	im.PE32 = true
	b32 := im.Bytes()
	ct, body = form(t, fileOf(b32))
	e.must2(http.StatusOK, e.publish(ct, body))

	// Publishing a version again replaces its build.
	im = petest.Version("0.43.56")
	im.TextLen = 3000
	b64b := im.Bytes()
	ct, body = form(t, fileOf(b64b))
	e.must2(http.StatusOK, e.publish(ct, body))
	if got, _ := o.object("0.43.56"); !bytes.Equal(got, b64b) {
		t.Fatal("a second publish of 0.43.56 did not replace the build")
	}
	// Publishing changed no scope.
	if keys, err := o.kv.ListKeys(t.Context()); err != nil {
		t.Fatal(err)
	} else {
		for k := range keys.Keys() {
			t.Errorf("publish wrote agent_config[%s]", k)
		}
	}

	// Newest first: 0.43.56 was put last.
	var list []struct {
		Version  string  `json:"version"`
		Size     uint64  `json:"size"`
		Digest   *string `json:"digest"`
		Modified *string `json:"modified"`
	}
	rec = e.must(http.StatusOK, http.MethodGet, "/api/agents/releases", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Version != "0.43.56" || list[1].Version != "0.43.57" {
		t.Fatalf("list = %s, want 0.43.56 then 0.43.57", rec.Body)
	}
	for i, b := range [][]byte{b64b, b32} {
		r := list[i]
		if r.Size != uint64(len(b)) || r.Digest == nil || *r.Digest != digestOf(b) || r.Modified == nil {
			t.Errorf("list[%d] = %+v, want size %d digest %s and a time", i, r, len(b), digestOf(b))
			continue
		}
		if m, err := time.Parse(time.RFC3339Nano, *r.Modified); err != nil || !strings.HasSuffix(*r.Modified, "Z") || time.Since(m) > time.Minute {
			t.Errorf("list[%d].modified = %q (%v), want a recent RFC 3339 time in UTC", i, *r.Modified, err)
		}
	}

	// Roll 0.43.56 out to a group with a jitter: the scope is created.
	rec = e.must(http.StatusOK, http.MethodPost, "/api/agents/rollout",
		`{"version":"0.43.56","scope":{"type":"group","value":"canary"},"jitter":"30m","extra":true}`)
	if diff := cmp.Diff(jsonOf(t, `{"version":"0.43.56","scope_key":"groups.canary","scope_label":"group:canary","jitter":"30m"}`),
		jsonOf(t, rec.Body.String())); diff != "" {
		t.Errorf("rollout answer (-want +got):\n%s", diff)
	}
	v, rev := o.scope("groups.canary")
	if diff := cmp.Diff(jsonOf(t, `{"target_version":"0.43.56","target_version_jitter":"30m"}`), jsonOf(t, v)); diff != "" {
		t.Errorf("groups.canary (-want +got):\n%s", diff)
	}
	// The same rollout again, and one without a jitter, change nothing and
	// write nothing.
	e.must(http.StatusOK, http.MethodPost, "/api/agents/rollout", `{"version":"0.43.56","scope":{"type":"group","value":"canary"},"jitter":"30m"}`)
	rec = e.must(http.StatusOK, http.MethodPost, "/api/agents/rollout", `{"version":"0.43.56","scope":{"type":"group","value":"canary"},"jitter":null}`)
	if !strings.Contains(rec.Body.String(), `"jitter":null`) {
		t.Errorf("rollout without a jitter answered %s, want jitter null", rec.Body)
	}
	if _, again := o.scope("groups.canary"); again != rev {
		t.Errorf("an unchanged rollout wrote groups.canary: revision %d, was %d", again, rev)
	}

	// A PC's scope keeps its other fields, those this build does not know
	// included, and its jitter when none is given.
	o.putScope("pcs.PC-1", `{"heartbeat_interval":"45s","target_version_jitter":"5m","from_the_future":{"x":1}}`)
	rec = e.must(http.StatusOK, http.MethodPost, "/api/agents/rollout", `{"version":"0.43.57","scope":{"type":"pc","value":"PC-1"}}`)
	if diff := cmp.Diff(jsonOf(t, `{"version":"0.43.57","scope_key":"pcs.PC-1","scope_label":"pc:PC-1","jitter":null}`),
		jsonOf(t, rec.Body.String())); diff != "" {
		t.Errorf("pc rollout answer (-want +got):\n%s", diff)
	}
	v, _ = o.scope("pcs.PC-1")
	if diff := cmp.Diff(jsonOf(t, `{"heartbeat_interval":"45s","target_version":"0.43.57","target_version_jitter":"5m","from_the_future":{"x":1}}`),
		jsonOf(t, v)); diff != "" {
		t.Errorf("pcs.PC-1 (-want +got):\n%s", diff)
	}
	// The fleet-wide scope; a deleted key is written again.
	o.putScope("global", `{"heartbeat_interval":"30s"}`)
	if err := o.kv.Delete(t.Context(), "global"); err != nil {
		t.Fatal(err)
	}
	rec = e.must(http.StatusOK, http.MethodPost, "/api/agents/rollout", `{"version":"0.43.57","scope":{"type":"global"},"jitter":"1h 30m"}`)
	if diff := cmp.Diff(jsonOf(t, `{"version":"0.43.57","scope_key":"global","scope_label":"global","jitter":"1h 30m"}`),
		jsonOf(t, rec.Body.String())); diff != "" {
		t.Errorf("global rollout answer (-want +got):\n%s", diff)
	}
	if v, _ := o.scope("global"); v != `{"target_version":"0.43.57","target_version_jitter":"1h 30m"}` {
		t.Errorf("global = %s", v)
	}
	if v, rev := o.scope(kanade.LegacyTargetVersionKey); rev != 0 {
		t.Errorf("the legacy key was written: %s", v)
	}

	// Delete is refused while a scope targets the release, naming the
	// first in key order (global before groups before pcs).
	rec = e.must(http.StatusConflict, http.MethodDelete, "/api/agents/releases/0.43.56", "")
	if d := detail(t, rec); !strings.Contains(d, "group:canary") || !strings.Contains(d, "clear or change") {
		t.Errorf("409 detail %q, want it to name group:canary and say what to do", d)
	}
	rec = e.must(http.StatusConflict, http.MethodDelete, "/api/agents/releases/0.43.57", "")
	if d := detail(t, rec); !strings.Contains(d, " global") || strings.Contains(d, "pc:PC-1") {
		t.Errorf("409 detail %q, want it to name global (the first scope)", d)
	}
	if _, ok := o.object("0.43.56"); !ok {
		t.Fatal("a refused delete deleted the release")
	}
	// Cleared (the scope now rolls out something else), it goes.
	o.putScope("groups.canary", `{"target_version":"0.43.57"}`)
	e.must(http.StatusNoContent, http.MethodDelete, "/api/agents/releases/0.43.56", "")
	if _, ok := o.object("0.43.56"); ok {
		t.Fatal("deleted release still readable")
	}
	e.must(http.StatusNotFound, http.MethodDelete, "/api/agents/releases/0.43.56", "")
	rec = e.must(http.StatusOK, http.MethodGet, "/api/agents/releases", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list) != 1 || list[0].Version != "0.43.57" {
		t.Fatalf("after the delete the list is %s, want 0.43.57 only", rec.Body)
	}

	wantAudit := []string{
		fmt.Sprintf(`audit.operator.agent_publish {"digest":%q,"size":%d,"version":"0.43.56"}`, digestOf(b64), len(b64)),
		fmt.Sprintf(`audit.operator.agent_publish {"digest":%q,"size":%d,"version":"0.43.57"}`, digestOf(b32), len(b32)),
		fmt.Sprintf(`audit.operator.agent_publish {"digest":%q,"size":%d,"version":"0.43.56"}`, digestOf(b64b), len(b64b)),
		`audit.operator.agent_rollout {"changed":true,"jitter":"30m","scope_key":"groups.canary","scope_label":"group:canary","version":"0.43.56"}`,
		`audit.operator.agent_rollout {"changed":false,"jitter":"30m","scope_key":"groups.canary","scope_label":"group:canary","version":"0.43.56"}`,
		`audit.operator.agent_rollout {"changed":false,"jitter":null,"scope_key":"groups.canary","scope_label":"group:canary","version":"0.43.56"}`,
		`audit.operator.agent_rollout {"changed":true,"jitter":null,"scope_key":"pcs.PC-1","scope_label":"pc:PC-1","version":"0.43.57"}`,
		`audit.operator.agent_rollout {"changed":true,"jitter":"1h 30m","scope_key":"global","scope_label":"global","version":"0.43.57"}`,
		`audit.operator.agent_release_delete {"version":"0.43.56"}`,
	}
	var got []string
	for _, a := range e.audits() {
		p, _ := a.Event["payload"].(map[string]any)
		if p["sub"] != "service-token" {
			t.Errorf("%s: caller %v, want service-token", a.Subject, p["sub"])
		}
		delete(p, "sub") // the caller keys are the control routes' concern
		delete(p, "source")
		got = append(got, a.Subject+" "+string(mustMarshal(t, p)))
	}
	if diff := cmp.Diff(wantAudit, got); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	noTemp()
}

// must2 fails the test unless rec has status want.
func (e *manageEnv) must2(want int, rec *httptest.ResponseRecorder) *httptest.ResponseRecorder {
	e.t.Helper()
	if rec.Code != want {
		e.t.Fatalf("status %d, want %d; body %s", rec.Code, want, rec.Body)
	}
	return rec
}

func TestPublishRefuses(t *testing.T) {
	e := newManageEnv(t, nil)
	o := e.observer()
	noTemp := useTempDir(t)
	valid := petest.Version("1.0.0").Bytes()
	ctValid, bodyValid := form(t, fileOf(valid))
	bad := func(v string) []byte { return petest.Version(v).Bytes() }
	type req struct {
		ct   string
		body []byte
	}
	with := func(parts ...formPart) req { ct, b := form(t, parts...); return req{ct, b} }
	for _, c := range []struct {
		name   string
		req    req
		status int
		says   string
	}{
		{"no content type", req{"", bodyValid}, 415, "multipart/form-data"},
		{"JSON", req{"application/json", []byte(`{"file":"x"}`)}, 415, "multipart/form-data"},
		{"no boundary", req{"multipart/form-data", bodyValid}, 400, "boundary"},
		{"no file field", with(formPart{name: "version", value: "1.0.0"}), 400, "no file field"},
		{"a file under another name", with(formPart{name: "binary", value: string(valid), file: true}), 400, "no file field"},
		{"an empty file", with(fileOf(nil)), 400, "empty"},
		{"two files", with(fileOf(valid), fileOf(valid)), 400, "more than one file"},
		{"a truncated form", req{ctValid, bodyValid[:len(bodyValid)-20]}, 400, "malformed multipart"},
		{"another boundary", req{"multipart/form-data; boundary=other", bodyValid}, 400, "no file field"},
		{"a script", with(fileOf([]byte("#!/bin/sh\necho agent\n"))), 400, "embedded version"},
		{"a PE without resources", with(fileOf(petest.Image{NoResources: true}.Bytes())), 400, "embedded version"},
		{"a PE without a version string", with(fileOf(petest.Image{Tables: []petest.StringTable{{Lang: 0x0409, CodePage: 0x04B0,
			Strings: []petest.KV{{Key: "ProductName", Value: "kanade-agent"}}}}}.Bytes())), 400, "embedded version"},
		{"a version with a control character", with(fileOf(bad("1.0\x01"))), 400, "cannot name a release"},
		{"a version with an invisible character", with(fileOf(bad("1.0\u200b"))), 400, "cannot name a release"},
		{"a version of 129 bytes", with(fileOf(bad(strings.Repeat("9", 129)))), 400, "cannot name a release"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := e.publish(c.req.ct, c.req.body)
			if rec.Code != c.status || !strings.Contains(detail(t, rec), c.says) {
				t.Fatalf("= %d %s, want %d saying %q", rec.Code, rec.Body, c.status, c.says)
			}
		})
	}
	// A body announced above the cap is refused before it is read.
	r := httptest.NewRequest(http.MethodPost, "/api/agents/publish", bytes.NewReader(bodyValid))
	r.ContentLength = 64<<20 + 1
	r.Header.Set("Content-Type", ctValid)
	r.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("Content-Length over the cap = %d %s, want 413", rec.Code, rec.Body)
	}

	if objs, err := o.obs.List(t.Context()); !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Errorf("refused publishes stored %v (%v)", objs, err)
	}
	if got := e.auditLines(); len(got) != 0 {
		t.Errorf("audit %v after refusals", got)
	}
	noTemp()
}

func TestRolloutRefuses(t *testing.T) {
	e := newManageEnv(t, nil)
	o := e.observer()
	ct, body := form(t, fileOf(petest.Version("1.0.0").Bytes()))
	e.must2(http.StatusOK, e.publish(ct, body))
	for _, c := range []struct {
		name, ct, body string
		status         int
		says           string
	}{
		{"no such release", "application/json", `{"version":"2.0.0","scope":{"type":"global"}}`, 404, "publish it first"},
		{"no such release, and a bad jitter", "application/json", `{"version":"2.0.0","scope":{"type":"global"},"jitter":"soon"}`, 404, "publish it first"},
		{"a version that cannot name an object", "application/json", `{"version":"","scope":{"type":"global"}}`, 404, "publish it first"},
		{"a jitter that is not a duration", "application/json", `{"version":"1.0.0","scope":{"type":"global"},"jitter":"soon"}`, 400, "jitter"},
		{"a group with a dot", "application/json", `{"version":"1.0.0","scope":{"type":"group","value":"a.b"}}`, 400, "scope.value"},
		{"a group that cannot carry a scope", "application/json", `{"version":"1.0.0","scope":{"type":"group","value":"東京"}}`, 400, "scope.value"},
		{"a pc_id with a space", "application/json", `{"version":"1.0.0","scope":{"type":"pc","value":"PC 1"}}`, 400, "scope.value"},
		{"a group without its name", "application/json", `{"version":"1.0.0","scope":{"type":"group"}}`, 422, "scope.value"},
		{"an unknown scope type", "application/json", `{"version":"1.0.0","scope":{"type":"site","value":"x"}}`, 422, "validation"},
		{"no scope", "application/json", `{"version":"1.0.0"}`, 422, "validation"},
		{"no version", "application/json", `{"scope":{"type":"global"}}`, 422, "validation"},
		{"a version that is a number", "application/json", `{"version":1,"scope":{"type":"global"}}`, 422, "validation"},
		{"malformed JSON", "application/json", `{"version":`, 400, ""},
		{"not JSON", "text/plain", `version=1.0.0`, 415, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := e.send(http.MethodPost, "/api/agents/rollout", c.ct, c.body)
			if rec.Code != c.status || !strings.Contains(rec.Body.String(), c.says) {
				t.Fatalf("= %d %s, want %d saying %q", rec.Code, rec.Body, c.status, c.says)
			}
		})
	}
	// An object another tool stored under a name no agent can report is
	// not rolled out.
	if _, err := o.obs.PutString(t.Context(), "  ", "x"); err != nil {
		t.Fatal(err)
	}
	rec := e.send(http.MethodPost, "/api/agents/rollout", "application/json", `{"version":"  ","scope":{"type":"global"}}`)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "body.version") {
		t.Errorf("rollout of a blank version = %d %s, want 400 at body.version", rec.Code, rec.Body)
	}
	// A stored scope that does not decode is not written over.
	o.putScope("pcs.PC-2", `{"target_version":7}`)
	rec = e.send(http.MethodPost, "/api/agents/rollout", "application/json", `{"version":"1.0.0","scope":{"type":"pc","value":"PC-2"}}`)
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("rollout onto an undecodable scope = %d %s, want 500", rec.Code, rec.Body)
	}
	if v, _ := o.scope("pcs.PC-2"); v != `{"target_version":7}` {
		t.Errorf("the undecodable scope became %s", v)
	}
	if keys, err := o.kv.Keys(t.Context()); err != nil || len(keys) != 1 {
		t.Errorf("refused rollouts left keys %v (%v), want only pcs.PC-2", keys, err)
	}
}

func TestDeleteReleaseSkipsWhatIsNotAScope(t *testing.T) {
	e := newManageEnv(t, nil)
	o := e.observer()
	ct, body := form(t, fileOf(petest.Version("1.0.0").Bytes()))
	e.must2(http.StatusOK, e.publish(ct, body))
	// The legacy key holds the bare version, a broken scope holds it in
	// the wrong type, another scope targets something else: none of them
	// blocks the delete.
	o.putScope(kanade.LegacyTargetVersionKey, "1.0.0")
	o.putScope("groups.broken", `["1.0.0"]`)
	o.putScope("pcs.PC-9", `{"target_version":"0.9.0"}`)
	e.must(http.StatusNoContent, http.MethodDelete, "/api/agents/releases/1.0.0", "")
	e.must(http.StatusNotFound, http.MethodDelete, "/api/agents/releases/never-published", "")
}

// Without the store or the bucket every route answers 503 naming it;
// without a NATS connection, 503 at once.
func TestReleasesWithoutTheirStores(t *testing.T) {
	e := newManageEnv(t, nil)
	ctx := t.Context()
	ct, body := form(t, fileOf(petest.Version("1.0.0").Bytes()))
	e.must2(http.StatusOK, e.publish(ct, body))
	if err := e.nats.JS.DeleteKeyValue(ctx, kanade.BucketAgentConfig); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, "/api/agents/rollout", `{"version":"1.0.0","scope":{"type":"global"}}`},
		{http.MethodDelete, "/api/agents/releases/1.0.0", ""},
	} {
		rec := e.do(c.method, c.path, c.body)
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(detail(t, rec), kanade.BucketAgentConfig) {
			t.Errorf("%s %s without agent_config = %d %s, want 503 naming it", c.method, c.path, rec.Code, rec.Body)
		}
	}
	if err := e.nats.JS.DeleteObjectStore(ctx, kanade.ObjectAgentReleases); err != nil {
		t.Fatal(err)
	}
	noTemp := useTempDir(t)
	for _, c := range []struct{ method, path, ct, body string }{
		{http.MethodGet, "/api/agents/releases", "", ""},
		{http.MethodPost, "/api/agents/publish", ct, string(body)},
		{http.MethodPost, "/api/agents/rollout", "application/json", `{"version":"1.0.0","scope":{"type":"global"}}`},
	} {
		rec := e.send(c.method, c.path, c.ct, c.body)
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(detail(t, rec), kanade.ObjectAgentReleases) {
			t.Errorf("%s %s without the store = %d %s, want 503 naming it", c.method, c.path, rec.Code, rec.Body)
		}
	}
	noTemp()
	// The delete checks the scopes first: with agent_config back (empty),
	// it reaches the missing store.
	if _, err := e.nats.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: kanade.BucketAgentConfig}); err != nil {
		t.Fatal(err)
	}
	rec := e.do(http.MethodDelete, "/api/agents/releases/1.0.0", "")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(detail(t, rec), kanade.ObjectAgentReleases) {
		t.Errorf("DELETE without the store = %d %s, want 503 naming it", rec.Code, rec.Body)
	}

	down := newManageEnv(t, func(c *handlers.Config) { c.Bus = nil })
	for _, c := range []struct{ method, path, ct, body string }{
		{http.MethodGet, "/api/agents/releases", "", ""},
		{http.MethodPost, "/api/agents/publish", ct, string(body)},
		{http.MethodPost, "/api/agents/rollout", "application/json", `{"version":"1.0.0","scope":{"type":"global"}}`},
		{http.MethodDelete, "/api/agents/releases/1.0.0", "", ""},
	} {
		if rec := down.send(c.method, c.path, c.ct, c.body); rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s %s without NATS = %d %s, want 503", c.method, c.path, rec.Code, rec.Body)
		}
	}
}

// heapWatch samples the heap while a request runs: its growth over the
// level before (after a GC), at the highest sample, and the bytes
// allocated meanwhile. A build held in memory anywhere in the process
// (the handler, the HTTP server, the NATS client, the test's own client)
// shows in both.
type heapWatch struct {
	stop, done  chan struct{}
	before      runtime.MemStats
	peakInuse   uint64
	peakAlloc   uint64
	allocatedBy uint64
}

func watchHeap() *heapWatch {
	h := &heapWatch{stop: make(chan struct{}), done: make(chan struct{})}
	runtime.GC()
	runtime.ReadMemStats(&h.before)
	h.peakInuse, h.peakAlloc = h.before.HeapInuse, h.before.HeapAlloc
	go func() {
		defer close(h.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			h.peakInuse, h.peakAlloc = max(h.peakInuse, m.HeapInuse), max(h.peakAlloc, m.HeapAlloc)
			select {
			case <-h.stop:
				h.allocatedBy = m.TotalAlloc - h.before.TotalAlloc
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

// end stops the sampling; the growths are in bytes.
func (h *heapWatch) end() (inuse, alloc, allocated uint64) {
	close(h.stop)
	<-h.done
	return h.peakInuse - h.before.HeapInuse, h.peakAlloc - h.before.HeapAlloc, h.allocatedBy
}

// streamPublish posts a form with the field file through a real HTTP
// server, its bytes written by writeFile into a pipe while the client
// sends them: the test never holds the build either.
func streamPublish(t *testing.T, url string, writeFile func(w io.Writer) error) (status int, body string) {
	t.Helper()
	pr, pw := io.Pipe()
	mw := testForm(pw)
	go func() {
		err := mw.WriteField("version", "ignored")
		if err == nil {
			var part io.Writer
			if part, err = mw.CreateFormFile("file", "kanade-agent.exe"); err == nil {
				if err = writeFile(part); err == nil {
					err = mw.Close()
				}
			}
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/api/agents/publish", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// testForm is the multipart writer of streamPublish: a fixed boundary,
// so formOverhead can tell how long a body will be.
func testForm(w io.Writer) *multipart.Writer {
	mw := multipart.NewWriter(w)
	if err := mw.SetBoundary("kanade-release-test-boundary"); err != nil {
		panic(err)
	}
	return mw
}

// formOverhead is how many bytes streamPublish sends besides the file's.
func formOverhead(t *testing.T) int64 {
	var b bytes.Buffer
	mw := testForm(&b)
	if err := mw.WriteField("version", "ignored"); err != nil {
		t.Fatal(err)
	}
	if _, err := mw.CreateFormFile("file", "kanade-agent.exe"); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return int64(b.Len())
}

// sameStream compares two readers to their ends, a chunk at a time.
func sameStream(a, b io.Reader) (int64, error) {
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	var n int64
	for {
		ka, ea := io.ReadFull(a, ba)
		kb, eb := io.ReadFull(b, bb)
		for _, err := range []error{ea, eb} {
			if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
				return n, fmt.Errorf("read after byte %d: %w", n, err)
			}
		}
		if ka != kb || !bytes.Equal(ba[:ka], bb[:kb]) {
			return n, fmt.Errorf("the streams differ within bytes %d–%d", n, n+int64(max(ka, kb)))
		}
		n += int64(ka)
		if ea != nil || eb != nil { // both ended, at the same byte
			return n, nil
		}
	}
}

// heapBudget is how much the heap may grow while a build of tens of MiB
// goes through: far below the build, above the buffers a request needs.
const heapBudget = 8 << 20

// A 30 MB build is published through a real HTTP server and read back
// byte for byte while the heap grows by less than 8 MB: it is streamed
// from the request into a temporary file and from there into the store.
func TestPublishStreamsA30MBBuild(t *testing.T) {
	e := newManageEnvApart(t)
	o := e.observer()
	noTemp := useTempDir(t)
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	build := func() petest.Image {
		im := petest.Version("1.30.0")
		im.TextLen = 30 << 20
		im.Text = rand.NewChaCha8([32]byte{30})
		return im
	}
	sent := sha256.New()
	h := watchHeap()
	status, body := streamPublish(t, srv.URL, func(w io.Writer) error {
		_, err := build().WriteTo(io.MultiWriter(w, sent))
		return err
	})
	inuse, alloc, allocated := h.end()
	t.Logf("publish of a %d-byte build: heap in use grew by %.2f MiB at most, live heap by %.2f MiB, %.2f MiB allocated meanwhile",
		build().Size(), float64(inuse)/(1<<20), float64(alloc)/(1<<20), float64(allocated)/(1<<20))
	if status != http.StatusOK {
		t.Fatalf("publish = %d %s", status, body)
	}
	want := fmt.Sprintf(`{"version":"1.30.0","size":%d,"digest":%q}`, build().Size(),
		"SHA-256="+base64.URLEncoding.EncodeToString(sent.Sum(nil)))
	if diff := cmp.Diff(jsonOf(t, want), jsonOf(t, body)); diff != "" {
		t.Errorf("publish answer (-want +got):\n%s", diff)
	}
	if inuse >= heapBudget || alloc >= heapBudget {
		t.Errorf("the heap grew by %d bytes in use, %d live: the build was held in memory", inuse, alloc)
	}
	noTemp()

	// nats.go gives a read without a deadline 5 s in all, short for
	// 30 MB on a busy machine.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	obj, err := o.obs.Get(ctx, "1.30.0")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	pr, pw := io.Pipe()
	go func() { _, err := build().WriteTo(pw); pw.CloseWithError(err) }()
	n, err := sameStream(obj, pr)
	if err != nil || n != build().Size() {
		t.Fatalf("read back %d bytes: %v", n, err)
	}
}

// natsChildDir names the store of a NATS server this test binary runs in
// a process of its own (TestNATSServerProcess).
const natsChildDir = "KANADE_TEST_NATS_CHILD_DIR"

// TestNATSServerProcess is not a test of its own: started by
// newManageEnvApart with natsChildDir set, it serves NATS from a child
// process until its stdin closes. Elsewhere it skips.
func TestNATSServerProcess(t *testing.T) {
	dir := os.Getenv(natsChildDir)
	if dir == "" {
		t.Skip("the NATS server process of the heap tests")
	}
	s, err := natsd.Start(natsd.Options{StoreDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(s.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	s.Shutdown()
	s.WaitForShutdown()
	os.Exit(0)
}

// newManageEnvApart is newManageEnv with its NATS server in a child
// process, bootstrapped: the heap the tests measure is then the handler's
// (and the test's), not the server's, which keeps what it stores in
// memory for a while and makes garbage of every message.
func newManageEnvApart(t *testing.T) *manageEnv {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestNATSServerProcess$")
	cmd.Env = append(os.Environ(), natsChildDir+"="+t.TempDir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("NATS server process: %v", err)
		}
	})
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("NATS server process: %v", err)
	}
	nc, err := nats.Connect(strings.TrimSpace(url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := bus.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Bootstrap(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	e := &manageEnv{t: t, nats: &bustest.Server{URL: strings.TrimSpace(url), NC: nc, JS: js, Bus: c},
		clock: &fakeClock{t: manageNow}, logs: &testkit.SyncBuffer{}}
	e.db = storagetest.Open(t, e.clock.Now)
	h, err := handlers.New(handlers.Config{
		DB:     e.db,
		Bus:    bus.Static(c),
		Clock:  e.clock.Now,
		Auth:   auth.Config{StaticToken: testToken, JWTSecret: manageSecret, Clock: e.clock.Now},
		Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("handler log:\n%s", e.logs)
		}
	})
	return e
}

// The body cap is 64 MiB of body: a build that makes the body exactly that
// long is published, one byte more is 413, and neither is held in memory
// on the way (the refused one is never stored, and its temporary file is
// gone).
func TestPublishCapsTheBodyAt64MiB(t *testing.T) {
	e := newManageEnvApart(t)
	o := e.observer()
	noTemp := useTempDir(t)
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	const limit = 64 << 20
	for _, c := range []struct {
		version string
		body    int64
		status  int
	}{
		{"1.64.0", limit, http.StatusOK},
		{"1.64.1", limit + 1, http.StatusRequestEntityTooLarge},
	} {
		// A PE image followed by random bytes (an overlay, as signed or
		// packed builds carry) up to the body length.
		im := petest.Version(c.version)
		im.TextLen = 1 << 20
		im.Text = rand.NewChaCha8([32]byte{64})
		overlay := c.body - formOverhead(t) - im.Size()
		h := watchHeap()
		status, body := streamPublish(t, srv.URL, func(w io.Writer) error {
			if _, err := im.WriteTo(w); err != nil {
				return err
			}
			_, err := io.CopyN(w, rand.NewChaCha8([32]byte{65}), overlay)
			return err
		})
		inuse, alloc, allocated := h.end()
		t.Logf("a %d-byte body: %d; heap in use grew by %.2f MiB at most, live heap by %.2f MiB, %.2f MiB allocated meanwhile",
			c.body, status, float64(inuse)/(1<<20), float64(alloc)/(1<<20), float64(allocated)/(1<<20))
		if status != c.status {
			t.Fatalf("a %d-byte body = %d %s, want %d", c.body, status, body, c.status)
		}
		if inuse >= heapBudget || alloc >= heapBudget {
			t.Errorf("a %d-byte body: the heap grew by %d bytes in use, %d live", c.body, inuse, alloc)
		}
		_, err := o.obs.GetInfo(t.Context(), c.version)
		if stored, want := err == nil, c.status == http.StatusOK; stored != want {
			t.Errorf("a %d-byte body: stored %v (%v), want %v", c.body, stored, err, want)
		}
		if c.status == http.StatusOK {
			if want := fmt.Sprintf(`"size":%d`, im.Size()+overlay); !strings.Contains(body, want) {
				t.Errorf("answer %s, want %s", body, want)
			}
		}
	}
	noTemp()
}

// The publish route reads its body itself, so huma knows nothing of it;
// the document still describes the form.
func TestPublishIsDocumentedAsAMultipartUpload(t *testing.T) {
	e := newManageEnv(t, nil)
	rec := e.must(http.StatusOK, http.MethodGet, "/api/openapi.json", "")
	type operation struct {
		RequestBody struct {
			Required bool `json:"required"`
			Content  map[string]struct {
				Schema struct {
					Required   []string                  `json:"required"`
					Properties map[string]map[string]any `json:"properties"`
				} `json:"schema"`
			} `json:"content"`
		} `json:"requestBody"`
	}
	// Path items may carry "servers" beside their operations (mountApart).
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	op := func(path string) operation {
		var o operation
		if err := json.Unmarshal(doc.Paths[path]["post"], &o); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		return o
	}
	rb := op("/api/agents/publish").RequestBody
	form, ok := rb.Content["multipart/form-data"]
	if !rb.Required || !ok || len(rb.Content) != 1 || !cmp.Equal(form.Schema.Required, []string{"file"}) ||
		form.Schema.Properties["file"]["format"] != "binary" {
		t.Errorf("publish's request body is documented as %+v", rb)
	}
	if _, ok := op("/api/agents/rollout").RequestBody.Content["application/json"]; !ok {
		t.Error("rollout's JSON body is not documented")
	}
}

// A server that gives each request 1 s to be read (the shells give 30 s)
// still takes an upload that needs longer: the publish route lifts the
// deadline for itself once the caller is through the role gate.
func TestPublishOutlivesTheServersReadTimeout(t *testing.T) {
	e := newManageEnv(t, nil)
	srv := httptest.NewUnstartedServer(e.h)
	srv.Config.ReadTimeout = time.Second
	srv.Start()
	defer srv.Close()
	b := petest.Version("2.0.0").Bytes()
	status, body := streamPublish(t, srv.URL, func(w io.Writer) error {
		if _, err := w.Write(b[:len(b)/2]); err != nil {
			return err
		}
		time.Sleep(2 * time.Second)
		_, err := w.Write(b[len(b)/2:])
		return err
	})
	if status != http.StatusOK {
		t.Fatalf("a slow upload = %d %s", status, body)
	}
}

// A store that cannot take the build (full) answers 500 and keeps what
// it had: the release a failed publish would have replaced is still there,
// byte for byte, and a new version is not listed. Nothing is audited,
// nothing is left in the temporary folder.
func TestPublishIntoAFullStoreIs500(t *testing.T) {
	e := newManageEnv(t, nil)
	o := e.observer()
	ctx := t.Context()
	small := petest.Version("3.0.0").Bytes()
	ct, body := form(t, fileOf(small))
	e.must2(http.StatusOK, e.publish(ct, body))
	if _, err := o.js.UpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: kanade.ObjectAgentReleases, MaxBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	noTemp := useTempDir(t)
	for _, v := range []string{"3.0.0", "3.1.0"} {
		im := petest.Version(v)
		im.TextLen = 100 << 10
		ct, body := form(t, fileOf(im.Bytes()))
		rec := e.publish(ct, body)
		if rec.Code != http.StatusInternalServerError {
			t.Fatalf("publish of %s into a full store = %d %s, want 500", v, rec.Code, rec.Body)
		}
	}
	if got, ok := o.object("3.0.0"); !ok || !bytes.Equal(got, small) {
		t.Errorf("after a failed publish over it 3.0.0 reads %d bytes (present %v), want the %d published first", len(got), ok, len(small))
	}
	if _, err := o.obs.GetInfo(ctx, "3.1.0"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("a failed publish left 3.1.0 described: %v", err)
	}
	if got := e.auditLines(); len(got) != 1 {
		t.Errorf("audit %v; want the first publish only", got)
	}
	noTemp()
}
