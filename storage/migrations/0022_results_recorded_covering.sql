-- Issue 16 (fleet health at 10M runs): the edge of recent_results' window,
-- read from the index alone.
--
-- The fleet rollup (storage/fleet.go) sums result_minutes over the whole
-- minutes of the 24 h window and counts the rows of the cutoff's own minute
-- from execution_results. That part needs exit_code and skipped for the
-- failure rule, and through the index on recorded_at alone each row was a
-- lookup into the table: at 10M runs a day a minute holds ~7 000 runs, and
-- those lookups were ~10 ms of a request the issue wants under 2 ms. The
-- index now carries both columns, so the edge is one contiguous range of it.
-- Inserts wrote an entry in this index already, only narrower; a result that
-- finishes a running row or the reaper's exit code rewrites the entry.
-- Retention (housekeeping) walks the same index by its first column.
DROP INDEX execution_results_recorded_at;
CREATE INDEX execution_results_recorded_at ON execution_results (recorded_at, exit_code, skipped);
