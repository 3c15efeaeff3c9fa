package sim_test

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/sim"
	"github.com/nats-io/nats.go"
)

// TestAgentsAnswerCommands publishes commands as the scheduler does and
// expects the simulated agents they reach to answer with started events and
// results carrying the command's exec_id, and a command past its deadline to
// be answered as skipped.
func TestAgentsAnswerCommands(t *testing.T) {
	srv := bustest.StartBootstrapped(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sim.Run(ctx, srv.Bus, sim.Config{Agents: 12, Schedules: true, RunInterval: time.Hour, Seed: 1})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	results := make(chan *nats.Msg, 64)
	sub, err := srv.NC.ChanSubscribe("results.>", results)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	// The demo schedules and the groups are in KV once Run is up.
	kv, err := srv.JS.KeyValue(ctx, kanade.BucketSchedules)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		keys, _ := kv.Keys(ctx)
		sort.Strings(keys)
		if cmp.Equal(keys, []string{"sim-compliance-every-10m", "sim-inventory-hourly", "sim-patch-weekdays", "sim-ping-canaries"}) {
			for _, k := range keys {
				e, err := kv.Get(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := kanade.ParseSchedule(k, e.Value()); err != nil {
					t.Errorf("demo schedule %s does not parse: %v", k, err)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo schedules = %v", keys)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Wait until the subscription to commands is up (Run subscribes before
	// its first step, after the KV writes), by publishing until answered.
	past := time.Now().Add(-time.Minute)
	send := func(subject string, c kanade.Command) {
		b, _ := json.Marshal(c)
		if err := srv.NC.Publish(subject, b); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]kanade.ExecResult{}
	deadline = time.Now().Add(30 * time.Second)
	for len(got) < 3 {
		if len(got) == 0 {
			send("commands.group.sim-canary", kanade.Command{ID: "sim-ping", Version: "1", RequestID: "req-canary", ExecID: "exec-1"})
			send("commands.pc.SIM-000005", kanade.Command{ID: "sim-ping", Version: "1", RequestID: "req-late", ExecID: "exec-2",
				DeadlineAt: &kanade.Timestamp{Time: past}})
		}
		select {
		case m := <-results:
			var r kanade.ExecResult
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatal(err)
			}
			got[r.PcID+"/"+r.RequestID] = r
		case <-time.After(2 * time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatalf("answers so far: %v", got)
		}
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// The canaries of 12 agents are 0 and 10; the late command reaches 5 only.
	want := []string{"SIM-000000/req-canary", "SIM-000005/req-late", "SIM-000010/req-canary"}
	if diff := cmp.Diff(want, keys[:min(len(keys), 3)]); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	if r := got["SIM-000005/req-late"]; !r.Skipped || *r.ExitCode != 125 || r.ExecID != "exec-2" {
		t.Errorf("the command past its deadline was answered %+v, want skipped with exit 125", r)
	}
	if r := got["SIM-000000/req-canary"]; r.ExecID != "exec-1" || r.ManifestID != "sim-ping" {
		t.Errorf("canary answer = %+v", r)
	}
}

// TestGeneratedMessagesValidate keeps the simulator inside the wire rules:
// every heartbeat, started event, result and audit event it makes decodes
// and passes Validate, so the projection never drops simulated traffic.
func TestGeneratedMessagesValidate(t *testing.T) {
	f := sim.NewFleet(sim.Config{Agents: 40, Seed: 3, FailureRate: 0.3, SkipRate: 0.3})
	at := time.Date(2026, 6, 20, 1, 2, 3, 0, time.UTC)
	var msgs []sim.Message
	for i := range 40 {
		msgs = append(msgs, sim.HeartbeatMessage(f.Heartbeat(i, at)))
		for j, job := range f.Config().Jobs {
			spec := sim.RunSpec{Agent: i, Job: job, StartedAt: at}
			if j%2 == 0 {
				spec.ExecID = "1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e4f5"
			}
			msgs = append(msgs, f.Run(spec).Messages...)
		}
		msgs = append(msgs, f.Audit(at))
	}
	// The widest pc_id a default fleet names.
	if pc := f.PcID(999_999); !kanade.ValidPCID(pc) {
		t.Errorf("PcID(999999) = %q is not a valid pc_id", pc)
	}
	counts := map[string]int{}
	for _, m := range msgs {
		var v interface{ Validate() error }
		kind := strings.SplitN(m.Subject, ".", 2)[0]
		switch kind {
		case "heartbeat":
			v = &kanade.Heartbeat{}
		case "events":
			v = &kanade.EventStarted{}
		case "results":
			v = &kanade.ExecResult{}
		case "audit":
			v = &kanade.AuditEvent{}
		default:
			t.Fatalf("unexpected subject %s", m.Subject)
		}
		counts[kind]++
		if err := json.Unmarshal(m.Data, v); err != nil {
			t.Fatalf("%s: %v", m.Subject, err)
		}
		if err := v.Validate(); err != nil {
			t.Errorf("%s: %v", m.Subject, err)
		}
	}
	if counts["heartbeat"] != 40 || counts["events"] == 0 || counts["results"] == 0 || counts["audit"] != 40 {
		t.Errorf("messages by kind = %v", counts)
	}
}

// TestEveryAgentBeatsAtStart: the fleet starts as one that has been running,
// every agent alive at once (a fan-out's target_count counts the alive
// agents of its target), before its clock has moved.
func TestEveryAgentBeatsAtStart(t *testing.T) {
	srv := bustest.StartBootstrapped(t)
	beats := make(chan *nats.Msg, 64)
	sub, err := srv.NC.ChanSubscribe("heartbeat.>", beats)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	at := time.Date(2026, 6, 20, 9, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sim.Run(ctx, srv.Bus, sim.Config{Agents: 12, Seed: 1, Clock: func() time.Time { return at }})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	alive := map[string]bool{}
	timeout := time.After(20 * time.Second)
	for len(alive) < 12 {
		select {
		case m := <-beats:
			var h kanade.Heartbeat
			if err := json.Unmarshal(m.Data, &h); err != nil {
				t.Fatal(err)
			}
			if !h.At.Equal(at) {
				t.Errorf("%s beat at %s, want %s", h.PcID, h.At.Time, at)
			}
			alive[h.PcID] = true
		case <-timeout:
			t.Fatalf("%d of 12 agents beat: %v", len(alive), alive)
		}
	}
}
