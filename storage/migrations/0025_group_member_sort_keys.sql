-- GET /api/agents?group=… sorted by hostname, OS or version (issue 13). A
-- group's page could only walk the sort's index of 0013 testing each entry
-- for membership, or read and sort all the group's members: for a group of
-- one agent in a hundred, 5,000 entries or 1,000 members a page, 3–8 ms of
-- CPU at 100k agents where a plain page takes 0.5 ms.
--
-- Each membership row now carries its agent's sort values, the very
-- expressions of 0013's indexes (ifnull(col, '')), and an index per sort
-- leads with the group, so a group's page in any of these sorts is a range
-- of one index, joined to the agents rows of that page only. The values are
-- NULL while the member has no agents row (it is then on no page: the join
-- drops it). The heartbeat sort is not copied: last_heartbeat changes with
-- every beat, and copying it would write every member's row and index entry
-- on the projector's busiest path; those pages keep 0013's walk or the
-- members' sort (storage/agents_list.go).
ALTER TABLE agent_group_members ADD COLUMN host_key TEXT;
ALTER TABLE agent_group_members ADD COLUMN os_key TEXT;
ALTER TABLE agent_group_members ADD COLUMN version_key TEXT;

UPDATE agent_group_members SET (host_key, os_key, version_key) = (
    SELECT ifnull(a.hostname, ''), ifnull(a.os_family, ''), ifnull(a.agent_version, '')
    FROM agents AS a WHERE a.pc_id = agent_group_members.pc_id);

CREATE INDEX agent_group_members_by_host ON agent_group_members (group_name, host_key, pc_id);
CREATE INDEX agent_group_members_by_os ON agent_group_members (group_name, os_key, pc_id);
CREATE INDEX agent_group_members_by_version ON agent_group_members (group_name, version_key, pc_id);

-- A new member takes its agent's values (none yet: NULL).
CREATE TRIGGER agent_group_members_sort_keys AFTER INSERT ON agent_group_members BEGIN
    UPDATE agent_group_members SET (host_key, os_key, version_key) = (
        SELECT ifnull(a.hostname, ''), ifnull(a.os_family, ''), ifnull(a.agent_version, '')
        FROM agents AS a WHERE a.pc_id = NEW.pc_id)
    WHERE group_name = NEW.group_name AND pc_id = NEW.pc_id;
END;

-- A new agent gives its values to the memberships that waited for it.
CREATE TRIGGER agents_member_sort_keys_insert AFTER INSERT ON agents BEGIN
    UPDATE agent_group_members
    SET host_key = ifnull(NEW.hostname, ''), os_key = ifnull(NEW.os_family, ''), version_key = ifnull(NEW.agent_version, '')
    WHERE pc_id = NEW.pc_id;
END;

-- A heartbeat rewrites these columns on every upsert, nearly always to the
-- same values: the WHEN keeps those from touching the memberships (one
-- probe of the by-pc index when it does not hold). A new pc_id leaves the
-- old one's memberships to an agent that no longer exists (the join drops
-- them) and takes those waiting for the new one.
CREATE TRIGGER agents_member_sort_keys_update AFTER UPDATE OF pc_id, hostname, os_family, agent_version ON agents
WHEN OLD.pc_id IS NOT NEW.pc_id OR OLD.hostname IS NOT NEW.hostname
  OR OLD.os_family IS NOT NEW.os_family OR OLD.agent_version IS NOT NEW.agent_version BEGIN
    UPDATE agent_group_members
    SET host_key = ifnull(NEW.hostname, ''), os_key = ifnull(NEW.os_family, ''), version_key = ifnull(NEW.agent_version, '')
    WHERE pc_id = NEW.pc_id;
END;
