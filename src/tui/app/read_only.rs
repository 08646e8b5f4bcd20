//! The read-only dashboard (issue 12): `--read-only`, `read_only = true`, or an observer's
//! token. Which keys act is marked once, on the keymap's commands ([`Command::acts`]); this
//! refuses them before any prompt opens, and the footer and `?` leave them out because they ask
//! the same question ([`super::available`], `view/scrolled.rs`).

use super::{Pane, State};
use crate::tui::keymap::Command;

/// Err with the message line's answer when `cmd` would act and the dashboard only watches.
pub(super) fn check(state: &State, cmd: Command) -> Result<(), String> {
    if !state.is_read_only() {
        return Ok(());
    }
    let acts = match cmd {
        // Enter requests the action in the Actions pane (a form, a preview, a request);
        // elsewhere it only opens a view.
        Command::Open if state.pane == Pane::Actions => Some("requesting a change"),
        other => other.acts(),
    };
    match acts {
        // Short enough for the message line at 80 columns, so it never opens the error popup.
        Some(what) => Err(format!("read-only: {what} is not allowed here")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Effect, Modal, Msg, Scrolled, Tone, available, update};
    use super::*;
    use crate::domain::Level;
    use crate::tui::fixtures::{code, escalated_scene, key, scene};
    use crate::tui::keymap::{KEYMAP, Scope};
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    /// Carol (L3) on a wall screen with `--read-only`, and Olga the observer, who gets the same
    /// dashboard without asking.
    fn watchers() -> Vec<State> {
        let mut wall = escalated_scene("carol", Level::L3);
        wall.read_only = true;
        let mut olga = escalated_scene("olga", Level::Observer);
        olga.read_only = false;
        vec![wall, olga]
    }

    #[test]
    fn an_observer_is_read_only_without_asking() {
        assert!(scene("olga", Level::Observer).is_read_only());
        assert!(!scene("carol", Level::L3).is_read_only());
    }

    /// Every key that acts, in every pane: nothing is sent, no prompt opens, and the message
    /// line says "read-only: …". A `y` after it confirms nothing either.
    #[test]
    fn keys_that_act_send_nothing_and_say_read_only() {
        for mut s in watchers() {
            for pane in Pane::ALL {
                let acting = KEYMAP
                    .iter()
                    .filter(|b| b.scope == pane.scope() || b.scope == Scope::Global)
                    .filter(|b| b.command.acts().is_some())
                    .map(|b| b.keys[0])
                    .chain((pane == Pane::Actions).then_some((KeyCode::Enter, KeyModifiers::NONE)));
                for (code_, mods) in acting {
                    s.pane = pane;
                    s.modal = None;
                    let mut effects = update(&mut s, Msg::Key(KeyEvent::new(code_, mods)));
                    effects.extend(update(&mut s, key('y')));
                    assert!(effects.is_empty(), "{code_:?} in {pane:?} sent {effects:?}");
                    assert!(s.modal.is_none(), "{code_:?} in {pane:?} opened a prompt");
                    // The `y` cleared the line; press the key again to read what it said.
                    update(&mut s, Msg::Key(KeyEvent::new(code_, mods)));
                    let (tone, said) = s
                        .message
                        .clone()
                        .unwrap_or_else(|| panic!("{code_:?} in {pane:?}: no message"));
                    assert!(
                        said.starts_with("read-only: ") && said.ends_with(" is not allowed here"),
                        "{code_:?} in {pane:?}: {said}"
                    );
                    assert_eq!(tone, Tone::Error);
                    assert!(s.popup.is_none(), "fits the message line: {said}");
                }
            }
        }
    }

    /// Looking still works: moving, panes, the full change view, the filter, help, quit.
    #[test]
    fn keys_that_only_look_still_work() {
        for mut s in watchers() {
            update(&mut s, key('2'));
            assert_eq!(s.pane, Pane::Approvals);
            let first = s.approvals.selected_change().map(|c| c.id);
            update(&mut s, key('j'));
            assert_ne!(s.approvals.selected_change().map(|c| c.id), first);
            update(&mut s, code(KeyCode::Enter));
            assert!(matches!(
                s.modal,
                Some(Modal::Scroll {
                    what: Scrolled::Change(_),
                    ..
                })
            ));
            update(&mut s, code(KeyCode::Esc));
            update(&mut s, key('/'));
            assert!(
                matches!(s.modal, Some(Modal::Prompt(_))),
                "the filter opens"
            );
            update(&mut s, code(KeyCode::Esc));
            update(&mut s, key('?'));
            assert!(matches!(
                s.modal,
                Some(Modal::Scroll {
                    what: Scrolled::Help,
                    ..
                })
            ));
            update(&mut s, code(KeyCode::Esc));
            assert_eq!(update(&mut s, key('R')).len(), 7, "R reloads everything");
            update(&mut s, key('q'));
            assert!(s.quit);
        }
    }

    /// The footer offers only keys that work: none that act, in any pane.
    #[test]
    fn the_footer_offers_no_key_that_acts() {
        for mut s in watchers() {
            for pane in Pane::ALL {
                s.pane = pane;
                let offered: Vec<&str> = s
                    .keymap
                    .offered(pane.scope(), |c| available(&s, c).is_ok())
                    .into_iter()
                    .map(|(_, hint)| hint)
                    .collect();
                for b in KEYMAP.iter().filter(|b| b.command.acts().is_some()) {
                    let hint = b.hint.unwrap_or("-");
                    assert!(!offered.contains(&hint), "{hint} offered in {pane:?}");
                }
                assert!(offered.contains(&"help") && offered.contains(&"quit"));
                assert_eq!(
                    offered.contains(&"open"),
                    pane != Pane::Actions && pane != Pane::Windows,
                    "{pane:?}: {offered:?}"
                );
            }
        }
    }

    /// The same keys act as usual once the dashboard is not read-only: the guard is the mode.
    #[test]
    fn without_read_only_the_same_keys_act() {
        let mut s = scene("carol", Level::L3);
        update(&mut s, key('2'));
        update(&mut s, key('a'));
        let effects = update(&mut s, key('y'));
        assert!(
            effects.iter().any(|e| matches!(e, Effect::Approve(..))),
            "{effects:?}"
        );
    }
}
