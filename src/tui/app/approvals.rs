//! Pane 2: the approval queue, riskiest first, its filter, and approving or denying from it.

use super::{Confirmed, Effect, Modal, Motion, Prompt, Purpose, SelectList, State, Tone};
use crate::domain::api::{ApproveRequest, DenyRequest, WithdrawRequest};
use crate::domain::approval;
use crate::domain::change::{Change, ChangeState};
use crate::domain::{Operator, Risk};
use crate::tui::form::{Field, FieldKey, Fields};
use crate::tui::keymap::Command;
use crate::tui::view::words::needs;
use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct ApprovalsPane {
    /// Every change the dashboard knows, by id.
    changes: BTreeMap<i64, Change>,
    /// The queue: ids of the pending changes that match the filter, in [`order`], kept sorted
    /// change by change as events arrive (see `upsert`).
    queue: SelectList<i64>,
    filter: String,
    /// The filter in lower case, as it is matched.
    needle: String,
    approvable: usize,
    /// Who is looking: what they may approve decides the stance and the count.
    operator: Option<Operator>,
    /// The live changes by target, for the conflict marks.
    live: super::conflicts::LiveTargets,
}

/// What the operator can do about a pending change, for the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stance {
    CanApprove,
    Yours,
    Approved,
    /// Someone else must approve: "needs L3 approval".
    Other(String),
}

impl ApprovalsPane {
    pub fn changes(&self) -> &BTreeMap<i64, Change> {
        &self.changes
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Pending changes, riskiest first and oldest first within a risk, after the filter.
    pub fn queue(&self) -> impl ExactSizeIterator<Item = &Change> + '_ {
        self.queue.items().iter().map(|id| &self.changes[id])
    }

