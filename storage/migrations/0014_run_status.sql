-- Issue 13 (triage): every /api/results status filter, and exec_id, as an
-- index range instead of a walk of the started_at index that discards rows.
--
-- run_status is a run's outcome as one small integer, so one index column
-- serves every status filter. The rules are api.md's and the fleet rollup's
-- (failedPredicate): 3 skipped (whatever the exit code); 0 running (no exit
-- code yet); 1 success (exit 0); 2 failure (any other exit code, a reaped
-- run's -1 included). VIRTUAL: computed from the row, stored only in the
-- indexes below.
ALTER TABLE execution_results ADD COLUMN run_status INTEGER
    GENERATED ALWAYS AS (CASE WHEN skipped <> 0 THEN 3 WHEN exit_code IS NULL THEN 0
                              WHEN exit_code = 0 THEN 1 ELSE 2 END) VIRTUAL;

-- Successes are nearly every run: a success filter walks the lists' own
-- indexes and finds a page at once, so the status indexes leave them out
-- (partial, a fraction of the size) and hold the rare outcomes an operator
-- looks for. A query uses them by repeating the term "run_status <> 1".
CREATE INDEX execution_results_status_started
    ON execution_results (run_status, started_at, result_id) WHERE run_status <> 1;
CREATE INDEX execution_results_job_status_started
    ON execution_results (job_id, run_status, started_at, result_id) WHERE run_status <> 1;
CREATE INDEX execution_results_pc_status_started
    ON execution_results (pc_id, run_status, started_at, result_id) WHERE run_status <> 1;
-- An execution's runs (the execution page's per-PC results), and its rare
-- outcomes.
CREATE INDEX execution_results_exec_started
    ON execution_results (exec_id, started_at, result_id);
CREATE INDEX execution_results_exec_status_started
    ON execution_results (exec_id, run_status, started_at, result_id) WHERE run_status <> 1;

-- Bugs 5 and 7: a skipped run (a PC offline at dispatch answers later with a
-- skipped result) was counted in success_count or failure_count by its exit
-- code. It now has its own counter, and failure_count means what the fleet
-- rollup and ?status=failure mean. The runs already counted move over: the
-- projection counted every finished run with an exec_id by its exit code
-- (a skipped run is never reaped), so this is exact.
ALTER TABLE executions ADD COLUMN skipped_count INTEGER NOT NULL DEFAULT 0;
UPDATE executions
   SET skipped_count = s.n,
       success_count = max(success_count - s.ok, 0),
       failure_count = max(failure_count - (s.n - s.ok), 0)
  FROM (SELECT exec_id, COUNT(*) AS n, SUM(exit_code = 0) AS ok
          FROM execution_results INDEXED BY execution_results_exec_status_started
         WHERE exec_id IS NOT NULL AND run_status <> 1 AND run_status = 3
         GROUP BY exec_id) AS s
 WHERE executions.exec_id = s.exec_id;
