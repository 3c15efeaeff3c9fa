package handlers_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// agent answers every command on commands.pc.<pc> with answer(command),
// as a real agent does: on results.<request_id>.
func (e *manageEnv) agent(pc string, answer func(kanade.Command) *kanade.ExecResult) {
	e.t.Helper()
	sub, err := e.nats.NC.Subscribe(kanade.SubjectCommandsPC+pc, func(m *nats.Msg) {
		var c kanade.Command
		if err := json.Unmarshal(m.Data, &c); err != nil {
			return
		}
		r := answer(c)
		if r == nil {
			return
		}
		b, _ := json.Marshal(r)
		_ = e.nats.NC.Publish("results."+c.RequestID, b)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.nats.NC.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
}

func result(c kanade.Command, pc, stdout string, exit int64) *kanade.ExecResult {
	return &kanade.ExecResult{ResultID: "r-" + c.RequestID, RequestID: c.RequestID, ExecID: c.ExecID, PcID: pc, ExitCode: &exit,
		Stdout: stdout, StartedAt: kanade.Timestamp{Time: manageNow}, FinishedAt: kanade.Timestamp{Time: manageNow.Add(time.Second)},
		ManifestID: c.ID}
}

func TestRunAnswersThePCsResult(t *testing.T) {
	e := newManageEnv(t, nil)
	var got kanade.Command
	done := make(chan struct{})
	e.agent("PC-1", func(c kanade.Command) *kanade.ExecResult {
		got = c
		close(done)
		return result(c, "PC-1", "host-1\n", 0)
	})
	rec := e.send(http.MethodPost, "/api/run", "application/json",
		`{"pc_id":"PC-1","script":"hostname","shell":"ps","timeout_secs":30,"job_id":"op-42","run_as":"user","extra":true}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("run = %d %s", rec.Code, rec.Body)
	}
	<-done
	want := kanade.Command{ID: "adhoc-run", Version: "0.0.0", RequestID: got.RequestID, ExecID: "op-42", Shell: "powershell",
		Script: "hostname", TimeoutSecs: 30, RunAs: "user", Staleness: kanade.Staleness{Mode: kanade.StalenessCached}}
	if diff := cmp.Diff(want, got); diff != "" || got.RequestID == "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}
	var r kanade.ExecResult
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || r.Stdout != "host-1\n" || r.RequestID != got.RequestID || r.PcID != "PC-1" {
		t.Errorf("answer %s (%v)", rec.Body, err)
	}
	want2 := `audit.operator.run.PC-1 {"exec_id":"op-42","request_id":"` + got.RequestID + `","run_as":"user","script":"hostname","shell":"powershell","source":"cli","sub":"service-token"}`
	if diff := cmp.Diff([]string{want2}, e.auditLines()); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	// No execution is recorded for an ad-hoc run.
	if ids, err := e.db.ActiveExecIDs(t.Context(), "adhoc-run"); err != nil || len(ids) != 0 {
		t.Errorf("executions of adhoc-run: %v %v", ids, err)
	}
}

func TestRunFetchesOutputMovedToTheObjectStore(t *testing.T) {
	e := newManageEnv(t, nil)
	store, err := e.nats.JS.ObjectStore(t.Context(), kanade.ObjectResultOutput)
	if err != nil {
		store, err = e.nats.JS.CreateObjectStore(t.Context(), jetstream.ObjectStoreConfig{Bucket: kanade.ObjectResultOutput})
		if err != nil {
			t.Fatal(err)
		}
	}
	big := strings.Repeat("line\n", 50000)
	if _, err := store.PutBytes(t.Context(), "out-1", []byte(big)); err != nil {
		t.Fatal(err)
	}
	e.agent("PC-1", func(c kanade.Command) *kanade.ExecResult {
		r := result(c, "PC-1", "", 0)
		r.StdoutObject = "out-1"
		return r
	})
	rec := e.send(http.MethodPost, "/api/run", "application/json", `{"pc_id":"PC-1","script":"cat big"}`)
	var r kanade.ExecResult
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || r.Stdout != big || r.StdoutObject != "out-1" {
		t.Errorf("answer: %d bytes of stdout, object %q, %v", len(r.Stdout), r.StdoutObject, err)
	}
}

func TestRunTimesOutWith408(t *testing.T) {
	t.Parallel()
	e := newManageEnv(t, nil)
	start := time.Now()
	rec := e.send(http.MethodPost, "/api/run", "application/json", `{"pc_id":"PC-gone","script":"hostname","timeout_secs":0}`)
	if rec.Code != http.StatusRequestTimeout {
		t.Fatalf("run to nobody = %d %s, want 408", rec.Code, rec.Body)
	}
	if p := problemOf(t, rec); !strings.HasPrefix(p.Detail, "timeout waiting for result on results.") {
		t.Errorf("detail %q", p.Detail)
	}
	if took := time.Since(start); took < kanade.RunGrace {
		t.Errorf("gave up after %v, before timeout_secs + %v", took, kanade.RunGrace)
	}
	// The command is retained for the PC (it runs when the agent comes
	// back), and the run is audited.
	s, err := e.nats.JS.Stream(t.Context(), kanade.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetLastMsgForSubject(t.Context(), "commands.pc.PC-gone"); err != nil {
		t.Errorf("EXEC does not hold the command: %v", err)
	}
	if got := e.auditLines(); len(got) != 1 || !strings.HasPrefix(got[0], "audit.operator.run.PC-gone ") {
		t.Errorf("audit %v", got)
	}
}

func TestRunRefusesBadRequests(t *testing.T) {
	e := newManageEnv(t, nil)
	cmds := e.listen("commands.>")
	long := strings.Repeat("x", 3<<20)
	for _, tt := range []struct {
		name, ct, body string
		status         int
		says           string
	}{
		{"no content type", "", `{"pc_id":"PC-1","script":"x"}`, 415, "application/json"},
		{"malformed", "application/json", `{"pc_id":`, 400, "JSON"},
		{"no pc", "application/json", `{"script":"x"}`, 400, "pc_id"},
		{"pc not a token", "application/json", `{"pc_id":"PC 1","script":"x"}`, 400, "pc_id"},
		{"no script", "application/json", `{"pc_id":"PC-1"}`, 400, "script"},
		{"unknown shell", "application/json", `{"pc_id":"PC-1","script":"x","shell":"bash"}`, 400, "shell"},
		{"timeout above the cap", "application/json", `{"pc_id":"PC-1","script":"x","timeout_secs":3601}`, 400, "timeout_secs"},
		{"negative timeout", "application/json", `{"pc_id":"PC-1","script":"x","timeout_secs":-1}`, 400, "timeout_secs"},
		{"exec_id not a token", "application/json", `{"pc_id":"PC-1","script":"x","exec_id":"a.b"}`, 400, "exec_id"},
		{"two exec ids", "application/json", `{"pc_id":"PC-1","script":"x","exec_id":"a","job_id":"b"}`, 400, "job_id"},
		{"unknown run_as", "application/json", `{"pc_id":"PC-1","script":"x","run_as":"root"}`, 400, "run_as"},
		{"script too large", "application/json", `{"pc_id":"PC-1","script":"` + long + `"}`, 413, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.send(http.MethodPost, "/api/run", tt.ct, tt.body)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if p := problemOf(t, rec); !strings.Contains(p.Detail, tt.says) {
				t.Errorf("detail %q does not say %q", p.Detail, tt.says)
			}
		})
	}
	if got := cmds.subjects(t, 0); len(got) != 0 {
		t.Errorf("published %v", got)
	}
	if got := e.auditLines(); len(got) != 0 {
		t.Errorf("audit %v", got)
	}
}

// A run answered later than the server's write timeout still gets its
// result: the route lifts the deadline for itself.
func TestRunOutlivesTheServersWriteTimeout(t *testing.T) {
	e := newManageEnv(t, nil)
	e.agent("PC-1", func(c kanade.Command) *kanade.ExecResult {
		time.Sleep(1500 * time.Millisecond)
		return result(c, "PC-1", "slow\n", 0)
	})
	srv := httptest.NewUnstartedServer(e.h)
	srv.Config.WriteTimeout = 500 * time.Millisecond
	srv.Start()
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/run", strings.NewReader(`{"pc_id":"PC-1","script":"sleep 1","timeout_secs":5}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("run past the write timeout: %v", err)
	}
	defer resp.Body.Close()
	var r kanade.ExecResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK || r.Stdout != "slow\n" {
		t.Errorf("run past the write timeout: %d %+v %v", resp.StatusCode, r, err)
	}
}
