package storage_test

import (
	"context"
	"encoding/binary"
	"io"
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
//
// How far past the limit the file gets depends on how long a checkpoint
// takes, and that is mostly fsync: with another process syncing beside it
// (CI, other test packages; here a dd loop) the file reached 10–38 MB in
// the time 24 MB of rows were written, and one checkpoint could outlast
// the whole test. So the test counts the restarts (the WAL header's
// checkpoint sequence number, which SQLite raises each time it starts the
// file over) and writes on until it has seen three, up to 120 MB of rows
// (about 190 MB of WAL frames): below the writer's own backstop (256 MiB),
// far beyond what any restart lets the WAL reach.
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
	seqs := map[uint32]bool{}
	restarts := func() int { return len(seqs) - 1 }
	for i := 0; written < 24<<20 || restarts() < 3 && written < 120<<20; i++ {
		if err := db.Update(ctx, func(tx *storage.Tx) error { // as every writer of the backend does
			_, err := tx.Exec(ctx, `WITH RECURSIVE s(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM s WHERE k < 20)
				INSERT INTO w (i, v) SELECT ? * 1000 + k, ? FROM s`, i, strings.Repeat("y", 1000))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		written += 20 * 1000
		if size, seq, ok := walHeader(path + "-wal"); ok {
			largest = max(largest, size)
			seqs[seq] = true
		}
	}
	close(stop)
	<-readerDone
	t.Logf("largest WAL %d bytes for %d written; started over %d times", largest, written, restarts())
	if restarts() < 3 {
		t.Errorf("the WAL was started over %d times while %d bytes were written, with a limit of 1 MiB", restarts(), written)
	}
}

// walHeader returns a WAL file's size and the checkpoint sequence number
// in its header (bytes 12–15, big-endian; SQLite raises it each time it
// starts the file over). ok is false when the file has no header yet.
func walHeader(path string) (size int64, seq uint32, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	var h [16]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return 0, 0, false
	}
	st, err := f.Stat()
	if err != nil {
		return 0, 0, false
	}
	return st.Size(), binary.BigEndian.Uint32(h[12:16]), true
}
