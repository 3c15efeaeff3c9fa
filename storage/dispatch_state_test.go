package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

func TestCompletionsKeepEachPCsNewestSuccess(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	at := func(s string) kanade.Timestamp { return ts("2026-09-30T" + s + "Z") }
	res := func(id, pc, job string, exit int64, skipped bool, fin string) storage.Result {
		return storage.Result{ExecResult: kanade.ExecResult{ResultID: id, RequestID: "q", PcID: pc, ExitCode: &exit, Skipped: skipped,
			StartedAt: at("00:00:00"), FinishedAt: at(fin), ManifestID: job}, RecordedAt: at(fin).Time}
	}
	apply := func(rs ...storage.Result) {
		t.Helper()
		if err := db.Update(ctx, func(tx *storage.Tx) error { _, err := tx.ApplyResults(ctx, rs); return err }); err != nil {
			t.Fatal(err)
		}
	}
	apply(
		res("a1", "PC-A", "job", 0, false, "01:00:00"),
		res("a2", "PC-A", "job", 0, false, "03:00:00"),
		res("a3", "PC-A", "job", 0, false, "02:00:00"),  // older, arrives later
		res("b1", "PC-B", "job", 1, false, "04:00:00"),  // failure: no completion
		res("c1", "PC-C", "job", 126, true, "04:00:00"), // skipped
		res("d1", "PC-D", "other", 0, false, "04:00:00"),
	)
	// A started-first run completed later by its result counts too.
	exit := int64(0)
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ApplyStarted(ctx, []storage.Started{{EventStarted: kanade.EventStarted{ResultID: "b2", RequestID: "q", PcID: "PC-B",
			StartedAt: at("05:00:00"), ManifestID: "job"}, RecordedAt: at("05:00:00").Time}}); err != nil {
			return err
		}
		_, err := tx.ApplyResults(ctx, []storage.Result{{ExecResult: kanade.ExecResult{ResultID: "b2", RequestID: "q", PcID: "PC-B", ExitCode: &exit,
			StartedAt: at("05:00:00"), FinishedAt: at("05:00:09")}, RecordedAt: at("05:00:10").Time}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	got, err := db.Completions(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{"PC-A": at("03:00:00").Time, "PC-B": at("05:00:09").Time}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("completions (-want +got):\n%s", diff)
	}
	// Retention deletes the runs, not the completions.
	if err := storage.ExecForTest(ctx, db, `DELETE FROM execution_results`); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Completions(ctx, "job"); len(got) != 2 {
		t.Errorf("completions after the runs were deleted = %v, want both kept", got)
	}
}

func TestInsertExecutionCountsRunsThatArrivedFirst(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	zero, one := int64(0), int64(1)
	at := ts("2026-09-30T01:00:00Z")
	run := func(id string, exit *int64) storage.Result {
		return storage.Result{ExecResult: kanade.ExecResult{ResultID: id, RequestID: "q", ExecID: "e1", PcID: id, ExitCode: exit,
			StartedAt: at, FinishedAt: at}, RecordedAt: at.Time}
	}
	two := int64(2)
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ApplyResults(ctx, []storage.Result{run("r1", &zero), run("r2", &one)}); err != nil {
			return err
		}
		return tx.InsertExecution(ctx, storage.NewExecution{ExecID: "e1", JobID: "job", Version: "3", InitiatedBy: "scheduler",
			InitiatedAt: at.Time, TargetCount: &two})
	}); err != nil {
		t.Fatal(err)
	}
	e, err := db.GetExecution(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if e.SuccessCount != 1 || e.FailureCount != 1 || e.Status != "completed" {
		t.Errorf("execution = %+v, want 1 success, 1 failure, completed", e)
	}
	three := int64(3)
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		return tx.InsertExecution(ctx, storage.NewExecution{ExecID: "e2", JobID: "job", InitiatedBy: "scheduler", InitiatedAt: at.Time, TargetCount: &three})
	}); err != nil {
		t.Fatal(err)
	}
	if e, _ := db.GetExecution(ctx, "e2"); e.Status != "pending" || e.SuccessCount != 0 {
		t.Errorf("fresh execution = %+v, want pending", e)
	}
}

func TestWavesAreSentOnce(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	t0 := time.Date(2026, 9, 30, 9, 0, 0, 0, time.UTC)
	waves := []storage.Wave{
		{ExecID: "e", Wave: 1, Subject: "commands.group.wave1", DueAt: t0.Add(time.Hour), Command: []byte(`{"id":"j"}`)},
		{ExecID: "e", Wave: 0, Subject: "commands.group.canary", DueAt: t0, Command: []byte(`{"id":"j"}`)},
	}
	if err := db.Update(ctx, func(tx *storage.Tx) error { return tx.AddWaves(ctx, waves) }); err != nil {
		t.Fatal(err)
	}
	due, err := db.DueWaves(ctx, t0.Add(time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 1 || due[0].Subject != "commands.group.canary" || string(due[0].Command) != `{"id":"j"}` {
		t.Fatalf("due = %+v", due)
	}
	for i, want := range []bool{true, false} {
		var won bool
		if err := db.Update(ctx, func(tx *storage.Tx) (err error) { won, err = tx.MarkWaveSent(ctx, "e", 0, t0); return err }); err != nil {
			t.Fatal(err)
		}
		if won != want {
			t.Errorf("mark %d = %v, want %v", i, won, want)
		}
	}
	if due, _ := db.DueWaves(ctx, t0.Add(2*time.Hour), 10); len(due) != 1 || due[0].Wave != 1 {
		t.Errorf("after sending wave 0, due = %+v", due)
	}
}

func TestScheduleCheckedUntilOnlyMovesForward(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	t0 := time.Date(2026, 9, 30, 9, 0, 0, 0, time.UTC)
	if _, ok, err := db.ScheduleCheckedUntil(ctx, "s"); ok || err != nil {
		t.Fatalf("unseen schedule: ok=%v err=%v", ok, err)
	}
	for _, at := range []time.Time{t0, t0.Add(-time.Hour), t0.Add(time.Minute)} {
		if err := db.Update(ctx, func(tx *storage.Tx) error { return tx.SetScheduleChecked(ctx, "s", at) }); err != nil {
			t.Fatal(err)
		}
	}
	if got, ok, err := db.ScheduleCheckedUntil(ctx, "s"); !ok || err != nil || !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("checked_until = %v %v %v, want %v", got, ok, err, t0.Add(time.Minute))
	}
}

func TestAlivePCs(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	beat := func(pc, at string) kanade.Heartbeat { return kanade.Heartbeat{PcID: pc, At: ts(at), AgentVersion: "1"} }
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		return tx.UpsertHeartbeats(ctx, []kanade.Heartbeat{beat("B", "2026-09-30T09:00:00Z"), beat("A", "2026-09-30T08:59:00Z"), beat("C", "2026-09-30T08:00:00Z")})
	}); err != nil {
		t.Fatal(err)
	}
	got, err := db.AlivePCs(ctx, time.Date(2026, 9, 30, 8, 59, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"A", "B"}, got); diff != "" {
		t.Errorf("alive (-want +got):\n%s", diff)
	}
}
