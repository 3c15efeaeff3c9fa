-- GET /api/agents?q= (issue 13): a case-insensitive substring of pc_id or
-- hostname. Without an index every search walked the whole roster (9–14
-- requests/s at 100k agents under 50 connections); a trigram index finds
-- the agents holding each three-character piece of the search, so a
-- search of three or more characters reads only its candidates.
--
-- The index is external-content over agents (it stores the trigrams, not a
-- second copy of the text), keyed by the agents rowid. It only finds
-- candidates: its case folding is Unicode's, broader than LIKE's ASCII one,
-- so storage/agents_list.go tests each candidate with the same LIKE as
-- before, and the answer is exactly the LIKE's. (Nothing here runs VACUUM,
-- which may renumber the rowids of a table without an INTEGER PRIMARY KEY;
-- a VACUUM would have to be followed by the 'rebuild' below.)
CREATE VIRTUAL TABLE agents_search USING fts5(
    pc_id, hostname,
    content = 'agents', content_rowid = 'rowid',
    tokenize = 'trigram case_sensitive 0'
);
INSERT INTO agents_search (agents_search) VALUES ('rebuild');

CREATE TRIGGER agents_search_insert AFTER INSERT ON agents BEGIN
    INSERT INTO agents_search (rowid, pc_id, hostname) VALUES (new.rowid, new.pc_id, new.hostname);
END;

CREATE TRIGGER agents_search_delete AFTER DELETE ON agents BEGIN
    INSERT INTO agents_search (agents_search, rowid, pc_id, hostname)
    VALUES ('delete', old.rowid, old.pc_id, old.hostname);
END;

-- A heartbeat rewrites hostname on every upsert (to the same value nearly
-- always): the WHEN keeps those from touching the index, so only a real
-- change of a searched column re-indexes its row.
CREATE TRIGGER agents_search_update AFTER UPDATE OF pc_id, hostname ON agents
WHEN old.pc_id IS NOT new.pc_id OR old.hostname IS NOT new.hostname BEGIN
    INSERT INTO agents_search (agents_search, rowid, pc_id, hostname)
    VALUES ('delete', old.rowid, old.pc_id, old.hostname);
    INSERT INTO agents_search (rowid, pc_id, hostname) VALUES (new.rowid, new.pc_id, new.hostname);
END;
