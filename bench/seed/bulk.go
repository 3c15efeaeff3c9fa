package seed

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
)

// bulkVersion names the bulk files; bump it when Bulk's output changes.
const bulkVersion = "bulk-v2"

// bulkRowsPerStatement is the rows of one multi-row INSERT: 17 columns each,
// under SQLite's 32766 bound variables.
const bulkRowsPerStatement = 1000

// bulkRowsPerCommit is the rows of one write transaction while loading.
const bulkRowsPerCommit = 500_000

// BulkCached returns the path of a SQLite file holding the data set of Each
// for (n, jobs) and agents PCs (heartbeats at Now, spread over the 10 minutes
// before it): os.TempDir()/kanade-bench-<schema hash>-bulk-v2-<n>-<agents>a.db.
// A schema or summary-format change gives a new name, so a stale file is
// never used as it is. But the rows are what bulkVersion says whatever the
// schema, and a 10M-run load takes most of an hour: a file of the same
// rows under an older schema (upgradable) is copied and brought forward
// instead, by the real migrations and RebuildDurations, as a deployed
// database would be. Only when there is none is the data set loaded by Bulk.
func BulkCached(ctx context.Context, n, jobs, agents int, log func(format string, args ...any)) (string, error) {
	rows := fmt.Sprintf("%s-%d-%da", bulkVersion, n, agents)
	if jobs != 200 {
		rows += fmt.Sprintf("-%dj", jobs)
	}
	path := filepath.Join(os.TempDir(), "kanade-bench-"+storage.SchemaHash()+"-"+rows+".db")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	build := func() error { return Bulk(ctx, tmp, n, jobs, agents, log) }
	if old := upgradable(ctx, rows, log); old != "" {
		build = func() error { return Upgrade(ctx, old, tmp, log) }
	}
	if err := build(); err != nil {
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			os.Remove(tmp + suffix)
		}
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return path, nil
}

// upgradable returns the newest cached file of the rows under another
// schema whose applied migrations are all among storage's (an older schema
// of this line, not a branch's), or "".
func upgradable(ctx context.Context, rows string, log func(format string, args ...any)) string {
	paths, _ := filepath.Glob(filepath.Join(os.TempDir(), "kanade-bench-*-"+rows+".db"))
	known := map[string]bool{}
	for _, v := range storage.MigrationVersions() {
		known[v] = true
	}
	best, bestTime := "", time.Time{}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() || !st.ModTime().After(bestTime) {
			continue
		}
		applied, err := appliedMigrations(ctx, p)
		if err != nil {
			log("bulk: cannot reuse %s: %v", p, err)
			continue
		}
		ok := len(applied) > 0
		for _, v := range applied {
			ok = ok && known[v]
		}
		if ok {
			best, bestTime = p, st.ModTime()
		}
	}
	return best
}

