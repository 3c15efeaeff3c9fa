package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// The membership mirror (migrations/0009_agent_groups_mirror.sql): a copy
// of KV agent_groups kept by several writers at once (the worker's watch,
// the membership routes writing their own edits through, a reader catching
// the copy up), none of them trusted to run or to be alone. What keeps the
// copy right is one rule per kind of write, all ordered by the KV
// revision of the value they copy:
//
//   - every key's row carries the revision of the value it holds, and a
//     write of an older revision than the row's changes nothing (a delete
//     keeps its row, so a late write cannot revive the key);
//   - the mirror's revision W promises that every change of the bucket up
//     to W is applied. A watch, which sees every change in order, moves it
//     to the last change it applied (ApplyGroups); a snapshot to the
//     revision it was read after (SyncGroups); a single write-through only
//     from W to its own revision W+1, when it is provably the next change
//     (WriteGroups);
//   - W belongs to one bucket, named by its creation time: a bucket deleted
//     and created again numbers its revisions from 1, so a snapshot of
//     another bucket replaces everything and a watch of another bucket is
//     refused (ErrGroupsMirrorMoved).
//
// A reader that finds W at or past the bucket's last revision, in the same
// bucket, reads a copy at least as new as the KV it just looked at; any
// other reader must not trust the copy (handlers then read the KV).

// Membership is one key of KV agent_groups as the mirror holds it.
type Membership struct {
	PCID string
	// Groups are the PC's groups, normalised; none for a deleted key or
	// a value that does not decode.
	Groups []string
	// Revision is the KV revision of the value (or of the delete).
	Revision uint64
}

// GroupsMirror is where the mirror stands: every change of the bucket
// created at Bucket up to Revision is applied. Bucket is zero before the
// first snapshot.
type GroupsMirror struct {
	Bucket   time.Time
	Revision uint64
	// StaleLists counts the groups whose member list awaits a rebuild
	// (RefreshGroupLists): reads of them are correct, only slower.
	StaleLists int64
}

// Current reports whether the mirror holds at least what the bucket
// created at bucket held at revision rev.
func (m GroupsMirror) Current(bucket time.Time, rev uint64) bool {
	return !m.Bucket.IsZero() && m.Bucket.Equal(bucket) && m.Revision >= rev
}

// ErrGroupsMirrorMoved says the mirror follows another incarnation of the
// bucket than the changes given: the watch that sent them must start over
// from a snapshot.
var ErrGroupsMirrorMoved = errors.New("the groups mirror follows another agent_groups bucket")

