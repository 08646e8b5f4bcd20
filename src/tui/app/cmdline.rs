//! The `:` command line, as in k9s: what people type at 3 a.m. instead of finding the key
//! (`:freeze`, `:pause`, `:incident`, `:change 42`, `:q`), with Tab completing the command.

use super::{Effect, Pane, Scrolled, State, Tone, command, scroll, show};
use crate::tui::keymap::Command;

/// Every command, with what it does, for completion and for the error on an unknown one.
pub const COMMANDS: &[(&str, &str)] = &[
    ("change", "the full view of change N (:change 42)"),
    ("freeze", "announce a freeze"),
    ("pause", "pause all changes"),
    ("resume", "resume changes"),
    ("incident", "the incidents (Verification pane)"),
    ("approvals", "the Approvals pane"),
    ("actions", "the Actions pane"),
    ("windows", "the Windows pane"),
    ("verification", "the Verification pane"),
    ("messages", "the message log"),
    ("help", "every key"),
    ("quit", "quit (also :q)"),
];

/// The lines that do what a key does (and so act, or not, as that key: the keymap says).
fn as_key(name: &str) -> Option<Command> {
    match name {
        "freeze" => Some(Command::AddFreeze),
        "pause" => Some(Command::Pause),
        "resume" => Some(Command::Resume),
        _ => None,
    }
}

/// The commands whose name starts with what is typed (its first word). A read-only dashboard
/// offers none that would act; typed whole, one still answers why not.
pub fn completions(typed: &str, read_only: bool) -> Vec<&'static str> {
    let word = typed.trim_start().split(' ').next().unwrap_or("");
    COMMANDS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| name.starts_with(word))
        .filter(|name| !read_only || as_key(name).and_then(Command::acts).is_none())
        .collect()
}

/// What the empty command line suggests.
pub fn placeholder(read_only: bool) -> &'static str {
    if read_only {
        "incident, change N, messages, help, q; Tab completes"
    } else {
        "freeze, pause, resume, incident, change N, messages, help, q; Tab completes"
    }
}

/// Tab: the typed word becomes the one command it can start, or the longest start all the
/// candidates share.
pub fn complete(typed: &str, read_only: bool) -> Option<String> {
    let found = completions(typed, read_only);
    let first = found.first()?;
    let shared = found.iter().fold(first.to_string(), |acc, name| {
        acc.chars()
            .zip(name.chars())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a)
            .collect()
    });
    let done = if found.len() == 1 {
        format!("{shared} ")
    } else {
        shared
    };
    (done.trim_end() != typed.trim()).then_some(done)
}

/// Runs a command line; what it asks of the server, or a message saying what was wrong.
pub(super) fn run(state: &mut State, line: &str) -> Vec<Effect> {
    let mut words = line.split_whitespace();
    let Some(word) = words.next() else {
        return Vec::new();
    };
    let arg = words.next();
    // A unique start is enough (":fr" is :freeze), as with Tab.
    let exact = COMMANDS.iter().find(|(name, _)| *name == word);
    let name = match (
        exact,
        completions(word, state.is_read_only()).as_slice(),
        word,
    ) {
        (_, _, "q") => "quit",
        (Some((name, _)), _, _) => name,
        (None, [one], _) => one,
        (None, [], _) => {
            let names: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
            state.say(
                Tone::Error,
                format!("no command '{word}': try {}", names.join(", ")),
            );
            return Vec::new();
        }
        (None, many, _) => {
            state.say(
                Tone::Error,
                format!("'{word}' could be {}: type more of it", many.join(", ")),
            );
            return Vec::new();
        }
    };
    match name {
        "change" => match arg.map(|a| a.trim_start_matches('#').parse::<i64>()) {
            Some(Ok(id)) if state.approvals.changes().contains_key(&id) => {
                scroll(state, Scrolled::Change(id))
            }
            Some(Ok(id)) => state.say(
                Tone::Error,
                format!("change #{id} is not loaded in the dashboard (R reloads everything)"),
            ),
            _ => state.say(Tone::Error, "which change? e.g. :change 42"),
        },
        name if let Some(cmd) = as_key(name) => return on_pane(state, Pane::Windows, cmd),
        "incident" | "verification" => show(state, Pane::Verification),
        "approvals" => show(state, Pane::Approvals),
        "actions" => show(state, Pane::Actions),
        "windows" => show(state, Pane::Windows),
        "messages" => scroll(state, Scrolled::Messages),
        "help" => scroll(state, Scrolled::Help),
        _ => state.quit = true,
    }
    Vec::new()
}

