-- The per-operator quotas (src/server/changes/quota.rs) count a requester's open changes inside
-- every batch of change requests, under the write lock: without this index the count read the
-- requester's whole history through the UNIQUE (requested_by, idempotency_key) index.
CREATE INDEX changes_open_by_requester ON changes (requested_by, state)
    WHERE state IN ('pending_approval', 'scheduled', 'executing');
