-- The control plane (control.md) asks two questions of a job that must stay
-- cheap however many runs the job has had:
--   kill (§3.1): which of its executions are pending or running;
--   disable with cascade_kill (§5.7): which exec_ids still have a run
--     without a result.
-- Both are partial indexes over the few rows still in flight, so their size
-- does not grow with history.
CREATE INDEX executions_active_by_job ON executions (job_id) WHERE status IN ('pending', 'running');
CREATE INDEX execution_results_unfinished_by_job ON execution_results (job_id, exec_id)
  WHERE finished_at IS NULL AND exec_id IS NOT NULL;
