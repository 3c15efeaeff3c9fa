package storage

import "context"

// QueryRowForTest reads one row through the read pool.
func QueryRowForTest(ctx context.Context, db *DB, q string, dest ...any) error {
	return db.read.QueryRowContext(ctx, q).Scan(dest...)
}
