package sim

import (
	"context"
	"fmt"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// What a simulated agent does with a command, as a real kanade agent does
// (crate kanade-agent, src/commands.rs): it drops a request_id it has seen
// already, reads the command's gates from KV, answers a gated command with a
// skipped result and no started event, and otherwise runs it: a started
// event (for a command with an exec_id only), then the result when the run
// ends.

// Reserved exit codes of a skipped result (wire.md; upstream
// kanade-shared wire/result.rs). The skipped flag, not the code, marks a
// skip.
const (
	exitSkipVersionPin = 124
	exitSkipDeadline   = 125
	exitSkipRevoked    = 126
)

// bucketScriptStatus is the KV bucket of revocations (wire.md §2).
const bucketScriptStatus = "script_status"

// gateTimeout bounds one read of the gates: a simulated agent that cannot
// read them runs the command, as a real one does.
const gateTimeout = 2 * time.Second

// dedupWindow is how many request_ids an agent remembers (upstream's
// DedupCache holds 1024 per agent; here one window serves the whole fleet,
// which remembers at least as much per agent since every agent sees a
// subset of the fleet's commands).
const dedupWindow = 1024

// Gate is what an agent reads from KV before it runs a command:
// script_status and script_current of Command.id. Every simulated agent
// shares one read per command message, where a real agent reads its own.
type Gate struct {
	// Revoked says script_status[id] is REVOKED.
	Revoked bool
	// Pin is script_current[id], when Pinned (the key exists).
	Pin    string
	Pinned bool
}

// readGate reads the gates of command id. A read that fails counts as no
// value (the command runs), as a real agent's does.
func readGate(ctx context.Context, c *bus.Client, id string) Gate {
	ctx, cancel := context.WithTimeout(ctx, gateTimeout)
	defer cancel()
	var g Gate
	if e, err := c.Get(ctx, bucketScriptStatus, id); err == nil {
		g.Revoked = string(e.Value) == "REVOKED"
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

// Answer is agent i's answer to command c at now, having read g: a skipped
// result when a gate says so, else the run started at now (see start).
func (f *Fleet) Answer(i int, c kanade.Command, g Gate, now time.Time) RunOutput {
	if exit, stderr, skipped := g.skip(c, now); skipped {
		return f.skipped(i, c, exit, stderr, now)
	}
	return f.start(i, c, now)
}

// skipped is a skip's result: no started event, no run, no output.
func (f *Fleet) skipped(i int, c kanade.Command, exit int64, stderr string, now time.Time) RunOutput {
	at := kanade.Timestamp{Time: now.UTC()}
	r := kanade.ExecResult{ResultID: f.id(), RequestID: c.RequestID, ExecID: c.ExecID, PcID: f.PcID(i),
		ExitCode: &exit, Skipped: true, Stderr: stderr, StartedAt: at, FinishedAt: at, ManifestID: c.ID}
	return RunOutput{Result: r, Messages: []Message{resultMessage(r)}}
}

// start is agent i's run of c from at: its started event (a command with an
// exec_id only: real agents emit none for an ad-hoc run) and its result, due
// when the run ends, with the configured chances of failure and of a
// duplicate result. The result is always published after the event.
func (f *Fleet) start(i int, c kanade.Command, at time.Time) RunOutput {
	job := Job{ID: c.ID, Version: c.Version, MedianMs: 2000, Sigma: 0.5}
	for _, j := range append(f.cfg.Jobs, DemoJob) {
		if j.ID == c.ID {
			job = j
			job.Version = c.Version
		}
	}
	started := at.UTC()
	exit := int64(0)
	stdout, stderr := "ok", ""
	if f.rng.Float64() < f.cfg.FailureRate {
		exit = []int64{1, 2, 5, 121, 123}[f.rng.IntN(5)]
		stdout, stderr = "", fmt.Sprintf("error: simulated failure %d", exit)
	}
	resultID := f.id()
	r := RunOutput{
		Result: kanade.ExecResult{ResultID: resultID, RequestID: c.RequestID, ExecID: c.ExecID, PcID: f.PcID(i),
			ExitCode: &exit, Stdout: stdout, Stderr: stderr,
			StartedAt: kanade.Timestamp{Time: started}, FinishedAt: kanade.Timestamp{Time: started.Add(f.Duration(job))},
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

// running is a started run whose result is due when the clock reaches it.
type running struct {
	due  time.Time
	msgs []Message
}

// agents is the part of the fleet that answers commands: what each agent has
// seen and the runs in progress. It never touches NATS: the loop reads the
// gates and publishes what it returns.
type agents struct {
	f       *Fleet
	seen    seen
	running []running
}

// receive is a command message on subject: every agent it reaches that has
// not taken its request_id yet answers it. read is called at most once, and
// only when some agent needs the gates.
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
		out = append(out, a.answer(i, c, *g, now)...)
	}
	return out
}

// answer publishes a skip at once, and a run's started event at once and its
// result when the run ends.
func (a *agents) answer(i int, c kanade.Command, g Gate, now time.Time) []Message {
	run := a.f.Answer(i, c, g, now)
	if run.Result.Skipped {
		return run.Messages
	}
	n := 0 // the started event, when there is one, goes now
	if run.Started.ResultID != "" {
		n = 1
	}
	a.running = append(a.running, running{due: run.Result.FinishedAt.Time, msgs: run.Messages[n:]})
	return run.Messages[:n]
}

// step publishes the results of the runs that have ended by now.
func (a *agents) step(now time.Time) []Message {
	var out []Message
	kept := a.running[:0]
	for _, r := range a.running {
		if now.Before(r.due) {
			kept = append(kept, r)
			continue
		}
		out = append(out, r.msgs...)
	}
	clear(a.running[len(kept):])
	a.running = kept
	return out
}
