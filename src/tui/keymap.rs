//! The one keymap table: key handling, the footer hints and the `?` overlay all read it, so the
//! help never lies.

use crate::tui::app::Motion;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::BTreeMap;

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
    Messages,
    CommandLine,
    Copy,
    NextPane,
    PrevPane,
    GoPane(u8),
    Move(Motion),
    Open,
    Approve,
    Deny,
    Withdraw,
    Filter,
    Refresh,
    PrevWeek,
    NextWeek,
    AddFreeze,
    RemoveFreeze,
    Pause,
    Resume,
    Undo,
    MarkVerified,
    Escalate,
    Rollback,
    Cancel,
}

impl Command {
    /// The name a `[keys]` entry in the client config uses for it.
    pub fn name(self) -> String {
        match self {
            Command::Quit => "quit".into(),
            Command::ForceQuit => "force_quit".into(),
            Command::Help => "help".into(),
            Command::Messages => "messages".into(),
            Command::CommandLine => "command_line".into(),
            Command::Copy => "copy".into(),
            Command::NextPane => "next_pane".into(),
            Command::PrevPane => "prev_pane".into(),
            Command::GoPane(i) => format!("pane_{}", i + 1),
            Command::Move(m) => match m {
                Motion::Up => "up",
                Motion::Down => "down",
                Motion::Top => "top",
                Motion::Bottom => "bottom",
                Motion::PageUp => "page_up",
                Motion::PageDown => "page_down",
                Motion::HalfUp => "half_page_up",
                Motion::HalfDown => "half_page_down",
            }
            .into(),
            Command::Open => "open".into(),
            Command::Approve => "approve".into(),
            Command::Deny => "deny".into(),
            Command::Withdraw => "withdraw".into(),
            Command::Filter => "filter".into(),
            Command::Refresh => "refresh".into(),
            Command::PrevWeek => "prev_week".into(),
            Command::NextWeek => "next_week".into(),
            Command::AddFreeze => "add_freeze".into(),
            Command::RemoveFreeze => "remove_freeze".into(),
            Command::Pause => "pause".into(),
            Command::Resume => "resume".into(),
            Command::Undo => "undo".into(),
            Command::MarkVerified => "verified".into(),
            Command::Escalate => "escalate".into(),
            Command::Rollback => "rollback".into(),
            Command::Cancel => "cancel".into(),
        }
    }
}

impl Command {
    /// What the command would change on the server, as "read-only: … is not allowed here" says
    /// it; `None` for a key that only looks (moves, panes, filters, detail, help, quit). The one
    /// mark a read-only dashboard (`--read-only`, `read_only = true`, an observer) filters the
    /// keys, the footer and `?` by. No wildcard: a new command must say which it is.
    pub fn acts(self) -> Option<&'static str> {
        match self {
            Command::Approve => Some("approving a change"),
            Command::Deny => Some("denying a change"),
            Command::Withdraw => Some("withdrawing a change"),
            Command::AddFreeze => Some("announcing a freeze"),
            Command::RemoveFreeze => Some("removing a freeze"),
            Command::Pause => Some("pausing changes"),
            Command::Resume => Some("resuming changes"),
            Command::Undo => Some("undoing a freeze removal or a resume"),
            Command::MarkVerified => Some("recording a verification outcome"),
            Command::Escalate => Some("escalating a verification"),
            Command::Rollback => Some("rolling a change back"),
            Command::Cancel => Some("cancelling a scheduled change"),
            Command::Quit
            | Command::ForceQuit
            | Command::Help
            | Command::Messages
            | Command::CommandLine
            | Command::Copy
            | Command::NextPane
            | Command::PrevPane
            | Command::GoPane(_)
            | Command::Move(_)
            | Command::Open
            | Command::Filter
            | Command::Refresh
            | Command::PrevWeek
            | Command::NextWeek => None,
        }
    }
}

