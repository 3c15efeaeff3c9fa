package sim_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/sim"
	"github.com/nats-io/nats.go"
)

// A command carrying a check hint is answered with one JSON object that
// the backend's check projection reads as a status.
func TestAgentsAnswerChecksWithAStatus(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 4, Seed: 5, RunDurations: map[string]time.Duration{sim.DemoJob.ID: time.Second}})
	h := kanade.CheckHint{Name: "sim_compliance", StatusField: "status", DetailField: "detail", Fleet: true}
	statuses := map[string]int{}
	for i := range 40 {
		id := "chk-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		f.send("commands.all", kanade.Command{ID: sim.DemoJob.ID, Version: "2", RequestID: id, ExecID: id, Shell: "sh",
			Check: json.RawMessage(`{"name":"sim_compliance"}`)})
	}
	for _, m := range f.after(2 * time.Second) {
		if m.Result == nil || m.Result.ManifestID != sim.DemoJob.ID {
			continue
		}
		o, ok := kanade.EvaluateCheck(h, m.Result)
		if !ok {
			t.Fatalf("result %s: stdout %q is not a check's output", m.Result.ResultID, m.Result.Stdout)
		}
		statuses[o.Status]++
	}
	if statuses["ok"] == 0 || statuses["fail"]+statuses["warn"] == 0 || statuses["unknown"] != 0 {
		t.Errorf("statuses %v: want mostly ok, some warn or fail, none unknown", statuses)
	}
	// A plain command still prints "ok".
	f.send("commands.pc.SIM-000001", kanade.Command{ID: "plain", Version: "1", RequestID: "plain-1", ExecID: "plain-1", Shell: "sh"})
	for _, m := range f.after(2 * time.Second) {
		if m.Result != nil && m.Result.RequestID == "plain-1" && m.Result.Stdout != "ok" {
			t.Errorf("plain command stdout %q", m.Result.Stdout)
		}
	}
}

// Users confirm notifications that ask for it, once per PC however many
// subjects reached it, within a few minutes; the others are only shown.
func TestUsersAcknowledgeNotifications(t *testing.T) {
	const agents = 20
	f := startFleet(t, sim.Config{Agents: agents, Seed: 6})
	acks := make(chan *nats.Msg, 1024)
	sub, err := f.srv.NC.ChanSubscribe("events.notifications.acked.>", acks)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctx := t.Context()
	publish := func(subject, body string) {
		if _, err := f.srv.JS.Publish(ctx, subject, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	now := f.clock.now().Format(time.RFC3339)
	publish("notifications.all", `{"id":"maint-1","priority":"emergency","require_ack":true,"title":"t","body":"","issued_at":"`+now+`"}`)
	publish("notifications.pc.SIM-000003", `{"id":"maint-1","priority":"emergency","require_ack":true,"title":"t","body":"","issued_at":"`+now+`"}`)
	publish("notifications.all", `{"id":"info-1","priority":"info","require_ack":false,"title":"t","body":"","issued_at":"`+now+`"}`)
	seen := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && len(seen) < agents*6/10 {
		f.after(time.Minute)
		for len(acks) > 0 {
			m := <-acks
			var a kanade.NotificationAcked
			if err := json.Unmarshal(m.Data, &a); err != nil || a.Validate() != nil {
				t.Fatalf("ack %s %s: %v", m.Subject, m.Data, err)
			}
			if a.NotificationID != "maint-1" || m.Subject != "events.notifications.acked."+a.PcID+"."+a.UserSID+".maint-1" {
				t.Errorf("ack %s %+v", m.Subject, a)
			}
			if seen[a.PcID] {
				t.Errorf("%s confirmed twice", a.PcID)
			}
			seen[a.PcID] = true
		}
	}
	if len(seen) < agents/2 || len(seen) == agents {
		t.Errorf("%d of %d users confirmed, want about 70%%", len(seen), agents)
	}
}

// A command naming a script object runs only when the object's bytes
// match the digest it carries; otherwise the agents report a failure.
func TestAgentsFetchScriptObjects(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 2, Seed: 7, RunDurations: map[string]time.Duration{"big": time.Second}})
	store, err := f.srv.JS.ObjectStore(t.Context(), kanade.ObjectScripts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutBytes(t.Context(), "big/2", []byte("echo big")); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("echo big"))
	good := hex.EncodeToString(sum[:])
	for _, c := range []struct {
		req, object, digest string
		exit                int64
	}{{"good", "big/2", good, 0}, {"replaced", "big/2", strings.Repeat("0", 64), 1}, {"missing", "big/3", good, 1}} {
		f.send("commands.pc.SIM-000001", kanade.Command{ID: "big", Version: "2", RequestID: c.req, ExecID: c.req, Shell: "sh",
			ScriptObject: c.object, ScriptObjectSHA256: c.digest})
		found := false
		for _, m := range f.after(2 * time.Second) {
			if m.Result == nil || m.Result.RequestID != c.req {
				continue
			}
			found = true
			if *m.Result.ExitCode != c.exit || m.Result.Skipped || (c.exit != 0) != strings.Contains(m.Result.Stderr, c.object) {
				t.Errorf("%s: exit %d skipped %v stderr %q, want exit %d", c.req, *m.Result.ExitCode, m.Result.Skipped, m.Result.Stderr, c.exit)
			}
		}
		if !found {
			t.Errorf("%s: no result", c.req)
		}
	}
}
