//! Cancelling a change that waits for its time (`POST /changes/{id}/cancel`), from the panes
//! that select one: the Approvals queue (a change waiting for approval with a `run_at`) and the
//! Windows pane's list of the week's scheduled changes, or by number from the command line
//! (`:cancel 42`). `C` asks for a reason; Enter sends it.
//! The answer comes back as any decision on a change does ([`super::approvals::decided`]).

use super::windows::{self, Row};
use super::{Effect, Modal, Pane, Prompt, Purpose, State, Tone};
use crate::domain::api::CancelRequest;
use crate::domain::schedule::{CancelRefusal, may_cancel};
use crate::tui::form::{Field, Fields};

/// The change `C` would cancel in the pane shown, or where to find one.
fn selected(state: &State) -> Result<i64, String> {
    match state.pane {
        Pane::Approvals => match state.approvals.selected_change() {
            Some(c) => Ok(c.id),
            None => Err("no pending change is selected".into()),
        },
        Pane::Windows => match windows::selected_row(state) {
            Some(Row::Change(id)) => Ok(id),
            _ if !windows::rows(state)
                .iter()
                .any(|r| matches!(r, Row::Change(_))) =>
            {
                Err("no change is scheduled in the week shown (h/l: other weeks)".into())
            }
            _ => Err("select a scheduled change under the calendar (j/k)".into()),
        },
        Pane::Actions | Pane::Verification => {
            Err("C cancels a scheduled change: select one in Approvals (2) or Windows (3)".into())
        }
    }
}

/// Whether `C` may cancel the selected change, in the server's rule.
pub(super) fn check(state: &State) -> Result<(), String> {
    may(state, selected(state)?)
}

/// Whether the operator may cancel change `id`, in the server's rule; short enough for the
/// message line at 80 columns, so no popup takes the next key. `C` and `:cancel N` both ask it.
fn may(state: &State, id: i64) -> Result<(), String> {
    let Some(c) = state.approvals.changes().get(&id) else {
        return Err(format!("change #{id} is still loading"));
    };
    let Some(me) = state.operator() else {
        return Err("who you are is still loading".into());
    };
    may_cancel(c, &me).map_err(|why| match why {
        CancelRefusal::NotTheirs => format!(
            "only its requester ({}) or an L2 or L3 may cancel change #{}",
            c.requested_by, c.id
        ),
        CancelRefusal::NotWaiting => format!(
            "change #{} has no run time: only scheduled changes can be cancelled",
            c.id
        ),
    })
}

/// `C`, once [`check`] passed: asks why for the selected change.
pub(super) fn command(state: &mut State) {
    if let Ok(id) = selected(state) {
        ask(state, id);
    }
}

/// `:cancel N`: what `C` does, on change N wherever it is listed; Err says why not (the
/// read-only refusal is the command line's, before it reads N).
pub(super) fn change(state: &mut State, id: i64) -> Result<(), String> {
    may(state, id)?;
    ask(state, id);
    Ok(())
}

/// Asks why: the reason goes into the change's record and its requester reads it.
fn ask(state: &mut State, id: i64) {
    state.modal = Some(Modal::Prompt(Prompt::new(
        Purpose::CancelReason(id),
        vec![Field::new(
            "Reason",
            "why it must not run (required; its requester reads it)",
        )],
    )));
}

/// The request the prompt makes, or why it makes none.
pub(super) fn request(id: i64, fields: &Fields) -> Result<Vec<Effect>, String> {
    let reason = fields.required(0, "a reason is required to cancel a change")?;
    Ok(vec![Effect::Cancel(id, CancelRequest { reason })])
}

/// Enter: the typed reason is the confirmation, so it is sent at once.
pub(super) fn send(state: &mut State, id: i64, effects: Vec<Effect>) -> Vec<Effect> {
    state.say(Tone::Info, format!("cancelling change #{id}…"));
    effects
}

#[cfg(test)]
mod tests {
    use super::super::{Confirmed, Msg, available, update};
    use super::*;
    use crate::domain::Level;
    use crate::domain::change::ChangeState;
    use crate::tui::fixtures::{self, code, key, now, said, typed};
    use crate::tui::keymap::Command;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    /// `C` as the terminal sends it.
    fn shift_c() -> Msg {
        Msg::Key(KeyEvent::new(KeyCode::Char('C'), KeyModifiers::SHIFT))
    }

