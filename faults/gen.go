package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// Gen makes deterministic wire messages: message i of a generator is the same
// every time it is asked for (publish retries regenerate it).
type Gen struct {
	// Prefix keeps ids of different generators (and scenarios) apart.
	Prefix string
	// Base is the started_at of message 0; later ones are 10 ms apart.
	Base time.Time
	// StdoutBytes is the size of each result's stdout (at least 2).
	StdoutBytes int
	// Jobs and PCs cycle over messages.
	Jobs []string
	PCs  int
}

// uuidFor is a name-based (v5) UUID of (prefix, i): stable, unique, and in
// the shape agents send.
func uuidFor(prefix string, i int) string { return kanade.LegacyResultID(prefix, strconv.Itoa(i)) }

// ResultID is the result_id of message i.
func (g Gen) ResultID(i int) string { return uuidFor(g.Prefix+"/result", i) }

// RequestID is the request_id of message i.
func (g Gen) RequestID(i int) string { return uuidFor(g.Prefix+"/request", i) }

// PC is the pc_id of message i.
func (g Gen) PC(i int) string {
	n := g.PCs
	if n <= 0 {
		n = 500
	}
	return "PC-" + strconv.Itoa(10000+i%n)
}

// Job is the manifest_id of message i.
func (g Gen) Job(i int) string {
	if len(g.Jobs) == 0 {
		return "faults-job"
	}
	return g.Jobs[i%len(g.Jobs)]
}

// Times are started_at and finished_at of message i: a duration that varies
// with i (so percentiles mean something), finished within the last hour.
func (g Gen) Times(i int) (started, finished time.Time) {
	started = g.Base.Add(time.Duration(i) * 10 * time.Millisecond)
	dur := time.Duration(50+(i*7919)%20000) * time.Millisecond
	return started, started.Add(dur)
}

// Stdout is the output text of message i (StdoutBytes long).
func (g Gen) Stdout(i int) string {
	n := max(g.StdoutBytes, 2)
	head := "result " + strconv.Itoa(i) + " "
	if len(head) >= n {
		return head[:n]
	}
	return head + strings.Repeat("x", n-len(head))
}

// Result is result message i with exit code exit.
func (g Gen) Result(i int, exit int64) kanade.ExecResult {
	s, f := g.Times(i)
	return kanade.ExecResult{
		ResultID: g.ResultID(i), RequestID: g.RequestID(i), PcID: g.PC(i), ExitCode: &exit,
		Stdout: g.Stdout(i), Stderr: "", StartedAt: kanade.Timestamp{Time: s}, FinishedAt: kanade.Timestamp{Time: f},
		ManifestID: g.Job(i),
	}
}

// resultMsg is the JetStream publication of r (Nats-Msg-Id = its row id).
func resultMsg(r kanade.ExecResult) PubMsg {
	id := r.ResultID
	if id == "" {
		id = kanade.LegacyResultID(r.RequestID, r.PcID)
	}
	return PubMsg{Subject: "results." + r.RequestID, Data: mustJSON(r), ID: id}
}

// startedMsg is the JetStream publication of e.
func startedMsg(e kanade.EventStarted) PubMsg {
	exec := e.ExecID
	if exec == "" {
		exec = "adhoc"
	}
	return PubMsg{Subject: "events.started." + exec + "." + e.PcID, Data: mustJSON(e), ID: "started-" + e.ResultID}
}

// okResults is the simplest load: n successful results of g.
func okResults(g Gen) func(int) PubMsg {
	return func(i int) PubMsg { return resultMsg(g.Result(i, 0)) }
}

// wantIDs lists the row ids the acked messages of a plain result load must
// produce.
func wantIDs(g Gen, acks *Acks, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		if acks.Has(i) {
			out = append(out, g.ResultID(i))
		}
	}
	return out
}
