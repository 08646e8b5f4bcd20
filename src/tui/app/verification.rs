//! Pane 4: post-change verification, marking verified, escalating and rolling back.

use super::{Confirmed, Effect, Modal, SelectList, State, Tone, approvals};
use crate::domain::Level;
use crate::domain::api::{OutcomeKind, OutcomeRequest, RollbackRequest};
use crate::domain::change::{Change, ChangeState};
use crate::domain::verification::{Verification, VerificationState};
use crate::tui::keymap::Command;
use crate::tui::view::words::needs;
use chrono::{DateTime, Utc};

#[derive(Debug, Default)]
pub struct VerificationPane {
    /// Open ones first (soonest deadline first), then closed ones, newest first.
    pub list: SelectList<Verification>,
}

impl VerificationPane {
    /// Verifications still counting down.
    pub fn active(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Verification> {
        self.list
            .items()
            .iter()
            .filter(move |v| v.state.is_active() && v.deadline > now)
    }

    /// Verifications waiting for someone to mark them verified or escalate.
    pub fn awaiting_outcome(&self) -> usize {
        self.list
            .items()
            .iter()
            .filter(|v| v.state == VerificationState::AwaitingOutcome)
            .count()
    }

    /// Whether live samples are being taken, so the list is worth refreshing.
    pub(super) fn sampling(&self) -> bool {
        self.list.items().iter().any(|v| v.state.is_active())
    }

    pub(super) fn deadline_passed(&self, before: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.list
            .items()
            .iter()
            .any(|v| v.deadline > before && v.deadline <= now)
    }

    pub(super) fn upsert(&mut self, v: Verification) {
        let mut list = self.list.items().to_vec();
        list.retain(|x| x.id != v.id);
        list.push(v);
        self.set(list);
    }

    /// Replaces the list, keeping the same verification selected as it moves in the order.
    pub(super) fn set(&mut self, mut list: Vec<Verification>) {
        let selected = self.list.selected().map(|v| v.id);
        sort(&mut list);
        let at = selected.and_then(|id| list.iter().position(|v| v.id == id));
        self.list.set_items(list);
        if let Some(i) = at {
            self.list.select(i);
        }
    }
}

fn sort(list: &mut [Verification]) {
    list.sort_by(|a, b| {
        a.state
            .is_closed()
            .cmp(&b.state.is_closed())
            .then_with(|| {
                if a.state.is_closed() {
                    b.deadline.cmp(&a.deadline)
                } else {
                    a.deadline.cmp(&b.deadline)
                }
            })
            .then(a.id.cmp(&b.id))
    });
}

/// Whether the operator may end or roll back the selected verification's change, and if not,
/// why: the server's rules, asked before any confirmation opens.
pub(super) fn check(state: &State, cmd: Command) -> Result<(), String> {
    let Some(v) = state.verification.list.selected() else {
        return Err("no verification selected".into());
    };
    let ends = matches!(cmd, Command::MarkVerified | Command::Escalate);
    if ends && let Some(why) = may_not_end(state, v) {
        return Err(why);
    }
    match cmd {
        Command::MarkVerified if v.state != VerificationState::AwaitingOutcome => Err(format!(
            "change #{} is {}: it can be marked verified after its deadline ({}); e escalates now",
            v.change_id,
            v.state,
            v.deadline.format("%H:%M:%S")
        )),
        Command::Escalate if v.state.is_closed() => Err(format!(
            "verification of change #{} is already {}",
            v.change_id, v.state
        )),
        Command::Rollback => match state
            .actions
            .find(&v.action)
            .filter(|a| !a.has_rollback_command)
        {
            Some(a) => Err(format!(
                "the rollback of {} is manual: {}",
                v.action, a.rollback
            )),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// The server's rule: a verification is ended by the change's requester, its approvers, or an
/// L2 or L3. A change the dashboard has not loaded is left to the server.
fn may_not_end(state: &State, v: &Verification) -> Option<String> {
    let me = state.me.as_ref()?;
    if me.level >= Level::L2 {
        return None;
    }
    let c = state.approvals.changes().get(&v.change_id)?;
    let answers = c.requested_by == me.name || c.approvals.iter().any(|a| a.approver == me.name);
    (!answers).then(|| {
        format!(
            "only the requester of change #{} ({}), its approvers, or an L2 or L3 may end its \
             verification; you are {} {}",
            c.id, c.requested_by, me.name, me.level
        )
    })
}

pub(super) fn command(state: &mut State, cmd: Command) -> Vec<Effect> {
    let Some(v) = state.verification.list.selected() else {
        return Vec::new();
    };
    match cmd {
        Command::MarkVerified => return vec![outcome(v.id, OutcomeKind::Verified)],
        Command::Escalate => state.modal = Some(Modal::Confirm(Confirmed::Escalate(v.id))),
        Command::Rollback => {
            state.modal = Some(Modal::Confirm(Confirmed::Rollback(v.change_id)));
        }
        _ => {}
    }
    Vec::new()
}

fn outcome(id: i64, outcome: OutcomeKind) -> Effect {
    Effect::VerificationOutcome(
        id,
        OutcomeRequest {
            outcome,
            note: None,
            priority: None,
            commander: None,
        },
    )
}

/// Confirmed: escalate verification #id.
pub(super) fn escalate(id: i64) -> Vec<Effect> {
    vec![outcome(id, OutcomeKind::Escalated)]
}

/// Confirmed: roll back change #id.
pub(super) fn roll_back(change_id: i64) -> Vec<Effect> {
    vec![Effect::Rollback(
        change_id,
        RollbackRequest {
            reason: "rolled back from the dashboard during post-change verification".into(),
            ticket: None,
        },
    )]
}

pub(super) fn decided(state: &mut State, r: Result<Verification, String>) -> Vec<Effect> {
    match r {
        Ok(v) => {
            let text = match v.state {
                VerificationState::Escalated => format!(
                    "escalated: incident {} declared, changes paused",
                    v.incident.clone().unwrap_or_default()
                ),
                s => format!("change #{} {s}", v.change_id),
            };
            state.say(Tone::Success, text);
            state.verification.upsert(v);
        }
        Err(e) => state.say(Tone::Error, e),
    }
    // An escalation pauses every change.
    state.windows.reload(state.now)
}

pub(super) fn rolled_back(state: &mut State, r: Result<Change, String>) {
    match r {
        Ok(c) => {
            let text = match c.state {
                ChangeState::PendingApproval => format!(
                    "rollback requested as change #{}: it {} (Approvals, 2)",
                    c.id,
                    needs(&c)
                ),
                s => format!("rollback change #{} {s}", c.id),
            };
            approvals::show_outcome(state, c, text);
        }
        Err(e) => state.say(Tone::Error, e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Msg, update};
    use super::*;
    use crate::domain::Level;
    use crate::tui::fixtures::{code, event, key, now, scene};
    use chrono::Duration;
    use crossterm::event::KeyCode;

    fn watched(
        id: i64,
        change_id: i64,
        state: VerificationState,
        seconds_left: i64,
    ) -> Verification {
        let mut v = scene("bob", Level::L2).verification.list.items()[0].clone();
        v.id = id;
        v.change_id = change_id;
        v.state = state;
        v.deadline = now() + Duration::seconds(seconds_left);
        v
    }

    #[test]
    fn verification_keys_ask_the_server_for_outcomes_and_rollbacks() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('4'));
        // Verified only after the deadline: said locally, nothing sent.
        assert!(update(&mut s, key('v')).is_empty());
        assert!(s.message.as_ref().unwrap().1.contains("after its deadline"));
        // Too long for the line at 80 columns: shown whole in a popup, which a key closes.
        assert!(s.popup.is_some());
        update(&mut s, code(KeyCode::Esc));
        assert!(s.popup.is_none());
        let ev = |seq, kind: &str, v: &Verification| {
            Msg::ServerEvent(Box::new(event(
                seq,
                kind,
                "deadline",
                serde_json::to_value(v).unwrap(),
            )))
        };
        update(
            &mut s,
            ev(
                60,
                "verification.deadline",
                &watched(1, 5, VerificationState::AwaitingOutcome, 0),
            ),
        );
        let effects = update(&mut s, key('v'));
        assert!(
            matches!(effects.as_slice(), [Effect::VerificationOutcome(1, r)] if r.outcome == OutcomeKind::Verified),
            "{effects:?}"
        );
        // Escalation and rollback ask first.
        update(&mut s, key('e'));
        assert!(matches!(
            s.modal,
            Some(Modal::Confirm(Confirmed::Escalate(1)))
        ));
        let effects = update(&mut s, key('y'));
        assert!(
            matches!(effects.as_slice(), [Effect::VerificationOutcome(1, r)] if r.outcome == OutcomeKind::Escalated)
        );
        update(&mut s, key('r'));
        assert!(matches!(
            s.modal,
            Some(Modal::Confirm(Confirmed::Rollback(5)))
        ));
        assert!(update(&mut s, key('n')).is_empty());
        update(&mut s, key('r'));
        assert!(matches!(
            update(&mut s, key('y')).as_slice(),
            [Effect::Rollback(5, _)]
        ));
    }

    #[test]
    fn trouble_elsewhere_raises_an_alert_until_the_pane_is_seen() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('2'));
        let degraded = watched(1, 5, VerificationState::Degraded, 300);
        update(
            &mut s,
            Msg::ServerEvent(Box::new(event(
                61,
                "verification.degraded",
                "change #5 DEGRADED",
                serde_json::to_value(&degraded).unwrap(),
            ))),
        );
        assert_eq!(s.alert.as_deref(), Some("change #5 DEGRADED"));
        assert_eq!(
            s.verification.list.items()[0].state,
            VerificationState::Degraded
        );
        update(&mut s, key('4'));
        assert!(s.alert.is_none());
    }

    #[test]
    fn the_selected_verification_stays_selected_as_the_list_reorders() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('4'));
        update(
            &mut s,
            Msg::Verifications(Ok(vec![
                watched(1, 5, VerificationState::Watching, 100),
                watched(2, 6, VerificationState::Watching, 200),
            ])),
        );
        update(&mut s, key('j'));
        assert_eq!(s.verification.list.selected().unwrap().id, 2);
        // A new one with an earlier deadline arrives first in the order.
        let new = watched(3, 7, VerificationState::Watching, 50);
        update(
            &mut s,
            Msg::ServerEvent(Box::new(event(
                62,
                "verification.started",
                "",
                serde_json::to_value(&new).unwrap(),
            ))),
        );
        assert_eq!(s.verification.list.selected().unwrap().id, 2);
    }
}
