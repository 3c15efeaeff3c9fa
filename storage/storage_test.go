package storage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// MustOpenDB opens a fresh SQLite file in a temp dir, or the database named
// by KANADE_TEST_DB (a libSQL URL, used by .ci/run against a real sqld).
func MustOpenDB(tb testing.TB, clock func() time.Time) *storage.DB {
	tb.Helper()
	dsn := storagetest.DSN(tb)
	db, err := storage.Open(context.Background(), dsn, storage.Options{Clock: clock})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func TestOpenMigratesTwice(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		db, err := storage.Open(ctx, dir+"/sub/k.db", storage.Options{})
		if err != nil {
			t.Fatalf("open #%d: %v", i, err)
		}
		if err := db.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
}

func TestUpsertFiresUpdateTriggerOnly(t *testing.T) {
	db := MustOpenDB(t, nil)
	ctx := context.Background()
	up := func(pc, at string) {
		t.Helper()
		err := db.Update(ctx, func(tx *storage.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES (?, ?, ?)
				ON CONFLICT (pc_id) DO UPDATE SET last_heartbeat = excluded.last_heartbeat`, pc, at, at)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	up("a", "2026-01-01T00:00:01.000000000Z")
	up("a", "2026-01-01T00:05:01.000000000Z")
	up("b", "2026-01-01T00:05:02.000000000Z")
	var known, minutes, inMinute int
	if err := storage.QueryRowForTest(ctx, db, `SELECT (SELECT value FROM fleet_counters WHERE name='agents'), (SELECT COUNT(*) FROM agent_version_minutes), (SELECT SUM(agents) FROM agent_version_minutes WHERE minute='2026-01-01T00:05')`, &known, &minutes, &inMinute); err != nil {
		t.Fatal(err)
	}
	if known != 2 || minutes != 1 || inMinute != 2 {
		t.Fatalf("known=%d minutes=%d inMinute=%d, want 2 1 2", known, minutes, inMinute)
	}
}

// TestReadersMapTheFile checks that the read pool's connections map the
// database file (db.go, readerPragmas): scan_durations and the searches read
// their pages through the map instead of a pread into a page cache that
// another connection's commit empties; and that this cache stays small.
func TestReadersMapTheFile(t *testing.T) {
	db := storagetest.Open(t, nil)
	if db.Remote() {
		t.Skip("a SQLite setting")
	}
	n, err := storage.CountForTest(t.Context(), db, `PRAGMA mmap_size`)
	if err != nil {
		t.Fatal(err)
	}
	if n < 1<<30 {
		t.Fatalf("a read connection maps %d bytes of the file, want the build's most (2 GiB)", n)
	}
	// And keeps a small page cache, which every commit of the writer empties
	// (db.go, readerPragmas): negative is KiB, positive pages of 4 KiB.
	c, err := storage.CountForTest(t.Context(), db, `PRAGMA cache_size`)
	if err != nil {
		t.Fatal(err)
	}
	if c < -2048 || c > 512 {
		t.Fatalf("a read connection's page cache is cache_size=%d, want at most 2 MiB", c)
	}
}

// TestUpdateCanceledBeforeCommitSaysSo ends the context of an Update after
// its work and before its commit, once database/sql has rolled the
// transaction back: the error must be the cancellation (a caller that
// stops its writer checks for it), not only "transaction done".
func TestUpdateCanceledBeforeCommitSaysSo(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	err := db.Update(ctx, func(tx *storage.Tx) error {
		cancel()
		time.Sleep(50 * time.Millisecond) // database/sql's rollback on ctx's end
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Update after its context ended: %v, want context.Canceled", err)
	}
}
