//! What sits on top of the panes and gets the keys first: one confirmation that carries what it
//! confirms, one prompt whose keys work the same whatever it asks, the change form, the outcome
//! of a submission and the help.

use super::{Effect, State, Tone, actions, approvals, verification, windows};
use crate::domain::change::Change;
use crate::tui::form::{ChangeForm, Field, FieldKey, Fields};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone)]
pub enum Modal {
    Help,
    Form(Box<ChangeForm>),
    /// What became of a submitted change.
    Outcome(Box<Change>),
    /// `y` does it; any other key does not.
    Confirm(Confirmed),
    Prompt(Prompt),
}

/// What a confirmation is about to do.
#[derive(Debug, Clone)]
pub enum Confirmed {
    Approve(i64),
    /// Escalate verification #id: declares an incident and pauses changes.
    Escalate(i64),
    /// Roll back change #id.
    Rollback(i64),
    Quit,
    /// Drop the change request being typed (the form comes back on "no").
    Discard(Box<ChangeForm>),
}

/// A few fields asked for one purpose.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub purpose: Purpose,
    pub fields: Fields,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Why change #id is denied.
    DenyReason(i64),
    PauseReason,
    /// The approval queue's filter; it applies as it is typed.
    Filter,
    Freeze,
}

impl Prompt {
    pub fn new(purpose: Purpose, fields: Vec<Field>) -> Prompt {
        Prompt {
            purpose,
            fields: Fields::new(fields),
        }
    }
}

pub(super) fn key(state: &mut State, open: Modal, key: KeyEvent) -> Vec<Effect> {
    match open {
        // Any key closes these; q closes the help without quitting.
        Modal::Help | Modal::Outcome(_) => Vec::new(),
        Modal::Confirm(what) => confirm_key(state, what, key),
        Modal::Prompt(prompt) => prompt_key(state, prompt, key),
        Modal::Form(form) => actions::form_key(state, form, key),
    }
}

fn confirm_key(state: &mut State, what: Confirmed, key: KeyEvent) -> Vec<Effect> {
    // Ctrl-Y is not a yes.
    let yes = key.code == KeyCode::Char('y') && !key.modifiers.contains(KeyModifiers::CONTROL);
    match what {
        Confirmed::Quit if yes => state.quit = true,
        Confirmed::Quit => {}
        Confirmed::Discard(form) if !yes => state.modal = Some(Modal::Form(form)),
        Confirmed::Discard(_) => {}
        Confirmed::Approve(id) if yes => return approvals::approve(state, id),
        Confirmed::Escalate(id) if yes => return verification::escalate(id),
        Confirmed::Rollback(change_id) if yes => return verification::roll_back(change_id),
        Confirmed::Approve(_) => state.say(Tone::Info, "approval cancelled"),
        Confirmed::Escalate(_) => state.say(Tone::Info, "escalation cancelled"),
        Confirmed::Rollback(_) => state.say(Tone::Info, "rollback cancelled"),
    }
    Vec::new()
}

/// The one key handler of every prompt: the fields move and edit the same way, and only what
/// cancelling and submitting mean belongs to the pane that asked.
fn prompt_key(state: &mut State, mut prompt: Prompt, key: KeyEvent) -> Vec<Effect> {
    let done = prompt.fields.key(key);
    if prompt.purpose == Purpose::Filter {
        approvals::filter_typed(state, &prompt.fields, done);
    }
    match done {
        FieldKey::Cancel => {
            if let Purpose::DenyReason(_) = prompt.purpose {
                state.say(Tone::Info, "deny cancelled");
            }
            Vec::new()
        }
        FieldKey::Submit => {
            let submitted = match prompt.purpose {
                Purpose::DenyReason(id) => approvals::deny(id, &prompt.fields),
                Purpose::Filter => Ok(Vec::new()),
                Purpose::PauseReason => windows::pause(&prompt.fields),
                Purpose::Freeze => windows::add_freeze(&prompt.fields),
            };
            submitted.unwrap_or_else(|why| {
                state.say(Tone::Error, why);
                state.modal = Some(Modal::Prompt(prompt));
                Vec::new()
            })
        }
        FieldKey::Moved | FieldKey::Edited(_) => {
            state.modal = Some(Modal::Prompt(prompt));
            Vec::new()
        }
    }
}
