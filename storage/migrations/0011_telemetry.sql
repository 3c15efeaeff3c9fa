-- Performance samples and the observability timeline (observe.md §1–§2).
-- The spec's TIMESTAMP columns are TEXT in the fixed-width layout of
-- storage.md, as everywhere here (the SQLite driver would turn a declared
-- TIMESTAMP into another text form on the way out).

-- Host samples (§1.3), one row per PC and agent instant. at_unix is the
-- whole second of `at` (floor), the port's bucketing key: buckets are
-- epoch-aligned, so bucket = at_unix / step * step. Clustered by PC, so a
-- per-PC window is one contiguous range of the table.
CREATE TABLE host_perf_samples (
    pc_id                      TEXT NOT NULL,
    at                         TEXT NOT NULL,
    at_unix                    INTEGER NOT NULL,
    cpu_pct                    REAL,
    cpu_count                  INTEGER,
    mem_used_bytes             INTEGER,
    mem_total_bytes            INTEGER,
    swap_used_bytes            INTEGER,
    swap_total_bytes           INTEGER,
    disk_read_bytes_per_sec    REAL,
    disk_written_bytes_per_sec REAL,
    net_rx_bytes_per_sec       REAL,
    net_tx_bytes_per_sec       REAL,
    PRIMARY KEY (pc_id, at)
) WITHOUT ROWID;
CREATE INDEX host_perf_samples_by_at ON host_perf_samples (at);

-- The rollups of §1.5, kept in the transaction that inserts the raw rows
-- and only for rows actually inserted. For each metric: the count of
-- non-NULL values (_n), their sum (_s) and their maximum (_x, NULL when
-- _n is 0). host_perf_5m holds one row per (PC, 5-minute slot);
-- host_perf_fleet_1m one per 1-minute slot for the whole fleet (finer than
-- the 5 minutes the spec asks for, so the fleet route serves every step
-- that is a multiple of 60 s from it; a day is 1 440 rows).
CREATE TABLE host_perf_5m (
    pc_id TEXT NOT NULL,
    slot  INTEGER NOT NULL,
    cpu_pct_n INTEGER NOT NULL DEFAULT 0,
    cpu_pct_s REAL NOT NULL DEFAULT 0,
    cpu_pct_x REAL,
    mem_used_bytes_n INTEGER NOT NULL DEFAULT 0,
    mem_used_bytes_s REAL NOT NULL DEFAULT 0,
    mem_used_bytes_x REAL,
    mem_total_bytes_n INTEGER NOT NULL DEFAULT 0,
    mem_total_bytes_s REAL NOT NULL DEFAULT 0,
    mem_total_bytes_x REAL,
    swap_used_bytes_n INTEGER NOT NULL DEFAULT 0,
    swap_used_bytes_s REAL NOT NULL DEFAULT 0,
    swap_used_bytes_x REAL,
    swap_total_bytes_n INTEGER NOT NULL DEFAULT 0,
    swap_total_bytes_s REAL NOT NULL DEFAULT 0,
    swap_total_bytes_x REAL,
    disk_read_bytes_per_sec_n INTEGER NOT NULL DEFAULT 0,
    disk_read_bytes_per_sec_s REAL NOT NULL DEFAULT 0,
    disk_read_bytes_per_sec_x REAL,
    disk_written_bytes_per_sec_n INTEGER NOT NULL DEFAULT 0,
    disk_written_bytes_per_sec_s REAL NOT NULL DEFAULT 0,
    disk_written_bytes_per_sec_x REAL,
    net_rx_bytes_per_sec_n INTEGER NOT NULL DEFAULT 0,
    net_rx_bytes_per_sec_s REAL NOT NULL DEFAULT 0,
    net_rx_bytes_per_sec_x REAL,
    net_tx_bytes_per_sec_n INTEGER NOT NULL DEFAULT 0,
    net_tx_bytes_per_sec_s REAL NOT NULL DEFAULT 0,
    net_tx_bytes_per_sec_x REAL,
    PRIMARY KEY (slot, pc_id)
) WITHOUT ROWID;
-- Keyed by slot first: /api/perf/top reads every PC's rows of the last
-- slots, one contiguous range; a PC's series goes through this index.
CREATE INDEX host_perf_5m_by_pc ON host_perf_5m (pc_id, slot);

