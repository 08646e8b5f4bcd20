//! Pane 1: the action catalog, and the change request form opened from it with the server's
//! live decision beside it.

use super::{Confirmed, Effect, Modal, SelectList, State, Tone, approvals};
use crate::domain::api::{CatalogEntry, Preview};
use crate::domain::change::{Change, ChangeState};
use crate::tui::form::{ChangeForm, FieldKey};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Default)]
pub struct ActionsPane {
    pub list: SelectList<CatalogEntry>,
}

impl ActionsPane {
    pub fn find(&self, name: &str) -> Option<&CatalogEntry> {
        self.list.items().iter().find(|a| a.name == name)
    }
}

pub(super) fn open(state: &mut State) {
    if let Some(a) = state.actions.list.selected() {
        state.modal = Some(Modal::Form(Box::new(ChangeForm::new(a.clone()))));
    }
}

pub(super) fn form_key(state: &mut State, mut form: Box<ChangeForm>, key: KeyEvent) -> Vec<Effect> {
    if form.submitting {
        // Keys wait while the request is on its way; Ctrl-C is handled before this.
        state.modal = Some(Modal::Form(form));
        state.dirty = false;
        return Vec::new();
    }
    // Ctrl-N: schedule into the next window the preview named, or back to "run now".
    if key.code == KeyCode::Char('n') && key.modifiers.contains(KeyModifiers::CONTROL) {
        let effects = toggle_schedule(state, &mut form);
        state.modal = Some(Modal::Form(form));
        return effects;
    }
    let mut effects = Vec::new();
    match form.fields.key(key) {
        FieldKey::Cancel => {
            if form.fields.holds_input() {
                state.modal = Some(Modal::Confirm(Confirmed::Discard(form)));
            }
            return Vec::new();
        }
        FieldKey::Submit => match form.ticket_check() {
            Some(Err(e)) => state.say(Tone::Error, e),
            _ => {
                form.submitting = true;
                effects.push(Effect::Create(form.request()));
            }
        },
        FieldKey::Edited(true) => effects = ask_preview(&mut form),
        FieldKey::Moved | FieldKey::Edited(false) => {}
    }
    state.modal = Some(Modal::Form(form));
    effects
}

pub(super) fn preview_arrived(
    state: &mut State,
    generation: u64,
    r: Result<Preview, String>,
) -> Vec<Effect> {
    let Some(Modal::Form(form)) = &mut state.modal else {
        return Vec::new();
    };
    form.preview_in_flight = false;
    if generation == form.preview_generation {
        form.preview = Some(r);
    }
    if form.preview_stale {
        return ask_preview(form);
    }
    Vec::new()
}

/// Schedules the request into the next usable window (when the preview says only the window
/// refuses it now), or, when it is scheduled, back to running as soon as allowed. The preview
/// is asked again, so what it shows is what submitting does.
fn toggle_schedule(state: &mut State, form: &mut ChangeForm) -> Vec<Effect> {
    if form.run_at.take().is_some() {
        state.say(Tone::Info, "the change runs as soon as it is allowed");
    } else if let Some(w) = form.schedulable() {
        let text = format!(
            "scheduled for the {} window opening {}",
            w.kind,
            w.opens_at.format("%a %H:%M UTC")
        );
        form.run_at = Some(crate::domain::schedule::NEXT_WINDOW.to_string());
        state.say(Tone::Info, text);
    } else {
        // Short enough for the message line: a popup would take the next key.
        state.say(
            Tone::Error,
            "Ctrl-N: the preview offers no window to schedule this change into",
        );
        return Vec::new();
    }
    // The answer for the old request would be stale.
    form.preview = None;
    ask_preview(form)
}

/// One preview in flight at a time; edits meanwhile ask for one more when it returns.
fn ask_preview(form: &mut ChangeForm) -> Vec<Effect> {
    if !form.previewable() {
        form.preview = None;
        form.preview_stale = false;
        return Vec::new();
    }
    if form.preview_in_flight {
        form.preview_stale = true;
        return Vec::new();
    }
    form.preview_generation += 1;
    form.preview_in_flight = true;
    form.preview_stale = false;
    vec![Effect::Preview(form.preview_generation, form.request())]
}