    /// The scene's schedule on the Windows pane.
    fn with_schedule(who: &str, level: Level) -> State {
        fixtures::with_schedule(who, level, '3')
    }

    #[test]
    fn c_asks_why_then_enter_cancels_the_selected_scheduled_change() {
        let mut s = with_schedule("bob", Level::L2);
        // The list under the calendar: the freeze, then #20 and #21 by time.
        assert_eq!(
            windows::rows(&s),
            vec![Row::Freeze(1), Row::Change(20), Row::Change(21)]
        );
        assert!(update(&mut s, shift_c()).is_empty());
        assert!(s.modal.is_none(), "the freeze is selected, not a change");
        assert!(
            said(&s).contains("select a scheduled change"),
            "{}",
            said(&s)
        );
        update(&mut s, key('j'));
        assert_eq!(windows::selected_row(&s), Some(Row::Change(20)));
        assert!(update(&mut s, shift_c()).is_empty());
        assert!(matches!(
            &s.modal,
            Some(Modal::Prompt(p)) if p.purpose == Purpose::CancelReason(20)
        ));
        // No reason, no request: the prompt stays and says what is missing.
        assert!(update(&mut s, code(KeyCode::Enter)).is_empty());
        assert!(said(&s).contains("a reason is required"));
        assert!(matches!(s.modal, Some(Modal::Prompt(_))));
        typed(&mut s, "customer asked to wait");
        let sent = update(&mut s, code(KeyCode::Enter));
        assert_eq!(
            sent,
            vec![Effect::Cancel(
                20,
                CancelRequest {
                    reason: "customer asked to wait".into()
                }
            )]
        );
        assert!(s.modal.is_none(), "Enter sends: no second question");
        assert_eq!(s.in_flight, 1, "the spinner turns until the answer");
        assert!(said(&s).contains("cancelling change #20"));
        let mut done = s.approvals.changes()[&20].clone();
        done.state = ChangeState::Cancelled;
        done.updated_at = now() + chrono::Duration::seconds(1);
        assert!(update(&mut s, Msg::ChangeDecided(Ok(done))).is_empty());
        assert_eq!(s.in_flight, 0);
        assert_eq!(
            said(&s),
            "change #20 cancelled: restart-pods on checkout will not run"
        );
        assert_eq!(
            windows::rows(&s),
            vec![Row::Freeze(1), Row::Change(21)],
            "a cancelled change leaves the list"
        );
    }

    /// Esc then C typed quickly reaches the dashboard as Alt+Shift+C: the view closes and the
    /// prompt opens, as if typed slowly (before, both were dropped and the typing that
    /// followed went to the pane: `p` opened the pause prompt).
    #[test]
    fn esc_then_c_typed_at_once_closes_the_view_and_asks_why() {
        let mut s = with_schedule("bob", Level::L2);
        update(&mut s, key('j'));
        update(&mut s, code(KeyCode::Enter));
        assert!(matches!(s.modal, Some(Modal::Scroll { .. })));
        update(
            &mut s,
            Msg::Key(KeyEvent::new(
                KeyCode::Char('C'),
                KeyModifiers::ALT | KeyModifiers::SHIFT,
            )),
        );
        assert!(matches!(
            &s.modal,
            Some(Modal::Prompt(p)) if p.purpose == Purpose::CancelReason(20)
        ));
    }

    /// The server's refusal (403, 409, 422) reaches the message line in its own words, and the
    /// changes are loaded again: someone else may have moved the change on.
    #[test]
    fn a_refusal_from_the_server_is_shown_in_its_words() {
        let mut s = with_schedule("bob", Level::L2);
        update(&mut s, key('j'));
        update(&mut s, shift_c());
        typed(&mut s, "superseded");
        update(&mut s, code(KeyCode::Enter));
        let refusal = "change #20 is executing: only a scheduled change (or one waiting for \
                       approval with a run_at) can be cancelled";
        let effects = update(&mut s, Msg::ChangeDecided(Err(refusal.into())));
        assert_eq!(effects, vec![Effect::LoadChanges]);
        assert_eq!(s.message, Some((Tone::Error, refusal.into())));
    }

