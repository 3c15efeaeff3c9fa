-- /api/results?job_id= lists a job's runs newest first. Without this index
-- SQLite took the job's rows from (job_id, pc_id, finished_at) and sorted
-- them: 37 ms a page at 1M runs (BenchmarkListRuns/job), against under a
-- millisecond for the by-PC list.
CREATE INDEX execution_results_job_started ON execution_results (job_id, started_at, result_id);
