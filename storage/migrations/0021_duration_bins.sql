-- Run-duration summaries, format 2: each segment also carries a histogram of
-- its sorted durations (fixed bins, 16 per power of two), with each bin's
-- byte range in durs, and its min, max and sum; and each bin of each segment
-- is also a row of duration_bins, keyed job first, so scan_durations sums
-- the histograms, finds the bin that holds each percentile's rank and reads
-- only that bin's rows over the window (one index range per job and bin),
-- instead of every duration of the window (storage/durations.go). The table is recreated empty; the migration's Go
-- step (storage/db.go, migrationHooks) refills it from execution_results in
-- the same transaction.
--   bins: per non-empty bin, ascending: uvarint(bin − previous bin) (the
--         first zigzag-encoded), uvarint(runs), uvarint(bytes in durs);
--   durs: per bin, zigzag uvarint(first duration), then uvarint deltas (ms);
--   offs: uvarint ns of finished_at past the start of the hour, same order.
-- runs, lo, hi, total (count, min, max, sum of the durations) come before
-- the blobs, so reading them never touches a blob's overflow pages.
DROP TABLE duration_segments;
CREATE TABLE duration_segments (
    hour   INTEGER NOT NULL, -- floor(unix seconds of finished_at / 3600)
    job_id TEXT NOT NULL,
    seg    INTEGER NOT NULL,
    runs   INTEGER NOT NULL,
    lo     INTEGER NOT NULL,
    hi     INTEGER NOT NULL,
    total  INTEGER NOT NULL,
    bins   BLOB NOT NULL,
    durs   BLOB NOT NULL,
    offs   BLOB NOT NULL,
    PRIMARY KEY (hour, job_id, seg)
) WITHOUT ROWID;

-- One row per non-empty bin of each segment: its runs and its bytes of the
-- segment's durs. Written and deleted with its segment.
CREATE TABLE duration_bins (
    job_id TEXT NOT NULL,
    bin    INTEGER NOT NULL,
    hour   INTEGER NOT NULL,
    seg    INTEGER NOT NULL,
    runs   INTEGER NOT NULL,
    durs   BLOB NOT NULL,
    PRIMARY KEY (job_id, bin, hour, seg)
) WITHOUT ROWID;
