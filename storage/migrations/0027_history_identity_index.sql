-- The history search by identity now reads the (job_id, field_path,
-- identity_json) index fleet.md §5.3 prescribes (storage/inventory_reads.go,
-- historyFrom), so the projector no longer keeps an index of its own per
-- tracked key (inventory_history_identity_<key>_<crc>, on
-- json_extract(identity_json, '$.<key>')): every history event paid for a
-- sixth B-tree, about four random pages of a report's sixteen. Their names
-- are known only to the schema, so the Go step of this migration
-- (dropIdentityIndexes) drops them.
--
-- The prescribed index gains observed_at as a last column: a search pages a
-- popular app's events (tens of thousands) by observed_at from the index
-- entries alone, reading only the rows of the page. It serves every
-- query the three-column index serves.
DROP INDEX inventory_history_job_field_identity;
CREATE INDEX inventory_history_job_field_identity ON inventory_history (job_id, field_path, identity_json, observed_at);
