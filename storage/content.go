package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/kanade-fleet/backend"
)

// Compliance checks and notification acknowledgements (observe.md §3, §4):
// the projection's writes and the API's reads. Both writes are idempotent
// by their own key, so a replay past the offset changes nothing.

// CheckState is one result's verdict on its check, ready to apply.
type CheckState struct {
	PcID, CheckName, Status string
	Detail                  *string
	// RecordedAt is the RESULTS message's stream time.
	RecordedAt time.Time
}

// ApplyChecks upserts each state by (pc_id, check_name), in order, where
// its recorded_at is at or after the stored one (observe.md §3.4 port rule
// (a)): a stale redelivery or a replay cannot overwrite a newer state.
func (tx *Tx) ApplyChecks(ctx context.Context, states []CheckState) error {
	const cols = 5
	for len(states) > 0 {
		n := min(len(states), maxVars/cols)
		chunk := states[:n]
		states = states[n:]
		args := make([]any, 0, n*cols)
		for _, s := range chunk {
			var detail any
			if s.Detail != nil {
				detail = *s.Detail
			}
			args = append(args, s.PcID, s.CheckName, s.Status, detail, kanade.FormatTime(s.RecordedAt))
		}
		// SQLite applies a multi-row insert row by row, so two states of
		// one key in a batch meet the same guard.
		_, err := tx.tx.ExecContext(ctx, `INSERT INTO check_status (pc_id, check_name, status, detail, recorded_at)
			VALUES `+placeholders(n, cols)+`
			ON CONFLICT (pc_id, check_name) DO UPDATE SET
			    status = excluded.status, detail = excluded.detail, recorded_at = excluded.recorded_at
			WHERE excluded.recorded_at >= check_status.recorded_at`, args...)
		if err != nil {
			return fmt.Errorf("apply %d check states: %w", n, err)
		}
	}
	return nil
}

// CheckRow is one row of GET /api/checks.
type CheckRow struct {
	PcID       string    `json:"pc_id"`
	CheckName  string    `json:"check_name"`
	Status     string    `json:"status"`
	Detail     *string   `json:"detail"`
	RecordedAt time.Time `json:"recorded_at"`
}

// CheckCounts is one check's tally by status; a status outside the four
// known ones counts as unknown.
type CheckCounts struct {
	CheckName string `json:"check_name"`
	OK        int64  `json:"ok"`
	Warn      int64  `json:"warn"`
	Fail      int64  `json:"fail"`
	Unknown   int64  `json:"unknown"`
}

// Checks is GET /api/checks: the counts, the rows and whether the rows
// were cut at the limit.
type Checks struct {
	Counts    []CheckCounts
	Rows      []CheckRow
	Truncated bool
}

// ListChecks reads the counts of every check (or of check, when not
// empty) and its rows in (check_name, pc_id) order, ok rows only with
// includeOK, at most limit of them (Truncated when more match).
func (db *DB) ListChecks(ctx context.Context, check string, includeOK bool, limit int) (Checks, error) {
	out := Checks{Counts: []CheckCounts{}, Rows: []CheckRow{}}
	where, args := "", []any{}
	if check != "" {
		where, args = " WHERE check_name = ?", append(args, check)
	}
	rows, err := db.read.QueryContext(ctx, `SELECT check_name,
		    SUM(status = 'ok'), SUM(status = 'warn'), SUM(status = 'fail'), SUM(status NOT IN ('ok', 'warn', 'fail'))
		FROM check_status`+where+` GROUP BY check_name ORDER BY check_name`, args...)
	if err != nil {
		return out, fmt.Errorf("count checks: %w", err)
	}
	for rows.Next() {
		var c CheckCounts
		if err := rows.Scan(&c.CheckName, &c.OK, &c.Warn, &c.Fail, &c.Unknown); err != nil {
			rows.Close()
			return out, fmt.Errorf("count checks: %w", err)
		}
		out.Counts = append(out.Counts, c)
	}
	if err := rows.Close(); err != nil {
		return out, fmt.Errorf("count checks: %w", err)
	}
	conds := []string{}
	if check != "" {
		conds = append(conds, "check_name = ?")
	}
	if !includeOK {
		conds = append(conds, "status <> 'ok'")
	}
	q := `SELECT pc_id, check_name, status, detail, recorded_at FROM check_status`
	for i, c := range conds {
		if i == 0 {
			q += " WHERE " + c
		} else {
			q += " AND " + c
		}
	}
	q += ` ORDER BY check_name, pc_id LIMIT ?`
	rows, err = db.read.QueryContext(ctx, q, append(args, limit+1)...)
	if err != nil {
		return out, fmt.Errorf("list checks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if len(out.Rows) == limit {
			out.Truncated = true
			break
		}
		var r CheckRow
		var at string
		if err := rows.Scan(&r.PcID, &r.CheckName, &r.Status, &r.Detail, &at); err != nil {
			return out, fmt.Errorf("list checks: %w", err)
		}
		if r.RecordedAt, err = kanade.ParseTime(at); err != nil {
			return out, fmt.Errorf("list checks: recorded_at: %w", err)
		}
		out.Rows = append(out.Rows, r)
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("list checks: %w", err)
	}
	return out, nil
}

