package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kanade-fleet/backend"
)

// Offset is a projection's position in its stream, kept in consumer_offsets
// and written in the same transaction as the rows of the messages it covers,
// so the database alone says which messages are applied.
type Offset struct {
	// Seq is the stream sequence up to which every message is applied.
	Seq uint64
	// StreamCreated is the creation time of the stream Seq counts in
	// (kanade.TimeLayout text); empty before the projector recorded it.
	StreamCreated string
	// UpdatedAt is when Seq last moved; zero if it never did.
	UpdatedAt time.Time
	// LastError and LastErrorAt are the projector's most recent failure.
	LastError   string
	LastErrorAt time.Time
}

const offsetCols = `stream_seq, stream_created, updated_at, last_error, last_error_at`

func scanOffset(sc interface{ Scan(...any) error }) (Offset, error) {
	var (
		o                           Offset
		seq                         int64
		created, updated, lastError sql.NullString
		lastErrorAt                 sql.NullString
	)
	if err := sc.Scan(&seq, &created, &updated, &lastError, &lastErrorAt); err != nil {
		return Offset{}, err
	}
	o.Seq = uint64(seq)
	o.StreamCreated = created.String
	o.LastError = lastError.String
	var err error
	if updated.Valid && seq > 0 {
		if o.UpdatedAt, err = kanade.ParseTime(updated.String); err != nil {
			return Offset{}, fmt.Errorf("stored updated_at: %w", err)
		}
	}
	if lastErrorAt.Valid {
		if o.LastErrorAt, err = kanade.ParseTime(lastErrorAt.String); err != nil {
			return Offset{}, fmt.Errorf("stored last_error_at: %w", err)
		}
	}
	return o, nil
}

// Offset returns the position of projection name (the zero Offset if it has
// none yet).
func (db *DB) Offset(ctx context.Context, name string) (Offset, error) {
	o, err := scanOffset(db.read.QueryRowContext(ctx, `SELECT `+offsetCols+` FROM consumer_offsets WHERE consumer = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Offset{}, nil
	}
	if err != nil {
		return Offset{}, fmt.Errorf("projection %s offset: %w", name, err)
	}
	return o, nil
}

// offsetsSQL reads every projection's offset (Offsets).
const offsetsSQL = `SELECT consumer, ` + offsetCols + ` FROM consumer_offsets`

// Offsets returns every projection's position, by name.
func (db *DB) Offsets(ctx context.Context) (map[string]Offset, error) {
	rows, err := db.cachedOn(ctx, db.rollup, offsetsSQL)
	if err != nil {
		return nil, fmt.Errorf("projection offsets: %w", err)
	}
	defer rows.Close()
	out := map[string]Offset{}
	for rows.Next() {
		var name string
		o, err := scanOffset(scanFunc(func(dest ...any) error { return rows.Scan(append([]any{&name}, dest...)...) }))
		if err != nil {
			return nil, fmt.Errorf("projection offsets: %w", err)
		}
		out[name] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("projection offsets: %w", err)
	}
	return out, nil
}

type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

// Offset returns the position of projection name inside the transaction.
func (tx *Tx) Offset(ctx context.Context, name string) (Offset, error) {
	o, err := scanOffset(tx.tx.QueryRowContext(ctx, `SELECT `+offsetCols+` FROM consumer_offsets WHERE consumer = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Offset{}, nil
	}
	if err != nil {
		return Offset{}, fmt.Errorf("projection %s offset: %w", name, err)
	}
	return o, nil
}

// Advance moves projection name's offset to seq, in this transaction, unless
// it is already further: several workers may project the same stream, and
// one that commits late must not move the offset back over what another
// applied. streamCreated is recorded when the offset has none yet.
func (tx *Tx) Advance(ctx context.Context, name string, seq uint64, streamCreated string) error {
	_, err := tx.tx.ExecContext(ctx, `INSERT INTO consumer_offsets (consumer, stream_seq, updated_at, stream_created)
		VALUES (?, ?, ?, ?)
		ON CONFLICT (consumer) DO UPDATE SET
		    stream_seq = excluded.stream_seq, updated_at = excluded.updated_at,
		    stream_created = COALESCE(consumer_offsets.stream_created, excluded.stream_created)
		WHERE excluded.stream_seq > consumer_offsets.stream_seq`,
		name, int64(seq), kanade.FormatTime(tx.now), nullString(streamCreated))
	if err != nil {
		return fmt.Errorf("advance projection %s to %d: %w", name, seq, err)
	}
	return nil
}

// ResetOffset starts projection name over at the beginning of the stream
// created at streamCreated (the old stream is gone, and its sequence numbers
// mean nothing in the new one).
func (tx *Tx) ResetOffset(ctx context.Context, name, streamCreated string) error {
	_, err := tx.tx.ExecContext(ctx, `INSERT INTO consumer_offsets (consumer, stream_seq, updated_at, stream_created)
		VALUES (?, 0, ?, ?)
		ON CONFLICT (consumer) DO UPDATE SET stream_seq = 0, updated_at = excluded.updated_at,
		    stream_created = excluded.stream_created`,
		name, kanade.FormatTime(tx.now), nullString(streamCreated))
	if err != nil {
		return fmt.Errorf("reset projection %s: %w", name, err)
	}
	return nil
}

// ForgetAuditSeqs releases the stream sequences audit_log rows are keyed by,
// for an AUDIT stream that was created anew: its sequences restart at 1 and
// would otherwise collide with the old entries and be dropped as repeats.
func (tx *Tx) ForgetAuditSeqs(ctx context.Context) error {
	if _, err := tx.tx.ExecContext(ctx, `UPDATE audit_log SET stream_seq = NULL WHERE stream_seq IS NOT NULL`); err != nil {
		return fmt.Errorf("forget audit stream sequences: %w", err)
	}
	return nil
}

// RecordProjectionError keeps the projector's latest failure for the fleet
// rollup. It is best effort by nature: when the database is what failed, it
// fails too, and the worker's own readiness and metrics carry the error.
func (db *DB) RecordProjectionError(ctx context.Context, name, msg string, at time.Time) error {
	return db.Update(ctx, func(tx *Tx) error {
		_, err := tx.tx.ExecContext(ctx, `INSERT INTO consumer_offsets (consumer, stream_seq, updated_at, last_error, last_error_at)
			VALUES (?, 0, ?, ?, ?)
			ON CONFLICT (consumer) DO UPDATE SET last_error = excluded.last_error, last_error_at = excluded.last_error_at`,
			name, kanade.FormatTime(tx.now), msg, kanade.FormatTime(at))
		if err != nil {
			return fmt.Errorf("record projection %s error: %w", name, err)
		}
		return nil
	})
}
