//! What one operator may have open at once (`[server.quotas]`, `config/server.rs`). Without
//! these an L1 token could, with requests the policy allows, fill the reviewers' queue, the
//! calendar and the scheduler's passes (schedules), bury real requests under its own (pending
//! approval), or start commands until the server ran out of processes and file descriptors
//! (low-risk actions run at once, even in a freeze).
//!
//! Counted inside the batch's write transaction (`create.rs`), the batch's own earlier requests
//! included, with the requesters locked across replicas (`Tx::requesters_lock`): a burst of
//! concurrent requests cannot slip past a quota between the count and the insert.

use crate::config::Quotas;
use crate::domain::policy::Outcome;
use crate::server::error::ServiceError;
use crate::server::store::OpenChanges;

/// Counts a request that goes ahead as `outcome` (at `run_at`, if it has one) against its
/// requester's `open` changes, or says which quota it would pass and what to do.
pub fn take(
    quotas: &Quotas,
    open: &mut OpenChanges,
    outcome: Outcome,
    scheduled: bool,
) -> Result<(), ServiceError> {
    let (count, cap, why) = if scheduled {
        (
            &mut open.waiting,
            quotas.scheduled_per_operator,
            "changes waiting for their time, the most one operator may: cancel some \
             (`change cancel ID --reason …`) or wait until they have run",
        )
    } else {
        match outcome {
            Outcome::Execute => (
                &mut open.executing,
                quotas.executing_per_operator,
                "changes executing, the most one operator may run at once: wait until one \
                 has finished (`change show ID`), then ask again",
            ),
            Outcome::NeedsApproval => (
                &mut open.pending,
                quotas.pending_per_operator,
                "changes waiting for approval, the most one operator may: withdraw some \
                 (`change withdraw ID`) or ask a reviewer to decide them",
            ),
            // A blocked request is refused before it is counted.
            Outcome::Blocked => return Ok(()),
        }
    };
    if *count >= cap {
        return Err(ServiceError::rate_limited(format!(
            "you have {count} {why}"
        )));
    }
    *count += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_quota_counts_its_own_kind_and_says_what_to_do() {
        let q = Quotas::default();
        let mut open = OpenChanges {
            waiting: q.scheduled_per_operator - 1,
            pending: q.pending_per_operator - 1,
            executing: q.executing_per_operator - 1,
        };
        for (outcome, scheduled, hint) in [
            (Outcome::NeedsApproval, true, "cancel some"),
            (Outcome::Execute, true, "cancel some"),
            (Outcome::NeedsApproval, false, "withdraw some"),
            (Outcome::Execute, false, "wait until one has finished"),
        ] {
            let before = open;
            if take(&q, &mut open, outcome, scheduled).is_ok() {
                assert_ne!(open, before, "{outcome:?} scheduled={scheduled} counted");
                continue;
            }
            let Err(ServiceError::RateLimited(m)) = take(&q, &mut open, outcome, scheduled) else {
                panic!("{outcome:?} scheduled={scheduled}: not a 429");
            };
            assert!(m.contains(hint), "{m}");
        }
        // The first of each kind took the last place; the second is refused.
        assert_eq!(open.waiting, q.scheduled_per_operator);
        assert_eq!(open.pending, q.pending_per_operator);
        assert_eq!(open.executing, q.executing_per_operator);
        assert!(take(&q, &mut open, Outcome::Execute, false).is_err());
        assert!(take(&q, &mut open, Outcome::Blocked, false).is_ok());
    }
}
