-- A change its requester withdrew never ran, like a denied, expired or refused one: a withdrawn
-- rollback leaves room for a new rollback of the same change.
DROP INDEX changes_one_rollback;
CREATE UNIQUE INDEX changes_one_rollback ON changes (rollback_of)
    WHERE rollback_of IS NOT NULL AND duplicate_rollback IS NULL
      AND state NOT IN ('denied', 'expired', 'refused', 'withdrawn');
