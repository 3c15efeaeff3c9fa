-- The scheduler's state. None of it is read by the API.

-- Each PC's newest successful finish per job: the "completion" the
-- per_pc / per_target reconcilers compare against (scheduler.md). Kept by
-- triggers so the once-a-minute reconcile never scans a job's history, and
-- so a completion outlives the retention of its run (a per_pc "once" job
-- must not come back after 90 days).
CREATE TABLE job_completions (
    job_id      TEXT NOT NULL,
    pc_id       TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (job_id, pc_id)
) WITHOUT ROWID;

CREATE TRIGGER job_completions_insert AFTER INSERT ON execution_results
WHEN NEW.exit_code = 0 AND NEW.skipped = 0 AND NEW.finished_at IS NOT NULL
     AND NEW.job_id IS NOT NULL AND NEW.pc_id IS NOT NULL BEGIN
    INSERT INTO job_completions (job_id, pc_id, finished_at)
    VALUES (NEW.job_id, NEW.pc_id, NEW.finished_at)
        ON CONFLICT (job_id, pc_id) DO UPDATE SET finished_at = excluded.finished_at
        WHERE excluded.finished_at > finished_at;
END;

CREATE TRIGGER job_completions_update AFTER UPDATE OF exit_code, skipped, finished_at, job_id ON execution_results
WHEN NEW.exit_code = 0 AND NEW.skipped = 0 AND NEW.finished_at IS NOT NULL
     AND NEW.job_id IS NOT NULL AND NEW.pc_id IS NOT NULL BEGIN
    INSERT INTO job_completions (job_id, pc_id, finished_at)
    VALUES (NEW.job_id, NEW.pc_id, NEW.finished_at)
        ON CONFLICT (job_id, pc_id) DO UPDATE SET finished_at = excluded.finished_at
        WHERE excluded.finished_at > finished_at;
END;

INSERT INTO job_completions (job_id, pc_id, finished_at)
SELECT job_id, pc_id, MAX(finished_at) FROM execution_results
 WHERE exit_code = 0 AND skipped = 0 AND finished_at IS NOT NULL
   AND job_id IS NOT NULL AND pc_id IS NOT NULL
 GROUP BY job_id, pc_id;

-- Calendar firings of a schedule up to checked_until were handled (fired
-- or recorded as missed), so a worker that starts after an outage knows
-- which firings nobody performed.
CREATE TABLE schedule_checks (
    schedule_id   TEXT PRIMARY KEY,
    checked_until TEXT NOT NULL
) WITHOUT ROWID;

-- Rollout waves waiting for their delay. They live here, not in memory, so a
-- delay survives a worker restart.
CREATE TABLE rollout_waves (
    exec_id  TEXT NOT NULL,
    wave     INTEGER NOT NULL,
    subject  TEXT NOT NULL,
    due_at   TEXT NOT NULL,
    command  TEXT NOT NULL,
    sent_at  TEXT,
    PRIMARY KEY (exec_id, wave)
) WITHOUT ROWID;
CREATE INDEX rollout_waves_due ON rollout_waves (due_at) WHERE sent_at IS NULL;