// GroupsMirror reads where the mirror stands.
func (db *DB) GroupsMirror(ctx context.Context) (GroupsMirror, error) {
	m, err := readMirror(ctx, db.read)
	if err != nil {
		return GroupsMirror{}, fmt.Errorf("read the groups mirror: %w", err)
	}
	return m, nil
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func readMirror(ctx context.Context, q queryRower) (GroupsMirror, error) {
	var bucket sql.NullString
	var rev sql.NullInt64
	var stale int64
	err := q.QueryRowContext(ctx, `SELECT (SELECT bucket FROM agent_groups_mirror WHERE id = 1),
		(SELECT revision FROM agent_groups_mirror WHERE id = 1),
		(SELECT COUNT(*) FROM group_lists WHERE stale = 1)`).Scan(&bucket, &rev, &stale)
	if err != nil {
		return GroupsMirror{}, err
	}
	m := GroupsMirror{Revision: uint64(rev.Int64), StaleLists: stale}
	if bucket.Valid {
		if m.Bucket, err = kanade.ParseTime(bucket.String); err != nil {
			return GroupsMirror{}, fmt.Errorf("bucket %q: %w", bucket.String, err)
		}
	}
	return m, nil
}

func (tx *Tx) setMirror(ctx context.Context, m GroupsMirror) error {
	_, err := tx.Exec(ctx, `INSERT INTO agent_groups_mirror (id, bucket, revision, updated_at) VALUES (1, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET bucket = excluded.bucket, revision = excluded.revision, updated_at = excluded.updated_at`,
		kanade.FormatTime(m.Bucket), int64(m.Revision), kanade.FormatTime(tx.now))
	if err != nil {
		return fmt.Errorf("move the groups mirror to revision %d: %w", m.Revision, err)
	}
	return nil
}

// SyncGroups brings the mirror up to a snapshot of the bucket created at
// bucket: keys holds every key the snapshot saw (deleted ones with no
// groups), and every revision up to through is reflected in it. A key
// newer than its row replaces it; a row whose key the snapshot lacks, and
// which is no newer than through, becomes deleted. A mirror of another
// bucket (or none yet) is replaced whole. The mirror then stands at least
// at through.
func (db *DB) SyncGroups(ctx context.Context, bucket time.Time, through uint64, keys []Membership) error {
	err := db.Update(ctx, func(tx *Tx) error {
		cur, err := readMirror(ctx, tx.tx)
		if err != nil {
			return err
		}
		if cur.Bucket.IsZero() || !cur.Bucket.Equal(bucket) {
			for _, q := range []string{`DELETE FROM agent_group_members`, `DELETE FROM agent_group_keys`} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return fmt.Errorf("clear the groups mirror: %w", err)
				}
			}
			if err := tx.replaceMemberships(ctx, keys); err != nil {
				return err
			}
			if _, err := tx.refreshGroupLists(ctx); err != nil {
				return err
			}
			return tx.setMirror(ctx, GroupsMirror{Bucket: bucket, Revision: through})
		}
		stored, err := tx.allKeyRevisions(ctx)
		if err != nil {
			return err
		}
		var changed []Membership
		seen := make(map[string]bool, len(keys))
		for _, m := range keys {
			seen[m.PCID] = true
			if r, ok := stored[m.PCID]; !ok || m.Revision > r {
				changed = append(changed, m)
			}
		}
		for pc, r := range stored {
			if !seen[pc] && r < through {
				// Gone, delete marker and all (purged): deleted no later
				// than through, as the snapshot began after it. (A key
				// written at exactly through and purged before the pass
				// reached it would stay; nothing here purges markers.)
				changed = append(changed, Membership{PCID: pc, Revision: through})
			}
		}
		if err := tx.replaceMemberships(ctx, changed); err != nil {
			return err
		}
		if _, err := tx.refreshGroupLists(ctx); err != nil {
			return err
		}
		return tx.setMirror(ctx, GroupsMirror{Bucket: bucket, Revision: max(cur.Revision, through)})
	})
	if err != nil {
		return fmt.Errorf("sync the groups mirror with %d keys: %w", len(keys), err)
	}
	return nil
}

// ApplyGroups applies changes a watch of the bucket created at bucket
// delivered, in the order it delivered them, after its snapshot: each one
// newer than its key's row replaces it, and the mirror moves to the last
// change's revision. A mirror of another bucket refuses them
// (ErrGroupsMirrorMoved).
func (db *DB) ApplyGroups(ctx context.Context, bucket time.Time, changes []Membership) error {
	if len(changes) == 0 {
		return nil
	}
	err := db.Update(ctx, func(tx *Tx) error {
		cur, err := readMirror(ctx, tx.tx)
		if err != nil {
			return err
		}
		if cur.Bucket.IsZero() || !cur.Bucket.Equal(bucket) {
			return ErrGroupsMirrorMoved
		}
		if err := tx.applyNewer(ctx, changes); err != nil {
			return err
		}
		last := cur.Revision
		for _, m := range changes {
			last = max(last, m.Revision)
		}
		return tx.setMirror(ctx, GroupsMirror{Bucket: bucket, Revision: last})
	})
	if err != nil {
		return fmt.Errorf("apply %d membership changes: %w", len(changes), err)
	}
	return nil
}

