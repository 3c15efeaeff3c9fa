package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// What a simulated agent does with a command, as a real kanade agent does
// (crate kanade-agent, src/commands.rs handle_command): it drops a
// request_id it has seen already, reads the command's gates from KV,
// answers a gated command with a skipped result and no started event, and
// otherwise waits out the command's jitter and runs it: a started event
// (for a command with an exec_id only), then the result when the run ends,
// or at once, as killed, when kill.<exec_id> arrives first.

// Reserved exit codes of a result the agent publishes instead of running
// the command (wire.md "Reserved exit codes"; upstream commands.rs, the
// table on publish_staleness_skipped, and kanade-shared wire/result.rs
// EXIT_SKIP_*). The skipped flag, not the code, marks a skip.
const (
	exitSkipVersionPin = 124
	exitSkipDeadline   = 125
	exitSkipRevoked    = 126
)

// exitKilled is the exit code of a run stopped by kill.<exec_id>
// (upstream commands.rs: ExecOutcome::Killed maps to -1). A kill is not a
// skip: the run started, and counts as a failure.
const exitKilled = -1

// gateTimeout bounds one read of the gates: a simulated agent that cannot
// read them runs the command, as a real one does.
const gateTimeout = 2 * time.Second

// dedupWindow is how many request_ids an agent remembers (upstream's
// DedupCache holds 1024 per agent; here one window serves the whole fleet,
// which remembers at least as much per agent since every agent sees a
// subset of the fleet's commands).
const dedupWindow = 1024

// defaultCommandJob is how long the command of a job the fleet does not
// know runs: about a second, so a fan-out to a large simulated fleet
// completes quickly.
var defaultCommandJob = Job{MedianMs: 1000, Sigma: 0.3}

// Gate is what an agent reads from KV before it runs a command:
// script_status and script_current of Command.id. Every simulated agent
// shares one read per command message, where a real agent reads its own.
type Gate struct {
	// Revoked says script_status[id] is REVOKED.
	Revoked bool
	// Pin is script_current[id], when Pinned (the key exists).
	Pin    string
	Pinned bool
	// ScriptErr says why the body a command names by script_object could
	// not be had: the object is missing, unreadable, or its bytes do not
	// match script_object_sha256 (replaced after the dispatch). Agents
	// then run nothing and report a failure (observe.md §5.7).
	ScriptErr string
}

// maxScriptBytes bounds a script object the simulated agents fetch (the
// upload cap of the scripts store).
const maxScriptBytes = kanade.MaxScriptObjectBytes

// fetchScript fetches object name of store scripts as an agent does and
// checks its SHA-256 against want (lower-case hex); "" when it matches.
func fetchScript(ctx context.Context, c *bus.Client, name, want string) string {
	r, _, err := c.GetObject(ctx, kanade.ObjectScripts, name)
	if err != nil {
		return fmt.Sprintf("script object %s: %v", name, err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, maxScriptBytes+1))
	switch {
	case err != nil:
		return fmt.Sprintf("script object %s: %v", name, err)
	case n > maxScriptBytes:
		return fmt.Sprintf("script object %s: over %d bytes", name, maxScriptBytes)
	case hex.EncodeToString(h.Sum(nil)) != want:
		return fmt.Sprintf("script object %s: SHA-256 %x does not match the command's %s; refusing to run it", name, h.Sum(nil), want)
	}
	return ""
}

// readGate reads the gates of command cmd, and fetches the script object
// it names (see Gate.ScriptErr). A KV read that fails counts as no value
// (the command runs), as a real agent's does: upstream only acts on a
// value it could read.
func readGate(ctx context.Context, c *bus.Client, cmd kanade.Command) Gate {
	ctx, cancel := context.WithTimeout(ctx, gateTimeout)
	defer cancel()
	var g Gate
	id := cmd.ID
	if cmd.ScriptObject != "" {
		g.ScriptErr = fetchScript(ctx, c, cmd.ScriptObject, cmd.ScriptObjectSHA256)
	}
	if e, err := c.Get(ctx, kanade.BucketScriptStatus, id); err == nil {
		g.Revoked = string(e.Value) == bus.ScriptRevoked
	}
	if e, err := c.Get(ctx, kanade.BucketScriptCurrent, id); err == nil {
		g.Pin, g.Pinned = string(e.Value), true
	}
	return g
}

