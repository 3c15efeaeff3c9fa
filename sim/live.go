package sim

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// Live actions (fleet.md §4): the backend asks one agent over core-NATS
// request/reply for a Heartbeat built on the spot, the tail of its log, or
// the output so far of a run in progress. The fleet takes them on one
// wildcard subscription per action whatever its size, and answers for its
// own PCs only: a request for another PC gets no answer from it, so a real
// agent on the same NATS answers its own. (A PC nobody serves therefore
// times out rather than meeting "no responders" while a simulated fleet
// runs: the wildcard subscription is a responder for every PC.)

// LiveSubjects are the subscriptions the live actions come on.
var LiveSubjects = []string{"agents.*.ping", "logs.fetch.*", "job.tail.*"}

// defaultTailLines is how much of its log an agent sends when the request
// does not say (fleet.md §4.2).
const defaultTailLines = 500

// jobTail is the answer on job.tail.<pc_id> (fleet.md §4.3).
type jobTail struct {
	Found           bool   `json:"found"`
	Running         bool   `json:"running"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
}

// liveRequest names the action a request subject asks for and the PC it
// asks; ok is false for any other subject.
func liveRequest(subject string) (action, pc string, ok bool) {
	if rest, found := strings.CutPrefix(subject, "agents."); found {
		pc, found = strings.CutSuffix(rest, ".ping")
		return "ping", pc, found
	}
	if pc, found := strings.CutPrefix(subject, "logs.fetch."); found {
		return "logs", pc, true
	}
	if pc, found := strings.CutPrefix(subject, "job.tail."); found {
		return "tail", pc, true
	}
	return "", "", false
}

// Ping is agent i's answer to agents.<pc_id>.ping at now: a Heartbeat
// without the self-perf fields and the logon, key and protocol ones
// (fleet.md §4.1).
func (f *Fleet) Ping(i int, now time.Time) kanade.Heartbeat {
	pc := f.PcID(i)
	return kanade.Heartbeat{PcID: pc, At: kanade.Timestamp{Time: now.UTC()}, AgentVersion: f.version(i),
		Hostname: ptr(pc), OsFamily: ptr(osFamily(i))}
}

// logHead is agent i's log from its start, at start.
func (a *agents) logHead(i int, start time.Time) []logLine {
	return []logLine{
		{at: start, level: "INFO", target: "kanade_agent", msg: "kanade-agent starting",
			fields: []string{"version", a.f.cfg.AgentVersion, "pc_id", a.f.PcID(i)}},
		{at: start, level: "INFO", target: "kanade_agent::bus", msg: "connected to NATS"},
		{at: start, level: "INFO", target: "kanade_agent::groups", msg: "groups loaded",
			fields: []string{"groups", string(mustJSON(a.startGroups[i]))}},
	}
}

// live is the answer of a simulated agent to a live request on subject with
// body data at now, limit the largest reply NATS carries; ok is false when
// the request is not for one of the fleet's agents, which then say nothing.
func (a *agents) live(subject string, data []byte, now time.Time, limit int) (reply []byte, ok bool) {
	action, pc, ok := liveRequest(subject)
	i := a.f.agentIndex(pc)
	if !ok || i < 0 {
		return nil, false
	}
	switch action {
	case "ping":
		return mustJSON(a.f.Ping(i, now)), true
	case "logs":
		var req struct {
			TailLines *uint32 `json:"tail_lines"`
		}
		n := defaultTailLines
		if json.Unmarshal(data, &req) == nil && req.TailLines != nil {
			n = int(*req.TailLines)
		}
		return a.log.tail(i, n, limit), true
	default:
		var req struct {
			ResultID string `json:"result_id"`
		}
		_ = json.Unmarshal(data, &req) // an unreadable request asks for no run
		return mustJSON(a.tail(i, req.ResultID, now)), true
	}
}
