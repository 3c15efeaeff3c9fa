package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/sim"
	"github.com/nats-io/nats.go"
)

// putScope writes an agent_config scope as the backend's scope and rollout
// routes do.
func (f *fleet) putScope(key string, s kanade.ConfigScope) {
	f.t.Helper()
	if _, err := f.srv.Bus.Put(context.Background(), kanade.BucketAgentConfig, key, s.Encode()); err != nil {
		f.t.Fatal(err)
	}
}

// beats subscribes to the fleet's heartbeats.
func (f *fleet) beats() chan *nats.Msg {
	f.t.Helper()
	ch := make(chan *nats.Msg, 1<<14)
	sub, err := f.srv.NC.ChanSubscribe(kanade.SubjectHeartbeats, ch)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ch
}

// pingVersion is the agent_version pc's answer to a ping reports.
func (f *fleet) pingVersion(pc string) string {
	f.t.Helper()
	var h kanade.Heartbeat
	if err := json.Unmarshal(f.ask("agents."+pc+".ping", ""), &h); err != nil {
		f.t.Fatal(err)
	}
	return h.AgentVersion
}

// TestRolloutToCanariesMovesTheirVersionOnly: a rollout to sim-canary (the
// groups.sim-canary scope given a target_version and a 10m jitter, as the
// rollout route writes it) makes each canary restart on the target at a
// time of its own within the 10 minutes after the fleet read it, and
// report it in its beats and pings; the other agents stay on their
// version.
func TestRolloutToCanariesMovesTheirVersionOnly(t *testing.T) {
	const agents = 60
	f := startFleet(t, sim.Config{Agents: agents, Seed: 1})
	beats := f.beats()
	f.putScope("groups.sim-canary", kanade.ConfigScope{TargetVersion: new("0.46.0"), TargetVersionJitter: new("10m")})
	start := f.clock.now()
	pcs := make([]string, agents)
	for i := range pcs {
		pcs[i] = fmt.Sprintf("SIM-%06d", i)
		if i%10 == 0 { // the canaries have read the scope, at start
			f.logged(pcs[i], "self-update scheduled version=0.45.3 target_version=0.46.0")
		}
	}

	updatedAt := map[string]time.Duration{} // by the clock's move when the ping first said 0.46.0
	for m := time.Duration(0); m <= 11*time.Minute; m += time.Minute {
		if m > 0 {
			f.clock.add(time.Minute)
		}
		for i, pc := range pcs {
			v := f.pingVersion(pc)
			if _, ok := updatedAt[pc]; ok || v == "0.45.3" {
				continue
			}
			if v != "0.46.0" || i%10 != 0 {
				t.Errorf("at +%s %s is on %s", m, pc, v)
			}
			updatedAt[pc] = m
		}
	}
	spread := map[time.Duration]bool{}
	for i := 0; i < agents; i += 10 {
		m, ok := updatedAt[pcs[i]]
		if !ok || m == 0 || m > 10*time.Minute {
			t.Errorf("canary %s updated at +%s (updated %v), want within (0, 10m]", pcs[i], m, ok)
		}
		spread[m] = true
	}
	if len(spread) < 3 {
		t.Errorf("the canaries updated at %v, want their times spread over the jitter", updatedAt)
	}

	// Their beats say so too, from when they restarted.
	f.sync()
	firstBeat := map[string]time.Duration{}
	for len(beats) > 0 {
		var h kanade.Heartbeat
		if err := json.Unmarshal((<-beats).Data, &h); err != nil {
			t.Fatal(err)
		}
		if _, ok := firstBeat[h.PcID]; !ok && h.AgentVersion == "0.46.0" {
			firstBeat[h.PcID] = h.At.Sub(start)
		}
	}
	if diff := cmp.Diff(updatedAt, firstBeat); diff != "" {
		t.Errorf("the first beat on 0.46.0 by the clock's move (-ping +beats):\n%s", diff)
	}
}

// TestEffectiveConfigFollowsGroupsAndScopes: an agent that joins a group
// takes the group's scope (a 0s jitter updates it at once); its own pcs.
// scope overrides its groups'; without a target it stays where it is.
func TestEffectiveConfigFollowsGroupsAndScopes(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 12, Seed: 1})
	f.putScope("groups.canary", kanade.ConfigScope{TargetVersion: new("0.46.0"), TargetVersionJitter: new("0s")})
	f.putScope("pcs.SIM-000004", kanade.ConfigScope{TargetVersion: new("0.44.0")}) // the default 10m jitter
	f.logged("SIM-000004", "self-update scheduled version=0.45.3 target_version=0.44.0")
	if v := f.pingVersion("SIM-000003"); v != "0.45.3" {
		t.Errorf("SIM-000003, in no group with a scope, is on %s", v)
	}

	f.setGroups("SIM-000003", "canary")
	f.setGroups("SIM-000004", "canary")
	if v := f.pingVersion("SIM-000003"); v != "0.46.0" {
		t.Errorf("SIM-000003, having joined canary, is on %s", v)
	}
	f.clock.add(10 * time.Minute)
	if v := f.pingVersion("SIM-000004"); v != "0.44.0" {
		t.Errorf("SIM-000004, in canary with its own target, is on %s after the jitter", v)
	}

	if err := f.srv.Bus.Delete(context.Background(), kanade.BucketAgentConfig, "groups.canary", 0); err != nil {
		t.Fatal(err)
	}
	// The agents watch agent_config and agent_groups apart: a write to
	// agent_config after the delete, once the fleet has taken it, shows the
	// delete was taken too (a watch delivers in order).
	f.putScope("pcs.SIM-000006", kanade.ConfigScope{HeartbeatInterval: new("45s")})
	f.logged("SIM-000006", "heartbeat interval changed interval=45s")
	f.setGroups("SIM-000005", "canary") // after the delete was seen
	f.clock.add(time.Hour)
	for pc, want := range map[string]string{"SIM-000003": "0.46.0", "SIM-000004": "0.44.0", "SIM-000005": "0.45.3"} {
		if v := f.pingVersion(pc); v != want {
			t.Errorf("with the canary scope gone, %s is on %s, want %s", pc, v, want)
		}
	}
}

// TestHeartbeatIntervalFollowsKV: an agent whose scopes set
// heartbeat_interval beats at that interval from its next beat on; the
// others keep the fleet's.
func TestHeartbeatIntervalFollowsKV(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 12, Seed: 1})
	beats := f.beats()
	f.putScope("pcs.SIM-000004", kanade.ConfigScope{HeartbeatInterval: new("1s")})
	f.logged("SIM-000004", "heartbeat interval changed interval=1s")
	f.clock.add(31 * time.Second) // past the beat due on the old interval
	count := map[string]int{}
	for range 10 {
		f.clock.add(1200 * time.Millisecond)
		deadline := time.After(10 * time.Second)
		var at time.Time
		for !at.Equal(f.clock.now()) {
			select {
			case m := <-beats:
				var h kanade.Heartbeat
				if err := json.Unmarshal(m.Data, &h); err != nil {
					t.Fatal(err)
				}
				count[h.PcID]++
				if h.PcID == "SIM-000004" {
					at = h.At.Time
				}
			case <-deadline:
				t.Fatalf("SIM-000004 did not beat at %s; beats so far %v", f.clock.now(), count)
			}
		}
	}
	if count["SIM-000004"] < 10 || count["SIM-000005"] > 2 {
		t.Errorf("beats over 43s: %v, want SIM-000004's every second, SIM-000005's every 30s", count)
	}
}
