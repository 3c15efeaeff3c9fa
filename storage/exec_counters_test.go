package storage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// Bugs 5 and 7 of issue 13: an execution's counters. Skipped runs have their
// own counter; failure means what ?status=failure and the fleet rollup mean;
// under redelivery, out-of-order delivery, reaping and a reaped run's late
// result, the counters always equal a recount of the runs table, never
// exceed the target for runs of the target, and "completed" means every
// target PC answered.

type counterRun struct {
	id, exec, pc string
	// outcome of the result: "" none ever arrives, else "success",
	// "failure", "skipped".
	outcome string
	// execInResult: the result names its execution (very old agents'
	// results may not; the started event does).
	execInResult bool
	started      bool
}

var counterAt = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func (r counterRun) startedMsg() storage.Started {
	return storage.Started{EventStarted: kanade.EventStarted{ResultID: r.id, RequestID: "q-" + r.exec, ExecID: r.exec, PcID: r.pc,
		StartedAt: kanade.Timestamp{Time: counterAt}, ManifestID: "job"}, RecordedAt: counterAt, Timeout: time.Minute}
}

func (r counterRun) resultMsg() storage.Result {
	exit := int64(0)
	skipped := false
	switch r.outcome {
	case "failure":
		exit = 2
	case "skipped":
		exit, skipped = 125, true
	}
	res := storage.Result{ExecResult: kanade.ExecResult{ResultID: r.id, RequestID: "q-" + r.exec, PcID: r.pc, ExitCode: &exit,
		Skipped: skipped, StartedAt: kanade.Timestamp{Time: counterAt}, FinishedAt: kanade.Timestamp{Time: counterAt.Add(3 * time.Second)},
		ManifestID: "job"}, RecordedAt: counterAt.Add(4 * time.Second)}
	if r.execInResult {
		res.ExecID = r.exec
	}
	return res
}

// counterState reads every execution with its counters and the recount of
// its runs by outcome (run_status).
type counterState struct {
	success, failure, skipped, target int64
	status                            string
	reSuccess, reFailure, reSkipped   int64
}

func readCounters(t *testing.T, db *storage.DB) map[string]counterState {
	t.Helper()
	rows, err := storage.RowsForTest(context.Background(), db, `SELECT e.exec_id, e.success_count, e.failure_count, e.skipped_count,
		e.target_count, e.status,
		(SELECT COUNT(*) FROM execution_results r WHERE r.exec_id = e.exec_id AND r.exit_code IS NOT NULL AND r.skipped = 0 AND r.exit_code = 0),
		(SELECT COUNT(*) FROM execution_results r WHERE r.exec_id = e.exec_id AND r.exit_code IS NOT NULL AND r.skipped = 0 AND r.exit_code <> 0),
		(SELECT COUNT(*) FROM execution_results r WHERE r.exec_id = e.exec_id AND r.exit_code IS NOT NULL AND r.skipped = 1)
		FROM executions e`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]counterState{}
	for _, r := range rows {
		out[r[0].(string)] = counterState{success: r[1].(int64), failure: r[2].(int64), skipped: r[3].(int64), target: r[4].(int64),
			status: r[5].(string), reSuccess: r[6].(int64), reFailure: r[7].(int64), reSkipped: r[8].(int64)}
	}
	return out
}

// checkCounters is the invariant after every transaction. inTarget says
// whether every run of the execution comes from a target PC (then the
// answers can never exceed the target).
func checkCounters(t *testing.T, db *storage.DB, inTarget map[string]bool, when string) map[string]counterState {
	t.Helper()
	got := readCounters(t, db)
	for id, c := range got {
		if c.success != c.reSuccess || c.failure != c.reFailure || c.skipped != c.reSkipped {
			t.Fatalf("%s: %s: counters ok %d failed %d skipped %d, recount %d %d %d", when, id,
				c.success, c.failure, c.skipped, c.reSuccess, c.reFailure, c.reSkipped)
		}
		answered := c.success + c.failure + c.skipped
		if inTarget[id] && answered > c.target {
			t.Fatalf("%s: %s: ok %d + failed %d + skipped %d > target %d", when, id, c.success, c.failure, c.skipped, c.target)
		}
		if (c.status == "completed") != (answered >= c.target) {
			t.Fatalf("%s: %s: status %s with %d of %d answered", when, id, c.status, answered, c.target)
		}
	}
	return got
}

