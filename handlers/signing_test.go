package handlers_test

import (
	"bytes"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/sign"
	"github.com/nats-io/nats.go"
)

// signingEnv is a manageEnv whose NATS client signs commands with a test
// key under kid, on the handler's clock, as a shell's Link would, and whose
// handler reports that key.
func signingEnv(t *testing.T, kid string) (*manageEnv, ed25519.PublicKey) {
	t.Helper()
	secret, pub := testkit.TestKey(7)
	sg, err := sign.New(secret, kid)
	if err != nil {
		t.Fatal(err)
	}
	var signing *bus.Client
	e := newManageEnv(t, func(c *handlers.Config) {
		c.Bus = func() (*bus.Client, error) { return signing, nil }
		c.CommandSigning = sg.Identity()
	})
	signing = e.nats.Signing(t, sg, e.clock.Now)
	return e, pub
}

// messages waits for n messages and returns them.
func (w *wire) messages(t *testing.T, n int) []*nats.Msg {
	t.Helper()
	if got := w.subjects(t, n); len(got) != n {
		t.Fatalf("%d messages, want %d: %v", len(got), n, got)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*nats.Msg(nil), w.msgs...)
}

// Every command an operator sends, a fan-out (plain and a due wave) and an
// ad-hoc run, carries a signature an agent holding the public key accepts,
// made at the handler's now; a changed byte or another key does not verify.
func TestExecAndRunCommandsAreSigned(t *testing.T) {
	e, pub := signingEnv(t, "backend-20260622")
	cmds := e.listen("commands.>")
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "7"))
	e.fleet([]string{"PC-1"}, map[string][]string{"PC-1": {"canary"}})
	if rec := e.send(http.MethodPost, "/api/exec/nightly", "application/json",
		`{"target":{"groups":["canary"],"pcs":["PC-1","PC-2"],"all":true}}`); rec.Code != http.StatusOK {
		t.Fatalf("exec = %d %s", rec.Code, rec.Body)
	}
	if rec := e.send(http.MethodPost, "/api/exec/nightly", "application/json",
		`{"target":{"all":true},"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"}]}}`); rec.Code != http.StatusOK {
		t.Fatalf("exec with a wave = %d %s", rec.Code, rec.Body)
	}
	e.agent("PC-1", func(c kanade.Command) *kanade.ExecResult { return result(c, "PC-1", "ok", 0) })
	if rec := e.send(http.MethodPost, "/api/run", "application/json", `{"pc_id":"PC-1","script":"hostname","shell":"sh"}`); rec.Code != http.StatusOK {
		t.Fatalf("run = %d %s", rec.Code, rec.Body)
	}
	msgs := cmds.messages(t, 6)
	var subjects []string
	for _, m := range msgs {
		subjects = append(subjects, m.Subject)
		at, err := testkit.VerifyCommand(m.Header, m.Data, "backend-20260622", pub)
		if err != nil || at != manageNow.UnixMilli() {
			t.Errorf("%s: signed at %d, %v; want %d", m.Subject, at, err, manageNow.UnixMilli())
		}
	}
	want := []string{"commands.all", "commands.group.canary", "commands.pc.PC-1", "commands.pc.PC-2",
		"commands.group.canary", "commands.pc.PC-1"}
	if diff := cmp.Diff(want, subjects); diff != "" {
		t.Errorf("subjects (-want +got):\n%s", diff)
	}
	run := msgs[5]
	if c := command(t, run.Data); c.ID != "adhoc-run" {
		t.Fatalf("the last command is %s, want the run", run.Data)
	}
	tampered := bytes.Replace(run.Data, []byte("hostname"), []byte("hostnamf"), 1)
	if _, err := testkit.VerifyCommand(run.Header, tampered, "backend-20260622", pub); err == nil {
		t.Error("a tampered run verified")
	}
	_, otherPub := testkit.TestKey(8)
	if _, err := testkit.VerifyCommand(run.Header, run.Data, "backend-20260622", otherPub); err == nil {
		t.Error("the run verified under another key")
	}
}

// Without a key not one Kanade-Sig* header goes out: agents read a partial
// set as a forged command.
func TestUnsignedCommandsCarryNoSignatureHeaders(t *testing.T) {
	e := newManageEnv(t, nil)
	cmds := e.listen("commands.>")
	e.must(http.StatusOK, http.MethodPut, "/api/jobs/nightly", jobJSON("nightly", "7"))
	if rec := e.send(http.MethodPost, "/api/exec/nightly", "application/json", `{"target":{"pcs":["PC-1"]}}`); rec.Code != http.StatusOK {
		t.Fatalf("exec = %d %s", rec.Code, rec.Body)
	}
	e.agent("PC-1", func(c kanade.Command) *kanade.ExecResult { return result(c, "PC-1", "ok", 0) })
	if rec := e.send(http.MethodPost, "/api/run", "application/json", `{"pc_id":"PC-1","script":"hostname"}`); rec.Code != http.StatusOK {
		t.Fatalf("run = %d %s", rec.Code, rec.Body)
	}
	for _, m := range cmds.messages(t, 2) {
		if h := testkit.SigHeaders(m.Header); len(h) != 0 {
			t.Errorf("%s carries %v", m.Subject, h)
		}
	}
}

func TestCommandSigningNamesTheKey(t *testing.T) {
	secret, _ := testkit.TestKey(7)
	sg, err := sign.New(secret, "backend-20260622")
	if err != nil {
		t.Fatal(err)
	}
	signing := newEnv(t, func(c *handlers.Config) { c.CommandSigning = sg.Identity() })
	unsigned := newEnv(t, nil)
	tests := []struct {
		name string
		e    *env
		want string
	}{
		{"a signing backend names its kid and fingerprint", signing,
			`{"kid":"backend-20260622","fingerprint":"` + sg.Fingerprint() + `"}`},
		{"not signing is a normal answer with nulls", unsigned, `{"kid":null,"fingerprint":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tt.e.get("/api/command-signing")
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d %s", rec.Code, rec.Body)
			}
			if diff := cmp.Diff(tt.want, string(bytes.TrimSpace(rec.Body.Bytes()))); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
	// It is not public: the key a backend signs with is for its operators.
	rec := httptest.NewRecorder()
	signing.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/command-signing", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", rec.Code)
	}
}