pub(super) fn submitted(state: &mut State, r: Result<Change, String>) {
    match r {
        Ok(c) => {
            let text = match (c.state, c.run_at) {
                (ChangeState::PendingApproval, _) => format!(
                    "change #{} is waiting for approval: it is in the Approvals queue (2)",
                    c.id
                ),
                (ChangeState::Scheduled, Some(t)) => format!(
                    "change #{} is scheduled for {}",
                    c.id,
                    t.format("%a %Y-%m-%d %H:%M UTC")
                ),
                (s, _) => format!("change #{} {s}", c.id),
            };
            approvals::show_outcome(state, c.clone(), text);
            state.modal = Some(Modal::Outcome(Box::new(c)));
        }
        Err(e) => {
            if let Some(Modal::Form(f)) = &mut state.modal {
                f.submitting = false;
            }
            state.say(Tone::Error, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Msg, update};
    use super::*;
    use crate::domain::approval::Requirement;
    use crate::domain::{Level, Risk};
    use crate::tui::fixtures::{change, code, key, scene, typed};
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    #[test]
    fn request_flow_previews_live_and_submits_the_typed_request() {
        let mut s = scene("alice", Level::L1);
        update(&mut s, key('1'));
        let i = s
            .actions
            .list
            .items()
            .iter()
            .position(|a| a.name == "blacklist-ip")
            .unwrap();
        for _ in 0..i {
            update(&mut s, key('j'));
        }
        update(&mut s, code(KeyCode::Enter));
        assert!(matches!(&s.modal, Some(Modal::Form(f)) if f.action.name == "blacklist-ip"));
        // A bad ticket is flagged as it is typed, and asks the server nothing.
        assert!(typed(&mut s, "CHG-Bad").is_empty());
        let Some(Modal::Form(f)) = &s.modal else {
            panic!()
        };
        assert!(f.ticket_check().unwrap().is_err());
        for _ in 0..3 {
            update(&mut s, code(KeyCode::Backspace));
        }
        typed(&mut s, "1234");
        update(&mut s, code(KeyCode::Tab));
        let effects = typed(&mut s, "e");
        let [Effect::Preview(g1, req)] = effects.as_slice() else {
            panic!("{effects:?}")
        };
        assert_eq!(
            (req.ticket.as_str(), req.target.as_str()),
            ("CHG-1234", "e")
        );
        // While that preview is out, more typing asks for exactly one more when it returns.
        assert!(typed(&mut s, "dge-1").is_empty());
        let again = update(&mut s, Msg::Preview(*g1, Err("stale".into())));
        let [Effect::Preview(g2, req)] = again.as_slice() else {
            panic!("{again:?}")
        };
        assert_eq!(req.target, "edge-1");
        let preview = Preview {
            decision: crate::domain::policy::Outcome::NeedsApproval,
            reasons: vec!["high risk requested by L1".into()],
            approvals_required: vec![Requirement::Level {
                min: Level::L2,
                count: 1,
            }],
            warnings: vec!["off-peak preferred".into()],
            run_at: None,
            next_window: None,
            conflicts: Vec::new(),
        };
        update(&mut s, Msg::Preview(*g2, Ok(preview.clone())));
        let Some(Modal::Form(f)) = &s.modal else {
            panic!()
        };
        assert_eq!(f.preview, Some(Ok(preview)));
        update(&mut s, code(KeyCode::Tab));
        typed(&mut s, "203.0.113.7");
        update(&mut s, code(KeyCode::Tab));
        typed(&mut s, "scraper");
        let submit = update(&mut s, code(KeyCode::Enter));
        let [Effect::Create(req)] = submit.as_slice() else {
            panic!("{submit:?}")
        };
        assert_eq!(req.params["ip"], serde_json::json!("203.0.113.7"));
        assert_eq!(req.reason, "scraper");
        // Keys wait while it is on its way; then the outcome shows and the queue has it.
        assert!(update(&mut s, key('x')).is_empty());
        let mut created = change(9, "blacklist-ip", Risk::High, "alice", Level::L1, 0);
        created.target = "edge-1".into();
        update(&mut s, Msg::Submitted(Ok(created)));
        assert!(matches!(&s.modal, Some(Modal::Outcome(c)) if c.id == 9));
        assert!(s.approvals.queue_ids().contains(&9));
        assert!(s.message.as_ref().unwrap().1.contains("Approvals queue"));
    }

    #[test]
    fn a_refused_submission_keeps_the_form_and_says_why() {
        let mut s = scene("alice", Level::L1);
        update(&mut s, key('1'));
        update(&mut s, code(KeyCode::Enter));
        typed(&mut s, "CHG-1");
        let n = if let Some(Modal::Form(f)) = &s.modal {
            f.fields.fields.len()
        } else {
            0
        };
        for _ in 1..n {
            update(&mut s, code(KeyCode::Enter));
        }
        assert!(matches!(
            update(&mut s, code(KeyCode::Enter)).as_slice(),
            [Effect::Create(_)]
        ));
        update(
            &mut s,
            Msg::Submitted(Err("409 refused: outside the deployment windows".into())),
        );
        assert!(matches!(&s.modal, Some(Modal::Form(f)) if !f.submitting));
        assert!(
            s.message
                .as_ref()
                .unwrap()
                .1
                .contains("outside the deployment windows")
        );
    }

    /// When the preview says only the window refuses the change, Ctrl-N schedules it into the
    /// next window (and asks the preview again with it); Ctrl-N again runs it now.
    #[test]
    fn ctrl_n_schedules_a_window_refused_request_into_the_next_window() {
        use crate::domain::api::NextWindow;
        use crate::domain::policy::Outcome;
        let ctrl_n = Msg::Key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::CONTROL));
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('1'));
        update(&mut s, code(KeyCode::Enter));
        typed(&mut s, "CHG-1");
        update(&mut s, code(KeyCode::Tab));
        let asked = typed(&mut s, "checkout");
        let Some(Effect::Preview(g, _)) = asked.first() else {
            panic!("{asked:?}")
        };
        // Nothing to schedule yet: Ctrl-N says why and asks nothing.
        assert!(update(&mut s, ctrl_n.clone()).is_empty());
        assert!(s.message.as_ref().unwrap().1.contains("offers no window"));
        assert!(s.popup.is_none(), "the form keeps the keys");
        let opens = crate::tui::fixtures::now() + chrono::Duration::hours(11);
        let refused = Preview {
            decision: Outcome::Blocked,
            reasons: vec!["outside the deployment windows".into()],
            approvals_required: vec![],
            warnings: vec![],
            run_at: None,
            next_window: Some(NextWindow {
                kind: crate::domain::WindowKind::OffPeak,
                opens_at: opens,
            }),
            conflicts: vec![],
        };
        // Answers for the older requests typed meanwhile; the newest carries the refusal.
        let mut g = *g;
        while let [Effect::Preview(next, _)] =
            update(&mut s, Msg::Preview(g, Ok(refused.clone()))).as_slice()
        {
            g = *next;
        }
        update(&mut s, Msg::Preview(g, Ok(refused.clone())));
        let again = update(&mut s, ctrl_n.clone());
        let [Effect::Preview(_, req)] = again.as_slice() else {
            panic!("{again:?}")
        };
        assert_eq!(req.run_at.as_deref(), Some("next_window"));
        assert!(s.message.as_ref().unwrap().1.contains("Off-peak window"));
        let Some(Modal::Form(f)) = &s.modal else {
            panic!()
        };
        assert_eq!(f.request().run_at.as_deref(), Some("next_window"));
        assert!(f.schedulable().is_none(), "no longer offered once chosen");
        // Ctrl-N again: back to running it now (once the preview in flight answers).
        update(&mut s, ctrl_n);
        let Some(Modal::Form(f)) = &s.modal else {
            panic!()
        };
        assert_eq!(f.request().run_at, None);
    }
}
