//! The one keymap table: key handling, the footer hints and the `?` overlay all read it, so the
//! help never lies.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Actions,
    Approvals,
    Windows,
    Verification,
}

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Quit,
    ForceQuit,
    Help,
    NextPane,
    PrevPane,
    GoPane(u8),
    Up,
    Down,
    Open,
    Approve,
    Deny,
    Filter,
    Refresh,
    PrevWeek,
    NextWeek,
    AddFreeze,
    RemoveFreeze,
    Pause,
    Resume,
}

pub struct Binding {
    pub scope: Scope,
    pub keys: &'static [(KeyCode, KeyModifiers)],
    /// How the key is written in hints, e.g. "a".
    pub label: &'static str,
    pub command: Command,
    pub help: &'static str,
    /// The footer's word for it; `None` shows it only in `?`.
    pub hint: Option<&'static str>,
}

const NONE: KeyModifiers = KeyModifiers::NONE;
const SHIFT: KeyModifiers = KeyModifiers::SHIFT;
const CTRL: KeyModifiers = KeyModifiers::CONTROL;

macro_rules! b {
    ($scope:ident, [$($k:expr),+], $label:expr, $cmd:expr, $help:expr, $hint:expr) => {
        Binding {
            scope: Scope::$scope,
            keys: &[$($k),+],
            label: $label,
            command: $cmd,
            help: $help,
            hint: $hint,
        }
    };
}

pub static KEYMAP: &[Binding] = &[
    b!(
        Actions,
        [(KeyCode::Enter, NONE)],
        "Enter",
        Command::Open,
        "request a change with the selected action",
        Some("request")
    ),
    b!(
        Approvals,
        [(KeyCode::Char('a'), NONE)],
        "a",
        Command::Approve,
        "approve the selected change (asks y/n)",
        Some("approve")
    ),
    b!(
        Approvals,
        [(KeyCode::Char('d'), NONE)],
        "d",
        Command::Deny,
        "deny the selected change (asks for a reason)",
        Some("deny")
    ),
    b!(
        Approvals,
        [(KeyCode::Char('/'), NONE)],
        "/",
        Command::Filter,
        "filter by action, target, ticket or requester",
        Some("filter")
    ),
    b!(
        Windows,
        [(KeyCode::Char('['), NONE)],
        "[",
        Command::PrevWeek,
        "previous week",
        Some("prev week")
    ),
    b!(
        Windows,
        [(KeyCode::Char(']'), NONE)],
        "]",
        Command::NextWeek,
        "next week",
        Some("next week")
    ),
    b!(
        Windows,
        [(KeyCode::Char('f'), NONE)],
        "f",
        Command::AddFreeze,
        "announce a freeze (L3)",
        Some("freeze")
    ),
    b!(
        Windows,
        [(KeyCode::Char('x'), NONE)],
        "x",
        Command::RemoveFreeze,
        "remove a freeze announced here (L3)",
        None
    ),
    b!(
        Windows,
        [(KeyCode::Char('p'), NONE)],
        "p",
        Command::Pause,
        "pause all changes (L2+)",
        Some("pause")
    ),
    b!(
        Windows,
        [(KeyCode::Char('r'), NONE)],
        "r",
        Command::Resume,
        "resume changes (L2+)",
        Some("resume")
    ),
    b!(
        Global,
        [(KeyCode::Down, NONE), (KeyCode::Char('j'), NONE)],
        "j/↓",
        Command::Down,
        "next row",
        None
    ),
    b!(
        Global,
        [(KeyCode::Up, NONE), (KeyCode::Char('k'), NONE)],
        "k/↑",
        Command::Up,
        "previous row",
        None
    ),
    b!(
        Global,
        [(KeyCode::Tab, NONE)],
        "Tab",
        Command::NextPane,
        "next pane",
        Some("pane")
    ),
    b!(
        Global,
        [(KeyCode::BackTab, SHIFT), (KeyCode::BackTab, NONE)],
        "S-Tab",
        Command::PrevPane,
        "previous pane",
        None
    ),
    b!(
        Global,
        [(KeyCode::Char('1'), NONE)],
        "1",
        Command::GoPane(0),
        "Actions pane",
        None
    ),
    b!(
        Global,
        [(KeyCode::Char('2'), NONE)],
        "2",
        Command::GoPane(1),
        "Approvals pane",
        None
    ),
    b!(
        Global,
        [(KeyCode::Char('3'), NONE)],
        "3",
        Command::GoPane(2),
        "Windows pane",
        None
    ),
    b!(
        Global,
        [(KeyCode::Char('4'), NONE)],
        "4",
        Command::GoPane(3),
        "Verification pane",
        None
    ),
    b!(
        Global,
        [(KeyCode::Char('R'), SHIFT), (KeyCode::Char('R'), NONE)],
        "R",
        Command::Refresh,
        "reload everything from the server",
        None
    ),
    b!(
        Global,
        [(KeyCode::Char('?'), NONE), (KeyCode::Char('?'), SHIFT)],
        "?",
        Command::Help,
        "this help",
        Some("help")
    ),
    b!(
        Global,
        [(KeyCode::Char('q'), NONE)],
        "q",
        Command::Quit,
        "quit (Esc in a form asks before dropping what you typed)",
        Some("quit")
    ),
    b!(
        Global,
        [(KeyCode::Char('c'), CTRL)],
        "C-c",
        Command::ForceQuit,
        "quit now",
        None
    ),
];

/// The command a key triggers in `scope` (pane bindings first, then global ones).
pub fn lookup(scope: Scope, key: &KeyEvent) -> Option<Command> {
    let hit = |b: &&Binding| {
        b.keys
            .iter()
            .any(|(code, mods)| *code == key.code && *mods == key.modifiers)
    };
    KEYMAP
        .iter()
        .filter(|b| b.scope == scope)
        .find(hit)
        .or_else(|| KEYMAP.iter().filter(|b| b.scope == Scope::Global).find(hit))
        .map(|b| b.command)
}

/// The footer's hints for a scope: its own bindings, then the global ones marked as hints.
pub fn hints(scope: Scope) -> Vec<(&'static str, &'static str)> {
    KEYMAP
        .iter()
        .filter(|b| b.scope == scope || b.scope == Scope::Global)
        .filter_map(|b| b.hint.map(|h| (b.label, h)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice_in_one_scope() {
        for (i, a) in KEYMAP.iter().enumerate() {
            for b in &KEYMAP[i + 1..] {
                let overlap = a.scope == b.scope && a.keys.iter().any(|k| b.keys.contains(k));
                assert!(!overlap, "{} and {} clash", a.label, b.label);
            }
        }
    }

    #[test]
    fn pane_keys_shadow_nothing_destructive_and_vim_motions_stay_free() {
        // j and k move everywhere; no pane binds them to something else.
        for b in KEYMAP.iter().filter(|b| b.scope != Scope::Global) {
            for (code, _) in b.keys {
                assert!(
                    !matches!(code, KeyCode::Char('j' | 'k' | 'h' | 'l' | 'g' | 'G')),
                    "{}",
                    b.label
                );
            }
        }
    }

    #[test]
    fn lookup_prefers_the_pane() {
        let a = KeyEvent::new(KeyCode::Char('a'), KeyModifiers::NONE);
        assert_eq!(lookup(Scope::Approvals, &a), Some(Command::Approve));
        assert_eq!(lookup(Scope::Actions, &a), None);
        let q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(lookup(Scope::Windows, &q), Some(Command::Quit));
    }
}
