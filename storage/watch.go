package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// The heartbeat watchdog's state (fleet.md §3.5; columns of
// 0008_agent_lifecycle.sql). Each agent row records the outage last
// reported offline (offline_since), and a transition is published by
// exactly one worker: ClaimWatch takes the rows that need one in a single
// UPDATE … WHERE, which no other worker's claim can also match, and
// SettleWatch records the transitions whose events went out and frees the
// others for the next round. A claim a crashed worker left behind is taken
// over once it is older than the lease.

// WatchRow is an agent the watchdog claimed, as it was when claimed: its
// last heartbeat and the outage it was last reported offline for (nil when
// it was not).
type WatchRow struct {
	PCID          string
	LastHeartbeat time.Time
	OfflineSince  *time.Time
}

// WatchClaim says which agents one batch of the watchdog takes.
type WatchClaim struct {
	// Token marks the claimed rows until SettleWatch; unique per batch.
	Token string
	// Now is when the claim is made; a claim older than Now − Lease is
	// abandoned and may be taken over.
	Now   time.Time
	Lease time.Duration
	// Since: agents whose last heartbeat is before it are never claimed
	// (the worker did not see them report).
	Since time.Time
	// Cutoff: an agent whose last heartbeat is before it is stale.
	Cutoff time.Time
	// Limit bounds the rows of each of the two kinds of transition.
	Limit int
}

// The two claims: stale agents not reported for their last heartbeat (a
// range of the last_heartbeat index), and reported agents that beat again
// (a range of the partial index of reported agents). A row another claim
// holds is left alone unless that claim is older than the lease.
const (
	claimStaleSQL = `UPDATE agents SET watch_claim = ?, watch_claimed_at = ?, watch_next = last_heartbeat
		WHERE pc_id IN (SELECT pc_id FROM agents
		    WHERE last_heartbeat >= ? AND last_heartbeat < ?
		      AND (offline_since IS NULL OR offline_since <> last_heartbeat)
		      AND (watch_claim IS NULL OR watch_claimed_at < ?)
		    ORDER BY last_heartbeat LIMIT ?)
		RETURNING pc_id, last_heartbeat, offline_since`
	claimFreshSQL = `UPDATE agents SET watch_claim = ?, watch_claimed_at = ?, watch_next = NULL
		WHERE pc_id IN (SELECT pc_id FROM agents
		    WHERE offline_since IS NOT NULL AND last_heartbeat >= ?
		      AND (watch_claim IS NULL OR watch_claimed_at < ?)
		    ORDER BY last_heartbeat LIMIT ?)
		RETURNING pc_id, last_heartbeat, offline_since`
	settleWatchSQL = `UPDATE agents SET offline_since = watch_next,
		watch_claim = NULL, watch_claimed_at = NULL, watch_next = NULL WHERE watch_claim = ?`
)

// ClaimWatch claims, in one transaction, at most Limit stale agents not
// yet reported for their last heartbeat (they go offline, or come back
// and went again) and at most Limit reported agents that beat again (they
// come online), among those whose last heartbeat is at or after Since and
// that nobody else holds. Each claimed row remembers what it becomes once
// its events are out (watch_next).
func (db *DB) ClaimWatch(ctx context.Context, c WatchClaim) ([]WatchRow, error) {
	now, lease := kanade.FormatTime(c.Now), kanade.FormatTime(c.Now.Add(-c.Lease))
	since, cutoff := kanade.FormatTime(c.Since), kanade.FormatTime(c.Cutoff)
	freshFrom := cutoff
	if c.Since.After(c.Cutoff) {
		freshFrom = since
	}
	var out []WatchRow
	err := db.Update(ctx, func(tx *Tx) error {
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{claimStaleSQL, []any{c.Token, now, since, cutoff, lease, c.Limit}},
			{claimFreshSQL, []any{c.Token, now, freshFrom, lease, c.Limit}},
		} {
			rows, err := tx.tx.QueryContext(ctx, q.sql, q.args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var r WatchRow
				var last string
				var offline *string
				if err := rows.Scan(&r.PCID, &last, &offline); err != nil {
					rows.Close()
					return err
				}
				if r.LastHeartbeat, err = kanade.ParseTime(last); err != nil {
					rows.Close()
					return fmt.Errorf("agent %s: stored last_heartbeat: %w", r.PCID, err)
				}
				if offline != nil {
					t, err := kanade.ParseTime(*offline)
					if err != nil {
						rows.Close()
						return fmt.Errorf("agent %s: stored offline_since: %w", r.PCID, err)
					}
					r.OfflineSince = &t
				}
				out = append(out, r)
			}
			if err := rows.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim watchdog transitions: %w", err)
	}
	return out, nil
}

// SettleWatch ends the claim of token: the rows of the agents in failed go
// back as they were (their transitions are claimed again next round), the
// others record what they became. It returns how many recorded it. A row a
// later claim took over is left to that claim.
func (db *DB) SettleWatch(ctx context.Context, token string, failed []string) (int64, error) {
	var settled int64
	err := db.Update(ctx, func(tx *Tx) error {
		for len(failed) > 0 {
			n := min(len(failed), maxVars-1)
			args := []any{token}
			for _, pc := range failed[:n] {
				args = append(args, pc)
			}
			if _, err := tx.tx.ExecContext(ctx, `UPDATE agents SET watch_claim = NULL, watch_claimed_at = NULL, watch_next = NULL
				WHERE watch_claim = ? AND pc_id IN (`+strings.TrimSuffix(strings.Repeat("?,", n), ",")+`)`, args...); err != nil {
				return err
			}
			failed = failed[n:]
		}
		res, err := tx.tx.ExecContext(ctx, settleWatchSQL, token)
		if err != nil {
			return err
		}
		settled, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("settle watchdog transitions: %w", err)
	}
	return settled, nil
}
