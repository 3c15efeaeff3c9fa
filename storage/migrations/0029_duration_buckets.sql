-- duration_buckets marks each bucket of the duration summaries (an hour of
-- one job) with when its rows last changed, for scan_durations to keep what
-- it read of a bucket while its mark stands (scan_cache.go says why the
-- triggers see every change, and why marks come from one counter that
-- starts from the clock). Comments are kept short here: this file is in
-- the Lambda bootstrap, whose size has a budget.
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
