-- Accounts and login throttling (control.md §9.3). Timestamps are
-- TimeLayout text computed in Go, like every other column (storage.md).

-- One row per account. The role is the account's one role; the password is
-- an argon2id PHC string (auth/password) and never leaves storage except to
-- be checked. An account is never renamed, so username is the key.
CREATE TABLE users (
    username       TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    disabled       INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    must_change_pw INTEGER NOT NULL DEFAULT 0 CHECK (must_change_pw IN (0, 1)),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
) WITHOUT ROWID;

-- Recent failed (or still running) login attempts, one row per throttle key
-- (user:<name>, addr:<client address>) per attempt. The handlers are
-- stateless (several processes, Lambda), so the count lives here. Rows older
-- than the throttle window are deleted on every new attempt; a successful
-- login deletes its own rows and its username's.
CREATE TABLE login_failures (
    key     TEXT NOT NULL,
    at      TEXT NOT NULL,
    attempt TEXT NOT NULL,
    PRIMARY KEY (key, at, attempt)
) WITHOUT ROWID;
CREATE INDEX login_failures_at ON login_failures (at);
CREATE INDEX login_failures_attempt ON login_failures (attempt);