// DeleteChecks deletes check's rows, of every PC or of pcID when not
// empty, and says how many went.
func (db *DB) DeleteChecks(ctx context.Context, check, pcID string) (int64, error) {
	var n int64
	err := db.Update(ctx, func(tx *Tx) error {
		q, args := `DELETE FROM check_status WHERE check_name = ?`, []any{check}
		if pcID != "" {
			q, args = q+` AND pc_id = ?`, append(args, pcID)
		}
		res, err := tx.Exec(ctx, q, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete check %s: %w", kanade.Clip(check), err)
	}
	return n, nil
}

// NotificationAck is an acknowledgement ready to apply.
type NotificationAck struct {
	kanade.NotificationAcked
	// RecordedAt is the EVENTS message's stream time.
	RecordedAt time.Time
}

// InsertNotificationAcks stores each ack unless its (notification_id,
// pc_id, user_sid) is stored already: the first ack stays (observe.md
// §4.5), whatever order redeliveries arrive in. It returns how many rows
// were new.
func (tx *Tx) InsertNotificationAcks(ctx context.Context, acks []NotificationAck) (int, error) {
	const cols = 5
	inserted := 0
	for len(acks) > 0 {
		n := min(len(acks), maxVars/cols)
		chunk := acks[:n]
		acks = acks[n:]
		args := make([]any, 0, n*cols)
		for _, a := range chunk {
			args = append(args, a.NotificationID, a.PcID, a.UserSID, kanade.FormatTime(a.AckedAt.Time), kanade.FormatTime(a.RecordedAt))
		}
		res, err := tx.tx.ExecContext(ctx, `INSERT INTO notification_acks (notification_id, pc_id, user_sid, acked_at, recorded_at)
			VALUES `+placeholders(n, cols)+` ON CONFLICT DO NOTHING`, args...)
		if err != nil {
			return inserted, fmt.Errorf("insert %d notification acks: %w", n, err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return inserted, fmt.Errorf("insert notification acks: %w", err)
		}
		inserted += int(k)
	}
	return inserted, nil
}

// AckRow is one user's confirmation of a notification.
type AckRow struct {
	PcID    string    `json:"pc_id"`
	UserSID string    `json:"user_sid"`
	AckedAt time.Time `json:"acked_at"`
}

// NotificationAcks reads the confirmations of notification id, oldest
// first (then by pc_id and user_sid); none is an empty list.
func (db *DB) NotificationAcks(ctx context.Context, id string) ([]AckRow, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT pc_id, user_sid, acked_at FROM notification_acks
		WHERE notification_id = ? ORDER BY acked_at, pc_id, user_sid`, id)
	if err != nil {
		return nil, fmt.Errorf("notification %s acks: %w", kanade.Clip(id), err)
	}
	defer rows.Close()
	out := []AckRow{}
	for rows.Next() {
		var r AckRow
		var at string
		if err := rows.Scan(&r.PcID, &r.UserSID, &at); err != nil {
			return nil, fmt.Errorf("notification %s acks: %w", kanade.Clip(id), err)
		}
		if r.AckedAt, err = kanade.ParseTime(at); err != nil {
			return nil, fmt.Errorf("notification %s acks: acked_at: %w", kanade.Clip(id), err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("notification %s acks: %w", kanade.Clip(id), err)
	}
	return out, nil
}