// skip says whether an agent at now skips c, with the exit code and stderr
// it reports. The order is upstream's: version pin, revoke, deadline (a
// deadline is the last instant a command may start: at it, it still runs).
// The staleness gate never skips here: a simulated agent is connected.
func (g Gate) skip(c kanade.Command, now time.Time) (exit int64, stderr string, skipped bool) {
	switch {
	case g.Pinned && g.Pin != c.Version:
		return exitSkipVersionPin, fmt.Sprintf("skipped: version-pin mismatch — script_current[%s] = %s, command brought %s",
			c.ID, g.Pin, c.Version), true
	case g.Revoked:
		return exitSkipRevoked, fmt.Sprintf("skipped: command was revoked (script_status[%s] = revoked)", c.ID), true
	case c.DeadlineAt != nil && now.After(c.DeadlineAt.Time):
		return exitSkipDeadline, fmt.Sprintf("skipped: starting deadline expired %s ago (deadline %s, received %s)",
			now.Sub(c.DeadlineAt.Time).Round(time.Millisecond), kanade.FormatTime(c.DeadlineAt.Time), kanade.FormatTime(now)), true
	}
	return 0, "", false
}

// Answer is agent i's answer to command c received at now, having read g:
// a skipped result when a gate says so, else its run, which starts once
// the command's jitter has passed (see Fleet.Jitter) and lasts as
// Config.RunDurations or the job's profile says. Its Result is the one
// published when the run ends on its own; Messages lists the started
// event, when there is one, before the result.
func (f *Fleet) Answer(i int, c kanade.Command, g Gate, now time.Time) RunOutput {
	if exit, stderr, skipped := g.skip(c, now); skipped {
		return f.skipped(i, c, exit, stderr, now)
	}
	if g.ScriptErr != "" {
		out := f.skipped(i, c, 1, g.ScriptErr, now)
		out.Result.Skipped = false
		out.Messages = []Message{resultMessage(out.Result)}
		return out
	}
	return f.start(i, c, now.Add(f.Jitter(c)))
}

// Jitter draws how long an agent waits before it runs c: a whole number
// of seconds in [0, jitter_secs), none for a jitter_secs of 1 or less
// (upstream process.rs apply_jitter, whose range 0..1 would always be 0).
// The wait comes before the run's started_at, so it never counts in the
// run's duration.
func (f *Fleet) Jitter(c kanade.Command) time.Duration {
	if c.JitterSecs == nil || *c.JitterSecs <= 1 {
		return 0
	}
	return time.Duration(f.rng.Int64N(*c.JitterSecs)) * time.Second
}

// skipped is a skip's result: no started event, no run, no output.
func (f *Fleet) skipped(i int, c kanade.Command, exit int64, stderr string, now time.Time) RunOutput {
	at := kanade.Timestamp{Time: now.UTC()}
	r := kanade.ExecResult{ResultID: f.id(), RequestID: c.RequestID, ExecID: c.ExecID, PcID: f.PcID(i),
		ExitCode: &exit, Skipped: true, Stderr: stderr, StartedAt: at, FinishedAt: at, ManifestID: c.ID}
	return RunOutput{Result: r, Messages: []Message{resultMessage(r)}}
}

