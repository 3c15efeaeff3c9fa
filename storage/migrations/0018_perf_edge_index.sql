-- Issue 15 (telemetry reads): the raw edge of a window, read fleet-wide.
--
-- /api/perf/top and the fleet series read whole slots from the rollups and
-- the raw samples only for the part of the window before the first whole
-- slot: up to five minutes of the whole fleet (5 000 rows at 1 000 PCs).
-- The table is clustered by (pc_id, at), so that edge was either one seek
-- per PC or, through the old index on at alone, one table lookup per row,
-- and at 1 000 PCs it was two thirds of the top-10's time. The index on at
-- now carries every column those reads take, so the edge is one contiguous
-- range of the index. Inserts wrote an entry in the index on at already;
-- the entry is only wider. Retention (housekeeping) walks the same index.
DROP INDEX host_perf_samples_by_at;
CREATE INDEX host_perf_samples_by_at ON host_perf_samples (
    at, pc_id, at_unix, cpu_pct, cpu_count, mem_used_bytes, mem_total_bytes,
    swap_used_bytes, swap_total_bytes, disk_read_bytes_per_sec,
    disk_written_bytes_per_sec, net_rx_bytes_per_sec, net_tx_bytes_per_sec);
