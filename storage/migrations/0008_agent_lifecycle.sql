-- The agent lifecycle (fleet.md §3).

-- GET /api/agents/versions (§3.3) reads summaries kept by triggers in the
-- same transaction as the rows they count, as the fleet rollup does
-- (0001_init.sql), so it costs the same at ten agents or a hundred
-- thousand: a GROUP BY over 100k rows takes tens of milliseconds.
-- agent_version '' stands for NULL (a reported version is never empty).
--
-- agent_version_minutes splits 0001's agent_minutes by version and takes
-- its place: the fleet rollup sums it over versions, so a heartbeat still
-- maintains one per-minute summary, not two.

-- Agents per version.
CREATE TABLE agent_versions (
    version TEXT PRIMARY KEY,
    agents  INTEGER NOT NULL
) WITHOUT ROWID;

-- Agents per (minute of last_heartbeat, version): the active ones of each
-- version are the recent minutes' rows, like agent_minutes.
CREATE TABLE agent_version_minutes (
    minute  TEXT NOT NULL,
    version TEXT NOT NULL,
    agents  INTEGER NOT NULL,
    PRIMARY KEY (minute, version)
) WITHOUT ROWID;

INSERT INTO agent_versions (version, agents)
    SELECT COALESCE(agent_version, ''), COUNT(*) FROM agents GROUP BY 1;
INSERT INTO agent_version_minutes (minute, version, agents)
    SELECT substr(last_heartbeat, 1, 16), COALESCE(agent_version, ''), COUNT(*) FROM agents GROUP BY 1, 2;

-- The part of the cutoff's own minute is counted from the agents table; with
-- the version in the last_heartbeat index that is a range of the index alone,
-- not a row lookup per agent (tens of milliseconds when a minute holds ten
-- thousand beats). Every query of that index reads a prefix of it still.
DROP INDEX agents_last_heartbeat;
CREATE INDEX agents_last_heartbeat ON agents (last_heartbeat, agent_version);

-- The summaries of 0001 and these, kept by one set of triggers.
DROP TRIGGER agents_counters_insert;
DROP TRIGGER agents_counters_update;
DROP TRIGGER agents_counters_delete;
DROP TABLE agent_minutes;

CREATE TRIGGER agents_summaries_insert AFTER INSERT ON agents BEGIN
    UPDATE fleet_counters SET value = value + 1 WHERE name = 'agents';
    INSERT INTO agent_versions (version, agents) VALUES (COALESCE(NEW.agent_version, ''), 1)
        ON CONFLICT (version) DO UPDATE SET agents = agents + 1;
    INSERT INTO agent_version_minutes (minute, version, agents)
    VALUES (substr(NEW.last_heartbeat, 1, 16), COALESCE(NEW.agent_version, ''), 1)
        ON CONFLICT (minute, version) DO UPDATE SET agents = agents + 1;
END;

CREATE TRIGGER agents_summaries_version AFTER UPDATE OF agent_version ON agents
WHEN OLD.agent_version IS NOT NEW.agent_version BEGIN
    UPDATE agent_versions SET agents = agents - 1 WHERE version = COALESCE(OLD.agent_version, '');
    DELETE FROM agent_versions WHERE version = COALESCE(OLD.agent_version, '') AND agents <= 0;
    INSERT INTO agent_versions (version, agents) VALUES (COALESCE(NEW.agent_version, ''), 1)
        ON CONFLICT (version) DO UPDATE SET agents = agents + 1;
END;

CREATE TRIGGER agents_summaries_minute AFTER UPDATE OF last_heartbeat, agent_version ON agents
WHEN substr(OLD.last_heartbeat, 1, 16) <> substr(NEW.last_heartbeat, 1, 16)
  OR OLD.agent_version IS NOT NEW.agent_version BEGIN
    UPDATE agent_version_minutes SET agents = agents - 1
     WHERE minute = substr(OLD.last_heartbeat, 1, 16) AND version = COALESCE(OLD.agent_version, '');
    DELETE FROM agent_version_minutes
     WHERE minute = substr(OLD.last_heartbeat, 1, 16) AND version = COALESCE(OLD.agent_version, '') AND agents <= 0;
    INSERT INTO agent_version_minutes (minute, version, agents)
    VALUES (substr(NEW.last_heartbeat, 1, 16), COALESCE(NEW.agent_version, ''), 1)
        ON CONFLICT (minute, version) DO UPDATE SET agents = agents + 1;
END;

CREATE TRIGGER agents_summaries_delete AFTER DELETE ON agents BEGIN
    UPDATE fleet_counters SET value = value - 1 WHERE name = 'agents';
    UPDATE agent_versions SET agents = agents - 1 WHERE version = COALESCE(OLD.agent_version, '');
    DELETE FROM agent_versions WHERE version = COALESCE(OLD.agent_version, '') AND agents <= 0;
    UPDATE agent_version_minutes SET agents = agents - 1
     WHERE minute = substr(OLD.last_heartbeat, 1, 16) AND version = COALESCE(OLD.agent_version, '');
    DELETE FROM agent_version_minutes
     WHERE minute = substr(OLD.last_heartbeat, 1, 16) AND version = COALESCE(OLD.agent_version, '') AND agents <= 0;
END;

-- The heartbeat watchdog (§3.5) keeps what it reported in the row, so that
-- any number of workers share one view and each transition is published
-- once:
--   offline_since     the last heartbeat of the outage reported offline
--                     (NULL: none open);
--   watch_claim       the token of the worker batch publishing this row's
--                     transition now (NULL: none); a worker takes a row only
--                     where it is NULL or abandoned, in one UPDATE;
--   watch_claimed_at  when it was taken: a claim older than the lease is a
--                     crashed worker's, and may be taken over;
--   watch_next        the offline_since the row gets once the claimed
--                     transition's events are published (NULL: online).
ALTER TABLE agents ADD COLUMN offline_since TEXT;
ALTER TABLE agents ADD COLUMN watch_claim TEXT;
ALTER TABLE agents ADD COLUMN watch_claimed_at TEXT;
ALTER TABLE agents ADD COLUMN watch_next TEXT;

-- Agents reported offline, by last heartbeat: the watchdog finds the ones
-- that beat again without reading the whole active fleet.
CREATE INDEX agents_reported_offline ON agents (last_heartbeat) WHERE offline_since IS NOT NULL;
-- The rows one claim token holds, while its events are published.
CREATE INDEX agents_watch_claim ON agents (watch_claim) WHERE watch_claim IS NOT NULL;
