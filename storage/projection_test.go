package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

func ts(s string) kanade.Timestamp {
	t, err := kanade.ParseTime(s)
	if err != nil {
		panic(err)
	}
	return kanade.Timestamp{Time: t}
}

func TestResultAfterStartedFillsRunningRowOnce(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	exit := int64(3)
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO executions (exec_id, job_id, target_count) VALUES ('e1', 'job', 2)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	started := storage.Started{EventStarted: kanade.EventStarted{ResultID: "r1", RequestID: "q", ExecID: "e1", PcID: "pc", StartedAt: ts("2026-01-01T00:00:00Z"), ManifestID: "job"},
		RecordedAt: time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC), Timeout: time.Minute}
	res := storage.Result{ExecResult: kanade.ExecResult{ResultID: "r1", RequestID: "q", ExecID: "e1", PcID: "pc", ExitCode: &exit,
		StartedAt: ts("2026-01-01T00:00:00Z"), FinishedAt: ts("2026-01-01T00:00:02.5Z"), ManifestID: "job", Stdout: "out"},
		RecordedAt: time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC)}
	for i := 0; i < 2; i++ {
		if err := db.Update(ctx, func(tx *storage.Tx) error {
			if _, err := tx.ApplyStarted(ctx, []storage.Started{started}); err != nil {
				return err
			}
			_, err := tx.ApplyResults(ctx, []storage.Result{res, res})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	var failures, successes int
	var status, recorded string
	var dur int64
	if err := storage.QueryRowForTest(ctx, db, `SELECT e.failure_count, e.success_count, e.status, r.recorded_at, r.duration_ms
		FROM executions e JOIN execution_results r ON r.exec_id = e.exec_id`, &failures, &successes, &status, &recorded, &dur); err != nil {
		t.Fatal(err)
	}
	if failures != 1 || successes != 0 || status != "running" || recorded != "2026-01-01T00:00:01.000000000Z" || dur != 2500 {
		t.Fatalf("got failures=%d successes=%d status=%s recorded=%s dur=%d", failures, successes, status, recorded, dur)
	}
}