    pub fn queue_ids(&self) -> &[i64] {
        self.queue.items()
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Rows `offset..offset + rows` of the queue with their positions, without walking (and
    /// looking up) the rows above: `queue().skip(n)` costs n map lookups.
    pub fn queue_rows(
        &self,
        offset: usize,
        rows: usize,
    ) -> impl Iterator<Item = (usize, &Change)> + '_ {
        let ids = self.queue.items();
        let end = offset.saturating_add(rows).min(ids.len());
        let start = offset.min(end);
        ids[start..end]
            .iter()
            .enumerate()
            .map(move |(i, id)| (start + i, &self.changes[id]))
    }

    pub fn selected_index(&self) -> usize {
        self.queue.selected_index()
    }

    pub fn select(&mut self, i: usize) {
        self.queue.select(i);
    }

    pub(super) fn go(&mut self, motion: Motion, page: usize) {
        self.queue.go(motion, page);
    }

    pub fn selected_change(&self) -> Option<&Change> {
        self.queue.selected().map(|id| &self.changes[id])
    }

    pub fn stance(&self, c: &Change) -> Stance {
        let Some(me) = &self.operator else {
            return Stance::Other(needs(c));
        };
        match approval::may_approve(&c.approvals_required, &c.approvals, &c.requested_by, me) {
            Ok(()) => Stance::CanApprove,
            Err(approval::ApprovalRefusal::OwnChange) => Stance::Yours,
            Err(approval::ApprovalRefusal::AlreadyApproved) => Stance::Approved,
            Err(approval::ApprovalRefusal::NotEligible(_)) => Stance::Other(needs(c)),
        }
    }

    /// Pending changes a freeze or a pause holds back (every one but low risk): what a
    /// confirmation of one says it affects.
    pub fn pending_governed(&self) -> usize {
        self.changes
            .values()
            .filter(|c| c.state == ChangeState::PendingApproval && c.risk != Risk::Low)
            .count()
    }

    /// The changes `c` conflicts with (see `conflicts.rs`).
    pub fn conflicts_of(&self, c: &Change, now: DateTime<Utc>) -> Vec<i64> {
        self.live.conflicts_of(&self.changes, c, now)
    }

    /// Pending changes on `c`'s target requested after it.
    pub fn newer_pending(&self, c: &Change) -> Vec<&Change> {
        self.live.newer_pending(&self.changes, c)
    }

    pub fn approvable_count(&self) -> usize {
        self.approvable
    }

    pub(super) fn set_operator(&mut self, operator: Option<Operator>) {
        self.operator = operator;
        self.rebuild();
    }

    /// A full reload of the changes.
    pub(super) fn reload(&mut self, list: Vec<Change>) {
        for c in list {
            if !self.is_older(&c) {
                self.changes.insert(c.id, c);
            }
        }
        self.rebuild();
    }

    /// One change as the server sent it: it leaves its old place in the queue and takes its
    /// new one, found by binary search, so a live event costs O(log n) lookups and one shift
    /// of the ids rather than a sort of the whole queue.
    pub(super) fn upsert(&mut self, c: Change) {
        if self.is_older(&c) {
            return;
        }
        self.live.replace(self.changes.get(&c.id), &c);
        if let Some(old) = self.changes.get(&c.id) {
            self.approvable -= usize::from(self.counts(old));
            if self.shows(old) {
                let at = self.position(order(old));
                debug_assert_eq!(self.queue.items().get(at), Some(&c.id));
                self.queue.remove(at);
            }
        }
        let shown = self.shows(&c).then(|| order(&c));
        self.approvable += usize::from(self.counts(&c));
        let id = c.id;
        self.changes.insert(id, c);
        if let Some(key) = shown {
            let at = self.position(key);
            self.queue.insert(at, id);
        }
    }

    pub(super) fn clear_filter(&mut self) {
        self.set_filter(String::new());
    }

    fn set_filter(&mut self, filter: String) {
        self.needle = filter.to_lowercase();
        self.filter = filter;
        self.queue.select(0);
        self.rebuild();
    }

    /// An event and a reload may arrive in either order: the newer copy of a change wins.
    fn is_older(&self, c: &Change) -> bool {
        self.changes
            .get(&c.id)
            .is_some_and(|old| old.updated_at > c.updated_at)
    }

    /// Whether a change belongs in the queue: pending, and matching the filter.
    fn shows(&self, c: &Change) -> bool {
        c.state == ChangeState::PendingApproval && (self.needle.is_empty() || self.matches(c))
    }

    /// The filter matches the action, target, ticket, requester, risk, state and what the
    /// change needs, and "needs me" (or "me") the changes I can approve.
    fn matches(&self, c: &Change) -> bool {
        let n = &self.needle;
        let mine = self.may_approve(c) && ("needs me".contains(n.as_str()) && n.len() >= 2);
        mine || [
            c.action.as_str(),
            &c.target,
            &c.ticket,
            &c.requested_by,
            c.risk.as_str(),
            c.state.as_str(),
            &needs(c),
        ]
        .iter()
        .any(|f| f.to_lowercase().contains(n.as_str()))
    }

    /// Whether a change counts in the tab's badge: pending and mine to approve, whatever the
    /// filter hides.
    fn counts(&self, c: &Change) -> bool {
        c.state == ChangeState::PendingApproval && self.may_approve(c)
    }

    /// Only "can I approve it?": no operator clone or wording per change.
    fn may_approve(&self, c: &Change) -> bool {
        self.operator.as_ref().is_some_and(|me| {
            approval::may_approve(&c.approvals_required, &c.approvals, &c.requested_by, me).is_ok()
        })
    }

    /// Where a change with this sort key sits (or would sit) in the queue.
    fn position(&self, key: Order) -> usize {
        let changes = &self.changes;
        self.queue.partition_point(|id| order(&changes[id]) < key)
    }

    /// The queue and the approvable count from scratch: after a reload, or when the filter or
    /// who is looking changed.
    fn rebuild(&mut self) {
        self.live.rebuild(self.changes.values());
        let (ids, approvable) = self.sorted();
        self.queue.set_items(ids);
        self.approvable = approvable;
    }

    fn sorted(&self) -> (Vec<i64>, usize) {
        let mut q: Vec<&Change> = self.changes.values().filter(|c| self.shows(c)).collect();
        q.sort_by_key(|c| order(c));
        let approvable = self.changes.values().filter(|c| self.counts(c)).count();
        (q.iter().map(|c| c.id).collect(), approvable)
    }
}

/// The queue's order: riskiest first, then oldest, then by id (so no two changes tie).
type Order = (Reverse<Risk>, DateTime<Utc>, i64);

fn order(c: &Change) -> Order {
    (Reverse(c.risk), c.created_at, c.id)
}

/// Whether the operator may use `cmd` on the selected change, and if not, why: the footer
/// offers only what passes, and a key that does not says why before any prompt opens.
pub(super) fn check(state: &State, cmd: Command) -> Result<(), String> {
    let pane = &state.approvals;
    let Some(c) = pane.selected_change() else {
        return Err("no pending change is selected".into());
    };
    let id = c.id;
    let mine = pane
        .operator
        .as_ref()
        .is_some_and(|me| me.name == c.requested_by);
    match cmd {
        Command::Approve => match pane.stance(c) {
            Stance::CanApprove => Ok(()),
            Stance::Yours => Err(format!(
                "change #{id} is your own: someone else must approve it (w withdraws it)"
            )),
            Stance::Approved => Err(format!("you have already approved change #{id}")),
            Stance::Other(n) => Err(format!("you cannot approve change #{id}: it {n}")),
        },
        Command::Deny if mine => Err(format!(
            "change #{id} is your own: w withdraws it (a denial is a reviewer's)"
        )),
        Command::Deny => match &pane.operator {
            Some(me) if could_deny(c, me) => Ok(()),
            Some(me) => Err(format!(
                "you cannot deny change #{id}: only someone who could approve it may, and it {} \
                 (you are {})",
                needs(c),
                me.level
            )),
            None => Err("who you are is still loading".into()),
        },
        Command::Withdraw if mine && c.rollback_of.is_some() => Err(format!(
            "change #{id} is a rollback: ask a reviewer to deny it, so a new rollback can be \
             requested"
        )),
        Command::Withdraw if mine => Ok(()),
        Command::Withdraw => Err(format!(
            "only its requester ({}) may withdraw change #{id}",
            c.requested_by
        )),
        _ => Ok(()),
    }
}

/// The server's rule for a denial: someone who could meet a requirement still missing.
fn could_deny(c: &Change, me: &Operator) -> bool {
    approval::unmet(&c.approvals_required, &c.approvals, &c.requested_by)
        .iter()
        .any(|r| r.can_be_met_by(me))
}

pub(super) fn command(state: &mut State, cmd: Command) -> Vec<Effect> {
    if cmd == Command::Filter {
        let mut f = Field::new(
            "Filter",
            "action, target, ticket or requester; empty shows all",
        );
        f.input = tui_input::Input::new(state.approvals.filter.clone());
        state.modal = Some(Modal::Prompt(Prompt::new(Purpose::Filter, vec![f])));
        return Vec::new();
    }
    let Some(id) = state.approvals.selected_change().map(|c| c.id) else {
        return Vec::new();
    };
    state.modal = match cmd {
        Command::Approve => Some(Modal::Confirm(Confirmed::Approve(id))),
        Command::Withdraw => Some(Modal::Confirm(Confirmed::Withdraw(id))),
        Command::Deny => Some(Modal::Prompt(Prompt::new(
            Purpose::DenyReason(id),
            vec![Field::new("Reason", "why the change is denied (required)")],
        ))),
        _ => None,
    };
    Vec::new()
}

/// Confirmed: withdraw my own change #id.
pub(super) fn withdraw(state: &mut State, id: i64) -> Vec<Effect> {
    state.say(Tone::Info, format!("withdrawing change #{id}…"));
    vec![Effect::Withdraw(id, WithdrawRequest::default())]
}

/// Confirmed: approve change #id.
pub(super) fn approve(state: &mut State, id: i64) -> Vec<Effect> {
    state.say(Tone::Info, format!("approving change #{id}…"));
    vec![Effect::Approve(id, ApproveRequest::default())]
}

pub(super) fn deny(id: i64, fields: &Fields) -> Result<Vec<Effect>, String> {
    let reason = fields.required(0, "a reason is required to deny a change")?;
    Ok(vec![Effect::Deny(id, DenyRequest { reason })])
}

/// The filter applies as it is typed; Esc clears it.
pub(super) fn filter_typed(state: &mut State, fields: &Fields, key: FieldKey) {
    let filter = match key {
        FieldKey::Cancel => String::new(),
        _ => fields.value(0).trim().to_string(),
    };
    state.approvals.set_filter(filter);
}

pub(super) fn decided(state: &mut State, r: Result<Change, String>) -> Vec<Effect> {
    match r {
        Ok(c) => {
            let text = match c.state {
                ChangeState::Executed => format!("approved: change #{} executed", c.id),
                ChangeState::Executing => format!("approved: change #{} is executing", c.id),
                ChangeState::PendingApproval => {
                    format!("approved change #{}; it still {}", c.id, needs(&c))
                }
                ChangeState::Withdrawn => format!("change #{} withdrawn", c.id),
                ChangeState::Cancelled => format!(
                    "change #{} cancelled: {} on {} will not run",
                    c.id, c.action, c.target
                ),
                ChangeState::Scheduled => format!(
                    "approved: change #{} is scheduled for {}",
                    c.id,
                    c.run_at
                        .map(|t| t.format("%a %H:%M UTC").to_string())
                        .unwrap_or_default()
                ),
                s => format!("change #{} is now {s}", c.id),
            };
            show_outcome(state, c, text);
            Vec::new()
        }
        Err(e) => {
            state.say(Tone::Error, e);
            vec![Effect::LoadChanges]
        }
    }
}

/// Says what became of a change (an error tone when it failed) and shows it everywhere.
pub(super) fn show_outcome(state: &mut State, c: Change, text: String) {
    let tone = if c.state == ChangeState::Failed {
        Tone::Error
    } else {
        Tone::Success
    };
    state.say(tone, text);
    state.approvals.upsert(c);
}

#[cfg(test)]
mod tests {
    use super::super::{Msg, update};
    use super::*;
    use crate::domain::{Level, Risk};
    use crate::tui::fixtures::{change, code, key, now, scene, typed};
    use crossterm::event::KeyCode;

