-- Every timestamp column holds kanade.TimeLayout text (fixed-width UTC RFC 3339
-- with nine fractional digits), so text order is time order. Never
-- CURRENT_TIMESTAMP. Minute keys are the first 16 characters of that layout.

CREATE TABLE agents (
    pc_id                    TEXT PRIMARY KEY,
    hostname                 TEXT,
    os_family                TEXT,
    agent_version            TEXT,
    last_heartbeat           TEXT NOT NULL,
    agent_cpu_pct            REAL,
    agent_rss_bytes          INTEGER,
    agent_disk_read_bytes    INTEGER,
    agent_disk_written_bytes INTEGER,
    quarantined_versions     TEXT,
    last_logon_user          TEXT,
    last_logon_display_name  TEXT,
    command_keys             TEXT,
    command_protocols        TEXT,
    enforcing                INTEGER,
    updated_at               TEXT NOT NULL
);
CREATE INDEX agents_last_heartbeat ON agents (last_heartbeat);

-- Fleet-health summaries, kept by triggers in the same transaction as the rows
-- they count, so /api/health/fleet never scans agents or execution_results.
CREATE TABLE fleet_counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO fleet_counters (name, value) VALUES ('agents', 0);

-- Number of agents whose last_heartbeat falls in each minute.
CREATE TABLE agent_minutes (
    minute TEXT PRIMARY KEY,
    agents INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER agents_counters_insert AFTER INSERT ON agents BEGIN
    UPDATE fleet_counters SET value = value + 1 WHERE name = 'agents';
    INSERT INTO agent_minutes (minute, agents) VALUES (substr(NEW.last_heartbeat, 1, 16), 1)
        ON CONFLICT (minute) DO UPDATE SET agents = agents + 1;
END;

CREATE TRIGGER agents_counters_update AFTER UPDATE OF last_heartbeat ON agents
WHEN substr(OLD.last_heartbeat, 1, 16) <> substr(NEW.last_heartbeat, 1, 16) BEGIN
    UPDATE agent_minutes SET agents = agents - 1 WHERE minute = substr(OLD.last_heartbeat, 1, 16);
    DELETE FROM agent_minutes WHERE minute = substr(OLD.last_heartbeat, 1, 16) AND agents <= 0;
    INSERT INTO agent_minutes (minute, agents) VALUES (substr(NEW.last_heartbeat, 1, 16), 1)
        ON CONFLICT (minute) DO UPDATE SET agents = agents + 1;
END;

CREATE TRIGGER agents_counters_delete AFTER DELETE ON agents BEGIN
    UPDATE fleet_counters SET value = value - 1 WHERE name = 'agents';
    UPDATE agent_minutes SET agents = agents - 1 WHERE minute = substr(OLD.last_heartbeat, 1, 16);
    DELETE FROM agent_minutes WHERE minute = substr(OLD.last_heartbeat, 1, 16) AND agents <= 0;
END;

CREATE TABLE execution_results (
    result_id        TEXT PRIMARY KEY,
    request_id       TEXT,
    exec_id          TEXT,
    pc_id            TEXT,
    job_id           TEXT,
    version          TEXT,
    exit_code        INTEGER,
    skipped          INTEGER NOT NULL DEFAULT 0,
    stdout           TEXT,
    stderr           TEXT,
    started_at       TEXT,
    finished_at      TEXT,
    recorded_at      TEXT NOT NULL,
    expires_at       TEXT,
    reaped           INTEGER NOT NULL DEFAULT 0,
    parent_result_id TEXT,
    -- Exact whole milliseconds finished_at - started_at (clamped at 0); NULL
    -- until both are known. Written by Go, never by julianday arithmetic.
    duration_ms      INTEGER
);
CREATE INDEX execution_results_recorded_at ON execution_results (recorded_at);
CREATE INDEX execution_results_finished_at ON execution_results (finished_at);
CREATE INDEX execution_results_job_pc_finished ON execution_results (job_id, pc_id, finished_at);
CREATE INDEX execution_results_started ON execution_results (started_at, result_id);
CREATE INDEX execution_results_pc_started ON execution_results (pc_id, started_at);
CREATE INDEX execution_results_running ON execution_results (expires_at) WHERE finished_at IS NULL;
-- scan_durations' slowest-run lookup, answered from the index alone: per job,
-- the range (job, max duration, finished_at >= since), smallest result_id.
CREATE INDEX execution_results_job_duration ON execution_results (job_id, duration_ms, finished_at, result_id);

-- Runs recorded per minute (by recorded_at) and how many of them failed: a
-- failure is a finished, non-skipped run with a non-zero exit code.
CREATE TABLE result_minutes (
    minute TEXT PRIMARY KEY,
    total  INTEGER NOT NULL,
    failed INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER execution_results_counters_insert AFTER INSERT ON execution_results BEGIN
    INSERT INTO result_minutes (minute, total, failed)
    VALUES (substr(NEW.recorded_at, 1, 16), 1,
            NEW.exit_code IS NOT NULL AND NEW.exit_code <> 0 AND NEW.skipped = 0)
        ON CONFLICT (minute) DO UPDATE SET total = total + 1, failed = failed + excluded.failed;
END;

CREATE TRIGGER execution_results_counters_update
AFTER UPDATE OF exit_code, skipped, recorded_at ON execution_results BEGIN
    UPDATE result_minutes
       SET total = total - 1,
           failed = failed - (OLD.exit_code IS NOT NULL AND OLD.exit_code <> 0 AND OLD.skipped = 0)
     WHERE minute = substr(OLD.recorded_at, 1, 16);
    INSERT INTO result_minutes (minute, total, failed)
    VALUES (substr(NEW.recorded_at, 1, 16), 1,
            NEW.exit_code IS NOT NULL AND NEW.exit_code <> 0 AND NEW.skipped = 0)
        ON CONFLICT (minute) DO UPDATE SET total = total + 1, failed = failed + excluded.failed;
END;

CREATE TRIGGER execution_results_counters_delete AFTER DELETE ON execution_results BEGIN
    UPDATE result_minutes
       SET total = total - 1,
           failed = failed - (OLD.exit_code IS NOT NULL AND OLD.exit_code <> 0 AND OLD.skipped = 0)
     WHERE minute = substr(OLD.recorded_at, 1, 16);
END;

-- Sorted run durations per (finished_at hour, job), in segments: the
-- projection appends one segment per batch and compacts a bucket when it has
-- too many, or once the next hour has begun. scan_durations selects exact
-- ranks from these instead of sorting every row. Maintained in Go
-- (storage/durations.go) in the same transaction as the rows; a finished row
-- is in exactly one segment entry iff job_id, finished_at and duration_ms are
-- all set.
--   durs: uvarint(first duration) then uvarint deltas, ascending (ms);
--   offs: uvarint ns of finished_at past the start of the hour, same order.
-- Two columns so that every hour but the first of a window is read without
-- its (larger) offsets.
CREATE TABLE duration_segments (
    hour   INTEGER NOT NULL, -- floor(unix seconds of finished_at / 3600)
    job_id TEXT NOT NULL,
    seg    INTEGER NOT NULL,
    runs   INTEGER NOT NULL,
    durs   BLOB NOT NULL,
    offs   BLOB NOT NULL,
    PRIMARY KEY (hour, job_id, seg)
) WITHOUT ROWID; -- a window is one sequential range of the primary key

CREATE TABLE executions (
    exec_id       TEXT PRIMARY KEY,
    job_id        TEXT,
    version       TEXT,
    initiated_by  TEXT,
    initiated_at  TEXT,
    target_count  INTEGER,
    success_count INTEGER NOT NULL DEFAULT 0,
    failure_count INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'pending'
);
CREATE INDEX executions_initiated_at ON executions (initiated_at, exec_id);
CREATE INDEX executions_pending ON executions (initiated_at) WHERE status = 'pending';

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    payload     TEXT,
    occurred_at TEXT NOT NULL,
    stream_seq  INTEGER
);
CREATE UNIQUE INDEX audit_log_stream_seq ON audit_log (stream_seq) WHERE stream_seq IS NOT NULL;
CREATE INDEX audit_log_occurred_at ON audit_log (occurred_at, id);

-- The last stream sequence each durable consumer applied, written in the same
-- transaction as the effects of that batch: the projection's exactly-once key.
CREATE TABLE consumer_offsets (
    consumer   TEXT PRIMARY KEY,
    stream_seq INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