/// A pane's command from anywhere: its pane comes forward, and the command runs as its key.
fn on_pane(state: &mut State, pane: Pane, cmd: Command) -> Vec<Effect> {
    show(state, pane);
    command(state, cmd)
}

#[cfg(test)]
mod tests {
    use super::super::{Modal, Purpose, update};
    use super::*;
    use crate::domain::Level;
    use crate::tui::fixtures::{code, key, scene, typed};
    use crossterm::event::KeyCode;

    fn complete_rw(typed: &str) -> Option<String> {
        complete(typed, false)
    }

    fn line(s: &mut State, text: &str) -> Vec<Effect> {
        update(s, key(':'));
        assert!(matches!(&s.modal, Some(Modal::Prompt(p)) if p.purpose == Purpose::Command));
        typed(s, text);
        update(s, code(KeyCode::Enter))
    }

    #[test]
    fn tab_completes_the_command() {
        assert_eq!(complete_rw("fr").as_deref(), Some("freeze "));
        assert_eq!(complete_rw("p").as_deref(), Some("pause "));
        assert_eq!(complete_rw("re"), Some("resume ".into()));
        assert_eq!(
            complete_rw("a"),
            None,
            "approvals and actions share only the a"
        );
        assert_eq!(complete_rw("zz"), None);
        let mut s = scene("carol", Level::L3);
        update(&mut s, key(':'));
        typed(&mut s, "ch");
        update(&mut s, code(KeyCode::Tab));
        typed(&mut s, "2");
        update(&mut s, code(KeyCode::Enter));
        assert!(matches!(
            s.modal,
            Some(Modal::Scroll {
                what: Scrolled::Change(2),
                ..
            })
        ));
    }

    #[test]
    fn commands_do_what_their_keys_do_and_say_what_is_wrong() {
        let mut s = scene("carol", Level::L3);
        line(&mut s, "freeze");
        assert_eq!(s.pane, Pane::Windows);
        assert!(matches!(&s.modal, Some(Modal::Prompt(p)) if p.purpose == Purpose::Freeze));
        update(&mut s, code(KeyCode::Esc));
        line(&mut s, "incident");
        assert_eq!(s.pane, Pane::Verification);
        line(&mut s, "change 999");
        assert!(s.message.as_ref().unwrap().1.contains("not loaded"));
        line(&mut s, "nonsense");
        assert!(
            s.message
                .as_ref()
                .unwrap()
                .1
                .contains("no command 'nonsense'")
        );
        // The same rules as the keys: an L1 cannot pause.
        let mut alice = scene("alice", Level::L1);
        assert!(line(&mut alice, "pause").is_empty());
        assert!(alice.modal.is_none());
        assert!(alice.message.as_ref().unwrap().1.contains("L2"));
        line(&mut alice, "q");
        assert!(alice.quit);
    }

    #[test]
    fn read_only_offers_no_acting_line_and_refuses_one_typed_whole() {
        assert_eq!(complete("fr", true), None);
        assert_eq!(completions("", true).len(), COMMANDS.len() - 3);
        assert!(!placeholder(true).contains("freeze"));
        let mut s = scene("carol", Level::L3);
        s.read_only = true;
        for (typed, what) in [
            ("freeze", "announcing a freeze"),
            ("pause", "pausing changes"),
            ("resume", "resuming changes"),
        ] {
            assert!(line(&mut s, typed).is_empty(), "{typed} sent something");
            assert!(s.modal.is_none(), "{typed} opened a prompt");
            let said = &s.message.as_ref().unwrap().1;
            assert_eq!(said, &format!("read-only: {what} is not allowed here"));
        }
        line(&mut s, "change 2");
        assert!(
            matches!(s.modal, Some(Modal::Scroll { .. })),
            "looking still works"
        );
    }
}
