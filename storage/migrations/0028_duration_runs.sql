-- A segment's blobs move out of duration_segments into duration_runs.
--
-- duration_segments is a WITHOUT ROWID table, and a closed hour of a busy job
-- is one segment of thousands of runs (2,000 at 10M runs a day: 11 KB of
-- durs and offs), which overflows its page. SQLite compares a search key
-- with such a row by reading the whole row, overflow pages and all, into a
-- buffer: every seek into the table paid for the blobs of each row it
-- compared on the way down. The writer seeks a bucket for each bucket a
-- batch touches and its neighbours (segment counts, loads, deletes): 100
-- bucket lookups on the 10M-run bench file took 10.5 ms instead of 0.7 ms,
-- and a scan's walk over the later hours read three times the pages its
-- small columns fill.
--
-- Now duration_segments keeps a segment's key, counts and bin directory
-- (a few hundred bytes), and duration_runs its durs and offs. duration_runs
-- is an ordinary rowid table: a row is found through the small index of its
-- key, then by rowid, and its blobs are read only when asked for. The
-- encoding is 0021_duration_bins.sql's, except that bins starts with a head
-- of 32 bytes: runs, lo, hi and total again, as big-endian 64-bit integers,
-- so that a scan reads a row's job_id and bins, two columns instead of six
-- (each column of each row is calls into the driver: 40% of the later
-- hours' read at 10M runs). The columns stay for SQL.
--
-- If the summaries are empty while runs exist (a file from before 0021,
-- whose SQL recreated them empty), the Go step of this migration rebuilds
-- them (storage/db.go, migrationHook).
CREATE TABLE duration_runs (
    hour   INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    seg    INTEGER NOT NULL,
    durs   BLOB NOT NULL,
    offs   BLOB NOT NULL,
    PRIMARY KEY (hour, job_id, seg)
);
INSERT INTO duration_runs (hour, job_id, seg, durs, offs)
    SELECT hour, job_id, seg, durs, offs FROM duration_segments ORDER BY hour, job_id, seg;

CREATE TABLE duration_segments_0028 (
    hour   INTEGER NOT NULL, -- floor(unix seconds of finished_at / 3600)
    job_id TEXT NOT NULL,
    seg    INTEGER NOT NULL,
    runs   INTEGER NOT NULL,
    lo     INTEGER NOT NULL,
    hi     INTEGER NOT NULL,
    total  INTEGER NOT NULL,
    bins   BLOB NOT NULL,
    PRIMARY KEY (hour, job_id, seg)
) WITHOUT ROWID;
INSERT INTO duration_segments_0028 (hour, job_id, seg, runs, lo, hi, total, bins)
    SELECT hour, job_id, seg, runs, lo, hi, total,
        -- || makes TEXT of two blobs, bytes kept; the cast makes it a BLOB again.
        CAST(unhex(printf('%016x%016x%016x%016x', runs, lo, hi, total)) || bins AS BLOB)
    FROM duration_segments;
DROP TABLE duration_segments;
ALTER TABLE duration_segments_0028 RENAME TO duration_segments;
