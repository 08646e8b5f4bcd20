-- Post-change verification with samples, rollbacks, and the ticket webhook's outbox.

ALTER TABLE changes ADD COLUMN rollback_of BIGINT REFERENCES changes (id);
-- What the action's capture_command printed before the change ran, for its rollback.
ALTER TABLE changes ADD COLUMN captured TEXT;

-- The service checks in force when the verification started (JSON), so a restart keeps them.
ALTER TABLE verifications ADD COLUMN checks TEXT;
ALTER TABLE verifications ADD COLUMN last_sample TEXT;
ALTER TABLE verifications ADD COLUMN recent TEXT NOT NULL DEFAULT '[]';
ALTER TABLE verifications ADD COLUMN summary TEXT;
ALTER TABLE verifications ADD COLUMN decided_by TEXT;
ALTER TABLE verifications ADD COLUMN note TEXT;
ALTER TABLE verifications ADD COLUMN incident TEXT;
CREATE INDEX verifications_by_state ON verifications (state, deadline);

CREATE TABLE verification_samples (
    id INTEGER PRIMARY KEY,
    verification_id BIGINT NOT NULL REFERENCES verifications (id),
    at BIGINT NOT NULL,
    due BIGINT NOT NULL,
    ok INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX samples_by_verification ON verification_samples (verification_id, id);

-- Messages for the ticket webhook: written in the same transaction as the outcome they report,
-- delivered by a worker until the receiver answers 2xx.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    created_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (delivered_at, next_attempt_at);
