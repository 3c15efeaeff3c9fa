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
// The writer's own checkpoint is 128 MiB out (writerPragmas), so the file
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
