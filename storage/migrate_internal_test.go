package storage

import (
	"context"
	"io/fs"
	"path/filepath"
	"testing"
)

// TestAReopenedDatabaseIsSeenUpToDateInOneRead: the short path of migrate
// (one read, the common case at every start) is taken only when every
// migration is recorded; any gap sends it to the careful path.
func TestAReopenedDatabaseIsSeenUpToDateInOneRead(t *testing.T) {
	ctx := context.Background()
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("migrations: %v %v", names, err)
	}
	path := filepath.Join(t.TempDir(), "k.db")
	fresh, err := openSQLite(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fresh.upToDate(ctx, names) {
		t.Error("a database without schema_migrations is up to date")
	}
	fresh.Close()
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if !db.upToDate(ctx, names) {
		t.Error("a migrated database is not up to date")
	}
	last := names[len(names)-1]
	version := last[len("migrations/") : len(last)-len(".sql")]
	if _, err := db.write.ExecContext(ctx, `DELETE FROM schema_migrations WHERE version = ?`, version); err != nil {
		t.Fatal(err)
	}
	if db.upToDate(ctx, names) {
		t.Errorf("up to date without %s recorded", version)
	}
}
