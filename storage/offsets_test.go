package storage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

func TestOffsetsOnlyMoveForwardUntilTheStreamIsNew(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	db := storagetest.Open(t, func() time.Time { return now })
	const name, created = "kanade-projector-results", "2026-01-01T00:00:00.000000000Z"
	if o, err := db.Offset(ctx, name); err != nil || o != (storage.Offset{}) {
		t.Fatalf("fresh offset = %+v, %v; want zero", o, err)
	}
	advance := func(seq uint64, created string) {
		t.Helper()
		if err := db.Update(ctx, func(tx *storage.Tx) error { return tx.Advance(ctx, name, seq, created) }); err != nil {
			t.Fatal(err)
		}
	}
	advance(50, created)
	now = now.Add(time.Minute)
	advance(40, created) // a second worker committing late
	o, err := db.Offset(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	want := storage.Offset{Seq: 50, StreamCreated: created, UpdatedAt: now.Add(-time.Minute)}
	if diff := cmp.Diff(want, o); diff != "" {
		t.Fatalf("a later, lower commit moved the offset (-want +got):\n%s", diff)
	}
	advance(70, "")
	if o, _ := db.Offset(ctx, name); o.Seq != 70 || o.StreamCreated != created || !o.UpdatedAt.Equal(now) {
		t.Fatalf("after advancing to 70: %+v", o)
	}

	if err := db.RecordProjectionError(ctx, name, "commit: database or disk is full", now); err != nil {
		t.Fatal(err)
	}
	const newer = "2026-02-01T00:00:00.000000000Z"
	if err := db.Update(ctx, func(tx *storage.Tx) error { return tx.ResetOffset(ctx, name, newer) }); err != nil {
		t.Fatal(err)
	}
	all, err := db.Offsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want = storage.Offset{Seq: 0, StreamCreated: newer, LastError: "commit: database or disk is full", LastErrorAt: now}
	if diff := cmp.Diff(map[string]storage.Offset{name: want}, all); diff != "" {
		t.Fatalf("after a reset (-want +got):\n%s", diff)
	}
}

// TestImplausibleDurationsKeepTheRunButNotItsDuration: a run whose clock
// went wrong is stored with its exit code and output, without a duration,
// and stays out of scan_durations in whichever order its messages come.
func TestImplausibleDurationsKeepTheRunButNotItsDuration(t *testing.T) {
	ctx := context.Background()
	exit := int64(0)
	result := func(id, started, finished string) storage.Result {
		return storage.Result{ExecResult: kanade.ExecResult{ResultID: id, RequestID: "q", PcID: "pc", ExitCode: &exit,
			StartedAt: ts(started), FinishedAt: ts(finished), ManifestID: "job", Stdout: "out"},
			RecordedAt: time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC)}
	}
	start := func(id, started string) storage.Started {
		return storage.Started{EventStarted: kanade.EventStarted{ResultID: id, RequestID: "q", PcID: "pc",
			StartedAt: ts(started), ManifestID: "job"}, RecordedAt: time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)}
	}
	results := []storage.Result{
		result("ancient", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
		result("backwards", "2030-01-01T00:00:00Z", "2026-01-01T00:00:02Z"),
		result("long-but-real", "2025-12-02T00:00:00Z", "2026-01-01T00:00:00Z"), // 30 days
		result("normal", "2026-01-01T00:00:00Z", "2026-01-01T00:00:02Z"),
		result("skewed", "2026-01-01T00:00:03Z", "2026-01-01T00:00:02Z"), // clamped to 0
		result("started-wrong", "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"),
	}
	// The started event of started-wrong names a start decades earlier.
	wrong := start("started-wrong", "1990-01-01T00:00:00Z")
	run := func(t *testing.T, startedFirst bool) ([]string, []kanade.ScanDuration, storage.ApplyStats) {
		db := storagetest.Open(t, nil)
		var stats storage.ApplyStats
		steps := []func(tx *storage.Tx) error{
			func(tx *storage.Tx) error { _, err := tx.ApplyStarted(ctx, []storage.Started{wrong}); return err },
			func(tx *storage.Tx) error { var err error; stats, err = tx.ApplyResults(ctx, results); return err },
		}
		if !startedFirst {
			steps[0], steps[1] = steps[1], steps[0]
		}
		for _, s := range steps {
			if err := db.Update(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		var rows []string
		for _, r := range results {
			var dur *int64
			var exit int64
			if err := storage.QueryRowForTest(ctx, db, fmt.Sprintf(`SELECT exit_code, duration_ms FROM execution_results WHERE result_id = '%s'`, r.ResultID), &exit, &dur); err != nil {
				t.Fatal(err)
			}
			d := "NULL"
			if dur != nil {
				d = fmt.Sprint(*dur)
			}
			rows = append(rows, fmt.Sprintf("%s exit=%d duration=%s", r.ResultID, exit, d))
		}
		scan, err := db.ScanDurations(ctx, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		return rows, scan, stats
	}
	wantRows := []string{
		"ancient exit=0 duration=NULL",
		"backwards exit=0 duration=NULL",
		"long-but-real exit=0 duration=2592000000",
		"normal exit=0 duration=2000",
		"skewed exit=0 duration=0",
		"started-wrong exit=0 duration=NULL",
	}
	for _, startedFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("started event first: %v", startedFirst), func(t *testing.T) {
			rows, scan, _ := run(t, startedFirst)
			if diff := cmp.Diff(wantRows, rows); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
			if len(scan) != 1 || scan[0].Count != 3 || scan[0].MaxMs != 2592000000 || scan[0].MinMs != 0 {
				t.Errorf("scan durations = %+v, want the 3 plausible runs of job", scan)
			}
		})
	}
	if _, _, stats := run(t, false); stats.Implausible != 2 {
		t.Errorf("ApplyStats.Implausible = %d, want 2 (ancient, backwards)", stats.Implausible)
	}
}

// TestRecordedAtIsTheFirstMessageInEitherOrder: a result and its started
// event travel on two streams, so either may be applied first, and a result
// may even have been published first. recorded_at is the earlier of the two
// stream times whatever the order.
func TestRecordedAtIsTheFirstMessageInEitherOrder(t *testing.T) {
	ctx := context.Background()
	exit := int64(0)
	res := storage.Result{ExecResult: kanade.ExecResult{ResultID: "r1", RequestID: "q", PcID: "pc", ExitCode: &exit,
		StartedAt: ts("2026-01-01T00:00:00Z"), FinishedAt: ts("2026-01-01T00:00:02Z")},
		RecordedAt: time.Date(2026, 1, 1, 0, 0, 2, 500, time.UTC)}
	started := storage.Started{EventStarted: kanade.EventStarted{ResultID: "r1", RequestID: "q", PcID: "pc",
		StartedAt: ts("2026-01-01T00:00:00Z")}, RecordedAt: time.Date(2026, 1, 1, 0, 0, 9, 0, time.UTC)}
	for _, resultFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("result applied first: %v", resultFirst), func(t *testing.T) {
			db := storagetest.Open(t, nil)
			steps := []func(tx *storage.Tx) error{
				func(tx *storage.Tx) error { _, err := tx.ApplyResults(ctx, []storage.Result{res}); return err },
				func(tx *storage.Tx) error { _, err := tx.ApplyStarted(ctx, []storage.Started{started}); return err },
			}
			if !resultFirst {
				steps[0], steps[1] = steps[1], steps[0]
			}
			for _, s := range steps {
				if err := db.Update(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			var recorded string
			var minutes int64
			if err := storage.QueryRowForTest(ctx, db, `SELECT recorded_at, (SELECT SUM(total) FROM result_minutes) FROM execution_results`, &recorded, &minutes); err != nil {
				t.Fatal(err)
			}
			if recorded != "2026-01-01T00:00:02.000000500Z" || minutes != 1 {
				t.Errorf("recorded_at = %s, result_minutes total = %d; want the result's stream time, counted once", recorded, minutes)
			}
		})
	}
}

// TestHeartbeatsAppliedOutOfOrderEndAsInOrder: two workers share the
// heartbeat subscription, so a PC's beats can reach the database in either
// order; the row must end as if they came in order of `at`.
func TestHeartbeatsAppliedOutOfOrderEndAsInOrder(t *testing.T) {
	ctx := context.Background()
	ptr := func(s string) *string { return &s }
	older := kanade.Heartbeat{PcID: "PC", At: ts("2026-01-01T00:00:00Z"), AgentVersion: "1", Hostname: ptr("first"),
		LastLogonUser: ptr("alice")}
	newer := kanade.Heartbeat{PcID: "PC", At: ts("2026-01-01T00:01:00Z"), AgentVersion: "2", Hostname: ptr("second")}
	const q = `SELECT hostname || '|' || agent_version || '|' || last_heartbeat || '|' || COALESCE(last_logon_user, 'NULL') FROM agents`
	var want string
	for i, order := range [][]kanade.Heartbeat{{older, newer}, {newer, older}} {
		db := storagetest.Open(t, nil)
		for _, h := range order {
			if err := db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, []kanade.Heartbeat{h}) }); err != nil {
				t.Fatal(err)
			}
		}
		var got string
		if err := storage.QueryRowForTest(ctx, db, q, &got); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			want = got
			if want != "first|2|2026-01-01T00:01:00.000000000Z|alice" {
				t.Fatalf("in order: %s", want)
			}
		} else if got != want {
			t.Errorf("newer beat first gave %s, want %s", got, want)
		}
	}
}
