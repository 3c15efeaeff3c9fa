// Package storagetest opens real databases for tests: a fresh SQLite file by
// default, or, when KANADE_TEST_SQLD names a sqld binary, a fresh libSQL
// server started for the test on loopback (what .ci/run does), so every store
// test also runs against a real remote database.
package storagetest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/storage"
)

// Open returns a migrated, empty database that is closed when the test ends.
// clock may be nil (wall clock).
func Open(tb testing.TB, clock func() time.Time) *storage.DB {
	tb.Helper()
	dsn := DSN(tb)
	if filepath.IsAbs(dsn) {
		// A copy of the migrated template: Open below then finds nothing to
		// migrate (one read). If the template cannot be had, the file is
		// migrated from empty as before.
		if tmpl, err := template(); err == nil && copyFile(tmpl, dsn) != nil {
			os.Remove(dsn) // half a copy: migrate from empty instead
		}
	}
	db, err := storage.Open(context.Background(), dsn, storage.Options{Clock: clock})
	if err != nil {
		tb.Fatalf("open %s: %v", storage.Redact(dsn), err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// DSN returns the DSN of a fresh database with no rows for this test: a path
// where no file is yet, or the URL of a sqld whose database is already
// migrated (startSQLD), which storage.Open then finds nothing to do in.
func DSN(tb testing.TB) string {
	tb.Helper()
	if url := startSQLD(tb); url != "" {
		return url
	}
	return filepath.Join(tb.TempDir(), "kanade.db")
}

// template returns the migrated template: an empty SQLite file with every
// migration applied, made once per schema (named by storage.SchemaHash, so a
// new migration makes a new one) in the temporary directory and shared by
// every test process of the machine. Migrating a fresh file costs 30 ms, and
// under the race detector ten times that, since modernc's SQLite is Go and
// every statement of every migration runs instrumented; copying the file
// costs a millisecond. It is looked up at every call, not remembered: a test
// may point TMPDIR at a directory of its own that is gone after it.
func template() (string, error) {
	path := filepath.Join(os.TempDir(), "kanade-storagetest-"+storage.SchemaHash()+".db")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	return makeTemplate(path)
}

// makeTemplate migrates a new file beside path and renames it there, so
// test processes racing to make it each see a whole file or none.
func makeTemplate(path string) (string, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), "kanade-storagetest-making-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "template.db")
	db, err := storage.Open(context.Background(), tmp, storage.Options{})
	if err != nil {
		return "", err
	}
	// Closing the last connection checkpoints the WAL into the file and
	// removes it; a WAL still there would hold part of the schema.
	if err := db.Close(); err != nil {
		return "", err
	}
	if _, err := os.Stat(tmp + "-wal"); err == nil {
		return "", fmt.Errorf("template %s: the WAL outlived the close", tmp)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return path, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Small reports whether a database call costs many times what it does on
// plain SQLite: under the race detector (the pure-Go SQLite runs ~30×
// slower, and the detector finds nothing more in a bigger sample) or over
// a sqld (a loopback round trip per statement). The tests that check
// answers from one goroutine skip under the detector (AnswersOnly) and take
// a smaller sample over sqld; the others that are costly take it in both.
func Small() bool { return race || os.Getenv(EnvSQLD) != "" }

// AnswersOnly skips t under the race detector. It marks a brute-force
// reference test that checks answers from one goroutine: the detector finds
// races between goroutines, and there are none to find in it, while the
// pure-Go SQLite under the detector turns its 1–3 s into 20–60 s (several
// seconds even with SQLite's own code uninstrumented, as scripts/test
// builds it). The pass without the detector (scripts/test's second, `go
// test ./storage ./bench/seed`) runs it in full, and over sqld it runs at
// Small's size.
// The costly ones also call t.Parallel, each on its own database: over sqld
// a test spends half its time waiting for round trips, and two at once
// took storage's pass on sqld from 230 s to 170 s on an idle machine.
func AnswersOnly(t testing.TB) {
	t.Helper()
	if race {
		t.Skip("answers only, no goroutines: run in full by the pass without -race (just test)")
	}
}

// Sample is full, or small when Small.
func Sample(full, small int) int {
	if Small() {
		return small
	}
	return full
}