// commandDuration is how long agent runs of job id last: exactly
// Config.RunDurations[id] when set, else drawn from the job's profile
// (Config.Jobs, DemoJob, InventoryJob) or, for a job the fleet does not
// know, about a second.
func (f *Fleet) commandDuration(id string) time.Duration {
	if d, ok := f.cfg.RunDurations[id]; ok {
		return max(d, 0)
	}
	job := defaultCommandJob
	if i := slices.IndexFunc(f.cfg.Jobs, func(j Job) bool { return j.ID == id }); i >= 0 {
		job = f.cfg.Jobs[i]
	} else if id == DemoJob.ID {
		job = DemoJob
	} else if id == InventoryJob.ID {
		job = InventoryJob
	}
	return f.Duration(job)
}

// start is agent i's run of c from at: its started event (a command with an
// exec_id only: real agents emit none for an ad-hoc run) and its result,
// due when the run ends, with the configured chances of failure and of a
// duplicate result. The result is always published after the event.
func (f *Fleet) start(i int, c kanade.Command, at time.Time) RunOutput {
	started := at.UTC()
	exit := int64(0)
	stdout, stderr := "ok", ""
	if f.rng.Float64() < f.cfg.FailureRate {
		exit = []int64{1, 2, 5, 121, 123}[f.rng.IntN(5)]
		stdout, stderr = "", fmt.Sprintf("error: simulated failure %d", exit)
	}
	switch {
	case exit == 0 && len(c.Check) > 0:
		stdout = f.checkOutput(i)
	case c.ID == InventoryJob.ID && exit == 0:
		stdout = f.inventoryStdout(i, started)
	}
	resultID := f.id()
	r := RunOutput{
		Result: kanade.ExecResult{ResultID: resultID, RequestID: c.RequestID, ExecID: c.ExecID, PcID: f.PcID(i),
			ExitCode: &exit, Stdout: stdout, Stderr: stderr,
			StartedAt: kanade.Timestamp{Time: started}, FinishedAt: kanade.Timestamp{Time: started.Add(f.commandDuration(c.ID))},
			ManifestID: c.ID},
	}
	if c.ExecID != "" {
		r.Started = kanade.EventStarted{ResultID: resultID, RequestID: c.RequestID, ExecID: c.ExecID, PcID: r.Result.PcID,
			StartedAt: kanade.Timestamp{Time: started}, ManifestID: c.ID, Version: c.Version}
		r.Messages = append(r.Messages, Message{Subject: StartedSubject(r.Started), Data: mustJSON(r.Started), JetStream: true})
	}
	r.Messages = append(r.Messages, resultMessage(r.Result))
	if f.rng.Float64() < f.cfg.DuplicateRate {
		r.Messages = append(r.Messages, resultMessage(r.Result))
	}
	return r
}

// checkOutput is what a check script prints on agent i (observe.md §3.2):
// one JSON object with status and detail, ok on most PCs. The status of a
// PC drifts from run to run, so the demo's compliance table changes.
func (f *Fleet) checkOutput(i int) string {
	status, detail := kanade.CheckOK, "compliant"
	switch p := f.rng.Float64(); {
	case p < 0.08:
		status, detail = kanade.CheckFail, fmt.Sprintf("C: not encrypted on %s", f.PcID(i))
	case p < 0.2:
		status, detail = kanade.CheckWarn, "definitions older than 3 days"
	}
	return string(mustJSON(map[string]any{"status": status, "detail": detail, "checked_volumes": []string{"C:"}}))
}

// killed is the result of run, stopped by kill.<exec_id> at now: exit -1
// and upstream's note in stderr (commands.rs: "killed by remote signal
// (kill.<exec_id>)"), after whatever the run had written. A run killed
// before it started (during its jitter) starts and ends at now.
func killed(run kanade.ExecResult, started bool, now time.Time) kanade.ExecResult {
	exit := int64(exitKilled)
	run.ExitCode = &exit
	run.Stdout, run.Stderr = "", fmt.Sprintf("killed by remote signal (%s%s)", kanade.SubjectKill, run.ExecID)
	run.FinishedAt = kanade.Timestamp{Time: now.UTC()}
	if !started {
		run.StartedAt = run.FinishedAt
	}
	return run
}