// WriteGroups writes through one membership the caller has just stored
// in the KV at m.Revision: applied unless the row is newer, and the mirror
// moves to m.Revision when it stood right before it (nothing else can have
// been written in between). Any other mirror position is left for the
// watch to cover.
func (db *DB) WriteGroups(ctx context.Context, m Membership) error {
	err := db.Update(ctx, func(tx *Tx) error {
		if err := tx.applyNewer(ctx, []Membership{m}); err != nil {
			return err
		}
		cur, err := readMirror(ctx, tx.tx)
		if err != nil {
			return err
		}
		if !cur.Bucket.IsZero() && cur.Revision+1 == m.Revision {
			return tx.setMirror(ctx, GroupsMirror{Bucket: cur.Bucket, Revision: m.Revision})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write through the groups of %s: %w", kanade.Clip(m.PCID), err)
	}
	return nil
}

// applyNewer replaces the rows of the changes newer than them (for a key
// given twice, the newest change).
func (tx *Tx) applyNewer(ctx context.Context, changes []Membership) error {
	if len(changes) == 0 {
		return nil
	}
	latest := make(map[string]Membership, len(changes))
	pcs := make([]string, 0, len(changes))
	for _, m := range changes {
		old, ok := latest[m.PCID]
		if !ok {
			pcs = append(pcs, m.PCID)
		}
		if !ok || m.Revision > old.Revision {
			latest[m.PCID] = m
		}
	}
	stored, err := tx.keyRevisions(ctx, pcs)
	if err != nil {
		return err
	}
	var newer []Membership
	for _, pc := range pcs {
		m := latest[pc]
		if r, ok := stored[pc]; !ok || m.Revision > r {
			newer = append(newer, m)
		}
	}
	return tx.replaceMemberships(ctx, newer)
}

// allKeyRevisions reads the revision of every key's row.
func (tx *Tx) allKeyRevisions(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	if err := tx.readRevisions(ctx, out, `SELECT pc_id, revision FROM agent_group_keys`); err != nil {
		return nil, fmt.Errorf("read the mirror's revisions: %w", err)
	}
	return out, nil
}

// keyRevisions reads the revision of the rows of the given keys.
func (tx *Tx) keyRevisions(ctx context.Context, pcs []string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for chunk := range slices.Chunk(pcs, maxVars) {
		if err := tx.readRevisions(ctx, out, `SELECT pc_id, revision FROM agent_group_keys WHERE pc_id IN (`+marks(len(chunk))+`)`,
			anys(chunk)...); err != nil {
			return nil, fmt.Errorf("read the mirror's revisions of %d keys: %w", len(chunk), err)
		}
	}
	return out, nil
}

// readRevisions adds the (pc_id, revision) rows of q to out.
func (tx *Tx) readRevisions(ctx context.Context, out map[string]uint64, q string, args ...any) error {
	rows, err := tx.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var pc string
		var rev int64
		if err := rows.Scan(&pc, &rev); err != nil {
			return err
		}
		out[pc] = uint64(rev)
	}
	return rows.Err()
}

// replaceMemberships sets the rows of each given key to its groups and
// revision, unconditionally.
func (tx *Tx) replaceMemberships(ctx context.Context, ms []Membership) error {
	if len(ms) == 0 {
		return nil
	}
	pcs := make([]string, len(ms))
	for i, m := range ms {
		pcs[i] = m.PCID
	}
	for chunk := range slices.Chunk(pcs, maxVars) {
		if _, err := tx.Exec(ctx, `DELETE FROM agent_group_members WHERE pc_id IN (`+marks(len(chunk))+`)`, anys(chunk)...); err != nil {
			return fmt.Errorf("clear the groups of %d PCs: %w", len(chunk), err)
		}
	}
	var pairs []any
	for _, m := range ms {
		for _, g := range m.Groups {
			pairs = append(pairs, g, m.PCID)
		}
	}
	for chunk := range slices.Chunk(pairs, maxVars/2*2) {
		if _, err := tx.Exec(ctx, `INSERT INTO agent_group_members (group_name, pc_id) VALUES `+placeholders(len(chunk)/2, 2)+
			` ON CONFLICT DO NOTHING`, chunk...); err != nil {
			return fmt.Errorf("store %d memberships: %w", len(chunk)/2, err)
		}
	}
	revs := make([]any, 0, 2*len(ms))
	for _, m := range ms {
		revs = append(revs, m.PCID, int64(m.Revision))
	}
	for chunk := range slices.Chunk(revs, maxVars/2*2) {
		if _, err := tx.Exec(ctx, `INSERT INTO agent_group_keys (pc_id, revision) VALUES `+placeholders(len(chunk)/2, 2)+
			` ON CONFLICT (pc_id) DO UPDATE SET revision = excluded.revision`, chunk...); err != nil {
			return fmt.Errorf("store the revisions of %d PCs: %w", len(chunk)/2, err)
		}
	}
	return nil
}

// marks is n comma-separated placeholders.
func marks(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// GroupMembers is one group of the mirror.
type GroupMembers struct {
	Name string
	// Members are its PCs, sorted bytewise.
	Members []string
	// Alive counts the members whose agent's last heartbeat is at or after
	// the cutoff GroupOverview was given (members never seen count as not
	// alive).
	Alive int64
}

// groupOverviewSQL reads every group's members from group_lists (a stale
// list from the members themselves, walked in key order, so sorted), and
// its live members from group_minutes (whole minutes after the cutoff's)
// plus the agents of the cutoff's own minute at or after it, as
// AgentCounts splits them (GROUP BY +group_name: grouping in the order of
// group_minutes_by_group, 0020, would read every minute, not the recent
// ones): one statement, one round trip to a remote
// server, however many PCs.
const groupOverviewSQL = `SELECT l.group_name,
       CASE WHEN l.stale = 0 THEN l.members
            ELSE (SELECT group_concat(pc_id, ' ') FROM agent_group_members AS gm WHERE gm.group_name = l.group_name) END,
       COALESCE(s.n, 0) + COALESCE(f.n, 0)
FROM group_lists AS l
LEFT JOIN (SELECT group_name, SUM(agents) AS n FROM group_minutes WHERE minute > ? GROUP BY +group_name) AS s
       ON s.group_name = l.group_name
LEFT JOIN (SELECT gm.group_name, COUNT(*) AS n FROM agents AS a JOIN agent_group_members AS gm ON gm.pc_id = a.pc_id
            WHERE a.last_heartbeat >= ? AND a.last_heartbeat < ? GROUP BY gm.group_name) AS f
       ON f.group_name = l.group_name
ORDER BY l.group_name`

// GroupOverview reads every group that has members, sorted by name, with
// its members and how many of them are alive since alive. It reads the
// mirror as it is; callers check GroupsMirror first.
func (db *DB) GroupOverview(ctx context.Context, alive time.Time) ([]GroupMembers, error) {
	minute, from, to := minuteSplit(alive)
	rows, err := db.read.QueryContext(ctx, groupOverviewSQL, minute, from, to)
	if err != nil {
		return nil, fmt.Errorf("group overview: %w", err)
	}
	defer rows.Close()
	var out []GroupMembers
	for rows.Next() {
		var g GroupMembers
		var members sql.NullString
		if err := rows.Scan(&g.Name, &members, &g.Alive); err != nil {
			return nil, fmt.Errorf("group overview: %w", err)
		}
		if members.String == "" {
			continue // a stale list of a group that lost its last member
		}
		g.Members = strings.Split(members.String, " ")
		// The lists are joined in primary-key order; SQLite does not
		// promise that order of group_concat, so make sure.
		if !slices.IsSorted(g.Members) {
			slices.Sort(g.Members)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("group overview: %w", err)
	}
	return out, nil
}

// refreshListsSQL rebuilds the stale member lists, walking each group's
// members in key order, and drops the lists of groups left empty.
const refreshListsSQL = `UPDATE group_lists SET stale = 0,
	members = (SELECT group_concat(pc_id, ' ') FROM agent_group_members AS gm WHERE gm.group_name = group_lists.group_name)
	WHERE stale = 1`

// RefreshGroupLists rebuilds the member lists that changes have made
// stale (the reads stay correct without it, only slower) and reports how
// many it rebuilt. The worker calls it once a burst of changes is applied.
func (db *DB) RefreshGroupLists(ctx context.Context) (int64, error) {
	var n int64
	err := db.Update(ctx, func(tx *Tx) error {
		var err error
		n, err = tx.refreshGroupLists(ctx)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (tx *Tx) refreshGroupLists(ctx context.Context) (int64, error) {
	res, err := tx.Exec(ctx, refreshListsSQL)
	if err != nil {
		return 0, fmt.Errorf("refresh the group lists: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("refresh the group lists: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM group_lists WHERE members IS NULL`); err != nil {
		return 0, fmt.Errorf("drop the lists of empty groups: %w", err)
	}
	return n, nil
}

// PruneGroupMinutes deletes the group_minutes rows that count nobody: the
// heartbeat trigger leaves a minute's row at zero when its last member
// beats again (deleting it there would slow every such beat), and without
// this a grouped fleet would leave a row per group and minute behind.
func (db *DB) PruneGroupMinutes(ctx context.Context) (int64, error) {
	var n int64
	err := db.Update(ctx, func(tx *Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM group_minutes WHERE agents <= 0`)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune group_minutes: %w", err)
	}
	return n, nil
}