impl Command {
    /// The `?` text on a read-only dashboard, for a key whose usual text names what it acts on
    /// (Enter requests in the Actions pane; `:` offers freeze, pause, resume and cancel).
    pub fn read_only_help(self) -> Option<&'static str> {
        match self {
            Command::Open => Some(
                "open the full change of the selected row, scrollable (Approvals, Windows, Verification)",
            ),
            Command::CommandLine => {
                Some("command line: incident, change N, messages, help, q (Tab completes)")
            }
            _ => None,
        }
    }
}

pub type Chord = (KeyCode, KeyModifiers);

pub struct Binding {
    pub scope: Scope,
    pub keys: &'static [Chord],
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
        [(KeyCode::Char('w'), NONE)],
        "w",
        Command::Withdraw,
        "withdraw your own pending change (asks y/n)",
        Some("withdraw")
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
        [
            (KeyCode::Char('['), NONE),
            (KeyCode::Char('h'), NONE),
            (KeyCode::Left, NONE)
        ],
        "h/←",
        Command::PrevWeek,
        "previous week (also [)",
        Some("prev week")
    ),
    b!(
        Windows,
        [
            (KeyCode::Char(']'), NONE),
            (KeyCode::Char('l'), NONE),
            (KeyCode::Right, NONE)
        ],
        "l/→",
        Command::NextWeek,
        "next week (also ])",
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
        "remove the selected freeze (L3; asks y/n, u undoes it)",
        Some("remove freeze")
    ),
    b!(
        Windows,
        [(KeyCode::Char('p'), NONE)],
        "p",
        Command::Pause,
        "pause all changes (L2+; asks for a reason, then y/n)",
        Some("pause")
    ),
    b!(
        Windows,
        [(KeyCode::Char('s'), NONE)],
        "s",
        Command::Resume,
        "resume (start) changes again (L2+; asks y/n, u undoes it)",
        Some("resume")
    ),
    b!(
        Verification,
        [(KeyCode::Char('v'), NONE)],
        "v",
        Command::MarkVerified,
        "mark the selected change verified (after its deadline)",
        Some("verified")
    ),
    b!(
        Verification,
        [(KeyCode::Char('e'), NONE)],
        "e",
        Command::Escalate,
        "escalate: declare an incident and pause all changes (asks y/n)",
        Some("escalate")
    ),
    b!(
        Verification,
        [(KeyCode::Char('r'), NONE)],
        "r",
        Command::Rollback,
        "roll the change back through the policy (asks y/n); it runs during its escalation's pause",
        Some("rollback")
    ),
    // Global, so the footer offers it wherever a change waiting for its time is selected (the
    // Approvals queue, the Windows pane's list) and other panes say where to find one. Upper
    // case because `c` copies and `x` already removes a freeze in the Windows pane.
    b!(
        Global,
        [(KeyCode::Char('C'), SHIFT), (KeyCode::Char('C'), NONE)],
        "C",
        Command::Cancel,
        "cancel the selected scheduled change (Approvals, Windows; asks for a reason)",
        Some("cancel")
    ),
    b!(
        Global,
        [(KeyCode::Enter, NONE)],
        "Enter",
        Command::Open,
        "open the selected row: the request form (Actions), or the full change, scrollable (other panes)",
        Some("open")
    ),
    b!(
        Global,
        [(KeyCode::Down, NONE), (KeyCode::Char('j'), NONE)],
        "j/↓",
        Command::Move(Motion::Down),
        "next row",
        None
    ),
    b!(
        Global,
        [(KeyCode::Up, NONE), (KeyCode::Char('k'), NONE)],
        "k/↑",
        Command::Move(Motion::Up),
        "previous row",
        None
    ),
    b!(
        Global,
        [(KeyCode::Char('g'), NONE), (KeyCode::Home, NONE)],
        "g/Home",
        Command::Move(Motion::Top),
        "first row",
        None
    ),
    b!(
        Global,
        [
            (KeyCode::Char('G'), SHIFT),
            (KeyCode::Char('G'), NONE),
            (KeyCode::End, NONE)
        ],
        "G/End",
        Command::Move(Motion::Bottom),
        "last row",
        None
    ),
    b!(
        Global,
        [(KeyCode::PageDown, NONE)],
        "PgDn",
        Command::Move(Motion::PageDown),
        "a page down",
        None
    ),
    b!(
        Global,
        [(KeyCode::PageUp, NONE)],
        "PgUp",
        Command::Move(Motion::PageUp),
        "a page up",
        None
    ),
    b!(
        Global,
        [(KeyCode::Char('d'), CTRL)],
        "C-d",
        Command::Move(Motion::HalfDown),
        "half a page down",
        None
    ),
    b!(
        Global,
        [(KeyCode::Char('u'), CTRL)],
        "C-u",
        Command::Move(Motion::HalfUp),
        "half a page up",
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
        [(KeyCode::Char(':'), NONE), (KeyCode::Char(':'), SHIFT)],
        ":",
        Command::CommandLine,
        "command line: freeze, pause, resume, cancel N, incident, change N, messages, help, q (Tab completes)",
        Some("command")
    ),
    b!(
        Global,
        [(KeyCode::Char('c'), NONE)],
        "c",
        Command::Copy,
        "copy the selected change's ticket to the clipboard (OSC 52, works over SSH)",
        None
    ),
    b!(
        Global,
        [(KeyCode::Char('m'), NONE)],
        "m",
        Command::Messages,
        "the message log: the last messages and errors, whole",
        None
    ),
    b!(
        Global,
        [(KeyCode::Char('u'), NONE)],
        "u",
        Command::Undo,
        "undo removing a freeze or resuming, for 10 s after",
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

/// One binding as in force: the defaults of [`KEYMAP`] with the user's `[keys]` applied.
#[derive(Debug, Clone)]
pub struct Active {
    pub scope: Scope,
    pub keys: Vec<Chord>,
    pub label: String,
    pub command: Command,
    pub help: &'static str,
    pub hint: Option<&'static str>,
}

/// The keymap in force. Built once at start; the reducer, the footer and `?` all read it.
#[derive(Debug, Clone)]
pub struct Keymap {
    pub bindings: Vec<Active>,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap {
            bindings: KEYMAP
                .iter()
                .map(|b| Active {
                    scope: b.scope,
                    keys: b.keys.to_vec(),
                    label: b.label.to_string(),
                    command: b.command,
                    help: b.help,
                    hint: b.hint,
                })
                .collect(),
        }
    }
}