CREATE TABLE host_perf_fleet_1m (
    slot  INTEGER PRIMARY KEY,
    cpu_pct_n INTEGER NOT NULL DEFAULT 0,
    cpu_pct_s REAL NOT NULL DEFAULT 0,
    cpu_pct_x REAL,
    mem_used_bytes_n INTEGER NOT NULL DEFAULT 0,
    mem_used_bytes_s REAL NOT NULL DEFAULT 0,
    mem_used_bytes_x REAL,
    mem_total_bytes_n INTEGER NOT NULL DEFAULT 0,
    mem_total_bytes_s REAL NOT NULL DEFAULT 0,
    mem_total_bytes_x REAL,
    swap_used_bytes_n INTEGER NOT NULL DEFAULT 0,
    swap_used_bytes_s REAL NOT NULL DEFAULT 0,
    swap_used_bytes_x REAL,
    swap_total_bytes_n INTEGER NOT NULL DEFAULT 0,
    swap_total_bytes_s REAL NOT NULL DEFAULT 0,
    swap_total_bytes_x REAL,
    disk_read_bytes_per_sec_n INTEGER NOT NULL DEFAULT 0,
    disk_read_bytes_per_sec_s REAL NOT NULL DEFAULT 0,
    disk_read_bytes_per_sec_x REAL,
    disk_written_bytes_per_sec_n INTEGER NOT NULL DEFAULT 0,
    disk_written_bytes_per_sec_s REAL NOT NULL DEFAULT 0,
    disk_written_bytes_per_sec_x REAL,
    net_rx_bytes_per_sec_n INTEGER NOT NULL DEFAULT 0,
    net_rx_bytes_per_sec_s REAL NOT NULL DEFAULT 0,
    net_rx_bytes_per_sec_x REAL,
    net_tx_bytes_per_sec_n INTEGER NOT NULL DEFAULT 0,
    net_tx_bytes_per_sec_s REAL NOT NULL DEFAULT 0,
    net_tx_bytes_per_sec_x REAL
);

-- Process samples (§1.3).
CREATE TABLE process_perf_samples (
    pc_id                      TEXT NOT NULL,
    at                         TEXT NOT NULL,
    at_unix                    INTEGER NOT NULL,
    pid                        INTEGER NOT NULL,
    name                       TEXT NOT NULL,
    cpu_pct                    REAL NOT NULL,
    rss_bytes                  INTEGER NOT NULL,
    disk_read_bytes_per_sec    REAL,
    disk_written_bytes_per_sec REAL,
    PRIMARY KEY (pc_id, at, pid)
) WITHOUT ROWID;
CREATE INDEX process_perf_samples_by_at ON process_perf_samples (at);

-- The newest process sample of each PC, for /api/perf/active-investigations
-- (a lookup of the PCs sending now, not a GROUP BY over every row of the
-- last minutes). Kept in the ingest transaction; retention deletes the rows
-- of PCs whose samples all aged out.
CREATE TABLE process_perf_latest (
    pc_id     TEXT PRIMARY KEY,
    latest_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX process_perf_latest_by_at ON process_perf_latest (latest_at);

-- The observability timeline (§2.2). stream_seq (the OBS_EVENTS sequence)
-- makes one stream message one row whatever happens to it; the UNIQUE on
-- (pc_id, source, event_record_id) makes a re-sent event a no-op.
CREATE TABLE obs_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    pc_id           TEXT NOT NULL,
    at              TEXT NOT NULL,
    kind            TEXT NOT NULL,
    source          TEXT NOT NULL,
    event_record_id TEXT,
    payload         TEXT,
    stream_seq      INTEGER UNIQUE,
    recorded_at     TEXT,
    UNIQUE (pc_id, source, event_record_id)
);
CREATE INDEX obs_events_by_at ON obs_events (at);
CREATE INDEX obs_events_by_kind ON obs_events (kind, at DESC);
CREATE INDEX obs_events_by_pc ON obs_events (pc_id, at DESC);
CREATE INDEX obs_events_by_source ON obs_events (source);

-- How many stored events carry each kind and each source (field 'kind' or
-- 'source'), kept with the rows, so /kinds and /sources read a few hundred
-- rows instead of a DISTINCT over 90 days of events.
CREATE TABLE obs_event_vocab (
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (field, value)
) WITHOUT ROWID;
