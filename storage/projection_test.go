package storage_test

import (
	"errors"

	"context"
	"github.com/google/go-cmp/cmp"
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

// TestStartedAfterResultGivesTheOrderedRow applies one run's started event and
// a result that names neither its execution nor its job, in both orders, with
// duplicates: the row, the execution's counters and the scan-duration
// summary must come out identical.
func TestStartedAfterResultGivesTheOrderedRow(t *testing.T) {
	ctx := context.Background()
	exit := int64(0)
	started := storage.Started{EventStarted: kanade.EventStarted{ResultID: "r1", RequestID: "q", ExecID: "e1", PcID: "pc",
		StartedAt: ts("2026-01-01T00:00:00Z"), ManifestID: "job", Version: "v3"},
		RecordedAt: time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC), Timeout: time.Minute}
	// The agent's result carries a later started_at (it measured after
	// spawning) and omits exec_id and manifest_id.
	res := storage.Result{ExecResult: kanade.ExecResult{ResultID: "r1", RequestID: "q", PcID: "pc", ExitCode: &exit,
		StartedAt: ts("2026-01-01T00:00:00.750Z"), FinishedAt: ts("2026-01-01T00:00:02.5Z"), Stdout: "out"},
		RecordedAt: time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC)}
	type outcome struct {
		Row, Exec string
		Scan      []kanade.ScanDuration
	}
	apply := func(t *testing.T, steps ...func(*storage.Tx) error) outcome {
		db := storagetest.Open(t, nil)
		if err := storage.ExecForTest(ctx, db, `INSERT INTO executions (exec_id, job_id, target_count) VALUES ('e1', 'job', 1)`); err != nil {
			t.Fatal(err)
		}
		for _, step := range steps {
			if err := db.Update(ctx, step); err != nil {
				t.Fatal(err)
			}
		}
		var o outcome
		if err := storage.QueryRowForTest(ctx, db, `SELECT json_array(result_id, request_id, exec_id, pc_id, job_id, version,
			exit_code, stdout, started_at, finished_at, recorded_at, expires_at, reaped, duration_ms) FROM execution_results`, &o.Row); err != nil {
			t.Fatal(err)
		}
		if err := storage.QueryRowForTest(ctx, db, `SELECT json_array(success_count, failure_count, status) FROM executions`, &o.Exec); err != nil {
			t.Fatal(err)
		}
		scan, err := db.ScanDurations(ctx, time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		o.Scan = scan
		return o
	}
	st := func(tx *storage.Tx) error {
		_, err := tx.ApplyStarted(ctx, []storage.Started{started, started})
		return err
	}
	rs := func(tx *storage.Tx) error { _, err := tx.ApplyResults(ctx, []storage.Result{res, res}); return err }
	want := apply(t, st, rs)
	if want.Exec != `[1,0,"completed"]` || len(want.Scan) != 1 || want.Scan[0].Count != 1 || want.Scan[0].MaxMs != 2500 {
		t.Fatalf("ordered stream gave %+v", want)
	}
	for name, steps := range map[string][]func(*storage.Tx) error{
		"result first":              {rs, st},
		"result first, redelivered": {rs, st, rs, st},
		"both in one transaction":   {func(tx *storage.Tx) error { return errors.Join(rs(tx), st(tx)) }},
		"started, result, started":  {st, rs, st},
	} {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(want, apply(t, steps...)); diff != "" {
				t.Errorf("differs from the ordered stream (-ordered +this order):\n%s", diff)
			}
		})
	}
}