impl Keymap {
    /// Applies `[keys]` overrides such as `approve = "A"` or `filter = "ctrl-f"`. A bad entry is
    /// skipped with a warning naming it; the default binding then stays.
    pub fn with_overrides(overrides: &BTreeMap<String, toml::Value>) -> (Keymap, Vec<String>) {
        let mut map = Keymap::default();
        let mut warnings = Vec::new();
        for (name, value) in overrides {
            let Some(i) = map.bindings.iter().position(|b| b.command.name() == *name) else {
                let known: Vec<String> = map.bindings.iter().map(|b| b.command.name()).collect();
                warnings.push(format!(
                    "keys.{name}: no such command (known: {})",
                    known.join(", ")
                ));
                continue;
            };
            let Some(spec) = value.as_str() else {
                warnings.push(format!(
                    "keys.{name}: write the key as a string, e.g. \"A\" or \"ctrl-f\""
                ));
                continue;
            };
            let Some(chord) = parse_chord(spec) else {
                warnings.push(format!(
                    "keys.{name}: '{spec}' is not a key: use a character, ctrl-<char>, f1..f12, enter, esc, tab, space, up, down, left, right"
                ));
                continue;
            };
            // A key means one thing wherever it is pressed: no pane reuses another's key.
            let clash = map
                .bindings
                .iter()
                .enumerate()
                .find(|(j, b)| *j != i && b.keys.contains(&chord));
            if let Some((_, other)) = clash {
                warnings.push(format!(
                    "keys.{name}: '{spec}' is already bound to {}; keeping the default",
                    other.command.name()
                ));
                continue;
            }
            let b = &mut map.bindings[i];
            b.keys = vec![chord];
            b.label = spec.to_string();
        }
        (map, warnings)
    }

