-- What the fleet rollup needs to tell a stuck projection from an idle one,
-- beside each projection's offset (updated_at is when the offset last
-- moved):
--   stream_created: the creation time of the stream the offset counts in. A
--     stream deleted and created again numbers its messages from 1 again; an
--     offset carried over from the old one would skip the new one's messages.
--   last_error, last_error_at: the projector's most recent failure, kept
--     after it recovers so an operator can see what happened.
ALTER TABLE consumer_offsets ADD COLUMN stream_created TEXT;
ALTER TABLE consumer_offsets ADD COLUMN last_error TEXT;
ALTER TABLE consumer_offsets ADD COLUMN last_error_at TEXT;