    fn queue_ids(s: &State) -> Vec<i64> {
        s.approvals.queue().map(|c| c.id).collect()
    }

    #[test]
    fn queue_is_riskiest_first_then_oldest_and_counts_what_i_can_approve() {
        let s = scene("bob", Level::L2);
        // critical: #2 (40 min), #4 (5 min); high: #1 (12 min), #3 (3 min).
        assert_eq!(queue_ids(&s), vec![2, 4, 1, 3]);
        assert_eq!(s.approvals.approvable_count(), 2);
        let c = &s.approvals.changes()[&4];
        assert_eq!(s.approvals.stance(c), Stance::Yours);
        assert_eq!(
            s.approvals.stance(&s.approvals.changes()[&2]),
            Stance::Other("needs L3".into())
        );
    }

    #[test]
    fn approve_asks_first_and_refuses_locally_what_the_server_would() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('2'));
        // Selected: #2, rotate-secrets by dave, needs L3.
        assert!(update(&mut s, key('a')).is_empty());
        assert!(s.modal.is_none());
        assert!(s.message.as_ref().unwrap().1.contains("needs L3"));
        update(&mut s, key('j')); // #4: bob's own
        update(&mut s, key('a'));
        assert!(s.message.as_ref().unwrap().1.contains("is your own"));
        update(&mut s, key('j')); // #1: alice's high-risk change
        update(&mut s, key('a'));
        assert!(matches!(
            s.modal,
            Some(Modal::Confirm(Confirmed::Approve(1)))
        ));
        // Anything but y cancels.
        assert!(update(&mut s, key('n')).is_empty());
        assert!(s.modal.is_none());
        update(&mut s, key('a'));
        let effects = update(&mut s, key('y'));
        assert_eq!(effects, vec![Effect::Approve(1, ApproveRequest::default())]);
        let mut done = s.approvals.changes()[&1].clone();
        done.state = ChangeState::Executed;
        done.updated_at = now();
        update(&mut s, Msg::ChangeDecided(Ok(done)));
        assert_eq!(queue_ids(&s), vec![2, 4, 3]);
        assert_eq!(s.approvals.approvable_count(), 1);
        assert!(s.message.as_ref().unwrap().1.contains("executed"));
    }

    #[test]
    fn a_failed_approval_is_shown_and_the_queue_reloaded() {
        let mut s = scene("bob", Level::L2);
        let effects = update(
            &mut s,
            Msg::ChangeDecided(Err("409 conflict: already executed".into())),
        );
        assert_eq!(effects, vec![Effect::LoadChanges]);
        assert_eq!(s.message.as_ref().unwrap().0, Tone::Error);
    }

    #[test]
    fn deny_needs_a_reason() {
        let mut s = scene("carol", Level::L3);
        update(&mut s, key('2'));
        update(&mut s, key('d'));
        assert!(matches!(
            s.modal,
            Some(Modal::Prompt(Prompt {
                purpose: Purpose::DenyReason(2),
                ..
            }))
        ));
        assert!(update(&mut s, code(KeyCode::Enter)).is_empty());
        assert!(s.message.as_ref().unwrap().1.contains("reason is required"));
        typed(&mut s, "not during the campaign");
        assert!(update(&mut s, code(KeyCode::Enter)).is_empty());
        assert!(matches!(
            s.modal,
            Some(Modal::Confirm(Confirmed::Deny(2, _)))
        ));
        let effects = update(&mut s, key('y'));
        assert_eq!(
            effects,
            vec![Effect::Deny(
                2,
                DenyRequest {
                    reason: "not during the campaign".into()
                }
            )]
        );
        assert!(s.modal.is_none());
    }

    /// Keys the operator cannot use are not offered, and pressing one says why at once, before
    /// any prompt (today `d` on an L3 change took a reason, then the server said 403).
    #[test]
    fn the_footer_offers_only_what_i_may_do_and_other_keys_say_why_at_once() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('2'));
        let offered = |s: &State| -> Vec<String> {
            s.keymap
                .offered(s.pane.scope(), |c| super::super::available(s, c).is_ok())
                .iter()
                .map(|(_, h)| h.to_string())
                .collect()
        };
        // #2 needs an L3: bob may neither approve nor deny it.
        assert!(
            !offered(&s).contains(&"approve".into()),
            "{:?}",
            offered(&s)
        );
        assert!(!offered(&s).contains(&"deny".into()));
        assert!(update(&mut s, key('d')).is_empty());
        assert!(
            s.modal.is_none(),
            "d opened a prompt the server would refuse"
        );
        let why = &s.message.as_ref().unwrap().1;
        assert!(
            why.contains("only someone who could approve it") && why.contains("L3"),
            "{why}"
        );
        update(&mut s, code(KeyCode::Esc));
        // #4 is his own: withdraw is offered, approve and deny are not.
        update(&mut s, key('j'));
        assert_eq!(s.approvals.selected_change().unwrap().id, 4);
        let hints = offered(&s);
        assert!(
            hints.contains(&"withdraw".into()) && !hints.contains(&"deny".into()),
            "{hints:?}"
        );
        update(&mut s, key('d'));
        assert!(s.message.as_ref().unwrap().1.contains("w withdraws it"));
        // #1 is alice's: approve and deny, no withdraw.
        update(&mut s, key('j'));
        let hints = offered(&s);
        assert!(
            hints.contains(&"approve".into()) && hints.contains(&"deny".into()),
            "{hints:?}"
        );
        assert!(!hints.contains(&"withdraw".into()));
        update(&mut s, key('w'));
        assert!(
            s.message
                .as_ref()
                .unwrap()
                .1
                .contains("only its requester (alice)")
        );
        // Windows: an L2 is not offered freezes, nor resume while nothing is paused.
        update(&mut s, key('3'));
        let hints = offered(&s);
        assert!(hints.contains(&"pause".into()), "{hints:?}");
        for absent in ["freeze", "remove freeze", "resume"] {
            assert!(!hints.contains(&absent.into()), "{absent} in {hints:?}");
        }
    }

    #[test]
    fn the_requester_withdraws_their_own_change_after_a_yes() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('2'));
        update(&mut s, key('j'));
        update(&mut s, key('w'));
        assert!(matches!(
            s.modal,
            Some(Modal::Confirm(Confirmed::Withdraw(4)))
        ));
        assert!(update(&mut s, key('n')).is_empty());
        update(&mut s, key('w'));
        assert_eq!(
            update(&mut s, key('y')),
            vec![Effect::Withdraw(4, WithdrawRequest::default())]
        );
        let mut done = s.approvals.changes()[&4].clone();
        done.state = ChangeState::Withdrawn;
        done.updated_at = now() + chrono::Duration::seconds(1);
        update(&mut s, Msg::ChangeDecided(Ok(done)));
        assert!(!queue_ids(&s).contains(&4));
        assert!(
            s.message
                .as_ref()
                .unwrap()
                .1
                .contains("change #4 withdrawn")
        );
    }

    /// A typed reason survives a stray Esc (asked first) and a "no" to the confirmation.
    #[test]
    fn a_typed_deny_reason_is_not_dropped_without_asking() {
        let mut s = scene("carol", Level::L3);
        update(&mut s, key('2'));
        update(&mut s, key('d'));
        typed(&mut s, "not now");
        update(&mut s, code(KeyCode::Esc));
        assert!(matches!(
            s.modal,
            Some(Modal::Confirm(Confirmed::DiscardPrompt(_)))
        ));
        update(&mut s, key('n'));
        let Some(Modal::Prompt(p)) = &s.modal else {
            panic!("the prompt did not come back: {:?}", s.modal)
        };
        assert_eq!(p.fields.value(0), "not now");
        update(&mut s, code(KeyCode::Enter));
        update(&mut s, key('n'));
        assert!(matches!(&s.modal, Some(Modal::Prompt(p)) if p.fields.value(0) == "not now"));
        update(&mut s, code(KeyCode::Esc));
        assert!(update(&mut s, key('y')).is_empty());
        assert!(s.modal.is_none());
        assert!(s.message.as_ref().unwrap().1.contains("denial cancelled"));
        // Nothing typed: Esc just closes.
        update(&mut s, key('d'));
        update(&mut s, code(KeyCode::Esc));
        assert!(s.modal.is_none());
    }

    #[test]
    fn filter_narrows_the_queue_and_esc_clears_it() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('2'));
        update(&mut s, key('/'));
        typed(&mut s, "edge");
        assert_eq!(queue_ids(&s), vec![1]);
        update(&mut s, code(KeyCode::Enter));
        assert_eq!(s.approvals.filter(), "edge");
        assert_eq!(queue_ids(&s), vec![1]);
        update(&mut s, key('/'));
        update(&mut s, code(KeyCode::Esc));
        assert_eq!(queue_ids(&s).len(), 4);
    }

    /// The filter also matches risk, state and "needs me"; the badge keeps counting what I can
    /// approve whatever the filter hides; Esc with no prompt open clears it.
    #[test]
    fn the_filter_matches_risk_state_and_needs_me_and_the_badge_ignores_it() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('2'));
        let filtered = |s: &mut State, text: &str| {
            update(s, key('/'));
            typed(s, text);
            update(s, code(KeyCode::Enter));
            queue_ids(s)
        };
        assert_eq!(filtered(&mut s, "critical"), vec![2, 4]);
        assert_eq!(
            s.approvals.approvable_count(),
            2,
            "the badge must not follow the filter"
        );
        update(&mut s, key('/'));
        update(&mut s, code(KeyCode::Esc));
        assert_eq!(filtered(&mut s, "needs me"), vec![1, 3]);
        update(&mut s, key('/'));
        update(&mut s, code(KeyCode::Esc));
        assert_eq!(filtered(&mut s, "needs l3"), vec![2, 4]);
        update(&mut s, code(KeyCode::Esc));
        assert_eq!(queue_ids(&s).len(), 4);
        assert!(s.approvals.filter().is_empty());
    }

    #[test]
    fn a_change_the_server_sends_lands_in_its_place() {
        let mut s = scene("bob", Level::L2);
        let mut c = change(10, "blacklist-ip", Risk::Critical, "alice", Level::L1, 20);
        c.state = ChangeState::PendingApproval;
        s.approvals.upsert(c);
        assert_eq!(queue_ids(&s), vec![2, 10, 4, 1, 3]);
        assert_eq!(s.approvals.approvable_count(), 2);
    }

    /// Events moving, adding and removing changes in place leave the queue and the count
    /// exactly as a full rebuild would, with and without a filter.
    #[test]
    fn the_queue_kept_in_place_matches_a_full_rebuild() {
        let mut s = scene("bob", Level::L2);
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let risks = [Risk::Low, Risk::Medium, Risk::High, Risk::Critical];
        let people = [
            ("alice", Level::L1),
            ("bob", Level::L2),
            ("dave", Level::L2),
        ];
        for step in 0..400 {
            if step == 200 {
                update(&mut s, key('2'));
                update(&mut s, key('/'));
                typed(&mut s, "edge");
                update(&mut s, code(KeyCode::Enter));
            }
            let id = next(30) as i64 + 1;
            let (by, level) = people[next(3) as usize];
            let mut c = change(
                id,
                "blacklist-ip",
                risks[next(4) as usize],
                by,
                level,
                next(50) as i64,
            );
            c.state = if next(4) == 0 {
                ChangeState::Executed
            } else {
                ChangeState::PendingApproval
            };
            c.updated_at = now() + chrono::Duration::seconds(next(1000) as i64);
            s.approvals.upsert(c);
            let (ids, approvable) = s.approvals.sorted();
            assert_eq!(s.approvals.queue_ids(), ids, "step {step}");
            assert_eq!(s.approvals.approvable_count(), approvable, "step {step}");
        }
        assert!(s.approvals.queue_len() > 0);
    }
}
