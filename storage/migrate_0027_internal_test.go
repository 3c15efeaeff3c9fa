package storage

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
)

// Migration 0027 drops the per-key history indexes the projector used to
// create (their names are the schema's only record of them) and keeps
// the ones fleet.md prescribes.
func TestMigration0027DropsTheProjectorsIdentityIndexes(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "k.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE INDEX "inventory_history_identity_name_1f2e3d4c" ON inventory_history (job_id, json_extract(identity_json, '$.name'), field_path, observed_at)`,
		`CREATE INDEX "inventory_history_identity_Name_5a6b7c8d" ON inventory_history (job_id, json_extract(identity_json, '$.Name'), field_path, observed_at)`,
		`CREATE INDEX inventory_historyXidentity_kept ON inventory_history (pc_id)`, // LIKE's _ is escaped
		`DELETE FROM schema_migrations WHERE version = '0027_history_identity_index'`,
	} {
		if _, err := db.write.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := StringsForTest(ctx, db, `SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'inventory_history' AND sql IS NOT NULL ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"inventory_historyXidentity_kept", "inventory_history_job_field_identity", "inventory_history_job_field_observed",
		"inventory_history_observed", "inventory_history_pc_observed"}
	if !slices.Equal(got, want) {
		t.Errorf("indexes after 0027: %q, want %q", got, want)
	}
	key, err := StringsForTest(ctx, db, `SELECT name FROM pragma_index_info('inventory_history_job_field_identity') ORDER BY seqno`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"job_id", "field_path", "identity_json", "observed_at"}; !slices.Equal(key, want) {
		t.Errorf("the identity index is on %q, want %q", key, want)
	}
}
