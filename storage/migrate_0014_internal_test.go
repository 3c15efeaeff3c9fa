package storage

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Migration 0014 moves the skipped runs an execution already counted (by
// exit code, in success_count or failure_count) to skipped_count, so an
// upgraded database agrees with a recount as a new one does.
func TestMigration0014MovesCountedSkipsToTheirCounter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := fs.Glob(migrations, "migrations/*.sql")
	sort.Strings(names)
	if _, err := raw.ExecContext(ctx, `CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		version := strings.TrimSuffix(filepath.Base(name), ".sql")
		if version >= "0014" {
			break
		}
		body, _ := migrations.ReadFile(name)
		if _, err := raw.ExecContext(ctx, string(body)); err != nil {
			t.Fatalf("%s: %v", version, err)
		}
		if _, err := raw.ExecContext(ctx, `INSERT INTO schema_migrations VALUES (?, 'x')`, version); err != nil {
			t.Fatal(err)
		}
	}
	// Before 0014: e1 has ok, failed, a skip with exit 125 and one with
	// exit 0, counted by exit code (ok 2, failed 2); e2 has no skip.
	for _, q := range []string{
		`INSERT INTO executions (exec_id, target_count, success_count, failure_count, status) VALUES ('e1', 4, 2, 2, 'completed'), ('e2', 2, 1, 1, 'completed')`,
		`INSERT INTO execution_results (result_id, exec_id, pc_id, exit_code, skipped, started_at, finished_at, recorded_at) VALUES
			('a', 'e1', 'p1', 0, 0, 't', 't', 't'), ('b', 'e1', 'p2', 3, 0, 't', 't', 't'),
			('c', 'e1', 'p3', 125, 1, 't', 't', 't'), ('d', 'e1', 'p4', 0, 1, 't', 't', 't'),
			('e', 'e2', 'p1', 0, 0, 't', 't', 't'), ('f', 'e2', 'p2', -1, 0, 't', 't', 't')`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for id, want := range map[string][3]int64{"e1": {1, 1, 2}, "e2": {1, 1, 0}} {
		e, err := db.GetExecution(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got := [3]int64{e.SuccessCount, e.FailureCount, e.SkippedCount}; got != want {
			t.Errorf("%s: ok, failed, skipped = %v, want %v", id, got, want)
		}
	}
}