    #[test]
    fn a_change_waiting_for_approval_with_a_run_time_is_cancelled_from_the_queue() {
        let mut s = with_schedule("bob", Level::L2);
        update(&mut s, key('2'));
        let at = s.approvals.queue_ids().iter().position(|id| *id == 21);
        s.approvals.select(at.expect("#21 waits for approval"));
        update(&mut s, key('C'));
        assert!(matches!(
            &s.modal,
            Some(Modal::Prompt(p)) if p.purpose == Purpose::CancelReason(21)
        ));
        // Esc with nothing typed drops it, and says the change is untouched.
        assert!(update(&mut s, code(KeyCode::Esc)).is_empty());
        assert!(s.modal.is_none());
        assert_eq!(said(&s), "change #21 not cancelled: it stays as it was");
        // A typed reason is not lost to a stray Esc.
        update(&mut s, key('C'));
        typed(&mut s, "not tonight");
        update(&mut s, code(KeyCode::Esc));
        assert!(matches!(
            s.modal,
            Some(Modal::Confirm(Confirmed::DiscardPrompt(_)))
        ));
        update(&mut s, key('n'));
        assert!(matches!(&s.modal, Some(Modal::Prompt(p)) if p.fields.value(0) == "not tonight"));
    }

    /// Offered only where it would work; anywhere else the message line says why, before any
    /// prompt opens.
    #[test]
    fn c_is_offered_only_for_a_change_that_can_be_cancelled_and_says_why_not() {
        let offered = |s: &State| {
            s.keymap
                .offered(s.pane.scope(), |c| available(s, c).is_ok())
                .iter()
                .any(|(_, hint)| *hint == "cancel")
        };
        let refused = |s: &mut State| {
            assert!(!offered(s));
            assert!(update(s, key('C')).is_empty());
            assert!(s.modal.is_none());
            let (tone, text) = s.message.clone().expect("a message");
            assert_eq!(tone, Tone::Error);
            assert!(s.popup.is_none(), "fits the message line: {text}");
            text
        };
        let mut s = with_schedule("alice", Level::L1);
        update(&mut s, key('j'));
        let why = refused(&mut s);
        assert_eq!(
            why,
            "only its requester (dave) or an L2 or L3 may cancel change #20"
        );
        let mut s = with_schedule("dave", Level::L2);
        update(&mut s, key('j'));
        assert!(offered(&s), "his own");
        // In the queue, #2 has no run time: it is withdrawn or denied, not cancelled.
        update(&mut s, key('2'));
        assert_eq!(s.approvals.selected_change().map(|c| c.id), Some(2));
        let why = refused(&mut s);
        assert!(why.contains("change #2 has no run time"), "{why}");
        for pane in ['1', '4'] {
            update(&mut s, key(pane));
            let why = refused(&mut s);
            assert!(why.contains("Approvals (2) or Windows (3)"), "{why}");
        }
        // A week with nothing scheduled says so.
        update(&mut s, key('3'));
        update(&mut s, key(']'));
        let why = refused(&mut s);
        assert!(
            why.contains("no change is scheduled in the week shown"),
            "{why}"
        );
        assert!(available(&s, Command::Cancel).is_err());
    }

    /// In the Windows pane j and k walk the freezes and then the scheduled changes; x removes
    /// only a freeze.
    #[test]
    fn the_windows_list_selects_freezes_and_changes_and_x_only_removes_freezes() {
        let mut s = with_schedule("carol", Level::L3);
        update(&mut s, key('G'));
        assert_eq!(windows::selected_row(&s), Some(Row::Change(21)));
        update(&mut s, key('x'));
        assert!(s.modal.is_none());
        assert!(
            said(&s).contains("x removes the selected freeze"),
            "{}",
            said(&s)
        );
        update(&mut s, key('g'));
        update(&mut s, key('x'));
        assert!(matches!(
            s.modal,
            Some(Modal::Confirm(Confirmed::RemoveFreeze(1)))
        ));
    }
}
