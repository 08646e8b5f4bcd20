//! What sits on top of the panes and gets the keys first: one confirmation that carries what it
//! confirms, one prompt whose keys work the same whatever it asks, the change form, the outcome
//! of a submission and the help.

use super::{Effect, State, Tone, actions, approvals, cancel, cmdline, verification, windows};
use crate::domain::change::Change;
use crate::tui::form::{ChangeForm, Field, FieldKey, Fields};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone)]
pub enum Modal {
    /// A full-screen view that scrolls: the help, a change, the message log.
    Scroll {
        what: Scrolled,
        offset: usize,
    },
    Form(Box<ChangeForm>),
    /// What became of a submitted change.
    Outcome(Box<Change>),
    /// `y` does it; any other key does not.
    Confirm(Confirmed),
    Prompt(Prompt),
}

/// What a scrolled view shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scrolled {
    /// Every key, grouped by pane.
    Help,
    /// Everything known about change #id.
    Change(i64),
    /// The last messages of the message line.
    Messages,
}

/// What a confirmation is about to do. Those that carry a prompt send what was typed in it on
/// "yes" and give it back on "no", so a typed reason is never lost to a wrong key.
#[derive(Debug, Clone)]
pub enum Confirmed {
    Approve(i64),
    /// Withdraw my own change #id.
    Withdraw(i64),
    /// Deny change #id for the reason typed.
    Deny(i64, Prompt),
    /// Escalate verification #id: declares an incident and pauses changes.
    Escalate(i64),
    /// Roll back change #id.
    Rollback(i64),
    /// Announce the freeze typed.
    Freeze(Prompt),
    /// Remove the freeze with this id.
    RemoveFreeze(i64),
    /// Pause all changes for the reason typed.
    Pause(Prompt),
    Resume,
    Quit,
    /// Drop the change request being typed (the form comes back on "no").
    Discard(Box<ChangeForm>),
    /// Drop what was typed in a prompt (it comes back on "no").
    DiscardPrompt(Prompt),
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
    /// The `:` command line.
    Command,
    Freeze,
    /// Why change #id, waiting for its time, must not run.
    CancelReason(i64),
}

impl Prompt {
    pub fn new(purpose: Purpose, fields: Vec<Field>) -> Prompt {
        Prompt {
            purpose,
            fields: Fields::new(fields),
        }
    }

    /// Whether the operator typed something that Esc would lose. The freeze form's start is
    /// filled in for them, so only its name and end count.
    fn typed(&self) -> bool {
        let filled = |i: usize| !self.fields.value(i).trim().is_empty();
        match self.purpose {
            Purpose::Filter | Purpose::Command => false,
            Purpose::Freeze => filled(0) || filled(2),
            Purpose::DenyReason(_) | Purpose::PauseReason | Purpose::CancelReason(_) => filled(0),
        }
    }
}

impl Purpose {
    /// What the prompt is for, as the messages about it say.
    pub fn doing(self) -> &'static str {
        match self {
            Purpose::DenyReason(_) => "the denial",
            Purpose::PauseReason => "the pause",
            Purpose::Filter => "the filter",
            Purpose::Command => "the command",
            Purpose::Freeze => "the freeze",
            Purpose::CancelReason(_) => "the cancellation reason",
        }
    }

    /// What the message line says when the prompt is dropped unsent.
    fn dropped(self) -> String {
        match self {
            // "the cancellation cancelled" would leave a tired reader guessing.
            Purpose::CancelReason(id) => format!("change #{id} not cancelled: it stays as it was"),
            _ => format!("{} cancelled", self.doing()),
        }
    }
}

pub(super) fn key(state: &mut State, open: Modal, key: KeyEvent) -> Vec<Effect> {
    match open {
        // Any key closes it.
        Modal::Outcome(_) => Vec::new(),
        Modal::Scroll { what, offset } => {
            scroll_key(state, what, offset, key);
            Vec::new()
        }
        Modal::Confirm(what) => confirm_key(state, what, key),
        Modal::Prompt(prompt) => prompt_key(state, prompt, key),
        Modal::Form(form) => actions::form_key(state, form, key),
    }
}

/// The keys of a scrolled view: the motions every list knows, and Esc, q or Enter closes it.
fn scroll_key(state: &mut State, what: Scrolled, offset: usize, key: KeyEvent) {
    let page = crate::tui::view::scrolled::page(state.size);
    let last = crate::tui::view::scrolled::lines(state, &what)
        .len()
        .saturating_sub(page);
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let offset = match key.code {
        KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') | KeyCode::Char('?') => return,
        KeyCode::Char('d') if ctrl => offset + page / 2,
        KeyCode::Char('u') if ctrl => offset.saturating_sub(page / 2),
        KeyCode::Down | KeyCode::Char('j') => offset + 1,
        KeyCode::Up | KeyCode::Char('k') => offset.saturating_sub(1),
        KeyCode::PageDown | KeyCode::Char(' ') => offset + page,
        KeyCode::PageUp => offset.saturating_sub(page),
        KeyCode::Home | KeyCode::Char('g') => 0,
        KeyCode::End | KeyCode::Char('G') => last,
        _ => {
            state.dirty = false;
            offset
        }
    };
    state.modal = Some(Modal::Scroll {
        what,
        offset: offset.min(last),
    });
}