func TestExecutionCountersEqualARecountUnderAnyDelivery(t *testing.T) {
	t.Parallel() // beside the other brute-force tests (storagetest.AnswersOnly)
	ctx := context.Background()
	for seed := range uint64(12) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 77))
			db := storagetest.Open(t, nil)
			var runs []counterRun
			inTarget := map[string]bool{}
			for e := range 4 {
				exec := fmt.Sprintf("e%d", e)
				target := 3 + r.IntN(4)
				pcs := target
				// Executions 0 and 1: a PC outside the target (offline at
				// dispatch) answers later with a skipped result.
				inTarget[exec] = e >= 2
				if !inTarget[exec] {
					pcs++
				}
				readsExec(t, db, `INSERT INTO executions (exec_id, job_id, target_count, initiated_at) VALUES (?, 'job', ?, ?)`,
					exec, target, kanade.FormatTime(counterAt))
				for p := range pcs {
					run := counterRun{id: fmt.Sprintf("%s-r%d", exec, p), exec: exec, pc: fmt.Sprintf("pc-%d", p),
						outcome: []string{"success", "failure", "skipped", ""}[r.IntN(4)], execInResult: r.IntN(4) > 0,
						started: r.IntN(5) > 0}
					if p == target { // the one outside the target
						run.outcome, run.started, run.execInResult = "skipped", false, true
					}
					if run.outcome == "" {
						run.started = true // a run nobody answers is reaped
					}
					if !run.started {
						run.execInResult = true // else nothing ever names its execution
					}
					runs = append(runs, run)
				}
			}
			// Every message one to three times, shuffled; reaps in between.
			type msg struct {
				started *storage.Started
				result  *storage.Result
				reap    bool
			}
			var msgs []msg
			for _, run := range runs {
				for range 1 + r.IntN(3) {
					if run.started {
						s := run.startedMsg()
						msgs = append(msgs, msg{started: &s})
					}
					if run.outcome != "" {
						res := run.resultMsg()
						msgs = append(msgs, msg{result: &res})
					}
				}
			}
			for range 3 {
				msgs = append(msgs, msg{reap: true})
			}
			r.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
			msgs = append(msgs, msg{reap: true}) // the runs nobody answers end reaped
			for i := 0; i < len(msgs); {
				// A batch: consecutive messages of one kind (one consumer).
				j := i + 1
				for j < len(msgs) && j-i < 1+r.IntN(4) && (msgs[j].started != nil) == (msgs[i].started != nil) &&
					(msgs[j].result != nil) == (msgs[i].result != nil) && !msgs[i].reap {
					j++
				}
				err := db.Update(ctx, func(tx *storage.Tx) error {
					switch {
					case msgs[i].reap:
						// Far past every deadline: every running row is reaped.
						_, err := tx.Reap(ctx, counterAt.Add(48*time.Hour), 1000)
						return err
					case msgs[i].started != nil:
						var b []storage.Started
						for _, m := range msgs[i:j] {
							b = append(b, *m.started)
						}
						_, err := tx.ApplyStarted(ctx, b)
						return err
					default:
						var b []storage.Result
						for _, m := range msgs[i:j] {
							b = append(b, *m.result)
						}
						_, err := tx.ApplyResults(ctx, b)
						return err
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				checkCounters(t, db, inTarget, fmt.Sprintf("after messages %d..%d", i, j))
				i = j
			}
			// Everything delivered: each run ends as its result says (a run
			// without one reaped, a failure), whatever came first.
			want := map[string]*counterState{}
			for _, run := range runs {
				w := want[run.exec]
				if w == nil {
					w = &counterState{}
					want[run.exec] = w
				}
				switch run.outcome {
				case "success":
					w.success++
				case "failure", "":
					w.failure++
				case "skipped":
					w.skipped++
				}
			}
			got := checkCounters(t, db, inTarget, "at the end")
			for exec, w := range want {
				g := got[exec]
				if g.success != w.success || g.failure != w.failure || g.skipped != w.skipped {
					t.Errorf("%s: ok %d failed %d skipped %d, want %d %d %d", exec, g.success, g.failure, g.skipped,
						w.success, w.failure, w.skipped)
				}
				// Bug 7: what the target's PCs answered never exceeds it; the
				// skipped answer of a PC outside the target is counted apart.
				if g.success+g.failure > g.target {
					t.Errorf("%s: ok %d + failed %d > target %d", exec, g.success, g.failure, g.target)
				}
			}
		})
	}
}

// Bug 5 on the storage side: the execution's failure_count, the fleet
// rollup's failed and ?status=failure count the same runs; a skipped run is
// in skipped_count and ?status=skipped only.
func TestExecutionFailedMeansWhatTheOtherPagesMean(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, func() time.Time { return counterAt.Add(time.Minute) })
	readsExec(t, db, `INSERT INTO executions (exec_id, job_id, target_count, initiated_at) VALUES ('e', 'job', 4, ?)`, kanade.FormatTime(counterAt))
	runs := []counterRun{
		{id: "a", exec: "e", pc: "p1", outcome: "success", execInResult: true},
		{id: "b", exec: "e", pc: "p2", outcome: "failure", execInResult: true},
		{id: "c", exec: "e", pc: "p3", outcome: "skipped", execInResult: true},
		{id: "d", exec: "e", pc: "p4", outcome: "skipped", execInResult: true},
	}
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		var b []storage.Result
		for _, r := range runs {
			b = append(b, r.resultMsg())
		}
		_, err := tx.ApplyResults(ctx, b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	e, err := db.GetExecution(ctx, "e")
	if err != nil {
		t.Fatal(err)
	}
	failures, err := db.ListRuns(ctx, storage.RunFilter{PageRequest: storage.PageRequest{Limit: 50}, ExecID: "e", Status: storage.RunsFailure})
	if err != nil {
		t.Fatal(err)
	}
	skipped, err := db.ListRuns(ctx, storage.RunFilter{PageRequest: storage.PageRequest{Limit: 50}, ExecID: "e", Status: storage.RunsSkipped})
	if err != nil {
		t.Fatal(err)
	}
	var fleetFailed int64
	if fleetFailed, err = storage.CountForTest(ctx, db, `SELECT SUM(failed) FROM result_minutes`); err != nil {
		t.Fatal(err)
	}
	if e.SuccessCount != 1 || e.FailureCount != 1 || e.SkippedCount != 2 || e.Status != "completed" {
		t.Errorf("execution: %+v, want ok 1 failed 1 skipped 2 completed", e)
	}
	if int64(len(failures.Items)) != e.FailureCount || fleetFailed != e.FailureCount || int64(len(skipped.Items)) != e.SkippedCount {
		t.Errorf("failed: execution %d, ?status=failure %d, fleet %d; skipped: execution %d, ?status=skipped %d",
			e.FailureCount, len(failures.Items), fleetFailed, e.SkippedCount, len(skipped.Items))
	}
}
