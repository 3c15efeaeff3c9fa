package sim_test

import (
	"maps"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/sim"
	"github.com/nats-io/nats.go"
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
	f.status("job-revoked", bus.ScriptRevoked)
	f.status("job-active", bus.ScriptActive)
	f.pin("job-pinned", "2")
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
	f.status("job-revoked", bus.ScriptActive)
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

// results indexes the results among msgs by pc/request_id, failing the
// test when an agent answered a request twice.
func results(t *testing.T, msgs []seenMsg) map[string]kanade.ExecResult {
	t.Helper()
	out := map[string]kanade.ExecResult{}
	for _, m := range msgs {
		if r := m.Result; r != nil {
			k := r.PcID + "/" + r.RequestID
			if _, dup := out[k]; dup {
				t.Errorf("%s answered twice", k)
			}
			out[k] = *r
		}
	}
	return out
}

// started lists the pc/request_id of the started events among msgs.
func started(msgs []seenMsg) []string {
	var out []string
	for _, m := range msgs {
		if s := m.Started; s != nil {
			out = append(out, s.PcID+"/"+s.RequestID)
		}
	}
	sort.Strings(out)
	return out
}

// TestKillStopsTheRunsOfItsExecution: kill.<exec_id> ends every run of that
// execution at once, running or still waiting out its jitter, with one
// result each: exit -1 and upstream's "killed by remote signal" note, as
// the upstream agent reports a killed run. Runs of other executions, and
// ad-hoc runs (no exec_id, so no kill subject), go on to their end.
func TestKillStopsTheRunsOfItsExecution(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 12, Seed: 3, RunDurations: map[string]time.Duration{"long": 10 * time.Minute}})
	t0 := f.clock.now()
	f.send("commands.group.sim-canary", command("long", "1", "long")) // SIM-000000 and SIM-000010
	f.send("commands.pc.SIM-000003", command("long", "1", "other"))
	jittered := command("long", "1", "jittered")
	jittered.JitterSecs = new(int64(3600))
	f.send("commands.pc.SIM-000004", jittered)
	adhoc := command("long", "1", "adhoc")
	adhoc.ExecID = ""
	f.send("commands.pc.SIM-000005", adhoc)
	before := f.sync()
	want := []string{"SIM-000000/long", "SIM-000003/other", "SIM-000010/long"}
	if diff := cmp.Diff(want, started(before)); diff != "" {
		t.Errorf("started (-want +got):\n%s", diff)
	}
	if r := results(t, before); len(r) != 0 {
		t.Errorf("results before the kill: %v", r)
	}

	f.clock.add(time.Minute)
	f.kill("exec-long")
	f.kill("exec-jittered")
	f.kill("exec-unknown")
	got := results(t, f.sync())
	t1 := f.clock.now()
	type killedRun struct {
		Exit               int64
		Stdout, Stderr     string
		Started, Finished  time.Time
		Skipped            bool
		ExecID, ManifestID string
	}
	sum := map[string]killedRun{}
	for k, r := range got {
		sum[k] = killedRun{*r.ExitCode, r.Stdout, r.Stderr, r.StartedAt.Time, r.FinishedAt.Time, r.Skipped, r.ExecID, r.ManifestID}
	}
	note := func(exec string) string { return "killed by remote signal (kill." + exec + ")" }
	wantKilled := map[string]killedRun{
		"SIM-000000/long": {-1, "", note("exec-long"), t0, t1, false, "exec-long", "long"},
		"SIM-000010/long": {-1, "", note("exec-long"), t0, t1, false, "exec-long", "long"},
		// Killed in its jitter: it never started, and never will.
		"SIM-000004/jittered": {-1, "", note("exec-jittered"), t1, t1, false, "exec-jittered", "long"},
	}
	if diff := cmp.Diff(wantKilled, sum); diff != "" {
		t.Errorf("killed results (-want +got):\n%s", diff)
	}

	// The rest runs to its end; the killed runs answer nothing more.
	rest := f.after(2 * time.Hour)
	if s := started(rest); len(s) != 0 {
		t.Errorf("started after the kill: %v", s)
	}
	got = results(t, rest)
	var keys []string
	for k, r := range got {
		keys = append(keys, k)
		if *r.ExitCode != 0 || !r.FinishedAt.Equal(r.StartedAt.Add(10*time.Minute)) {
			t.Errorf("%s: exit %d, ran %s; want 0 after the 10m configured for job long", k, *r.ExitCode, r.FinishedAt.Sub(r.StartedAt.Time))
		}
	}
	sort.Strings(keys)
	if diff := cmp.Diff([]string{"SIM-000003/other", "SIM-000005/adhoc"}, keys); diff != "" {
		t.Errorf("results after the kill (-want +got):\n%s", diff)
	}
}

