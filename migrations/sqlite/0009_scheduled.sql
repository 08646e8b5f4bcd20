-- Scheduled changes (issue 11). run_at: when the change is to run (ms since epoch, UTC); NULL
-- for a change that runs as soon as the policy and its approvals let it. A scheduled change
-- waits in 'pending_approval' for its approvals, then in 'scheduled' until run_at; it ends
-- 'missed' if it could not start within the grace period, 'cancelled' if someone cancelled it.
ALTER TABLE changes ADD COLUMN run_at BIGINT;
-- The conflicts found when the change was requested (JSON list of the domain's `Conflict`),
-- shown to its reviewers; NULL: none, or requested before conflicts were looked for.
ALTER TABLE changes ADD COLUMN conflicts TEXT;
-- The scheduler's question every second: which changes are due (state, run_at).
CREATE INDEX changes_by_run_at ON changes (run_at, state) WHERE run_at IS NOT NULL;
-- Conflicts are looked up by target among the live changes.
CREATE INDEX changes_by_target ON changes (target, state);
