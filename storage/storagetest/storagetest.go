// Package storagetest opens real databases for tests: a fresh SQLite file by
// default, or, when KANADE_TEST_SQLD names a sqld binary, a fresh libSQL
// server started for the test on loopback (what .ci/run does), so every store
// test also runs against a real remote database.
package storagetest

import (
	"context"
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
	db, err := storage.Open(context.Background(), dsn, storage.Options{Clock: clock})
	if err != nil {
		tb.Fatalf("open %s: %v", storage.Redact(dsn), err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// DSN returns the DSN of a fresh, empty database for this test.
func DSN(tb testing.TB) string {
	tb.Helper()
	if url := startSQLD(tb); url != "" {
		return url
	}
	return filepath.Join(tb.TempDir(), "kanade.db")
}
