-- GET /api/agents (issue 13): the filters the sort indexes of 0013 could
-- only test entry by entry, so that a rare or absent match walked the
-- whole roster (q=zz 2.7 s p99 and group=lab&total=true 1.6 s at 100k
-- agents under 50 connections).

-- A search of one or two characters, which the trigram index of 0016
-- cannot serve: every distinct piece of one and of two characters of each
-- agent's pc_id and hostname, lowered as the search lowers it (the same
-- lower() on both sides, so the pieces of a name that LIKE matches are
-- always found). storage/agents_list.go reads the agents holding the
-- searched piece as candidates, as it reads the trigram index's, and tests
-- each with the same LIKE, so the answer is exactly the LIKE's.
--
-- A name longer than agent_gram_positions reaches is marked with the
-- empty piece instead, and every search of one or two characters takes
-- the marked agents as candidates too: a long name is never missed, and
-- costs only its own row.
CREATE TABLE agent_gram_positions (i INTEGER PRIMARY KEY);
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 256)
INSERT INTO agent_gram_positions (i) SELECT i FROM s;

-- One row per (piece, agent), the agent by its agents rowid like 0016's
-- index (and with the same caveat about VACUUM).
CREATE TABLE agent_grams (
    gram  TEXT NOT NULL,
    agent INTEGER NOT NULL,
    PRIMARY KEY (gram, agent)
) WITHOUT ROWID;

INSERT OR IGNORE INTO agent_grams (gram, agent)
SELECT lower(substr(t.v, p.i, w.n)), t.r
FROM (SELECT rowid AS r, pc_id AS v FROM agents UNION ALL SELECT rowid, hostname FROM agents) AS t
CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2) AS w
CROSS JOIN agent_gram_positions AS p
WHERE p.i <= length(t.v) - w.n + 1 AND length(t.v) <= 256;
INSERT OR IGNORE INTO agent_grams (gram, agent)
SELECT '', rowid FROM agents WHERE length(pc_id) > 256 OR length(hostname) > 256;

-- The pieces are made DISTINCT rather than inserted OR IGNORE: a trigger's
-- conflict clause gives way to the statement's (a heartbeat's upsert), so
-- a repeated piece would fail the heartbeat. A trigger body cannot hold a WITH, so the pieces come from the positions
-- table; each name joins only the positions it has (a range of the
-- positions' key: joining all 256 and testing each made the backfill 4
-- times slower). The triggers mirror 0016's: a heartbeat that rewrites the same
-- hostname touches nothing.
CREATE TRIGGER agent_grams_insert AFTER INSERT ON agents BEGIN
    INSERT INTO agent_grams (gram, agent)
    SELECT DISTINCT lower(substr(t.v, p.i, w.n)), new.rowid
    FROM (SELECT new.pc_id AS v UNION ALL SELECT new.hostname) AS t
    CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2) AS w
    CROSS JOIN agent_gram_positions AS p
    WHERE p.i <= length(t.v) - w.n + 1 AND length(t.v) <= 256;
    INSERT INTO agent_grams (gram, agent)
    SELECT '', new.rowid WHERE length(new.pc_id) > 256 OR length(new.hostname) > 256;
END;

-- The old pieces are recomputed, so the delete is a search of the primary
-- key per piece and the table needs no second index.
CREATE TRIGGER agent_grams_delete AFTER DELETE ON agents BEGIN
    DELETE FROM agent_grams WHERE agent = old.rowid AND gram IN (
        SELECT lower(substr(t.v, p.i, w.n))
        FROM (SELECT old.pc_id AS v UNION ALL SELECT old.hostname) AS t
        CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2) AS w
        CROSS JOIN agent_gram_positions AS p
        WHERE p.i <= length(t.v) - w.n + 1
        UNION ALL SELECT '');
END;

CREATE TRIGGER agent_grams_update AFTER UPDATE OF pc_id, hostname ON agents
WHEN old.pc_id IS NOT new.pc_id OR old.hostname IS NOT new.hostname BEGIN
    DELETE FROM agent_grams WHERE agent = old.rowid AND gram IN (
        SELECT lower(substr(t.v, p.i, w.n))
        FROM (SELECT old.pc_id AS v UNION ALL SELECT old.hostname) AS t
        CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2) AS w
        CROSS JOIN agent_gram_positions AS p
        WHERE p.i <= length(t.v) - w.n + 1
        UNION ALL SELECT '');
    INSERT INTO agent_grams (gram, agent)
    SELECT DISTINCT lower(substr(t.v, p.i, w.n)), new.rowid
    FROM (SELECT new.pc_id AS v UNION ALL SELECT new.hostname) AS t
    CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2) AS w
    CROSS JOIN agent_gram_positions AS p
    WHERE p.i <= length(t.v) - w.n + 1 AND length(t.v) <= 256;
    INSERT INTO agent_grams (gram, agent)
    SELECT '', new.rowid WHERE length(new.pc_id) > 256 OR length(new.hostname) > 256;
END;

-- A group's count (total=true with group=, alone or with status=) from
-- group_minutes, which 0009 keeps per (minute, group): a few rows per group
-- instead of a probe of the roster per member. The index holds no count,
-- so a heartbeat that moves a count rewrites no entry of it.
CREATE INDEX group_minutes_by_group ON group_minutes (group_name, minute);
