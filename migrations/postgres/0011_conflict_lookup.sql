-- A conflict check reads a target's live changes newest first and stops after the few it names
-- (server/store/schedule.rs, LIVE_ON_TARGET): (target, id) serves that order, where
-- (target, state) made it read and sort every change the target ever had.
DROP INDEX changes_by_target;
CREATE INDEX changes_by_target ON changes (target, id);
