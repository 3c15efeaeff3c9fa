package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/storage"
)

// TestWALIsCheckpointedBesideTheWriter: 8 MB written in one transaction
// stays in the WAL until something copies it back into the database file.
// The writer's own checkpoint is 256 MiB out (walAutocheckpoint), so the file
// grows only if the checkpointer copies it beside the writer.
func TestWALIsCheckpointedBesideTheWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ckpt.db")
	db, err := storage.Open(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustExec(t, db, `CREATE TABLE ckpt (i INTEGER PRIMARY KEY, v TEXT)`)
	mustExec(t, db, `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20000)
		INSERT INTO ckpt (i, v) SELECT i, ? FROM s`, strings.Repeat("x", 400))
	const want = 8 << 20
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d bytes 30 s after 8 MB were committed: nothing copies the WAL back beside the writer", st.Size())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var n int64
	if err := storage.QueryRowForTest(ctx, db, `SELECT COUNT(*) FROM ckpt`, &n); err != nil || n != 20000 {
		t.Fatalf("rows %d, %v", n, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil { // the checkpointer stops once
		t.Fatal(err)
	}
}

// TestTheWritersCheckpointLiesBeyondTheCheckpointers: the checkpointer
// starts the WAL over at twice its limit whatever the readers pinned; the
// writer's own checkpoint, the backstop, must not be met first, or the
// commit that meets it copies and syncs the whole WAL under the projector.
func TestTheWritersCheckpointLiesBeyondTheCheckpointers(t *testing.T) {
	db, err := storage.Open(t.Context(), filepath.Join(t.TempDir(), "k.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n, err := storage.WriterPragmaForTest(t.Context(), db, "wal_autocheckpoint")
	if err != nil {
		t.Fatal(err)
	}
	if n <= 2*storage.WALRestartFramesForTest {
		t.Errorf("the writer checkpoints at %d pages, not beyond the checkpointer's restart at %d", n, 2*storage.WALRestartFramesForTest)
	}
}

// TestWALStaysBoundedUnderAWriterThatNeverPauses: a writer committing
// back to back with readers beside it (the projector under a backlog,
// HTTP reads) leaves the checkpointer a commit behind, and PASSIVE alone
// never let SQLite start the WAL over: it grew by everything written. The
// checkpointer starts it over past its limit (here 256 pages, 1 MiB).
func TestWALStaysBoundedUnderAWriterThatNeverPauses(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bounded.db")
	var opts storage.Options
	storage.CheckpointForTest(&opts, 20*time.Millisecond, 256)
	db, err := storage.Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustExec(t, db, `CREATE TABLE w (i INTEGER PRIMARY KEY, v TEXT)`)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() { // readers polling, as the projector's offset and the API do
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var n int64
			_ = storage.QueryRowForTest(ctx, db, `SELECT COUNT(*) FROM w WHERE i > 0 AND i < 50`, &n)
		}
	}()
	written, largest := int64(0), int64(0)
	for i := 0; written < 24<<20; i++ {
		if err := db.Update(ctx, func(tx *storage.Tx) error { // as every writer of the backend does
			_, err := tx.Exec(ctx, `WITH RECURSIVE s(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM s WHERE k < 20)
				INSERT INTO w (i, v) SELECT ? * 1000 + k, ? FROM s`, i, strings.Repeat("y", 1000))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		written += 20 * 1000
		if st, err := os.Stat(path + "-wal"); err == nil {
			largest = max(largest, st.Size())
		}
	}
	close(stop)
	<-readerDone
	// 1 MiB of limit, what a tick lets the writer add past it, and the
	// passes that gave up waiting: far below the 24 MB written.
	if largest > 8<<20 {
		t.Errorf("the WAL reached %d bytes while %d were written: it is not started over", largest, written)
	}
	t.Logf("largest WAL %d bytes for %d written", largest, written)
}