fn confirm_key(state: &mut State, what: Confirmed, key: KeyEvent) -> Vec<Effect> {
    // Ctrl-Y is not a yes.
    let yes = key.code == KeyCode::Char('y') && !key.modifiers.contains(KeyModifiers::CONTROL);
    match what {
        Confirmed::Quit if yes => state.quit = true,
        Confirmed::Quit => {}
        Confirmed::Discard(form) if !yes => state.modal = Some(Modal::Form(form)),
        Confirmed::Discard(_) => {}
        Confirmed::DiscardPrompt(prompt) if !yes => state.modal = Some(Modal::Prompt(prompt)),
        Confirmed::DiscardPrompt(prompt) => state.say(Tone::Info, prompt.purpose.dropped()),
        Confirmed::Deny(_, prompt) | Confirmed::Freeze(prompt) | Confirmed::Pause(prompt) => {
            if yes {
                return submitted(state, prompt);
            }
            state.say(
                Tone::Info,
                format!(
                    "{} not sent: edit it, or Esc to drop it",
                    prompt.purpose.doing()
                ),
            );
            state.modal = Some(Modal::Prompt(prompt));
        }
        Confirmed::Approve(id) if yes => return approvals::approve(state, id),
        Confirmed::Withdraw(id) if yes => return approvals::withdraw(state, id),
        Confirmed::Withdraw(_) => state.say(Tone::Info, "the change stays pending"),
        Confirmed::Escalate(id) if yes => return verification::escalate(id),
        Confirmed::Rollback(change_id) if yes => return verification::roll_back(change_id),
        Confirmed::RemoveFreeze(id) if yes => return windows::remove_freeze(state, id),
        Confirmed::Resume if yes => return windows::resume(state),
        Confirmed::Approve(_) => state.say(Tone::Info, "approval cancelled"),
        Confirmed::Escalate(_) => state.say(Tone::Info, "escalation cancelled"),
        Confirmed::Rollback(_) => state.say(Tone::Info, "rollback cancelled"),
        Confirmed::RemoveFreeze(_) => state.say(Tone::Info, "the freeze stays"),
        Confirmed::Resume => state.say(Tone::Info, "changes stay paused"),
    }
    Vec::new()
}

/// The requests a prompt's fields make, or why they make none.
fn requests(state: &State, prompt: &Prompt) -> Result<Vec<Effect>, String> {
    match prompt.purpose {
        Purpose::DenyReason(id) => approvals::deny(id, &prompt.fields),
        Purpose::Filter | Purpose::Command => Ok(Vec::new()),
        Purpose::PauseReason => windows::pause(&prompt.fields),
        Purpose::Freeze => windows::add_freeze(&prompt.fields, state.now),
        Purpose::CancelReason(id) => cancel::request(id, &prompt.fields),
    }
}

/// Confirmed: send what the prompt asks (checked again: the clock moved while it was asked).
fn submitted(state: &mut State, prompt: Prompt) -> Vec<Effect> {
    requests(state, &prompt).unwrap_or_else(|why| {
        state.say(Tone::Error, why);
        state.modal = Some(Modal::Prompt(prompt));
        Vec::new()
    })
}

/// The one key handler of every prompt: the fields move and edit the same way, and only what
/// cancelling and submitting mean belongs to the pane that asked.
fn prompt_key(state: &mut State, mut prompt: Prompt, key: KeyEvent) -> Vec<Effect> {
    // Tab on the command line completes the command instead of moving between fields.
    if prompt.purpose == Purpose::Command && key.code == KeyCode::Tab {
        if let Some(done) = cmdline::complete(prompt.fields.value(0), state.is_read_only()) {
            prompt.fields.fields[0].input = tui_input::Input::new(done);
        }
        state.modal = Some(Modal::Prompt(prompt));
        return Vec::new();
    }
    let done = prompt.fields.key(key);
    if prompt.purpose == Purpose::Filter {
        approvals::filter_typed(state, &prompt.fields, done);
    }
    match done {
        FieldKey::Cancel if prompt.typed() => {
            state.modal = Some(Modal::Confirm(Confirmed::DiscardPrompt(prompt)));
            Vec::new()
        }
        FieldKey::Cancel => {
            if !matches!(prompt.purpose, Purpose::Filter | Purpose::Command) {
                state.say(Tone::Info, prompt.purpose.dropped());
            }
            Vec::new()
        }
        FieldKey::Submit if prompt.purpose == Purpose::Command => {
            cmdline::run(state, prompt.fields.value(0))
        }
        FieldKey::Submit => match requests(state, &prompt) {
            // The filter applies as it is typed: nothing to confirm.
            Ok(_) if prompt.purpose == Purpose::Filter => Vec::new(),
            Ok(effects) => {
                let confirm = match prompt.purpose {
                    // The reason typed under "Cancel change #id" is the confirmation: Enter
                    // sends it.
                    Purpose::CancelReason(id) => return cancel::send(state, id, effects),
                    Purpose::DenyReason(id) => Confirmed::Deny(id, prompt),
                    Purpose::Freeze => Confirmed::Freeze(prompt),
                    _ => Confirmed::Pause(prompt),
                };
                state.modal = Some(Modal::Confirm(confirm));
                Vec::new()
            }
            Err(why) => {
                state.say(Tone::Error, why);
                state.modal = Some(Modal::Prompt(prompt));
                Vec::new()
            }
        },
        FieldKey::Moved | FieldKey::Edited(_) => {
            state.modal = Some(Modal::Prompt(prompt));
            Vec::new()
        }
    }
}
