-- The incident whose emergency path a change takes (through a freeze, a pause or the hours
-- outside the windows), so the audit and the dashboard show emergency changes as such.
ALTER TABLE changes ADD COLUMN emergency TEXT;

-- One rollback per change, settled by the database as executions are: a second rollback of the
-- same change fails this index while the first is pending, running, or has run (or failed). A
-- rollback that never ran (denied, expired, refused) leaves room for a new request.
--
-- Rollbacks that were requested twice before this rule are kept as they happened (they ran, and
-- the audit says so), marked so that the index leaves them out: all but the first of each.
ALTER TABLE changes ADD COLUMN duplicate_rollback BIGINT;
UPDATE changes SET duplicate_rollback = 1
    WHERE rollback_of IS NOT NULL AND state NOT IN ('denied', 'expired', 'refused')
      AND id NOT IN (
          SELECT MIN(id) FROM changes
          WHERE rollback_of IS NOT NULL AND state NOT IN ('denied', 'expired', 'refused')
          GROUP BY rollback_of);
CREATE UNIQUE INDEX changes_one_rollback ON changes (rollback_of)
    WHERE rollback_of IS NOT NULL AND duplicate_rollback IS NULL
      AND state NOT IN ('denied', 'expired', 'refused');

-- Declarations per operator and time, for the rate limit on POST /incidents; an incident that an
-- escalation declared is never counted (escalating is never limited).
ALTER TABLE incidents ADD COLUMN by_escalation BIGINT NOT NULL DEFAULT 0;
CREATE INDEX incidents_by_declarer ON incidents (declared_by, declared_at);
