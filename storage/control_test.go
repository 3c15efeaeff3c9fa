package storage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

func TestCountAliveAgreesWithAlivePCs(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	beat := func(pc, at string) kanade.Heartbeat { return kanade.Heartbeat{PcID: pc, At: ts(at), AgentVersion: "1"} }
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		return tx.UpsertHeartbeats(ctx, []kanade.Heartbeat{beat("B", "2026-09-30T09:00:00Z"), beat("A", "2026-09-30T08:59:00Z"), beat("C", "2026-09-30T08:58:59Z")})
	}); err != nil {
		t.Fatal(err)
	}
	for _, since := range []time.Time{
		time.Date(2026, 9, 30, 8, 59, 0, 0, time.UTC), // the boundary is inclusive
		time.Date(2026, 9, 30, 8, 0, 0, 0, time.UTC),
		time.Date(2026, 9, 30, 9, 0, 1, 0, time.UTC),
	} {
		n, err := db.CountAlive(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		pcs, err := db.AlivePCs(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(pcs)) {
			t.Errorf("since %v: CountAlive = %d, AlivePCs = %v", since, n, pcs)
		}
	}
	if n, _ := db.CountAlive(ctx, time.Date(2026, 9, 30, 8, 59, 0, 0, time.UTC)); n != 2 {
		t.Errorf("CountAlive = %d, want 2", n)
	}
}

func TestKillQueriesFindOnlyWorkInFlight(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	at := ts("2026-09-30T01:00:00Z")
	zero := int64(0)
	one := int64(1)
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		for _, e := range []storage.NewExecution{
			{ExecID: "e-pending", JobID: "job", Version: "1", InitiatedBy: "operator", InitiatedAt: at.Time, TargetCount: &one},
			{ExecID: "e-running", JobID: "job", Version: "1", InitiatedBy: "operator", InitiatedAt: at.Time, TargetCount: &one},
			{ExecID: "e-done", JobID: "job", Version: "1", InitiatedBy: "operator", InitiatedAt: at.Time, TargetCount: &one},
			{ExecID: "e-other", JobID: "other", Version: "1", InitiatedBy: "operator", InitiatedAt: at.Time, TargetCount: &one},
		} {
			if err := tx.InsertExecution(ctx, e); err != nil {
				return err
			}
		}
		if _, err := tx.ApplyStarted(ctx, []storage.Started{
			{EventStarted: kanade.EventStarted{ResultID: "r1", RequestID: "q", ExecID: "e-running", PcID: "A", StartedAt: at, ManifestID: "job"}, RecordedAt: at.Time},
			{EventStarted: kanade.EventStarted{ResultID: "r3", RequestID: "q", ExecID: "e-other", PcID: "A", StartedAt: at, ManifestID: "other"}, RecordedAt: at.Time},
		}); err != nil {
			return err
		}
		_, err := tx.ApplyResults(ctx, []storage.Result{{ExecResult: kanade.ExecResult{ResultID: "r2", RequestID: "q", ExecID: "e-done",
			PcID: "B", ExitCode: &zero, StartedAt: at, FinishedAt: at, ManifestID: "job"}, RecordedAt: at.Time}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	active, err := db.ActiveExecIDs(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"e-pending", "e-running"}, active); diff != "" {
		t.Errorf("active executions (-want +got):\n%s", diff)
	}
	unfinished, err := db.UnfinishedExecIDs(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"e-running"}, unfinished); diff != "" {
		t.Errorf("unfinished executions (-want +got):\n%s", diff)
	}
}

func TestDeleteExecutionTakesItsWavesToo(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	at := ts("2026-09-30T01:00:00Z").Time
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		for _, id := range []string{"gone", "kept"} {
			if err := tx.InsertExecution(ctx, storage.NewExecution{ExecID: id, JobID: "job", Version: "1", InitiatedBy: "operator", InitiatedAt: at}); err != nil {
				return err
			}
			if err := tx.AddWaves(ctx, []storage.Wave{{ExecID: id, Wave: 1, Subject: "commands.group.g", DueAt: at, Command: []byte("{}")}}); err != nil {
				return err
			}
		}
		return tx.DeleteExecution(ctx, "gone")
	}); err != nil {
		t.Fatal(err)
	}
	waves, err := db.DueWaves(ctx, at, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(waves) != 1 || waves[0].ExecID != "kept" {
		t.Errorf("waves after the delete = %+v, want only kept's", waves)
	}
	active, err := db.ActiveExecIDs(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"kept"}, active); diff != "" {
		t.Errorf("executions after the delete (-want +got):\n%s", diff)
	}
}

func TestControlQueriesUseTheirIndexes(t *testing.T) {
	db := storagetest.Open(t, nil)
	if db.Remote() {
		t.Skip("query plans are checked on SQLite")
	}
	plans, err := storage.ControlQueryPlansForTest(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"count alive":           "agents_last_heartbeat",
		"active executions":     "executions_active_by_job",
		"unfinished executions": "execution_results_unfinished_by_job",
		"last run":              "execution_results_job_started",
		"recent runs":           "execution_results_job_started",
	}
	for name, index := range want {
		got := strings.Join(plans[name], " | ")
		if !strings.Contains(got, index) || strings.Contains(got, "SCAN ") && !strings.Contains(got, "USING") {
			t.Errorf("%s: plan %q, want it to use %s", name, got, index)
		}
	}
}
