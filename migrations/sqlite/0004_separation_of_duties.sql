-- The incident whose emergency path a change takes (through a freeze, a pause or the hours
-- outside the windows), so the audit and the dashboard show emergency changes as such.
ALTER TABLE changes ADD COLUMN emergency TEXT;

-- One rollback per change, settled by the database as executions are: a second rollback of the
-- same change fails this index while the first is pending, running, or has run (or failed). A
-- rollback that never ran (denied, expired, refused) leaves room for a new request.
CREATE UNIQUE INDEX changes_one_rollback ON changes (rollback_of)
    WHERE rollback_of IS NOT NULL AND state NOT IN ('denied', 'expired', 'refused');

-- Declarations per operator and time, for the rate limit on POST /incidents.
CREATE INDEX incidents_by_declarer ON incidents (declared_by, declared_at);
