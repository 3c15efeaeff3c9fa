-- A copy of KV agent_groups (fleet.md §1.1) for GET /api/groups, which
-- inverts every PC's membership and counts each group's live members:
-- reading 100k KV values per request cannot answer in tens of
-- milliseconds, these tables can. The KV stays the source of truth. The
-- worker follows it with a watch (package groupmirror) and the membership
-- routes write their own edits through; every write is ordered by the KV
-- revision it copies, and the API answers from here only when this copy
-- has applied every revision of the bucket (storage/groups.go has the
-- rules).

-- One row per (group, member PC).
CREATE TABLE agent_group_members (
    group_name TEXT NOT NULL,
    pc_id      TEXT NOT NULL,
    PRIMARY KEY (group_name, pc_id)
) WITHOUT ROWID;
CREATE INDEX agent_group_members_by_pc ON agent_group_members (pc_id);

-- One row per key of the bucket this copy has seen, with the revision of
-- the value it holds. A deleted key keeps its row (and no members), so an
-- older write arriving late cannot bring the deleted value back.
CREATE TABLE agent_group_keys (
    pc_id    TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
) WITHOUT ROWID;

-- Where the copy stands, one row: the bucket it follows (the creation time
-- of its stream, which changes when the bucket is deleted and created
-- again, restarting its revisions) and the revision up to which every
-- change of that bucket is applied.
CREATE TABLE agent_groups_mirror (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    bucket     TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

-- Members of each group whose agent's last heartbeat falls in each minute,
-- kept by the triggers below like agent_version_minutes (0008), so the
-- live members of every group are a few rows however large the fleet.
-- Members without an agents row count nowhere. A row may stand at zero
-- until pruned.
CREATE TABLE group_minutes (
    minute     TEXT NOT NULL,
    group_name TEXT NOT NULL,
    agents     INTEGER NOT NULL,
    PRIMARY KEY (minute, group_name)
) WITHOUT ROWID;

-- Each group's members as one text, sorted and joined by spaces (a PC id
-- is a KV key, the end of a NATS subject, which whitespace cannot be part
-- of): reading ten of these is milliseconds where joining 150k rows per
-- request is a hundred. Any change of a group's members marks its list
-- stale and drops its text (the triggers below: only the first change
-- rewrites the row, so a burst of changes does not copy the text over and
-- over); readers take a stale group's members from
-- agent_group_members, and storage.RefreshGroupLists (the worker, after
-- the changes it applies) rebuilds the stale lists, so a burst of edits
-- costs one rebuild, not one per edit. A group without members has no row
-- once refreshed.
CREATE TABLE group_lists (
    group_name TEXT PRIMARY KEY,
    members    TEXT,
    stale      INTEGER NOT NULL CHECK (stale IN (0, 1))
) WITHOUT ROWID;

-- The live members of a group at a cutoff inside a minute are the summary's
-- whole minutes plus the agents of that minute at or after the cutoff,
-- joined to their memberships by pc_id: with pc_id in the heartbeat index
-- that join reads the index alone instead of the agents row of each (same
-- name, same leading columns as 0008's, one more at the end: the version
-- rollup reads a prefix of this one as it read that).
DROP INDEX agents_last_heartbeat;
CREATE INDEX agents_last_heartbeat ON agents (last_heartbeat, agent_version, pc_id);

-- Membership rows are only inserted and deleted, never updated.
CREATE TRIGGER agent_group_members_insert AFTER INSERT ON agent_group_members BEGIN
    INSERT INTO group_minutes (minute, group_name, agents)
        SELECT substr(last_heartbeat, 1, 16), NEW.group_name, 1 FROM agents WHERE pc_id = NEW.pc_id
        ON CONFLICT (minute, group_name) DO UPDATE SET agents = agents + 1;
    INSERT INTO group_lists (group_name, members, stale) VALUES (NEW.group_name, NULL, 1)
        ON CONFLICT (group_name) DO UPDATE SET stale = 1, members = NULL WHERE stale = 0;
END;

CREATE TRIGGER agent_group_members_delete AFTER DELETE ON agent_group_members BEGIN
    UPDATE group_lists SET stale = 1, members = NULL WHERE group_name = OLD.group_name AND stale = 0;
    UPDATE group_minutes SET agents = agents - 1
        WHERE group_name = OLD.group_name
          AND minute = (SELECT substr(last_heartbeat, 1, 16) FROM agents WHERE pc_id = OLD.pc_id);
    DELETE FROM group_minutes
        WHERE group_name = OLD.group_name AND agents <= 0
          AND minute = (SELECT substr(last_heartbeat, 1, 16) FROM agents WHERE pc_id = OLD.pc_id);
END;

CREATE TRIGGER agents_group_minutes_insert AFTER INSERT ON agents BEGIN
    INSERT INTO group_minutes (minute, group_name, agents)
        SELECT substr(NEW.last_heartbeat, 1, 16), group_name, 1 FROM agent_group_members WHERE pc_id = NEW.pc_id
        ON CONFLICT (minute, group_name) DO UPDATE SET agents = agents + 1;
END;

-- The heartbeat path: a beat that stays in its minute skips this; one that
-- moves costs two upserts driven by the PC's membership rows (none for a
-- PC in no group). The row left at zero is not deleted here but by
-- storage.PruneGroupMinutes (the worker, every few minutes): deleting it
-- here cost a third of the trigger again, on the projector's busiest path,
-- and a zero row changes no count.
CREATE TRIGGER agents_group_minutes_update AFTER UPDATE OF last_heartbeat ON agents
WHEN substr(OLD.last_heartbeat, 1, 16) <> substr(NEW.last_heartbeat, 1, 16) BEGIN
    INSERT INTO group_minutes (minute, group_name, agents)
        SELECT substr(OLD.last_heartbeat, 1, 16), group_name, -1 FROM agent_group_members WHERE pc_id = OLD.pc_id
        ON CONFLICT (minute, group_name) DO UPDATE SET agents = agents - 1;
    INSERT INTO group_minutes (minute, group_name, agents)
        SELECT substr(NEW.last_heartbeat, 1, 16), group_name, 1 FROM agent_group_members WHERE pc_id = NEW.pc_id
        ON CONFLICT (minute, group_name) DO UPDATE SET agents = agents + 1;
END;

CREATE TRIGGER agents_group_minutes_delete AFTER DELETE ON agents
WHEN EXISTS (SELECT 1 FROM agent_group_members WHERE pc_id = OLD.pc_id) BEGIN
    UPDATE group_minutes SET agents = agents - 1
        WHERE minute = substr(OLD.last_heartbeat, 1, 16)
          AND group_name IN (SELECT group_name FROM agent_group_members WHERE pc_id = OLD.pc_id);
    DELETE FROM group_minutes WHERE minute = substr(OLD.last_heartbeat, 1, 16) AND agents <= 0;
END;