    /// The command a key triggers in `scope` (pane bindings first, then global ones).
    pub fn lookup(&self, scope: Scope, key: &KeyEvent) -> Option<Command> {
        let hit = |b: &&Active| {
            b.keys
                .iter()
                .any(|(code, mods)| *code == key.code && *mods == key.modifiers)
        };
        self.bindings
            .iter()
            .filter(|b| b.scope == scope)
            .find(hit)
            .or_else(|| {
                self.bindings
                    .iter()
                    .filter(|b| b.scope == Scope::Global)
                    .find(hit)
            })
            .map(|b| b.command)
    }

    /// The footer's hints for a scope: its own bindings, then the global ones.
    pub fn hints(&self, scope: Scope) -> Vec<(&str, &str)> {
        self.offered(scope, |_| true)
    }

    /// The hints of the commands that `usable` lets through: keys the operator cannot use now
    /// are not offered.
    pub fn offered(&self, scope: Scope, usable: impl Fn(Command) -> bool) -> Vec<(&str, &str)> {
        self.bindings
            .iter()
            .filter(|b| b.scope == scope || b.scope == Scope::Global)
            .filter(|b| usable(b.command))
            .filter_map(|b| b.hint.map(|h| (b.label.as_str(), h)))
            .collect()
    }
}

