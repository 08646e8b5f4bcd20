//! Text forms in modals: the change request form and the small prompts (deny reason, freeze,
//! pause, filter). Built on `tui_input` for the editing itself.

use crate::domain::api::{CatalogEntry, ChangeRequest, Preview};
use crate::domain::{ParamKind, Ticket};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use std::collections::BTreeMap;
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;

#[derive(Debug, Clone)]
pub struct Field {
    pub label: String,
    pub hint: String,
    pub input: Input,
}

impl Field {
    pub fn new(label: &str, hint: &str) -> Field {
        Field {
            label: label.into(),
            hint: hint.into(),
            input: Input::default(),
        }
    }

    pub fn value(&self) -> &str {
        self.input.value()
    }
}

/// What a key did to a form or prompt; its owner decides what cancelling or submitting means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKey {
    Cancel,
    Submit,
    /// The focus moved to another field.
    Moved,
    /// The key went to the focused field; true when its text changed.
    Edited(bool),
}

/// A list of fields with one focused; typing goes to the focused one.
#[derive(Debug, Clone)]
pub struct Fields {
    pub fields: Vec<Field>,
    pub focus: usize,
}

impl Fields {
    pub fn new(fields: Vec<Field>) -> Fields {
        Fields { fields, focus: 0 }
    }

    /// The keys every form and prompt shares: Esc cancels, Tab/Down and Shift-Tab/Up move,
    /// Enter moves to the next field or submits on the last, any other key edits.
    pub fn key(&mut self, key: KeyEvent) -> FieldKey {
        let plain = |code| key.code == code && !key.modifiers.contains(KeyModifiers::CONTROL);
        if plain(KeyCode::Esc) {
            FieldKey::Cancel
        } else if plain(KeyCode::Tab) || plain(KeyCode::Down) {
            self.next();
            FieldKey::Moved
        } else if key.code == KeyCode::BackTab || plain(KeyCode::Up) {
            self.prev();
            FieldKey::Moved
        } else if plain(KeyCode::Enter) && !self.is_last() {
            self.next();
            FieldKey::Moved
        } else if plain(KeyCode::Enter) {
            FieldKey::Submit
        } else {
            FieldKey::Edited(self.edit(key))
        }
    }

    /// Edits the focused field; true when its text changed.
    pub fn edit(&mut self, key: KeyEvent) -> bool {
        let Some(f) = self.fields.get_mut(self.focus) else {
            return false;
        };
        f.input
            .handle_event(&Event::Key(key))
            .is_some_and(|c| c.value)
    }

    pub fn next(&mut self) {
        self.focus = (self.focus + 1) % self.fields.len().max(1);
    }

    pub fn prev(&mut self) {
        let n = self.fields.len().max(1);
        self.focus = (self.focus + n - 1) % n;
    }

    pub fn is_last(&self) -> bool {
        self.focus + 1 >= self.fields.len()
    }

    pub fn holds_input(&self) -> bool {
        self.fields.iter().any(|f| !f.value().trim().is_empty())
    }

    pub fn value(&self, i: usize) -> &str {
        self.fields.get(i).map(Field::value).unwrap_or("")
    }

    /// The trimmed text of field `i`, or `missing` as the error when there is none.
    pub fn required(&self, i: usize, missing: &str) -> Result<String, String> {
        let v = self.value(i).trim();
        if v.is_empty() {
            Err(missing.to_string())
        } else {
            Ok(v.to_string())
        }
    }
}

/// The change request form of one action, with the server's live decision beside it.
#[derive(Debug, Clone)]
pub struct ChangeForm {
    pub action: CatalogEntry,
    pub fields: Fields,
    /// The newest preview asked for, and the one shown.
    pub preview_generation: u64,
    pub preview: Option<Result<Preview, String>>,
    /// A preview is in flight; another edit only marks it stale.
    pub preview_in_flight: bool,
    pub preview_stale: bool,
    pub submitting: bool,
    /// `Some("next_window")` once the requester chose to schedule the change into the next
    /// window the preview named (Ctrl-N); `None` runs it as soon as allowed.
    pub run_at: Option<String>,
}

pub const TICKET: usize = 0;
pub const TARGET: usize = 1;

impl ChangeForm {
    pub fn new(action: CatalogEntry) -> ChangeForm {
        let mut fields = vec![
            Field::new(
                "Ticket",
                "INC-2026-0214-001 · INC-001 · CHG-1234 · CHG-release-v2",
            ),
            Field::new("Target", "service or host, e.g. checkout"),
        ];
        for p in &action.params {
            let hint = match (p.kind, p.min, p.max) {
                (ParamKind::Integer, Some(lo), Some(hi)) => format!("integer {lo}..{hi}"),
                (ParamKind::Integer, ..) => "integer".into(),
                (ParamKind::Ip, ..) => "IP address or CIDR".into(),
                (ParamKind::String, ..) => match &p.pattern {
                    Some(pattern) => format!("text matching {pattern}"),
                    None => "text, not starting with '-'".into(),
                },
            };
            fields.push(Field::new(&p.name, &hint));
        }
        fields.push(Field::new(
            "Reason",
            "why, for the reviewers and the audit log",
        ));
        ChangeForm {
            action,
            fields: Fields::new(fields),
            preview_generation: 0,
            preview: None,
            preview_in_flight: false,
            preview_stale: false,
            submitting: false,
            run_at: None,
        }
    }

    /// The ticket as typed, checked with the server's own rules.
    pub fn ticket_check(&self) -> Option<Result<(), String>> {
        let t = self.fields.value(TICKET);
        (!t.trim().is_empty()).then(|| Ticket::parse(t).map(|_| ()))
    }

    pub fn request(&self) -> ChangeRequest {
        let n = self.action.params.len();
        let params: BTreeMap<String, serde_json::Value> = self
            .action
            .params
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.fields.value(TARGET + 1 + i).trim().is_empty())
            .map(|(i, p)| {
                let v = self.fields.value(TARGET + 1 + i).trim();
                let json = match v.parse::<i64>() {
                    Ok(n) if p.kind == ParamKind::Integer => serde_json::Value::from(n),
                    _ => serde_json::Value::from(v),
                };
                (p.name.clone(), json)
            })
            .collect();
        ChangeRequest {
            action: self.action.name.clone(),
            ticket: self.fields.value(TICKET).trim().to_string(),
            target: self.fields.value(TARGET).trim().to_string(),
            params,
            reason: self.fields.value(TARGET + 1 + n).trim().to_string(),
            run_at: self.run_at.clone(),
        }
    }

    /// The next window the preview offers to schedule the change into: shown when only the
    /// window refuses it now.
    pub fn schedulable(&self) -> Option<&crate::domain::api::NextWindow> {
        match &self.preview {
            Some(Ok(p)) if self.run_at.is_none() => p.next_window.as_ref(),
            _ => None,
        }
    }

    /// Enough is filled in for the server's preview to say something useful.
    pub fn previewable(&self) -> bool {
        self.ticket_check().is_some_and(|r| r.is_ok())
            && !self.fields.value(TARGET).trim().is_empty()
    }
}
