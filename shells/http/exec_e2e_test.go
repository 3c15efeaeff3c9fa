package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/sim"
)

// The control plane end to end (control.md §1 exec, §3 kill, §4 revoke):
// the shell runs with a simulated fleet of 200 agents (-demo 200), and
// everything the test does or checks goes through the HTTP API, as an
// operator's would, but for reading KV agent_groups (no route shows who is
// in a group). The simulator answers commands as real agents do (see
// package sim), so what is asserted here is the whole loop: API → fan-out →
// NATS → agents → results → projection → SQL → API.

// e2eWait bounds every wait of these tests: generous, for a busy 2-core
// machine running them with -race. It is a guard, never a sleep: each wait
// ends as soon as what it waits for is there.
const e2eWait = 60 * time.Second

// e2eAgents is the size of the simulated fleet.
const e2eAgents = 200

// execution is the part of GET /api/executions/{id} the tests read.
type execution struct {
	ExecID       string `json:"exec_id"`
	JobID        string `json:"job_id"`
	TargetCount  *int64 `json:"target_count"`
	SuccessCount int64  `json:"success_count"`
	FailureCount int64  `json:"failure_count"`
	SkippedCount int64  `json:"skipped_count"`
	Status       string `json:"status"`
}

// String shows the counters, not target_count's address.
func (e execution) String() string {
	target := "null"
	if e.TargetCount != nil {
		target = fmt.Sprint(*e.TargetCount)
	}
	return fmt.Sprintf("{exec_id %s, job_id %s, status %s, target_count %s, success_count %d, failure_count %d, skipped_count %d}",
		e.ExecID, e.JobID, e.Status, target, e.SuccessCount, e.FailureCount, e.SkippedCount)
}

// answered is how many agents the execution has heard from.
func (e execution) answered() int64 { return e.SuccessCount + e.FailureCount + e.SkippedCount }

// runRow is the part of a GET /api/results item the tests read.
type runRow struct {
	ResultID   string  `json:"result_id"`
	ExecID     *string `json:"exec_id"`
	PCID       *string `json:"pc_id"`
	JobID      *string `json:"job_id"`
	ExitCode   *int64  `json:"exit_code"`
	Skipped    bool    `json:"skipped"`
	FinishedAt *string `json:"finished_at"`
	Reaped     bool    `json:"reaped"`
	DurationMs *int64  `json:"duration_ms"`
}

// String shows the values, not the pointers.
func (r runRow) String() string {
	str := func(p *string) string {
		if p == nil {
			return "null"
		}
		return *p
	}
	num := func(p *int64) string {
		if p == nil {
			return "null"
		}
		return fmt.Sprint(*p)
	}
	return fmt.Sprintf("{result_id %s, exec_id %s, pc_id %s, exit_code %s, skipped %t, finished_at %s, reaped %t, duration_ms %s}",
		r.ResultID, str(r.ExecID), str(r.PCID), num(r.ExitCode), r.Skipped, str(r.FinishedAt), r.Reaped, num(r.DurationMs))
}