fn parse_chord(spec: &str) -> Option<Chord> {
    let lower = spec.to_ascii_lowercase();
    if let Some(c) = lower.strip_prefix("ctrl-") {
        let mut chars = c.chars();
        return match (chars.next(), chars.next()) {
            (Some(ch), None) => Some((KeyCode::Char(ch), KeyModifiers::CONTROL)),
            _ => None,
        };
    }
    let named = match lower.as_str() {
        "enter" => Some(KeyCode::Enter),
        "esc" => Some(KeyCode::Esc),
        "tab" => Some(KeyCode::Tab),
        "space" => Some(KeyCode::Char(' ')),
        "up" => Some(KeyCode::Up),
        "down" => Some(KeyCode::Down),
        "left" => Some(KeyCode::Left),
        "right" => Some(KeyCode::Right),
        f if f.starts_with('f') && f.len() > 1 => f[1..]
            .parse::<u8>()
            .ok()
            .filter(|n| (1..=12).contains(n))
            .map(KeyCode::F),
        _ => None,
    };
    if let Some(code) = named {
        return Some((code, KeyModifiers::NONE));
    }
    let mut chars = spec.chars();
    match (chars.next(), chars.next()) {
        // An upper-case letter arrives with SHIFT on some terminals and without on others;
        // crossterm reports it with SHIFT.
        (Some(ch), None) if ch.is_ascii_uppercase() => {
            Some((KeyCode::Char(ch), KeyModifiers::SHIFT))
        }
        (Some(ch), None) if !ch.is_control() => Some((KeyCode::Char(ch), KeyModifiers::NONE)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same key never means two things, in one pane or in two (`r` was resume in Windows
    /// and rollback in Verification): fingers learn a key once.
    #[test]
    fn one_key_means_one_thing_in_every_pane() {
        for (i, a) in KEYMAP.iter().enumerate() {
            for b in &KEYMAP[i + 1..] {
                let overlap = a.keys.iter().any(|k| b.keys.contains(k));
                assert!(
                    !overlap,
                    "{} ({:?}) and {} ({:?}) share a key",
                    a.label, a.scope, b.label, b.scope
                );
            }
        }
    }

    #[test]
    fn an_override_may_not_give_a_key_a_second_meaning_in_another_pane() {
        let overrides: BTreeMap<String, toml::Value> = toml::from_str("resume = \"r\"\n").unwrap();
        let (map, warnings) = Keymap::with_overrides(&overrides);
        assert!(
            warnings
                .join("")
                .contains("'r' is already bound to rollback"),
            "{warnings:?}"
        );
        let s = KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE);
        assert_eq!(map.lookup(Scope::Windows, &s), Some(Command::Resume));
    }

    #[test]
    fn pane_keys_shadow_nothing_destructive_and_vim_motions_stay_free() {
        // j, k, g and G move everywhere; h and l move between weeks in the calendar only.
        for b in KEYMAP.iter().filter(|b| b.scope != Scope::Global) {
            for (code, _) in b.keys {
                let motion = matches!(b.command, Command::PrevWeek | Command::NextWeek);
                assert!(
                    !matches!(code, KeyCode::Char('j' | 'k' | 'g' | 'G')),
                    "{}",
                    b.label
                );
                assert!(
                    motion || !matches!(code, KeyCode::Char('h' | 'l')),
                    "{}",
                    b.label
                );
            }
        }
    }

    #[test]
    fn the_verification_keys_are_bound_and_hinted() {
        let map = Keymap::default();
        for (c, cmd) in [
            ('v', Command::MarkVerified),
            ('e', Command::Escalate),
            ('r', Command::Rollback),
        ] {
            let key = KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
            assert_eq!(map.lookup(Scope::Verification, &key), Some(cmd));
        }
        let hints: Vec<&str> = map
            .hints(Scope::Verification)
            .iter()
            .map(|(_, h)| *h)
            .collect();
        assert!(
            hints.starts_with(&["verified", "escalate", "rollback"]),
            "{hints:?}"
        );
    }

    #[test]
    fn lookup_prefers_the_pane() {
        let map = Keymap::default();
        let a = KeyEvent::new(KeyCode::Char('a'), KeyModifiers::NONE);
        assert_eq!(map.lookup(Scope::Approvals, &a), Some(Command::Approve));
        assert_eq!(map.lookup(Scope::Actions, &a), None);
        let q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(map.lookup(Scope::Windows, &q), Some(Command::Quit));
    }

    #[test]
    fn overrides_rebind_and_bad_ones_warn_by_name() {
        let overrides: BTreeMap<String, toml::Value> = toml::from_str(
            "approve = \"A\"\nfilter = \"ctrl-f\"\napprov = \"x\"\ndeny = \"q\"\nhelp = 3\nrefresh = \"ctrl-\"\n",
        )
        .unwrap();
        let (map, warnings) = Keymap::with_overrides(&overrides);
        let upper_a = KeyEvent::new(KeyCode::Char('A'), KeyModifiers::SHIFT);
        assert_eq!(
            map.lookup(Scope::Approvals, &upper_a),
            Some(Command::Approve)
        );
        let a = KeyEvent::new(KeyCode::Char('a'), KeyModifiers::NONE);
        assert_eq!(map.lookup(Scope::Approvals, &a), None);
        let ctrl_f = KeyEvent::new(KeyCode::Char('f'), KeyModifiers::CONTROL);
        assert_eq!(map.lookup(Scope::Approvals, &ctrl_f), Some(Command::Filter));
        assert!(map.hints(Scope::Approvals).contains(&("A", "approve")));
        let text = warnings.join("\n");
        for bad in [
            "keys.approv:",
            "keys.deny: 'q' is already bound to quit",
            "keys.help:",
            "keys.refresh:",
        ] {
            assert!(text.contains(bad), "{bad} missing from:\n{text}");
        }
        // deny kept its default.
        let d = KeyEvent::new(KeyCode::Char('d'), KeyModifiers::NONE);
        assert_eq!(map.lookup(Scope::Approvals, &d), Some(Command::Deny));
    }
}