func resultMessage(r kanade.ExecResult) Message {
	return Message{Subject: "results." + r.RequestID, Data: mustJSON(r), JetStream: true}
}

// seen remembers which agents have taken which request_id, for the last
// dedupWindow request_ids.
type seen struct {
	order  []string
	agents map[string][]uint64 // a bit per agent
}

// add records that agent i took request; false when it had already.
func (s *seen) add(request string, i, agents int) bool {
	bits, ok := s.agents[request]
	if !ok {
		if s.agents == nil {
			s.agents = map[string][]uint64{}
		}
		bits = make([]uint64, (agents+63)/64)
		s.agents[request] = bits
		s.order = append(s.order, request)
		if len(s.order) > dedupWindow {
			delete(s.agents, s.order[0])
			s.order = append(s.order[:0], s.order[1:]...)
		}
	}
	if bits[i/64]&(1<<(i%64)) != 0 {
		return false
	}
	bits[i/64] |= 1 << (i % 64)
	return true
}

// running is a command an agent took and has not finished: waiting out its
// jitter until startAt, then running until endAt.
type running struct {
	agent          int
	startAt, endAt time.Time
	started        bool
	// begin is published at startAt (the started event, if any), end at
	// endAt (the result, perhaps twice).
	begin, end []Message
	result     kanade.ExecResult
}

// agents is the part of the fleet that runs things: what each agent has
// seen, the runs in progress (the commands' and the agents' own) and the
// agents' logs. It never touches NATS: the loop reads the gates and
// publishes what it returns.
type agents struct {
	f       *Fleet
	seen    seen
	running []*running
	log     *journal
	// startGroups are the agents' groups at start, for their logs.
	startGroups [][]string
	cfgs        configs
}

func newAgents(f *Fleet, start time.Time) *agents {
	a := &agents{f: f, startGroups: slices.Clone(f.groups.of), cfgs: newConfigs(f.cfg.Agents)}
	a.log = newJournal(start, a.logHead)
	return a
}

// receive is a command message on subject: every agent it reaches that has
// not taken its request_id yet answers it. read is called at most once, and
// only when some agent needs the gates. What is due at now already (a
// skip, a run without jitter starting) is returned.
func (a *agents) receive(subject string, c kanade.Command, read func() Gate, now time.Time) []Message {
	var out []Message
	var g *Gate
	for _, i := range a.f.Targets(subject) {
		if !a.seen.add(c.RequestID, i, a.f.cfg.Agents) {
			continue
		}
		if g == nil {
			g = new(read())
		}
		run := a.f.Answer(i, c, *g, now)
		if run.Result.Skipped {
			a.log.add(i, logLine{at: now, level: "WARN", target: "kanade_agent::commands", msg: "command skipped",
				fields: []string{"job", c.ID, "request_id", c.RequestID, "exit_code", strconv.FormatInt(*run.Result.ExitCode, 10)}})
			out = append(out, run.Messages...)
			continue
		}
		a.log.add(i, logLine{at: now, level: "INFO", target: "kanade_agent::commands", msg: "command received",
			fields: []string{"job", c.ID, "version", c.Version, "request_id", c.RequestID}})
		n := 0 // the started event, when there is one, opens the run
		if run.Started.ResultID != "" {
			n = 1
		}
		a.running = append(a.running, &running{agent: i, startAt: run.Result.StartedAt.Time, endAt: run.Result.FinishedAt.Time,
			begin: run.Messages[:n], end: run.Messages[n:], result: run.Result})
	}
	return append(out, a.step(now)...)
}