// appliedMigrations reads the schema_migrations of the SQLite file at path,
// read-only.
func appliedMigrations(ctx context.Context, path string) ([]string, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Upgrade copies the bulk file at old (with its WAL, if a benchmark left
// one) to path, never writing old, and brings the copy to the current
// schema: storage.Open's migrations; then, if there was none to apply,
// RebuildDurations (the summaries are derived from the rows, and their
// encoding may change without a migration; a migration that changes it
// rebuilds them itself, with the same code, and a second pass over 10M rows
// would cost ten minutes); then one file without a WAL beside it, as Bulk
// leaves it.
func Upgrade(ctx context.Context, old, path string, log func(format string, args ...any)) error {
	start := time.Now()
	for _, suffix := range []string{"", "-wal"} {
		if err := CopyFile(old+suffix, path+suffix); err != nil && !(suffix != "" && errors.Is(err, os.ErrNotExist)) {
			return fmt.Errorf("bulk: copy %s: %w", old, err)
		}
	}
	log("bulk: copied %s in %v; migrations and summaries next", old, time.Since(start).Round(time.Second))
	applied, err := appliedMigrations(ctx, path)
	if err != nil {
		return fmt.Errorf("bulk: %w", err)
	}
	db, err := storage.Open(ctx, path, storage.Options{Clock: func() time.Time { return Now }})
	if err != nil {
		return fmt.Errorf("bulk: migrate %s: %w", path, err)
	}
	log("bulk: %d migrations applied at %v", len(storage.MigrationVersions())-len(applied), time.Since(start).Round(time.Second))
	if len(applied) == len(storage.MigrationVersions()) {
		err = db.RebuildDurations(ctx)
	}
	if err := errors.Join(err, db.Close()); err != nil {
		return fmt.Errorf("bulk: %w", err)
	}
	if err := checkpoint(ctx, path); err != nil {
		return err
	}
	log("bulk: %s brought to schema %s in %v", path, storage.SchemaHash(), time.Since(start).Round(time.Second))
	return nil
}

// CopyFile copies src to a new file dst (a reflink or an in-kernel copy
// where the file system offers one: os.File.ReadFrom).
func CopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := out.ReadFrom(in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// checkpoint folds the WAL into the file at path and leaves it in rollback
// journal mode: one file, no WAL beside it.
func checkpoint(ctx context.Context, path string) error {
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	_, err = raw.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	if err == nil {
		_, err = raw.ExecContext(ctx, `PRAGMA journal_mode=DELETE`)
	}
	if err := errors.Join(err, raw.Close()); err != nil {
		return fmt.Errorf("bulk: checkpoint: %w", err)
	}
	return nil
}

// Bulk writes the rows of Each (n runs of jobs jobs) into a new SQLite file
// at path the fast way, for sizes the write path would take an hour over:
// the schema comes from storage.Open's migrations, then, with the journal
// off and no fsync, the rows go in as 1000-row INSERTs in transactions of
// 500k rows while execution_results has no secondary index (each is built
// afterwards, one sort instead of 10M random inserts). The counter triggers
// stay, so the rollups match the rows. The duration summaries are then
// built by storage's RebuildDurations and the roster written by
// UpsertHeartbeats, both the real code. The columns are the ones
// ApplyResults writes for these results (no stdout, stderr, version,
// expiry or parent).
func Bulk(ctx context.Context, path string, n, jobs, agents int, log func(format string, args ...any)) error {
	start := time.Now()
	db, err := storage.Open(ctx, path, storage.Options{Clock: func() time.Time { return Now }})
	if err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	raw.SetMaxOpenConns(1)
	defer raw.Close()
	for _, p := range []string{`PRAGMA journal_mode=OFF`, `PRAGMA synchronous=OFF`, `PRAGMA cache_size=-1048576`, `PRAGMA temp_store=MEMORY`} {
		if _, err := raw.ExecContext(ctx, p); err != nil {
			return fmt.Errorf("bulk %s: %w", p, err)
		}
	}
	// The insert triggers go too (their upserts, one per row, cost as much
	// as the row), and their tables are filled by one GROUP BY afterwards:
	// the same rollups, as migration 0002 backfills job_completions.
	var ddl []string
	rows, err := raw.QueryContext(ctx, `SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'execution_results' AND sql IS NOT NULL
		AND (type = 'index' OR name IN ('execution_results_counters_insert', 'job_completions_insert'))`)
	if err != nil {
		return err
	}
	var drops []string
	for rows.Next() {
		var typ, name, q string
		if err := rows.Scan(&typ, &name, &q); err != nil {
			rows.Close()
			return err
		}
		drops, ddl = append(drops, `DROP `+strings.ToUpper(typ)+` `+name), append(ddl, q)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for _, q := range drops {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("bulk: %s: %w", q, err)
		}
	}
	const cols = 17
	full := `INSERT INTO execution_results
		(result_id, request_id, exec_id, pc_id, job_id, version, exit_code, skipped, stdout, stderr,
		 started_at, finished_at, recorded_at, expires_at, reaped, parent_result_id, duration_ms) VALUES ` +
		strings.TrimSuffix(strings.Repeat("("+strings.TrimSuffix(strings.Repeat("?,", cols), ",")+"),", bulkRowsPerStatement), ",")
	tx, err := raw.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	stmt, err := tx.PrepareContext(ctx, full)
	if err != nil {
		return err
	}
	args := make([]any, 0, cols*bulkRowsPerStatement)
	inTx, loaded := 0, 0
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		var err error
		if len(args) == cap(args) {
			_, err = stmt.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, full[:strings.Index(full, "VALUES ")+7]+
				strings.TrimSuffix(strings.Repeat("("+strings.TrimSuffix(strings.Repeat("?,", cols), ",")+"),", len(args)/cols), ","), args...)
		}
		args = args[:0]
		return err
	}
	err = Each(n, jobs, func(batch []storage.Result) error {
		for _, r := range batch {
			var dur any
			if d := r.FinishedAt.Sub(r.StartedAt.Time); d <= storage.MaxRunDuration && d >= -storage.MaxRunDuration {
				dur = kanade.DurationMillis(r.StartedAt.Time, r.FinishedAt.Time)
			}
			skipped := 0
			if r.Skipped {
				skipped = 1
			}
			args = append(args, r.ResultID, r.RequestID, r.ExecID, r.PcID, r.ManifestID, nil, *r.ExitCode, skipped, r.Stdout, r.Stderr,
				kanade.FormatTime(r.StartedAt.Time), kanade.FormatTime(r.FinishedAt.Time), kanade.FormatTime(r.RecordedAt),
				nil, 0, nil, dur)
			if len(args) == cap(args) {
				if err := flush(); err != nil {
					return fmt.Errorf("bulk insert: %w", err)
				}
			}
		}
		inTx += len(batch)
		loaded += len(batch)
		if inTx >= bulkRowsPerCommit {
			if err := flush(); err != nil {
				return fmt.Errorf("bulk insert: %w", err)
			}
			if err := stmt.Close(); err != nil {
				return err
			}
			if err := tx.Commit(); err != nil {
				return err
			}
			log("bulk: %d rows in %v", loaded, time.Since(start).Round(time.Second))
			inTx = 0
			if tx, err = raw.BeginTx(ctx, nil); err != nil {
				return err
			}
			if stmt, err = tx.PrepareContext(ctx, full); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("bulk insert: %w", err)
	}
	if err := errors.Join(stmt.Close(), tx.Commit()); err != nil {
		return err
	}
	log("bulk: %d rows loaded in %v; rollups and %d indexes and triggers next", loaded, time.Since(start).Round(time.Second), len(ddl))
	for _, q := range []string{
		`INSERT INTO result_minutes (minute, total, failed)
		 SELECT substr(recorded_at, 1, 16), COUNT(*), SUM(exit_code IS NOT NULL AND exit_code <> 0 AND skipped = 0)
		   FROM execution_results GROUP BY 1`,
		`INSERT INTO job_completions (job_id, pc_id, finished_at)
		 SELECT job_id, pc_id, MAX(finished_at) FROM execution_results
		  WHERE exit_code = 0 AND skipped = 0 AND finished_at IS NOT NULL AND job_id IS NOT NULL AND pc_id IS NOT NULL
		  GROUP BY job_id, pc_id`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("bulk: rollups: %w", err)
		}
	}
	for _, q := range ddl {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("bulk: %s: %w", q, err)
		}
	}
	if err := raw.Close(); err != nil {
		return err
	}
	log("bulk: indexes built at %v; summaries and %d agents next", time.Since(start).Round(time.Second), agents)

	db, err = storage.Open(ctx, path, storage.Options{Clock: func() time.Time { return Now }})
	if err != nil {
		return err
	}
	err = db.RebuildDurations(ctx)
	if err == nil {
		err = seedAgents(ctx, db, agents)
	}
	if err := errors.Join(err, db.Close()); err != nil {
		return fmt.Errorf("bulk: %w", err)
	}
	if err := checkpoint(ctx, path); err != nil {
		return err
	}
	log("bulk: %d runs, %d agents in %v", loaded, agents, time.Since(start).Round(time.Second))
	return nil
}

// seedAgents writes the roster pc-00000… through UpsertHeartbeats (the
// runs' PCs are its first Agents), beats spread over the 10 minutes before
// Now: a fifth within the 2-minute stale threshold.
func seedAgents(ctx context.Context, db *storage.DB, agents int) error {
	beats := make([]kanade.Heartbeat, agents)
	for i := range beats {
		id := fmt.Sprintf("pc-%05d", i)
		beats[i] = kanade.Heartbeat{PcID: id, Hostname: &id, AgentVersion: "0.43.56",
			At: kanade.Timestamp{Time: Now.Add(-time.Duration(i*7%600) * time.Second)}}
	}
	for chunk := range slices.Chunk(beats, 5000) {
		if err := db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, chunk) }); err != nil {
			return fmt.Errorf("agents: %w", err)
		}
	}
	return nil
}
