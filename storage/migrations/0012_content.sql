-- Compliance checks and notification acknowledgements (observe.md §3, §4).

-- The latest state of each check on each PC (observe.md §3.3): one row per
-- (pc_id, check_name), overwritten by a newer result only (recorded_at is
-- the RESULTS message's stream time, so a replay or a stale redelivery
-- cannot bring an older state back). No retention.
CREATE TABLE check_status (
    pc_id       TEXT NOT NULL,
    check_name  TEXT NOT NULL,
    status      TEXT NOT NULL,
    detail      TEXT,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (pc_id, check_name)
) WITHOUT ROWID;
-- GET /api/checks reads by check, in (check_name, pc_id) order.
CREATE INDEX check_status_by_check ON check_status (check_name, pc_id);

-- Users' confirmations of notifications (observe.md §4.5): the first ack
-- of a (notification, PC, user) is kept, a re-ack or a redelivery changes
-- nothing. acked_at is the agent's clock, recorded_at the EVENTS stream
-- time. The primary key serves GET /api/notifications/{id}/ack_status.
CREATE TABLE notification_acks (
    notification_id TEXT NOT NULL,
    pc_id           TEXT NOT NULL,
    user_sid        TEXT NOT NULL,
    acked_at        TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    PRIMARY KEY (notification_id, pc_id, user_sid)
) WITHOUT ROWID;
