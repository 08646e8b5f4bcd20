-- Times are milliseconds since the Unix epoch (UTC); JSON is stored as text.
-- The same statements run on PostgreSQL once INTEGER PRIMARY KEY becomes an identity column.

CREATE TABLE operators (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    level TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE changes (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    action TEXT NOT NULL,
    risk TEXT NOT NULL,
    ticket TEXT NOT NULL,
    target TEXT NOT NULL,
    params TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_level TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    requirements TEXT NOT NULL,
    warnings TEXT NOT NULL,
    outcome_reason TEXT,
    decided_by TEXT,
    output TEXT,
    idempotency_key TEXT,
    fingerprint TEXT,
    UNIQUE (requested_by, idempotency_key)
);
CREATE INDEX changes_by_state ON changes (state, id);

CREATE TABLE approvals (
    change_id BIGINT NOT NULL REFERENCES changes (id),
    approver TEXT NOT NULL,
    level TEXT NOT NULL,
    comment TEXT,
    at BIGINT NOT NULL,
    PRIMARY KEY (change_id, approver)
);

-- One row per change that was started: the database, not the code, guarantees a change
-- never runs twice.
CREATE TABLE executions (
    change_id BIGINT PRIMARY KEY REFERENCES changes (id),
    started_at BIGINT NOT NULL
);

CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    ticket TEXT NOT NULL UNIQUE,
    priority TEXT NOT NULL,
    title TEXT NOT NULL,
    commander TEXT NOT NULL,
    declared_by TEXT NOT NULL,
    declared_at BIGINT NOT NULL,
    closed_at BIGINT
);

CREATE TABLE freezes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);

CREATE TABLE pauses (
    id INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    paused_by TEXT NOT NULL,
    paused_at BIGINT NOT NULL,
    resumed_at BIGINT,
    resumed_by TEXT
);

CREATE TABLE verifications (
    id INTEGER PRIMARY KEY,
    change_id BIGINT NOT NULL UNIQUE REFERENCES changes (id),
    target TEXT NOT NULL,
    action TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    deadline BIGINT NOT NULL,
    state TEXT NOT NULL
);

-- Append-only, hash-chained: each entry's hash covers its fields and the previous hash.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

-- The chain's head, written in the same transaction as each entry, so that deleting the
-- newest entries is detected too.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    summary TEXT NOT NULL,
    data TEXT NOT NULL
);
