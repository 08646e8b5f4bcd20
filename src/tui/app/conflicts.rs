//! Which live changes share a target: the Approvals queue marks conflicting changes with it
//! ("⚠ #12"), and the approval's confirmation names a newer request on the same target.
//!
//! Kept change by change as events arrive (like the queue itself, see `approvals.rs`), so a
//! frame looks a target up instead of scanning every change per row.

use crate::domain::change::{Change, ChangeState};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// The live changes (pending, scheduled, executing) by target.
#[derive(Debug, Default)]
pub struct LiveTargets {
    by_target: BTreeMap<String, BTreeSet<i64>>,
}

/// Whether a change keeps its target busy, as far as the dashboard knows (a low-risk, read-only
/// one never does: the server's rule, `domain/schedule.rs`).
fn is_live(c: &Change) -> bool {
    crate::domain::schedule::may_conflict(c.risk)
        && matches!(
            c.state,
            ChangeState::PendingApproval | ChangeState::Scheduled | ChangeState::Executing
        )
}

impl LiveTargets {
    pub fn rebuild<'a>(&mut self, changes: impl Iterator<Item = &'a Change>) {
        self.by_target.clear();
        for c in changes.filter(|c| is_live(c)) {
            self.by_target
                .entry(c.target.clone())
                .or_default()
                .insert(c.id);
        }
    }

    /// `new` replaces `old` (the same change as known before, if it was).
    pub fn replace(&mut self, old: Option<&Change>, new: &Change) {
        if let Some(old) = old
            && let Some(ids) = self.by_target.get_mut(&old.target)
        {
            ids.remove(&old.id);
            if ids.is_empty() {
                self.by_target.remove(&old.target);
            }
        }
        if is_live(new) {
            self.by_target
                .entry(new.target.clone())
                .or_default()
                .insert(new.id);
        }
    }

    /// The changes `c` conflicts with: those the server named when it was requested (while
    /// their active period lasts and they are not known to have ended otherwise) and the other
    /// live changes on its target.
    pub fn conflicts_of(
        &self,
        changes: &BTreeMap<i64, Change>,
        c: &Change,
        now: DateTime<Utc>,
    ) -> Vec<i64> {
        let stored = c.conflicts.iter().filter(|k| {
            let other = changes.get(&k.change_id);
            k.until.is_none_or(|u| u > now)
                && other.is_none_or(|o| is_live(o) || o.state == ChangeState::Executed)
        });
        let live = self.by_target.get(&c.target).into_iter().flatten();
        let ids: BTreeSet<i64> = stored
            .map(|k| k.change_id)
            .chain(live.copied())
            .filter(|id| *id != c.id)
            .collect();
        ids.into_iter().collect()
    }

    /// Pending changes on `c`'s target requested after it: approving `c` first may collide
    /// with (or be undone by) what they ask for.
    pub fn newer_pending<'a>(
        &self,
        changes: &'a BTreeMap<i64, Change>,
        c: &Change,
    ) -> Vec<&'a Change> {
        self.by_target
            .get(&c.target)
            .into_iter()
            .flatten()
            .filter(|id| **id > c.id)
            .filter_map(|id| changes.get(id))
            .filter(|o| o.state == ChangeState::PendingApproval)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::change::Conflict;
    use crate::domain::{Level, Risk};
    use crate::tui::fixtures::{change, now};
    use chrono::Duration;

    fn on(id: i64, target: &str, state: ChangeState) -> Change {
        let mut c = change(id, "restart-pods", Risk::High, "alice", Level::L1, 5);
        c.target = target.into();
        c.state = state;
        c
    }

    #[test]
    fn live_changes_on_one_target_conflict_and_leave_when_they_end() {
        let mut changes = BTreeMap::new();
        for c in [
            on(1, "checkout", ChangeState::PendingApproval),
            on(2, "checkout", ChangeState::Scheduled),
            on(3, "search", ChangeState::PendingApproval),
            on(4, "checkout", ChangeState::Denied),
        ] {
            changes.insert(c.id, c);
        }
        let mut live = LiveTargets::default();
        live.rebuild(changes.values());
        let first = changes[&1].clone();
        let first = &first;
        assert_eq!(live.conflicts_of(&changes, first, now()), vec![2]);
        assert!(live.conflicts_of(&changes, &changes[&3], now()).is_empty());
        // A newer pending request on the same target; #2 is scheduled, not pending.
        assert!(live.newer_pending(&changes, first).is_empty());
        let newer = on(5, "checkout", ChangeState::PendingApproval);
        live.replace(None, &newer);
        changes.insert(5, newer);
        let ids: Vec<i64> = live
            .newer_pending(&changes, first)
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, vec![5]);
        // Withdrawn: it no longer counts.
        let mut gone = changes[&5].clone();
        gone.state = ChangeState::Withdrawn;
        live.replace(changes.get(&5), &gone);
        changes.insert(5, gone);
        assert!(live.newer_pending(&changes, first).is_empty());
        assert_eq!(live.conflicts_of(&changes, first, now()), vec![2]);
    }

    #[test]
    fn a_stored_conflict_counts_while_its_period_lasts() {
        let mut c = on(7, "payments", ChangeState::PendingApproval);
        let conflict = |until| Conflict {
            change_id: 6,
            action: "restart-pods".into(),
            target: "payments".into(),
            state: ChangeState::Executed,
            requested_by: "dave".into(),
            activity: "under verification".into(),
            from: None,
            until: Some(until),
            message: "conflicts with #6".into(),
        };
        let changes = BTreeMap::new();
        let live = LiveTargets::default();
        c.conflicts = vec![conflict(now() + Duration::minutes(5))];
        assert_eq!(live.conflicts_of(&changes, &c, now()), vec![6]);
        c.conflicts = vec![conflict(now() - Duration::minutes(1))];
        assert!(live.conflicts_of(&changes, &c, now()).is_empty());
    }
}
