package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// The observability timeline (observe.md §2): OBS_EVENTS rows, their
// filters, and the kinds and sources lists.

// ObsRetention is how long events are kept, by event time (§2.6).
const ObsRetention = 90 * 24 * time.Hour

// MaxObsVocab bounds /kinds and /sources (agents control the vocabulary).
const MaxObsVocab = 1000

// Obs is one ObsEvent ready to apply, with the stream sequence that makes it
// idempotent and the stream timestamp.
type Obs struct {
	kanade.ObsEvent
	StreamSeq  uint64
	RecordedAt time.Time
}

// InsertObsEvents stores events insert-or-ignore: a stream sequence already
// stored (a redelivery, a replay) or a (pc_id, source, event_record_id)
// already stored (an agent re-sending) changes nothing. The kinds and
// sources counts grow by the rows actually inserted.
func (tx *Tx) InsertObsEvents(ctx context.Context, batch []Obs) (ApplyStats, error) {
	var st ApplyStats
	vocab := map[[2]string]int64{}
	for i := range batch {
		e := &batch[i]
		payload := "null"
		if p := strings.TrimSpace(string(e.Payload)); p != "" {
			payload = p
		}
		var kind, source string
		err := tx.tx.QueryRowContext(ctx, `INSERT INTO obs_events
			(pc_id, at, kind, source, event_record_id, payload, stream_seq, recorded_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING kind, source`,
			e.PcID, kanade.FormatTime(e.At.Time), e.Kind, e.Source, e.EventRecordID, payload, int64(e.StreamSeq),
			kanade.FormatTime(e.RecordedAt)).Scan(&kind, &source)
		switch {
		case err == sql.ErrNoRows:
			st.Unchanged++
			continue
		case err != nil:
			return st, fmt.Errorf("insert obs event seq %d: %w", e.StreamSeq, err)
		}
		st.Inserted++
		vocab[[2]string{"kind", kind}]++
		vocab[[2]string{"source", source}]++
	}
	return st, tx.bumpVocab(ctx, vocab)
}

func (tx *Tx) bumpVocab(ctx context.Context, vocab map[[2]string]int64) error {
	for k, n := range vocab {
		if _, err := tx.tx.ExecContext(ctx, `INSERT INTO obs_event_vocab (field, value, n) VALUES (?, ?, ?)
			ON CONFLICT (field, value) DO UPDATE SET n = n + excluded.n`, k[0], k[1], n); err != nil {
			return fmt.Errorf("count obs %s: %w", k[0], err)
		}
	}
	_, err := tx.tx.ExecContext(ctx, `DELETE FROM obs_event_vocab WHERE n <= 0`)
	return err
}

// DeleteOldObsEvents deletes at most limit events whose at is before cutoff.
func (tx *Tx) DeleteOldObsEvents(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	rows, err := tx.tx.QueryContext(ctx, `SELECT id, kind, source FROM obs_events WHERE at < ? ORDER BY at LIMIT ?`,
		kanade.FormatTime(cutoff), limit)
	if err != nil {
		return 0, fmt.Errorf("select old obs events: %w", err)
	}
	var ids []any
	vocab := map[[2]string]int64{}
	for rows.Next() {
		var id int64
		var kind, source string
		if err := rows.Scan(&id, &kind, &source); err != nil {
			rows.Close()
			return 0, fmt.Errorf("select old obs events: %w", err)
		}
		ids = append(ids, id)
		vocab[[2]string{"kind", kind}]--
		vocab[[2]string{"source", source}]--
	}
	if err := rows.Close(); err != nil {
		return 0, fmt.Errorf("select old obs events: %w", err)
	}
	var deleted int64
	for len(ids) > 0 {
		n := min(len(ids), 500)
		res, err := tx.tx.ExecContext(ctx, `DELETE FROM obs_events WHERE id IN (`+
			strings.TrimSuffix(strings.Repeat("?,", n), ",")+`)`, ids[:n]...)
		if err != nil {
			return deleted, fmt.Errorf("delete old obs events: %w", err)
		}
		c, _ := res.RowsAffected()
		deleted += c
		ids = ids[n:]
	}
	return deleted, tx.bumpVocab(ctx, vocab)
}

// ObsFilter is the query of GET /api/obs_events (§2.4); every field is
// optional and all are ANDed. The handler has checked the bounds.
type ObsFilter struct {
	PCID         string
	From, To     *time.Time
	Kinds        []string // include; empty: no constraint
	KindsEx      []string
	Sources      []string
	SourcesEx    []string
	LogonType    *int64
	PayloadKey   string // [A-Za-z0-9_]+ (checked by the caller), with PayloadValue
	PayloadValue *string
	Limit        int
	Cursor       string
}