// step starts the runs whose jitter has passed by now and publishes the
// results of those that have ended, each run's start before its end, and
// restarts the agents whose self-update is due.
func (a *agents) step(now time.Time) []Message {
	out := a.selfUpdates(now)
	kept := a.running[:0]
	for _, r := range a.running {
		if !r.started && !now.Before(r.startAt) {
			r.started = true
			a.logRun(r, r.startAt, "INFO", "job started")
			out = append(out, r.begin...)
		}
		if r.started && !now.Before(r.endAt) {
			level := "INFO"
			if *r.result.ExitCode != 0 {
				level = "WARN"
			}
			a.logRun(r, r.endAt, level, "job finished", "exit_code", strconv.FormatInt(*r.result.ExitCode, 10))
			out = append(out, r.end...)
			continue
		}
		kept = append(kept, r)
	}
	clear(a.running[len(kept):])
	a.running = kept
	return out
}

// kill stops every run of execID at now, whether it is running or still
// waiting out its jitter, and returns their killed results: the run's one
// result, published now instead of when the run would have ended. A kill
// reaching a run still in its jitter is honoured too, as upstream's kill
// switch does since it latches from the command's arrival (kill.rs); the
// 0.43.56 agent listened only while the child ran, and would have started
// it. An unknown exec_id, or one whose runs have ended, kills nothing.
func (a *agents) kill(execID string, now time.Time) []Message {
	var out []Message
	kept := a.running[:0]
	for _, r := range a.running {
		if execID == "" || r.result.ExecID != execID {
			kept = append(kept, r)
			continue
		}
		a.logRun(r, now, "WARN", "job killed", "exec_id", execID)
		out = append(out, resultMessage(killed(r.result, r.started, now)))
	}
	clear(a.running[len(kept):])
	a.running = kept
	return out
}

// own starts one of agent i's own runs (Fleet.Run): what it publishes at
// its start is returned, the rest when the run ends. A late result, sent
// before the started event, leaves nothing for the end.
func (a *agents) own(i int, run RunOutput) []Message {
	first := 1
	if run.Messages[0].Subject != StartedSubject(run.Started) {
		first = 2 // a late result: both now, result first
	}
	r := &running{agent: i, startAt: run.Result.StartedAt.Time, endAt: run.Result.FinishedAt.Time, started: true,
		end: run.Messages[first:], result: run.Result}
	a.logRun(r, r.startAt, "INFO", "job started")
	a.running = append(a.running, r)
	return run.Messages[:first]
}

// logRun adds a line about run r to its agent's log.
func (a *agents) logRun(r *running, at time.Time, level, msg string, fields ...string) {
	a.log.add(r.agent, logLine{at: at, level: level, target: "kanade_agent::process", msg: msg,
		fields: append([]string{"job", r.result.ManifestID, "result_id", r.result.ResultID}, fields...)})
}

// tail is agent i's answer to job.tail for resultID at now: the output so
// far of its run of that id, found only once the run has started (before,
// not even its started event is out, so nobody knows the id).
func (a *agents) tail(i int, resultID string, now time.Time) jobTail {
	for _, r := range a.running {
		if r.agent == i && r.started && r.result.ResultID == resultID {
			return jobTail{Found: true, Running: true, Stdout: progress(r.startAt, r.endAt, now)}
		}
	}
	return jobTail{}
}

// progress is what a run from start to end has printed by now: a line per
// tenth of its time gone by.
func progress(start, end, now time.Time) string {
	tenths := 0
	if d := end.Sub(start); d > 0 {
		tenths = min(9, int(10*now.Sub(start)/d))
	}
	var b strings.Builder
	for k := range tenths + 1 {
		fmt.Fprintf(&b, "progress %d%%\n", 10*k)
	}
	return b.String()
}

// killedExec is the exec_id of a kill.<exec_id> subject, "" for any other.
func killedExec(subject string) string {
	id, ok := strings.CutPrefix(subject, kanade.SubjectKill)
	if !ok || !kanade.ValidToken(id) {
		return ""
	}
	return id
}
