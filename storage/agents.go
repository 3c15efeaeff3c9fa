package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/kanade-fleet/backend"
)

// The agent lifecycle of fleet.md §3: removing a row by hand (§3.2), the
// version rollup (§3.3) and the dead-agent prune (§3.4). A removed agent
// that is alive reappears with its next heartbeat: the row is a projection.

// DeleteAgent deletes the agents row of pcID and reports whether there was
// one. It touches no other table.
func (db *DB) DeleteAgent(ctx context.Context, pcID string) (bool, error) {
	var n int64
	err := db.Update(ctx, func(tx *Tx) error {
		res, err := tx.tx.ExecContext(ctx, `DELETE FROM agents WHERE pc_id = ?`, pcID)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("delete agent %q: %w", pcID, err)
	}
	return n > 0, nil
}

// agentVersionsSQL reads the summaries of 0008_agent_lifecycle.sql: the
// totals per version, and the active agents per version split at the
// minute boundary after the cutoff as in the fleet rollup (fleet.go): whole
// minutes from the per-minute summary, the cutoff's own minute from the
// base table. The empty string is the summaries' NULL version, and sorts
// first.
const agentVersionsSQL = `SELECT v.version, v.agents, COALESCE(m.agents, 0) + COALESCE(b.agents, 0)
	FROM agent_versions AS v
	LEFT JOIN (SELECT version, SUM(agents) AS agents FROM agent_version_minutes
	           WHERE minute > ? GROUP BY version) AS m ON m.version = v.version
	LEFT JOIN (SELECT COALESCE(agent_version, '') AS version, COUNT(*) AS agents FROM agents
	           WHERE last_heartbeat >= ? AND last_heartbeat < ? GROUP BY 1) AS b ON b.version = v.version
	WHERE v.agents > 0
	ORDER BY v.agents DESC, v.version`

// AgentVersions returns one bucket per distinct agent_version (NULL for
// agents that never reported one) with how many agents report it and how
// many of those beat at or after activeSince; sorted by total descending,
// then version ascending with NULL first.
func (db *DB) AgentVersions(ctx context.Context, activeSince time.Time) ([]kanade.AgentVersionCount, error) {
	minute, from, to := minuteSplit(activeSince)
	rows, err := db.read.QueryContext(ctx, agentVersionsSQL, minute, from, to)
	if err != nil {
		return nil, fmt.Errorf("agent versions: %w", err)
	}
	defer rows.Close()
	out := []kanade.AgentVersionCount{}
	for rows.Next() {
		var v kanade.AgentVersionCount
		var version string
		if err := rows.Scan(&version, &v.Total, &v.Active); err != nil {
			return nil, fmt.Errorf("agent versions: %w", err)
		}
		if version != "" {
			v.Version = &version
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("agent versions: %w", err)
	}
	return out, nil
}

// PruneAgents deletes at most limit agents whose last heartbeat is before
// cutoff, oldest first, and returns how many went. The caller loops while a
// call reports a full batch.
func (tx *Tx) PruneAgents(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	res, err := tx.tx.ExecContext(ctx, `DELETE FROM agents WHERE pc_id IN
		(SELECT pc_id FROM agents WHERE last_heartbeat < ? ORDER BY last_heartbeat LIMIT ?)`,
		kanade.FormatTime(cutoff), limit)
	if err != nil {
		return 0, fmt.Errorf("prune agents: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