// payloadAt is json_extract of the stored payload at a bound path, NULL for
// a payload that no longer parses (json_extract would fail the whole query).
const payloadAt = `(CASE WHEN json_valid(payload) THEN json_extract(payload, ?) END)`

func inList(col string, not bool, vals []string, where *[]string, args *[]any) {
	if len(vals) == 0 {
		return
	}
	op := " IN ("
	if not {
		op = " NOT IN ("
	}
	*where = append(*where, col+op+strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",")+")")
	for _, v := range vals {
		*args = append(*args, v)
	}
}

// ListObsEvents answers one page, newest first (at, then id, descending),
// and the cursor of the next page when this one is full.
func (db *DB) ListObsEvents(ctx context.Context, f ObsFilter, log *slog.Logger) ([]kanade.ObsEventRow, *string, error) {
	var where []string
	var args []any
	if f.PCID != "" {
		where = append(where, "pc_id = ?")
		args = append(args, f.PCID)
	}
	if f.From != nil {
		where = append(where, "at >= ?")
		args = append(args, kanade.FormatTime(*f.From))
	}
	if f.To != nil {
		where = append(where, "at < ?")
		args = append(args, kanade.FormatTime(*f.To))
	}
	inList("kind", false, f.Kinds, &where, &args)
	inList("kind", true, f.KindsEx, &where, &args)
	inList("source", false, f.Sources, &where, &args)
	inList("source", true, f.SourcesEx, &where, &args)
	if f.LogonType != nil {
		where = append(where, payloadAt+" = ?")
		args = append(args, "$.logon_type", *f.LogonType)
	}
	if f.PayloadKey != "" && f.PayloadValue != nil {
		cond := "CAST(" + payloadAt + " AS TEXT) = ?"
		args = append(args, "$."+f.PayloadKey, *f.PayloadValue)
		if num, err := strconv.ParseFloat(strings.TrimSpace(*f.PayloadValue), 64); err == nil {
			cond = "(" + cond + " OR " + payloadAt + " = ?)"
			args = append(args, "$."+f.PayloadKey, num)
		}
		where = append(where, cond)
	}
	key, err := decodeCursor("obs", f.Cursor)
	if err != nil {
		return nil, nil, err
	}
	if key != nil {
		id, err := strconv.ParseInt(*key.ID, 10, 64)
		if err != nil || key.At == nil {
			return nil, nil, fmt.Errorf("%w: not an obs cursor", ErrInvalidCursor)
		}
		where = append(where, "(at < ? OR at = ? AND id < ?)")
		args = append(args, *key.At, *key.At, id)
	}
	q := `SELECT id, pc_id, at, kind, source, event_record_id, payload FROM obs_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY at DESC, id DESC LIMIT ?"
	args = append(args, f.Limit)
	rows, err := db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list obs events: %w", err)
	}
	defer rows.Close()
	out := []kanade.ObsEventRow{}
	n := 0
	var lastAt string
	var lastID int64
	for rows.Next() {
		var r kanade.ObsEventRow
		var at string
		var payload sql.NullString
		if err := rows.Scan(&r.ID, &r.PcID, &at, &r.Kind, &r.Source, &r.EventRecordID, &payload); err != nil {
			return nil, nil, fmt.Errorf("list obs events: %w", err)
		}
		n++
		lastAt, lastID = at, r.ID
		t, err := kanade.ParseTime(at)
		if err != nil {
			return nil, nil, fmt.Errorf("list obs events: %w", err)
		}
		r.At = kanade.Timestamp{Time: t}
		r.Payload = json.RawMessage("null")
		if payload.Valid {
			if !json.Valid([]byte(payload.String)) {
				if log != nil {
					log.WarnContext(ctx, "obs event with a payload that does not parse left out", slog.Int64("id", r.ID))
				}
				continue
			}
			r.Payload = json.RawMessage(payload.String)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list obs events: %w", err)
	}
	var next *string
	if n == f.Limit && n > 0 {
		id := strconv.FormatInt(lastID, 10)
		next = encodeCursor(pageKey{Kind: "obs", At: &lastAt, ID: &id})
	}
	return out, next, nil
}

// ObsVocab lists the distinct kinds (field "kind") or sources ("source") of
// stored events, bytewise sorted, at most MaxObsVocab.
func (db *DB) ObsVocab(ctx context.Context, field string) ([]string, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT value FROM obs_event_vocab WHERE field = ? AND n > 0
		ORDER BY value LIMIT ?`, field, MaxObsVocab)
	if err != nil {
		return nil, fmt.Errorf("list obs %ss: %w", field, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("list obs %ss: %w", field, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
