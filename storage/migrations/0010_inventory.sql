-- Inventory (fleet.md §5.3): what inventory jobs report, projected by the
-- RESULTS consumer in the same transaction as the run rows.

-- The latest facts per (PC, probe). collected_at is the run's finished_at
-- (agent clock), recorded_at the RESULTS message's stream timestamp: a
-- report whose recorded_at is older than the stored one is a stale replay
-- and changes nothing. explode_sig (this port's) is a digest of the explode
-- specs and the rows the derived tables hold for this report; a report with
-- the same digest leaves them alone. NULL when a derived step failed, so the
-- next report rewrites them whatever it says.
CREATE TABLE inventory_facts (
    pc_id        TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    collected_at TEXT,
    recorded_at  TEXT NOT NULL,
    explode_sig  TEXT,
    display_json TEXT,
    summary_json TEXT,
    -- The top-level members that are neither objects nor arrays, as one
    -- small JSON object (this port's): search-scalars reads it instead of
    -- parsing every whole report.
    scalars_json TEXT,
    -- Last: a report is kilobytes, stored on overflow pages, and SQLite
    -- reads a column after it only by walking them. Keeping it at the end
    -- lets the stale guard, the searches' collected_at and search-scalars
    -- read a row's first page only.
    facts_json   TEXT NOT NULL,
    PRIMARY KEY (pc_id, job_id)
);
-- By job, in pc_id order (GET /api/inventory/by-job/{id}); the primary key
-- serves the lookups by PC.
CREATE INDEX inventory_facts_job ON inventory_facts (job_id, pc_id);

-- The change log of explode rows (identity_json = the primary-key values)
-- and of history scalars (identity_json NULL). observed_at is the stream
-- timestamp of the report that showed the change. Retention 90 days.
-- The projector adds an index for the first primary-key field of each
-- tracked spec on demand (inventory_history_identity_<key>_<crc>), on
-- (job_id, json_extract(identity_json, '$.<key>'), field_path, observed_at),
-- so a search for one identity across the fleet reads only its events.
CREATE TABLE inventory_history (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    pc_id         TEXT NOT NULL,
    job_id        TEXT NOT NULL,
    field_path    TEXT NOT NULL,
    identity_json TEXT,
    change_kind   TEXT NOT NULL CHECK (change_kind IN ('added', 'removed', 'changed')),
    before_json   TEXT,
    after_json    TEXT,
    observed_at   TEXT NOT NULL
);
CREATE INDEX inventory_history_job_field_observed ON inventory_history (job_id, field_path, observed_at DESC);
CREATE INDEX inventory_history_job_field_identity ON inventory_history (job_id, field_path, identity_json);
CREATE INDEX inventory_history_observed ON inventory_history (observed_at);
CREATE INDEX inventory_history_pc_observed ON inventory_history (pc_id, observed_at DESC);

-- The derived (explode) tables the projector created. A table is read or
-- written only when it is listed here, so a manifest naming a table of the
-- backend's own schema (agents, users, …) can neither overwrite it nor have
-- it served by the search route. Names compare as SQLite compares them,
-- ignoring case.
CREATE TABLE inventory_tables (
    name       TEXT PRIMARY KEY COLLATE NOCASE,
    job_id     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
