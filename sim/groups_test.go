package sim_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/sim"
)

// TestGroupCommandsFollowKV: a command to commands.group.<g> reaches the
// agents KV agent_groups lists in g when it arrives: a PC added to a group
// (by another client, as the group routes do) takes the next command to it,
// a PC removed from one, or whose key is deleted, does not.
func TestGroupCommandsFollowKV(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 12, Seed: 1})
	ran := func(pcs ...string) []answer {
		var out []answer
		for _, pc := range pcs {
			out = append(out, answer{Pc: pc, Started: true})
		}
		return out
	}

	f.setGroups("SIM-000003", "canary", "sim-fleet")
	f.send("commands.group.canary", command("job", "1", "added"))
	if diff := cmp.Diff(map[string][]answer{"added": ran("SIM-000003")}, answers(t, f.after(time.Hour))); diff != "" {
		t.Errorf("SIM-000003 added to canary: answers (-want +got):\n%s", diff)
	}

	f.setGroups("SIM-000003", "sim-fleet")
	f.setGroups("SIM-000004", "canary")
	f.setGroups("SIM-000000") // out of sim-canary
	f.send("commands.group.canary", command("job", "1", "moved"))
	f.send("commands.group.sim-canary", command("job", "1", "removed"))
	want := map[string][]answer{"moved": ran("SIM-000004"), "removed": ran("SIM-000010")}
	if diff := cmp.Diff(want, answers(t, f.after(time.Hour))); diff != "" {
		t.Errorf("SIM-000003 moved back, SIM-000004 added, SIM-000000 out of sim-canary: answers (-want +got):\n%s", diff)
	}

	if err := f.srv.Bus.Delete(context.Background(), kanade.BucketAgentGroups, "SIM-000010", 0); err != nil {
		t.Fatal(err)
	}
	f.logged("SIM-000010", "groups changed groups=[]")
	f.send("commands.group.sim-canary", command("job", "1", "deleted"))
	f.send("commands.all", command("job", "1", "all"))
	got := answers(t, f.after(time.Hour))
	if a := got["deleted"]; len(a) != 0 {
		t.Errorf("a command to the empty sim-canary was answered: %v", a)
	}
	if n := len(got["all"]); n != 12 {
		t.Errorf("commands.all answered by %d agents, want every one of the 12, groups or none", n)
	}
}

// TestSeedingKeepsTheGroupsKVHas: the fleet writes the Group rule's group
// only for agents without an agent_groups key, and starts from the
// memberships KV has.
func TestSeedingKeepsTheGroupsKVHas(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 12, Seed: 1}, func(srv *bustest.Server) {
		if _, err := srv.Bus.Put(context.Background(), kanade.BucketAgentGroups, "SIM-000002", kanade.EncodeAgentGroups([]string{"ops"})); err != nil {
			t.Fatal(err)
		}
	})
	entries, err := f.srv.Bus.Entries(context.Background(), kanade.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.Key] = string(e.Value)
	}
	want := map[string]string{}
	for i := range 12 {
		g := "sim-fleet"
		if i%10 == 0 {
			g = "sim-canary"
		}
		want[sim.NewFleet(sim.Config{}).PcID(i)] = `{"groups":["` + g + `"]}`
	}
	want["SIM-000002"] = `{"groups":["ops"]}`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("agent_groups (-want +got):\n%s", diff)
	}
	f.send("commands.group.ops", command("job", "1", "ops"))
	f.send("commands.group.sim-fleet", command("job", "1", "fleet"))
	got2 := answers(t, f.after(time.Hour))
	if diff := cmp.Diff([]answer{{Pc: "SIM-000002", Started: true}}, got2["ops"]); diff != "" {
		t.Errorf("answers to ops (-want +got):\n%s", diff)
	}
	for _, a := range got2["fleet"] {
		if a.Pc == "SIM-000002" {
			t.Errorf("SIM-000002, in ops only, answered a command to sim-fleet")
		}
	}
	if n := len(got2["fleet"]); n != 9 {
		t.Errorf("%d answers to sim-fleet, want the 9 others of the rule", n)
	}
}
