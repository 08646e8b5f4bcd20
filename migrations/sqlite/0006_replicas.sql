-- Several servers on one database (PostgreSQL replicas; on SQLite the same rules hold for one).

-- Bumped in the transaction that changes a freeze or the pause: a server keeps the freezes and
-- the pause in memory only while this row still shows the version it read them at, so a freeze
-- declared on one replica holds on every replica from its commit on.
CREATE TABLE policy_version (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO policy_version (id, version) VALUES (1, 0);

-- Which server polls a verification, until when: a server that dies stops renewing its lease,
-- and another takes the verification over when it expires, keeping its deadline.
ALTER TABLE verifications ADD COLUMN lease_owner TEXT;
ALTER TABLE verifications ADD COLUMN lease_until BIGINT;

-- Which server runs a change's command, renewed while it runs: only an execution whose lease
-- has expired (its server died) is recovered, by whichever server notices first.
ALTER TABLE executions ADD COLUMN owner TEXT;
ALTER TABLE executions ADD COLUMN lease_until BIGINT;
