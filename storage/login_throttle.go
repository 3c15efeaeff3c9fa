package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// Login throttling (table login_failures in migrations/0006_accounts.sql).
//
// The API is stateless, may run as several processes or Lambda sandboxes,
// and a guesser can spread attempts over all of them; so the count lives in
// the database, as a sliding log: one row per key per attempt, each counted
// for one window after it was made. An attempt is written before its
// password is checked (and taken back if it succeeds), so parallel guesses
// count too, and the check and the write are one INSERT ... SELECT: however
// many requests race, no key gets more than limit attempts in a window.

// LoginAttempt is a reserved attempt: Forgive takes it back after a success.
type LoginAttempt struct{ id string }

// ReserveLoginAttempt records an attempt under every key at now, unless a
// key already has limit attempts in the window ending at now; then it
// records nothing and returns how long until every key has room again
// (whole seconds, at least one). Attempts older than the window are deleted
// on the way, so the table holds at most limit rows per key that tried in
// the last window.
func (db *DB) ReserveLoginAttempt(ctx context.Context, keys []string, limit int, window time.Duration, now time.Time) (LoginAttempt, time.Duration, error) {
	if len(keys) == 0 || limit < 1 || window <= 0 {
		return LoginAttempt{}, 0, fmt.Errorf("reserve login attempt: want keys, limit >= 1 and window > 0")
	}
	attempt := LoginAttempt{id: kanade.NewUUID()}
	at, cutoff := kanade.FormatTime(now), kanade.FormatTime(now.Add(-window))
	var wait time.Duration
	err := db.Update(ctx, func(tx *Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM login_failures WHERE at <= ?`, cutoff); err != nil {
			return err
		}
		// INSERT INTO login_failures SELECT column1, at, attempt FROM (VALUES (k1), (k2), …)
		// WHERE (SELECT COUNT(*) … key = k1 …) < limit AND (… k2 …) < limit
		var q strings.Builder
		args := make([]any, 0, 2+4*len(keys))
		q.WriteString(`INSERT INTO login_failures (key, at, attempt) SELECT column1, ?, ? FROM (VALUES `)
		args = append(args, at, attempt.id)
		for i, k := range keys {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?)")
			args = append(args, k)
		}
		q.WriteString(") WHERE ")
		for i, k := range keys {
			if i > 0 {
				q.WriteString(" AND ")
			}
			q.WriteString(`(SELECT COUNT(*) FROM login_failures WHERE key = ? AND at > ?) < ?`)
			args = append(args, k, cutoff, limit)
		}
		res, err := tx.Exec(ctx, q.String(), args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		for _, k := range keys {
			ats, err := tx.loginTimes(ctx, k, cutoff)
			if err != nil {
				return err
			}
			wait = max(wait, retryAfter(ats, limit, window, now))
		}
		// A race that the INSERT lost to may have since been forgiven;
		// waiting a second is still right.
		wait = max(wait, time.Second)
		return nil
	})
	if err != nil {
		return LoginAttempt{}, 0, fmt.Errorf("reserve login attempt: %w", err)
	}
	if wait > 0 {
		return LoginAttempt{}, wait, nil
	}
	return attempt, 0, nil
}

// loginTimes lists a key's attempts after cutoff, oldest first.
func (tx *Tx) loginTimes(ctx context.Context, key, cutoff string) ([]time.Time, error) {
	rows, err := tx.tx.QueryContext(ctx, `SELECT at FROM login_failures WHERE key = ? AND at > ? ORDER BY at`, key, cutoff)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		t, err := kanade.ParseTime(s)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// retryAfter is how long after now a key whose attempts in the window are
// ats (oldest first) gets room for one more under limit: zero when it has
// room now, else until enough of the oldest leave the window, rounded up to
// whole seconds (what a Retry-After header can say).
func retryAfter(ats []time.Time, limit int, window time.Duration, now time.Time) time.Duration {
	if len(ats) < limit {
		return 0
	}
	// Room for one more once len(ats)-limit+1 of them have expired.
	expires := ats[len(ats)-limit].Add(window)
	d := expires.Sub(now)
	if d <= 0 {
		return 0
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

// ForgiveLoginAttempt takes back a successful attempt and every recorded
// failure under the keys in clear (the username's, so that its owner starts
// afresh; not the address's, which a guesser may share).
func (db *DB) ForgiveLoginAttempt(ctx context.Context, a LoginAttempt, clear ...string) error {
	err := db.Update(ctx, func(tx *Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM login_failures WHERE attempt = ?`, a.id); err != nil {
			return err
		}
		for _, k := range clear {
			if _, err := tx.Exec(ctx, `DELETE FROM login_failures WHERE key = ?`, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forgive login attempt: %w", err)
	}
	return nil
}
