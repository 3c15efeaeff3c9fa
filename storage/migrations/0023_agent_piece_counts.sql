-- GET /api/agents?q= (issue 13): which of a search's pieces to ask an
-- index for, and whether to ask one at all. Any piece of three characters
-- finds every agent holding the search in the trigram index of 0016 (the
-- LIKE then removes the rest), but FTS5 reads the whole list of agents of
-- each piece asked for, and in a fleet named alike ("host-…", "PC-0…") a
-- search's first pieces are in nearly every agent: q=host-0123 read three
-- lists of 100k agents, 1.5 ms of CPU a request at 100k agents. And a
-- search held by most agents read its index's first 2,001 candidates only
-- to drop them and walk the roster (q=host-, q=12).
--
-- agent_piece_counts holds, for each piece of one, two and three
-- characters of a pc_id or hostname (lowered by SQL's lower(), as
-- agent_grams of 0020), how many agents hold it. storage/agents_list.go
-- asks for the rarest pieces of a search, and walks without asking when
-- even the rarest is held by more agents than it reads candidates from.
-- The counts only choose: a piece counted wrongly (a name over
-- agent_gram_positions' 256 characters is not counted; lower() folds only
-- ASCII, the index folds Unicode) costs time, never an answer.
CREATE TABLE agent_piece_counts (
    gram   TEXT PRIMARY KEY,
    agents INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO agent_piece_counts (gram, agents)
SELECT g, COUNT(*) FROM (
    SELECT DISTINCT lower(substr(t.v, p.i, w.n)) AS g, t.r
    FROM (SELECT rowid AS r, pc_id AS v FROM agents UNION ALL SELECT rowid, hostname FROM agents) AS t
    CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS w
    CROSS JOIN agent_gram_positions AS p
    WHERE p.i <= length(t.v) - w.n + 1 AND length(t.v) <= 256)
GROUP BY g;

-- The triggers add and take away one per distinct piece of the agent's
-- names. A new piece gets its row first and is counted by the UPDATE (an
-- INSERT OR IGNORE or an upsert here would give way to the conflict clause
-- of the heartbeat's upsert that fired the trigger; see 0020). As 0016's,
-- a heartbeat that rewrites the same names touches nothing.
CREATE TRIGGER agent_piece_counts_insert AFTER INSERT ON agents BEGIN
    INSERT INTO agent_piece_counts (gram, agents)
    SELECT DISTINCT lower(substr(t.v, p.i, w.n)), 0
    FROM (SELECT new.pc_id AS v UNION ALL SELECT new.hostname) AS t
    CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS w
    CROSS JOIN agent_gram_positions AS p
    WHERE p.i <= length(t.v) - w.n + 1 AND length(t.v) <= 256
      AND lower(substr(t.v, p.i, w.n)) NOT IN (SELECT gram FROM agent_piece_counts);
    UPDATE agent_piece_counts SET agents = agents + 1 WHERE gram IN (
        SELECT lower(substr(t.v, p.i, w.n))
        FROM (SELECT new.pc_id AS v UNION ALL SELECT new.hostname) AS t
        CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS w
        CROSS JOIN agent_gram_positions AS p
        WHERE p.i <= length(t.v) - w.n + 1 AND length(t.v) <= 256);
END;

CREATE TRIGGER agent_piece_counts_delete AFTER DELETE ON agents BEGIN
    UPDATE agent_piece_counts SET agents = agents - 1 WHERE gram IN (
        SELECT lower(substr(t.v, p.i, w.n))
        FROM (SELECT old.pc_id AS v UNION ALL SELECT old.hostname) AS t
        CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS w
        CROSS JOIN agent_gram_positions AS p
        WHERE p.i <= length(t.v) - w.n + 1 AND length(t.v) <= 256);
END;

CREATE TRIGGER agent_piece_counts_update AFTER UPDATE OF pc_id, hostname ON agents
WHEN old.pc_id IS NOT new.pc_id OR old.hostname IS NOT new.hostname BEGIN
    UPDATE agent_piece_counts SET agents = agents - 1 WHERE gram IN (
        SELECT lower(substr(t.v, p.i, w.n))
        FROM (SELECT old.pc_id AS v UNION ALL SELECT old.hostname) AS t
        CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS w
        CROSS JOIN agent_gram_positions AS p
        WHERE p.i <= length(t.v) - w.n + 1 AND length(t.v) <= 256);
    INSERT INTO agent_piece_counts (gram, agents)
    SELECT DISTINCT lower(substr(t.v, p.i, w.n)), 0
    FROM (SELECT new.pc_id AS v UNION ALL SELECT new.hostname) AS t
    CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS w
    CROSS JOIN agent_gram_positions AS p
    WHERE p.i <= length(t.v) - w.n + 1 AND length(t.v) <= 256
      AND lower(substr(t.v, p.i, w.n)) NOT IN (SELECT gram FROM agent_piece_counts);
    UPDATE agent_piece_counts SET agents = agents + 1 WHERE gram IN (
        SELECT lower(substr(t.v, p.i, w.n))
        FROM (SELECT new.pc_id AS v UNION ALL SELECT new.hostname) AS t
        CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS w
        CROSS JOIN agent_gram_positions AS p
        WHERE p.i <= length(t.v) - w.n + 1 AND length(t.v) <= 256);
END;
