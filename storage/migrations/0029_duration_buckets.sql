-- duration_buckets says, per bucket of the duration summaries (an hour of
-- one job), when its rows last changed, so that scan_durations can keep
-- what it read of a bucket and use it again for as long as the bucket has
-- not changed (scan_cache.go). Read in the same snapshot as the summaries,
-- an unchanged v means unchanged rows: every write of the summaries inserts
-- or deletes rows of duration_segments (a bucket is rewritten by deleting
-- its segments and inserting new ones; its rows of duration_bins and
-- duration_runs change only with them, durations.go), so the triggers below
-- see every change, whoever writes it: the projector, the reaper,
-- retention, a rebuild.
--
-- v is drawn from one counter, duration_changes, never from the bucket's
-- own row: a bucket emptied (its row deleted) and filled again gets a v no
-- bucket ever had, so nothing kept of it before can match. The counter
-- starts from the clock (microseconds), so that a database migrated again
-- (its tables dropped and made anew) does not count through the marks of
-- before either.
CREATE TABLE duration_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT INTO duration_changes (id, n) VALUES (1, unixepoch() * 1000000);
CREATE TABLE duration_buckets (
    hour   INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    v      INTEGER NOT NULL,
    PRIMARY KEY (hour, job_id)
) WITHOUT ROWID;
INSERT INTO duration_buckets (hour, job_id, v)
    SELECT DISTINCT hour, job_id, (SELECT n FROM duration_changes WHERE id = 1) FROM duration_segments;
CREATE TRIGGER duration_segments_insert AFTER INSERT ON duration_segments BEGIN
    UPDATE duration_changes SET n = n + 1 WHERE id = 1;
    INSERT INTO duration_buckets (hour, job_id, v) VALUES (NEW.hour, NEW.job_id, (SELECT n FROM duration_changes WHERE id = 1))
        ON CONFLICT (hour, job_id) DO UPDATE SET v = excluded.v;
END;
CREATE TRIGGER duration_segments_delete AFTER DELETE ON duration_segments BEGIN
    UPDATE duration_changes SET n = n + 1 WHERE id = 1;
    UPDATE duration_buckets SET v = (SELECT n FROM duration_changes WHERE id = 1) WHERE hour = OLD.hour AND job_id = OLD.job_id;
    DELETE FROM duration_buckets WHERE hour = OLD.hour AND job_id = OLD.job_id
        AND NOT EXISTS (SELECT 1 FROM duration_segments WHERE hour = OLD.hour AND job_id = OLD.job_id);
END;
CREATE TRIGGER duration_segments_update AFTER UPDATE ON duration_segments BEGIN
    UPDATE duration_changes SET n = n + 1 WHERE id = 1;
    DELETE FROM duration_buckets WHERE hour = OLD.hour AND job_id = OLD.job_id
        AND NOT EXISTS (SELECT 1 FROM duration_segments WHERE hour = OLD.hour AND job_id = OLD.job_id);
    UPDATE duration_buckets SET v = (SELECT n FROM duration_changes WHERE id = 1) WHERE hour = OLD.hour AND job_id = OLD.job_id;
    INSERT INTO duration_buckets (hour, job_id, v) VALUES (NEW.hour, NEW.job_id, (SELECT n FROM duration_changes WHERE id = 1))
        ON CONFLICT (hour, job_id) DO UPDATE SET v = excluded.v;
END;