// TestJitterDelaysTheRun: a command with jitter_secs j starts on each agent
// after a whole number of seconds in [0, j), drawn per agent, on the
// fleet's clock; a jitter_secs of 1 is no jitter (upstream apply_jitter).
// The wait is not part of the run: started_at is stamped after it.
func TestJitterDelaysTheRun(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 20, Seed: 4, RunDurations: map[string]time.Duration{"job": 5 * time.Second}})
	t0 := f.clock.now()
	c := command("job", "1", "jittered")
	c.JitterSecs = new(int64(60))
	f.send("commands.all", c)
	one := command("job", "1", "one")
	one.JitterSecs = new(int64(1))
	f.send("commands.pc.SIM-000002", one)
	starts := map[string]time.Time{}
	var msgs []seenMsg
	oneStarted := false
	for step := range 61 {
		if step > 0 {
			f.clock.add(time.Second)
		}
		now := f.clock.now()
		got := f.sync()
		msgs = append(msgs, got...)
		for _, m := range got {
			s := m.Started
			switch {
			case s == nil:
			case s.RequestID == "one":
				oneStarted = true
				if step > 0 {
					t.Errorf("a jitter_secs of 1 delayed the run by %s", s.StartedAt.Sub(t0))
				}
			case s.StartedAt.After(now):
				t.Errorf("%s started at %s, published at %s", s.PcID, s.StartedAt.Time, now)
			default:
				starts[s.PcID] = s.StartedAt.Time
			}
		}
	}
	if !oneStarted {
		t.Error("the command with a jitter_secs of 1 never started")
	}
	offsets := map[time.Duration]bool{}
	for pc, at := range starts {
		d := at.Sub(t0)
		if d < 0 || d >= time.Minute || d%time.Second != 0 {
			t.Errorf("%s started %s after the command, want whole seconds in [0s, 60s)", pc, d)
		}
		offsets[d] = true
	}
	if len(starts) != 20 || len(offsets) < 10 {
		t.Errorf("%d agents started, at %d different offsets; want all 20, spread", len(starts), len(offsets))
	}
	for k, r := range results(t, append(msgs, f.after(time.Minute)...)) {
		if strings.HasSuffix(k, "/jittered") && (!r.StartedAt.Equal(starts[r.PcID]) || r.FinishedAt.Sub(r.StartedAt.Time) != 5*time.Second) {
			t.Errorf("%s ran %s from %s; want 5s from its started event's %s", k, r.FinishedAt.Sub(r.StartedAt.Time), r.StartedAt.Time, starts[r.PcID])
		}
	}
}

// TestEveryTargetedAgentAnswersOnce: a fan-out to a group of a 200-agent
// fleet, its one request_id reaching some agents on several subjects and
// delivered twice, gets exactly one result from every agent of the group
// and none from the others, whether the run failed or not, so an
// execution's counters reach its target count.
func TestEveryTargetedAgentAnswersOnce(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 200, Seed: 5, FailureRate: 0.2})
	c := command("job", "1", "fan")
	c.JitterSecs = new(int64(30))
	for _, subject := range []string{"commands.group.sim-fleet", "commands.pc.SIM-000001", "commands.group.sim-fleet"} {
		f.send(subject, c)
	}
	msgs := f.after(time.Minute)
	got := results(t, msgs)
	fleet := sim.NewFleet(sim.Config{Agents: 200})
	var want, ran []string
	failed := 0
	for i := range 200 {
		pc := fleet.PcID(i)
		if fleet.Group(i) == "sim-fleet" {
			want = append(want, pc+"/fan")
		}
		if r, ok := got[pc+"/fan"]; ok {
			ran = append(ran, pc+"/fan")
			if *r.ExitCode != 0 {
				failed++
			}
		}
	}
	if len(want) != 180 {
		t.Fatalf("sim-fleet has %d agents, want 180", len(want))
	}
	if diff := cmp.Diff(want, ran); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, started(msgs)); diff != "" {
		t.Errorf("started events (-want +got):\n%s", diff)
	}
	if failed == 0 || failed == 180 {
		t.Errorf("%d of 180 runs failed at a 20%% failure rate", failed)
	}
}

// TestGatesAreReadOncePerCommandMessage: however many agents a command
// reaches, the fleet reads script_status and script_current of its id once
// per command message, and not at all for a message every agent it
// reaches has taken already (the reads are counted on the server).
func TestGatesAreReadOncePerCommandMessage(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 200, Seed: 6})
	var mu sync.Mutex
	reads := map[string]int{}
	for _, subject := range []string{"$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.>"} {
		sub, err := f.srv.NC.Subscribe(subject, func(m *nats.Msg) {
			for _, bucket := range []string{kanade.BucketScriptStatus, kanade.BucketScriptCurrent} {
				if strings.Contains(m.Subject+string(m.Data), "$KV."+bucket+".counted") {
					mu.Lock()
					reads[bucket]++
					mu.Unlock()
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	count := func() map[string]int {
		t.Helper()
		f.sync()
		if err := f.srv.NC.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // the callbacks run on their own goroutine
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(reads)
	}

	f.send("commands.all", command("counted", "1", "a"))
	if got := count(); got[kanade.BucketScriptStatus] != 1 || got[kanade.BucketScriptCurrent] != 1 {
		t.Errorf("one command to 200 agents: reads %v, want one of each", got)
	}
	f.send("commands.group.sim-canary", command("counted", "1", "a"))
	if got := count(); got[kanade.BucketScriptStatus] != 1 || got[kanade.BucketScriptCurrent] != 1 {
		t.Errorf("the same request again: reads %v, want no more", got)
	}
	f.send("commands.group.sim-canary", command("counted", "1", "b"))
	if got := count(); got[kanade.BucketScriptStatus] != 2 || got[kanade.BucketScriptCurrent] != 2 {
		t.Errorf("a second command: reads %v, want two of each", got)
	}
}
