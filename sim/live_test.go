package sim_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/sim"
	"github.com/nats-io/nats.go"
)

// ask sends a live request and returns the answer's body.
func (f *fleet) ask(subject, body string) []byte {
	f.t.Helper()
	m, err := f.srv.NC.Request(subject, []byte(body), 10*time.Second)
	if err != nil {
		f.t.Fatalf("%s: %v", subject, err)
	}
	return m.Data
}

// keys are the top-level keys of a JSON object, sorted.
func keys(t *testing.T, b []byte) []string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestPingIsAHeartbeatBuiltOnTheSpot: agents.<pc_id>.ping is answered with
// a Heartbeat at the agent's clock, carrying its version, without the
// self-perf, logon, key and protocol fields (fleet.md §4.1).
func TestPingIsAHeartbeatBuiltOnTheSpot(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 12, Seed: 1})
	f.clock.add(90 * time.Second)
	b := f.ask("agents.SIM-000003.ping", "")
	if diff := cmp.Diff([]string{"agent_version", "at", "hostname", "os_family", "pc_id"}, keys(t, b)); diff != "" {
		t.Errorf("ping answer %s, keys (-want +got):\n%s", b, diff)
	}
	var h kanade.Heartbeat
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Errorf("ping answer %s: %v", b, err)
	}
	if h.PcID != "SIM-000003" || h.AgentVersion != "0.45.3" || !h.At.Equal(f.clock.now()) {
		t.Errorf("ping answer %s, want SIM-000003 on 0.45.3 at %s", b, kanade.FormatTime(f.clock.now()))
	}
}

// TestLogsFetchSendsTheLogsTail: logs.fetch.<pc_id> is answered with the
// last tail_lines lines of the agent's log as plain text (500 when the
// request does not say), lines that tell what it did.
func TestLogsFetchSendsTheLogsTail(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 12, Seed: 1, RunDurations: map[string]time.Duration{"long": 10 * time.Minute}})
	f.send("commands.pc.SIM-000003", command("long", "1", "long"))
	f.until(func(m seenMsg) bool { return m.Started != nil && m.Started.PcID == "SIM-000003" })

	all := string(f.ask("logs.fetch.SIM-000003", `{}`))
	lines := strings.SplitAfter(all, "\n")
	if lines[len(lines)-1] != "" {
		t.Errorf("the log does not end in a newline: %q", all)
	}
	lines = lines[:len(lines)-1]
	if len(lines) < 4 || !strings.Contains(lines[0], "kanade-agent starting version=0.45.3 pc_id=SIM-000003") ||
		!strings.Contains(lines[len(lines)-1], "job started job=long") {
		t.Errorf("whole log:\n%s", all)
	}
	if got := string(f.ask("logs.fetch.SIM-000003", `{"tail_lines":2}`)); got != strings.Join(lines[len(lines)-2:], "") {
		t.Errorf("tail of 2 lines = %q, want the log's last two of\n%s", got, all)
	}
	if got := f.ask("logs.fetch.SIM-000003", `{"tail_lines":0}`); len(got) != 0 {
		t.Errorf("tail of 0 lines = %q, want nothing", got)
	}
	if got := string(f.ask("logs.fetch.SIM-000004", `{"tail_lines":100}`)); strings.Contains(got, "job=long") || !strings.Contains(got, "pc_id=SIM-000004") {
		t.Errorf("another agent's log:\n%s", got)
	}
}

// TestJobTailShowsARunInProgress: job.tail.<pc_id> is answered, for the
// result_id of a run in progress on that agent, with found and running and
// the output so far; for any other result_id with found false; always with
// every field of fleet.md §4.3.
func TestJobTailShowsARunInProgress(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 12, Seed: 1, RunDurations: map[string]time.Duration{"long": 10 * time.Minute}})
	f.send("commands.pc.SIM-000003", command("long", "1", "long"))
	got := f.until(func(m seenMsg) bool { return m.Started != nil && m.Started.PcID == "SIM-000003" })
	resultID := got[len(got)-1].Started.ResultID
	f.clock.add(5 * time.Minute)

	type tail struct {
		Found, Running                   bool
		Stdout, Stderr                   string
		StdoutTruncated, StderrTruncated bool `json:"-"`
	}
	fields := []string{"found", "running", "stderr", "stderr_truncated", "stdout", "stdout_truncated"}
	for _, c := range []struct {
		name, subject, body string
		want                tail
	}{
		{"its run, half way", "job.tail.SIM-000003", `{"result_id":"` + resultID + `"}`,
			tail{Found: true, Running: true, Stdout: "progress 0%\nprogress 10%\nprogress 20%\nprogress 30%\nprogress 40%\nprogress 50%\n"}},
		{"an unknown result_id", "job.tail.SIM-000003", `{"result_id":"4f0c3b54-0000-4000-8000-000000000000"}`, tail{}},
		{"another agent's run", "job.tail.SIM-000004", `{"result_id":"` + resultID + `"}`, tail{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := f.ask(c.subject, c.body)
			if diff := cmp.Diff(fields, keys(t, b)); diff != "" {
				t.Errorf("answer %s, keys (-want +got):\n%s", b, diff)
			}
			var got tail
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
	// Ended, the run is no longer found.
	f.after(5 * time.Minute)
	if b := f.ask("job.tail.SIM-000003", `{"result_id":"`+resultID+`"}`); strings.Contains(string(b), `"found":true`) {
		t.Errorf("after the run ended: %s", b)
	}
}

// TestOthersLiveRequestsGetNoAnswer: a live request for a PC outside the
// fleet gets no answer from it, so the real agent of that PC, when there is
// one, answers alone.
func TestOthersLiveRequestsGetNoAnswer(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 12, Seed: 1})
	// A real agent, REAL-1, answers its own pings.
	real, err := f.srv.NC.Subscribe("agents.REAL-1.ping", func(m *nats.Msg) { _ = m.Respond([]byte("real")) })
	if err != nil {
		t.Fatal(err)
	}
	defer real.Unsubscribe()
	replies := map[string]*nats.Subscription{}
	for _, subject := range []string{"agents.REAL-1.ping", "agents.SIM-000012.ping", "logs.fetch.SIM-000012", "job.tail.OTHER",
		"agents.OTHER.ping", "logs.fetch.sim-000001", "job.tail.SIM-0001"} {
		inbox := nats.NewInbox()
		sub, err := f.srv.NC.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		replies[subject] = sub
		if err := f.srv.NC.PublishRequest(subject, inbox, []byte(`{"tail_lines":5,"result_id":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	// The fleet answers its own PC after it has handled the requests
	// above, and after its answers to them, if it gave any.
	f.ask("agents.SIM-000011.ping", "")
	for subject, sub := range replies {
		if subject == "agents.REAL-1.ping" {
			if m, err := sub.NextMsg(10 * time.Second); err != nil || string(m.Data) != "real" {
				t.Errorf("%s: the real agent's answer did not come: %v", subject, err)
			}
		}
		if n, _, _ := sub.Pending(); n != 0 {
			m, _ := sub.NextMsg(0)
			t.Errorf("%s: answered %q", subject, m.Data)
		}
	}
}