// allRuns fails the test when some of runs are not what ok accepts, naming
// how many and the first.
func allRuns(t *testing.T, runs []runRow, what string, ok func(runRow) bool) {
	t.Helper()
	var bad []runRow
	for _, r := range runs {
		if !ok(r) {
			bad = append(bad, r)
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d runs are not %s, e.g. %v", len(bad), len(runs), what, bad[0])
	}
}

// execAnswer is the body of POST /api/exec/{job_id}.
type execAnswer struct {
	ExecID      string   `json:"exec_id"`
	JobID       string   `json:"job_id"`
	Version     string   `json:"version"`
	TargetCount int64    `json:"target_count"`
	Subjects    []string `json:"subjects"`
}

// send is one authenticated request with an optional JSON body.
func (s *shell) send(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+strings.TrimPrefix(path, "/"), rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// must is send, failing the test unless the answer is want; a 200 body is
// decoded into out when out is not nil.
func (s *shell) must(t *testing.T, method, path, body string, want int, out any) {
	t.Helper()
	code, b := s.send(t, method, path, body)
	if code != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, code, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// waitFor calls check until it returns "" and fails the test with its last
// reason once e2eWait has passed.
func waitFor(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for {
		why := check()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, e2eWait, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// execution reads one execution.
func (s *shell) execution(t *testing.T, id string) execution {
	t.Helper()
	var e execution
	s.must(t, http.MethodGet, "/api/executions/"+id, "", http.StatusOK, &e)
	return e
}

// waitExecution polls an execution until done accepts it, and returns it.
func (s *shell) waitExecution(t *testing.T, id, what string, done func(execution) bool) execution {
	t.Helper()
	var e execution
	waitFor(t, what, func() string {
		e = s.execution(t, id)
		if done(e) {
			return ""
		}
		return fmt.Sprintf("execution %v", e)
	})
	return e
}

// runs lists every run of job (all pages), only those of status when it is
// not empty.
func (s *shell) runs(t *testing.T, job, status string) []runRow {
	t.Helper()
	var all []runRow
	q := url.Values{"job_id": {job}, "limit": {"500"}}
	if status != "" {
		q.Set("status", status)
	}
	for {
		var page struct {
			Items      []runRow `json:"items"`
			NextCursor *string  `json:"next_cursor"`
		}
		s.must(t, http.MethodGet, "/api/results?"+q.Encode(), "", http.StatusOK, &page)
		all = append(all, page.Items...)
		if page.NextCursor == nil {
			return all
		}
		q.Set("cursor", *page.NextCursor)
	}
}

// ofExec keeps the runs of one execution.
func ofExec(runs []runRow, execID string) []runRow {
	return slices.DeleteFunc(slices.Clone(runs), func(r runRow) bool { return r.ExecID == nil || *r.ExecID != execID })
}

// pcsOf is the sorted PCs of runs, repeats kept (so a PC that answered
// twice shows).
func pcsOf(runs []runRow) []string {
	var pcs []string
	for _, r := range runs {
		if r.PCID != nil {
			pcs = append(pcs, *r.PCID)
		}
	}
	slices.Sort(pcs)
	return pcs
}

// putJob stores a job through the API.
func (s *shell) putJob(t *testing.T, id, script string) {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"version":"1","execute":{"shell":"sh","script":%q,"timeout":"15m"}}`, id, script)
	s.must(t, http.MethodPut, "/api/jobs/"+id, body, http.StatusOK, nil)
}

// exec fans job out to group and checks the answer against the group's
// members.
func (s *shell) exec(t *testing.T, job, group string, members []string) execAnswer {
	t.Helper()
	var a execAnswer
	s.must(t, http.MethodPost, "/api/exec/"+job, fmt.Sprintf(`{"target":{"groups":[%q],"pcs":[],"all":false}}`, group), http.StatusOK, &a)
	if a.ExecID == "" || a.JobID != job || a.Version != "1" || !slices.Equal(a.Subjects, []string{"commands.group." + group}) {
		t.Fatalf("POST /api/exec/%s = %+v", job, a)
	}
	if a.TargetCount != int64(len(members)) {
		t.Fatalf("POST /api/exec/%s to %s: target_count %d, want the %d alive members", job, group, a.TargetCount, len(members))
	}
	return a
}

// simMembers waits until every simulated agent is online in the API and
// returns the members of group, as the simulator assigns them and as KV
// agent_groups (where it publishes them) says.
func simMembers(t *testing.T, s *shell, nats *bustest.Server, group string) []string {
	t.Helper()
	// The fleet beats at once when it starts, but heartbeats are core NATS:
	// beats sent before the projector subscribed are lost, and those agents
	// show at their next beat (within 30 s).
	waitFor(t, "every simulated agent online", func() string {
		var page struct {
			Items []struct {
				PCID string `json:"pc_id"`
			} `json:"items"`
		}
		s.must(t, http.MethodGet, "/api/agents?status=online&limit=500", "", http.StatusOK, &page)
		if len(page.Items) != e2eAgents {
			return fmt.Sprintf("%d online", len(page.Items))
		}
		return ""
	})
	f := sim.NewFleet(sim.Config{Agents: e2eAgents})
	var want []string
	for i := range e2eAgents {
		if f.Group(i) == group {
			want = append(want, f.PcID(i))
		}
	}
	entries, err := nats.Bus.Entries(t.Context(), kanade.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		var v struct {
			Groups []string `json:"groups"`
		}
		if err := json.Unmarshal(e.Value, &v); err != nil {
			t.Fatalf("agent_groups[%s] = %s: %v", e.Key, e.Value, err)
		}
		if slices.Contains(v.Groups, group) {
			got = append(got, e.Key)
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" || len(want) == 0 {
		t.Fatalf("members of %s in KV agent_groups (-sim's rule +KV):\n%s", group, diff)
	}
	return want
}

// TestExecEndToEndWithTheSimulatedFleet: -demo 200 agents answer a fan-out
// to a group, once each, and the execution completes with counters equal
// to the answers; a kill (by execution, then by job) stops the simulated
// agents' runs of a job that would run ten minutes, and they report them
// killed; the agents skip a revoked job's commands.
func TestExecEndToEndWithTheSimulatedFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 200-agent simulated fleet")
	}
	nats := bustest.Start(t) // external, so the test can read KV agent_groups
	env := freshEnv(t)
	env["KANADE_NATS_URL"] = nats.URL
	s := start(t, env, "-addr", "127.0.0.1:0", "-demo", fmt.Sprint(e2eAgents), "-demo-runs", "e2e-long=10m")
	s.waitBootstrapped(t)
	fleet := simMembers(t, s, nats, "sim-fleet")
	canaries := simMembers(t, s, nats, "sim-canary")
	if len(fleet)+len(canaries) != e2eAgents {
		t.Fatalf("%d in sim-fleet and %d in sim-canary, want the %d agents between them", len(fleet), len(canaries), e2eAgents)
	}

	t.Run("a fan-out to a group completes with one answer per alive member", func(t *testing.T) {
		s.putJob(t, "e2e-quick", "hostname")
		a := s.exec(t, "e2e-quick", "sim-fleet", fleet)
		e := s.waitExecution(t, a.ExecID, "execution completed", func(e execution) bool { return e.Status == "completed" })
		if e.TargetCount == nil || *e.TargetCount != a.TargetCount || e.JobID != "e2e-quick" || e.answered() != a.TargetCount {
			t.Fatalf("completed execution %v: want target_count %d = success_count + failure_count", e, a.TargetCount)
		}
		runs := s.runs(t, "e2e-quick", "")
		if mine := ofExec(runs, a.ExecID); len(mine) != len(runs) {
			t.Errorf("%d runs of e2e-quick, %d of them of execution %s: want them all", len(runs), len(mine), a.ExecID)
		}
		if diff := cmp.Diff(fleet, pcsOf(runs)); diff != "" {
			t.Errorf("the PCs that answered are not every member once (-members +answers):\n%s", diff)
		}
		allRuns(t, runs, "finished runs", func(r runRow) bool {
			return r.ExitCode != nil && r.FinishedAt != nil && !r.Skipped && !r.Reaped
		})
		var ok, failed int64
		for _, r := range runs {
			if r.ExitCode != nil && *r.ExitCode == 0 {
				ok++
			} else {
				failed++
			}
		}
		if ok != e.SuccessCount || failed != e.FailureCount {
			t.Errorf("runs: %d exit 0, %d failed; execution counts %d and %d", ok, failed, e.SuccessCount, e.FailureCount)
		}
		t.Logf("%d agents answered: %d succeeded, %d failed", len(runs), ok, failed)
	})

	t.Run("a kill stops the running simulated agents and they report it", func(t *testing.T) {
		s.putJob(t, "e2e-long", "sleep 600") // -demo-runs: the agents run it ten minutes
		one := s.exec(t, "e2e-long", "sim-canary", canaries)
		other := s.exec(t, "e2e-long", "sim-fleet", fleet)
		waitFor(t, "every targeted agent running e2e-long", func() string {
			running := s.runs(t, "e2e-long", "running")
			n1, n2 := len(ofExec(running, one.ExecID)), len(ofExec(running, other.ExecID))
			if n1 != len(canaries) || n2 != len(fleet) {
				return fmt.Sprintf("%d and %d running, want %d and %d", n1, n2, len(canaries), len(fleet))
			}
			return ""
		})
		for _, id := range []string{one.ExecID, other.ExecID} {
			if e := s.execution(t, id); e.Status != "running" || e.answered() != 0 {
				t.Fatalf("execution %v, want running with no answer yet", e)
			}
		}
		// checkKilled checks every run of the execution answered as killed,
		// ended well before its ten minutes.
		checkKilled := func(a execAnswer, members []string) {
			t.Helper()
			runs := ofExec(s.runs(t, "e2e-long", ""), a.ExecID)
			if diff := cmp.Diff(members, pcsOf(runs)); diff != "" {
				t.Errorf("execution %s: the PCs that answered are not every member once (-members +answers):\n%s", a.ExecID, diff)
			}
			allRuns(t, runs, "killed runs (exit -1, not skipped or reaped, stopped before their ten minutes)", func(r runRow) bool {
				return r.ExitCode != nil && *r.ExitCode == -1 && !r.Skipped && !r.Reaped &&
					r.DurationMs != nil && *r.DurationMs < (10*time.Minute).Milliseconds()
			})
			if len(runs) > 0 {
				var d struct {
					Stderr *string `json:"stderr"`
				}
				s.must(t, http.MethodGet, "/api/results/"+runs[0].ResultID, "", http.StatusOK, &d)
				if want := "killed by remote signal (kill." + a.ExecID + ")"; d.Stderr == nil || !strings.Contains(*d.Stderr, want) {
					t.Errorf("killed run's stderr %v, want %q", d.Stderr, want)
				}
			}
		}
		killed := func(a execAnswer) func(execution) bool {
			return func(e execution) bool { return e.answered() >= a.TargetCount }
		}

		// By execution: only that execution stops.
		began := time.Now()
		s.must(t, http.MethodPost, "/api/executions/"+one.ExecID+"/kill", "", http.StatusNoContent, nil)
		e := s.waitExecution(t, one.ExecID, "every canary reported killed", killed(one))
		t.Logf("POST /api/executions/{id}/kill: %d runs reported killed in %v", e.FailureCount, time.Since(began).Round(time.Millisecond))
		if e.Status != "completed" || e.SuccessCount != 0 || e.FailureCount != one.TargetCount {
			t.Errorf("killed execution %v, want completed with failure_count %d only", e, one.TargetCount)
		}
		checkKilled(one, canaries)
		if e := s.execution(t, other.ExecID); e.Status != "running" || e.answered() != 0 {
			t.Errorf("the kill of execution %s reached execution %s: %v", one.ExecID, other.ExecID, e)
		}
		if n := len(ofExec(s.runs(t, "e2e-long", "running"), other.ExecID)); n != len(fleet) {
			t.Errorf("%d runs of execution %s still running after the other's kill, want %d", n, other.ExecID, len(fleet))
		}

		// By job: its running execution stops.
		began = time.Now()
		s.must(t, http.MethodPost, "/api/jobs/e2e-long/kill", "", http.StatusNoContent, nil)
		e = s.waitExecution(t, other.ExecID, "every agent of sim-fleet reported killed", killed(other))
		t.Logf("POST /api/jobs/{id}/kill: %d runs reported killed in %v", e.FailureCount, time.Since(began).Round(time.Millisecond))
		if e.Status != "completed" || e.SuccessCount != 0 || e.FailureCount != other.TargetCount {
			t.Errorf("killed execution %v, want completed with failure_count %d only", e, other.TargetCount)
		}
		checkKilled(other, fleet)
	})

	t.Run("the agents skip a revoked job's commands", func(t *testing.T) {
		s.putJob(t, "e2e-revoked", "hostname")
		s.must(t, http.MethodPost, "/api/scripts/e2e-revoked/revoke", "", http.StatusNoContent, nil)
		var statuses map[string]string
		s.must(t, http.MethodGet, "/api/scripts/status", "", http.StatusOK, &statuses)
		if statuses["e2e-revoked"] != "REVOKED" {
			t.Fatalf("GET /api/scripts/status = %v, want e2e-revoked REVOKED", statuses)
		}
		a := s.exec(t, "e2e-revoked", "sim-fleet", fleet) // a revoked job is sent; the agents skip it
		e := s.waitExecution(t, a.ExecID, "execution completed", func(e execution) bool { return e.Status == "completed" })
		// A skip is an answer of its own (issue 13, bugs 5 and 7): neither
		// a success nor a failure.
		if e.SuccessCount != 0 || e.FailureCount != 0 || e.SkippedCount != a.TargetCount {
			t.Errorf("execution %v, want every one of %d answers a skip", e, a.TargetCount)
		}
		runs := s.runs(t, "e2e-revoked", "")
		if diff := cmp.Diff(fleet, pcsOf(ofExec(runs, a.ExecID))); diff != "" {
			t.Errorf("the PCs that answered are not every member once (-members +answers):\n%s", diff)
		}
		allRuns(t, runs, "revoked skips (exit 126, skipped)", func(r runRow) bool {
			return r.ExitCode != nil && *r.ExitCode == 126 && r.Skipped && r.FinishedAt != nil
		})
		if skipped := s.runs(t, "e2e-revoked", "skipped"); len(skipped) != len(runs) {
			t.Errorf("GET /api/results?status=skipped: %d runs, want all %d", len(skipped), len(runs))
		}
	})
	s.stop(t) // with the simulator and the killed runs, still within the shutdown bound
}
