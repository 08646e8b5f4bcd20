//! The `:` command line, as in k9s: what people type at 3 a.m. instead of finding the key
//! (`:freeze`, `:pause`, `:incident`, `:change 42`, `:cancel 42`, `:q`), with Tab completing
//! the command.

use super::{Effect, Pane, Scrolled, State, Tone, cancel, command, read_only, scroll, show};
use crate::tui::keymap::Command;

/// Every command, with what it does, for completion and for the error on an unknown one.
pub const COMMANDS: &[(&str, &str)] = &[
    ("change", "the full view of change N (:change 42)"),
    (
        "cancel",
        "cancel scheduled change N, as C does (:cancel 42)",
    ),
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
/// `:cancel N` is `C` on change N rather than on the selected one.
fn as_key(name: &str) -> Option<Command> {
    match name {
        "freeze" => Some(Command::AddFreeze),
        "pause" => Some(Command::Pause),
        "resume" => Some(Command::Resume),
        "cancel" => Some(Command::Cancel),
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

/// What the empty command line suggests; the footer says Tab completes. Both fit 80 columns.
pub fn placeholder(read_only: bool) -> &'static str {
    if read_only {
        "incident, change N, messages, help, q; Tab completes"
    } else {
        "freeze, pause, resume, cancel N, incident, change N, messages, help, q"
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
        "change" => match loaded(state, name, arg) {
            Ok(id) => scroll(state, Scrolled::Change(id)),
            Err(why) => state.say(Tone::Error, why),
        },
        // Refused on a read-only dashboard before N is read, as `C` is before anything.
        "cancel" => {
            if let Err(why) = read_only::check(state, Command::Cancel)
                .and_then(|()| loaded(state, name, arg))
                .and_then(|id| cancel::change(state, id))
            {
                state.say(Tone::Error, why);
            }
        }
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

/// The change a `:change N` or `:cancel N` names, if the dashboard has it; or what to type.
/// A change it has not loaded is not fetched: R reloads everything, and the line says so.
fn loaded(state: &State, name: &str, arg: Option<&str>) -> Result<i64, String> {
    let Some(arg) = arg else {
        return Err(format!("which change? type its number, e.g. :{name} 42"));
    };
    match arg.trim_start_matches('#').parse::<i64>() {
        Ok(id) if state.approvals.changes().contains_key(&id) => Ok(id),
        Ok(id) => Err(format!(
            "change #{id} is not loaded in the dashboard (R reloads everything)"
        )),
        Err(_) => Err(format!("'{arg}' is not a change number: e.g. :{name} 42")),
    }
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
    use crate::domain::api::CancelRequest;
    use crate::tui::fixtures::{self, code, key, said, scene, typed};
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
        assert_eq!(complete_rw("ca").as_deref(), Some("cancel "));
        assert_eq!(complete_rw("c"), None, "change and cancel share only the c");
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
        assert_eq!(complete("ca", true), None);
        assert_eq!(complete("c", true).as_deref(), Some("change "));
        assert_eq!(completions("", true).len(), COMMANDS.len() - 4);
        assert!(!placeholder(true).contains("freeze"));
        assert!(!placeholder(true).contains("cancel"));
        let mut s = with_schedule("carol", Level::L3);
        s.read_only = true;
        for (typed, what) in [
            ("freeze", "announcing a freeze"),
            ("pause", "pausing changes"),
            ("resume", "resuming changes"),
            ("cancel 20", "cancelling a scheduled change"),
            ("cancel", "cancelling a scheduled change"),
            ("cancel abc", "cancelling a scheduled change"),
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

    /// The scene's schedule, on the Actions pane: neither change is selected, nor in the pane
    /// shown.
    fn with_schedule(who: &str, level: Level) -> State {
        fixtures::with_schedule(who, level, '1')
    }

    #[test]
    fn cancel_n_asks_why_as_c_does_and_enter_cancels_that_change() {
        let mut s = with_schedule("bob", Level::L2);
        assert!(
            line(&mut s, "cancel 20").is_empty(),
            "nothing sent before a reason"
        );
        assert!(matches!(
            &s.modal,
            Some(Modal::Prompt(p)) if p.purpose == Purpose::CancelReason(20)
        ));
        assert_eq!(s.pane, Pane::Actions, "no pane has to come forward");
        // The same prompt as C: no reason, no request.
        assert!(update(&mut s, code(KeyCode::Enter)).is_empty());
        assert!(said(&s).contains("a reason is required"), "{}", said(&s));
        typed(&mut s, "customer asked to wait");
        assert_eq!(
            update(&mut s, code(KeyCode::Enter)),
            vec![Effect::Cancel(
                20,
                CancelRequest {
                    reason: "customer asked to wait".into()
                }
            )]
        );
        assert!(s.modal.is_none());
        assert_eq!(said(&s), "cancelling change #20…");
        // "#21" as the change view shows it, and a change waiting for approval with a run
        // time; Esc keeps it.
        line(&mut s, "cancel #21");
        assert!(matches!(
            &s.modal,
            Some(Modal::Prompt(p)) if p.purpose == Purpose::CancelReason(21)
        ));
        assert!(update(&mut s, code(KeyCode::Esc)).is_empty());
        assert!(s.modal.is_none());
        assert_eq!(said(&s), "change #21 not cancelled: it stays as it was");
    }

    /// What `C` would refuse, `:cancel N` refuses in the same words, on the message line.
    #[test]
    fn cancel_n_refuses_what_c_refuses_in_its_words() {
        let mut alice = with_schedule("alice", Level::L1);
        assert!(line(&mut alice, "cancel 20").is_empty());
        assert!(alice.modal.is_none());
        let by_line = alice.message.clone().expect("a message");
        assert_eq!(
            by_line,
            (
                Tone::Error,
                "only its requester (dave) or an L2 or L3 may cancel change #20".into()
            )
        );
        assert!(alice.popup.is_none(), "fits the message line");
        // C on the same change, selected in the Windows pane, says the same.
        update(&mut alice, key('3'));
        update(&mut alice, key('j'));
        update(&mut alice, key('C'));
        assert_eq!(alice.message, Some(by_line));
        // #2 waits for approval with no run time: it is withdrawn or denied, not cancelled.
        let mut dave = with_schedule("dave", Level::L2);
        assert!(line(&mut dave, "cancel 2").is_empty());
        assert!(dave.modal.is_none());
        assert!(
            said(&dave).contains("change #2 has no run time"),
            "{}",
            said(&dave)
        );
    }

    /// No number, not a number, a number the dashboard does not know: the message line says
    /// what is wrong and what to type, and nothing is sent.
    #[test]
    fn cancel_without_a_known_change_says_what_to_type() {
        let mut s = with_schedule("carol", Level::L3);
        for (typed, want) in [
            ("cancel", "which change? type its number, e.g. :cancel 42"),
            (
                "cancel   ",
                "which change? type its number, e.g. :cancel 42",
            ),
            (
                "cancel abc",
                "'abc' is not a change number: e.g. :cancel 42",
            ),
            ("cancel -", "'-' is not a change number: e.g. :cancel 42"),
            (
                "cancel 99999999999999999999",
                "'99999999999999999999' is not a change number: e.g. :cancel 42",
            ),
            (
                "cancel 99999",
                "change #99999 is not loaded in the dashboard (R reloads everything)",
            ),
            (
                "ca 99999",
                "change #99999 is not loaded in the dashboard (R reloads everything)",
            ),
        ] {
            assert!(line(&mut s, typed).is_empty(), "{typed} sent something");
            assert!(s.modal.is_none(), "{typed} opened a prompt");
            assert_eq!(s.message, Some((Tone::Error, want.into())), "{typed}");
            assert!(s.popup.is_none(), "{typed}: fits the message line");
        }
        // :change reads its number the same way.
        line(&mut s, "change abc");
        assert_eq!(said(&s), "'abc' is not a change number: e.g. :change 42");
        line(&mut s, "change");
        assert_eq!(said(&s), "which change? type its number, e.g. :change 42");
    }
}
