package sim_test

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/sim"
)

// command is a command of job id at version, as exec publishes it.
func command(id, version, request string) kanade.Command {
	return kanade.Command{ID: id, Version: version, RequestID: request, ExecID: "exec-" + request,
		Shell: "sh", Script: "true", TimeoutSecs: 600, Staleness: kanade.Staleness{Mode: "cached"}}
}

// answer is what one agent did with one request.
type answer struct {
	Pc      string
	Started bool
	Exit    int64
	Skipped bool
	Stderr  string // up to the first space after "skipped:", for skips
}

// answers sums up msgs by request, each agent's answers sorted by pc. It
// fails the test when a result does not carry its started event's
// result_id, or comes before it.
func answers(t *testing.T, msgs []seenMsg) map[string][]answer {
	t.Helper()
	started := map[string]string{} // pc/request → result_id
	out := map[string][]answer{}
	for _, m := range msgs {
		if s := m.Started; s != nil {
			started[s.PcID+"/"+s.RequestID] = s.ResultID
			continue
		}
		r := m.Result
		id, ok := started[r.PcID+"/"+r.RequestID]
		if ok && id != r.ResultID {
			t.Errorf("%s/%s: result_id %s, started event's %s", r.PcID, r.RequestID, r.ResultID, id)
		}
		stderr := ""
		if r.Skipped {
			stderr, _, _ = strings.Cut(strings.TrimPrefix(r.Stderr, "skipped: "), " ")
		}
		out[r.RequestID] = append(out[r.RequestID], answer{Pc: r.PcID, Started: ok, Exit: *r.ExitCode, Skipped: r.Skipped, Stderr: stderr})
	}
	for _, a := range out {
		sort.Slice(a, func(i, j int) bool { return a[i].Pc < a[j].Pc })
	}
	return out
}

// TestGatedCommandsAreSkipped: an agent reads script_current and
// script_status of the command's id before it runs it, and answers a version
// pin other than the command's version (124), a revoked id (126) and a
// deadline_at already past (125) with a skipped result and no started event.
// A deadline is the last instant a command may start, an ad-hoc command (no
// exec_id) runs without a started event, and an unrevoked id runs again.
func TestGatedCommandsAreSkipped(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 12, Seed: 1})
	now := f.clock.now()
	f.put("script_status", "job-revoked", "REVOKED")
	f.put("script_status", "job-active", "ACTIVE")
	f.put(kanade.BucketScriptCurrent, "job-pinned", "2")
	f.send("commands.group.sim-canary", command("job-revoked", "1", "revoked"))
	f.send("commands.pc.SIM-000003", command("job-pinned", "1", "pin-old"))
	f.send("commands.pc.SIM-000004", command("job-pinned", "2", "pin-current"))
	late := command("job-active", "1", "late")
	late.DeadlineAt = &kanade.Timestamp{Time: now.Add(-time.Millisecond)}
	f.send("commands.pc.SIM-000005", late)
	onTime := command("job-active", "1", "on-time")
	onTime.DeadlineAt = &kanade.Timestamp{Time: now}
	f.send("commands.pc.SIM-000006", onTime)
	f.send("commands.pc.SIM-000007", command("job-active", "1", "active"))
	adhoc := command("job-active", "1", "adhoc")
	adhoc.ExecID = ""
	f.send("commands.pc.SIM-000008", adhoc)
	got := answers(t, f.after(time.Hour)) // every run that started has ended

	ran := func(pc string) []answer { return []answer{{Pc: pc, Started: true}} }
	want := map[string][]answer{
		"revoked": {{Pc: "SIM-000000", Exit: 126, Skipped: true, Stderr: "command"}, {Pc: "SIM-000010", Exit: 126, Skipped: true, Stderr: "command"}},
		"pin-old": {{Pc: "SIM-000003", Exit: 124, Skipped: true, Stderr: "version-pin"}},
		"late":    {{Pc: "SIM-000005", Exit: 125, Skipped: true, Stderr: "starting"}},
		// and what runs
		"pin-current": ran("SIM-000004"),
		"on-time":     ran("SIM-000006"),
		"active":      ran("SIM-000007"),
		"adhoc":       {{Pc: "SIM-000008"}}, // an ad-hoc run has no started event
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}

	// Unrevoked, the job runs; the skipped commands are not run again.
	f.put("script_status", "job-revoked", "ACTIVE")
	f.send("commands.group.sim-canary", command("job-revoked", "1", "unrevoked"))
	got = answers(t, f.after(time.Hour))
	want = map[string][]answer{"unrevoked": append(ran("SIM-000000"), ran("SIM-000010")...)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after unrevoke, answers (-want +got):\n%s", diff)
	}
}

// TestARequestIsRunOncePerAgent: a command reaching an agent on several
// subjects (commands.all and a group it is in and its own), or delivered
// twice, runs once on it.
func TestARequestIsRunOncePerAgent(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 12, Seed: 2})
	c := command("job", "1", "shared")
	for _, subject := range []string{"commands.all", "commands.group.sim-canary", "commands.pc.SIM-000000", "commands.all"} {
		f.send(subject, c)
	}
	got := answers(t, f.after(time.Hour))
	var want []answer
	for i := range 12 {
		want = append(want, answer{Pc: sim.NewFleet(sim.Config{}).PcID(i), Started: true})
	}
	if diff := cmp.Diff(map[string][]answer{"shared": want}, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}
