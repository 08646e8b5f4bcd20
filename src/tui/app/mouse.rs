//! The mouse: clicks and the wheel, found on screen by the same layout the view draws with.

use super::{Effect, Modal, Pane, State, show};
use crate::tui::view::Hit;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

/// The wheel moves what the arrows move; a click on a tab shows its pane, on a row selects it.
/// While a confirmation or a prompt is open the mouse does nothing: a stray click must not
/// answer a question.
pub(super) fn event(state: &mut State, ev: MouseEvent) -> Vec<Effect> {
    let scrolled_view = matches!(state.modal, Some(Modal::Scroll { .. }));
    let busy = state.popup.is_some() || (state.modal.is_some() && !scrolled_view);
    let arrow = |code| KeyEvent::new(code, KeyModifiers::NONE);
    match ev.kind {
        MouseEventKind::ScrollDown if !busy => super::key_pressed(state, arrow(KeyCode::Down)),
        MouseEventKind::ScrollUp if !busy => super::key_pressed(state, arrow(KeyCode::Up)),
        MouseEventKind::Down(MouseButton::Left) if state.modal.is_none() && !busy => {
            match crate::tui::view::hit(state, ev.column, ev.row) {
                Some(Hit::Tab(p)) | Some(Hit::Pane(p)) => show(state, p),
                Some(Hit::Row(p, i)) => {
                    show(state, p);
                    match p {
                        Pane::Actions => state.actions.list.select(i),
                        Pane::Approvals => state.approvals.select(i),
                        Pane::Verification => state.verification.list.select(i),
                        Pane::Windows => state.windows.select(i),
                    }
                }
                None => state.dirty = false,
            }
            Vec::new()
        }
        _ => {
            state.dirty = false;
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Msg, update};
    use super::*;
    use crate::domain::Level;
    use crate::tui::fixtures::{code, key, scene};

    fn click(column: u16, row: u16) -> Msg {
        Msg::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column,
            row,
            modifiers: KeyModifiers::NONE,
        })
    }

    fn wheel(down: bool) -> Msg {
        Msg::Mouse(MouseEvent {
            kind: if down {
                MouseEventKind::ScrollDown
            } else {
                MouseEventKind::ScrollUp
            },
            column: 10,
            row: 10,
            modifiers: KeyModifiers::NONE,
        })
    }

    #[test]
    fn the_mouse_switches_panes_selects_rows_and_scrolls_but_answers_no_question() {
        let mut s = scene("bob", Level::L2);
        // Row 1 holds the tabs: " 1 Actions   2 Approvals (2)   3 Windows …"; x 16 is in tab 2.
        update(&mut s, key('1'));
        update(&mut s, click(16, 1));
        assert_eq!(s.pane, Pane::Approvals);
        // The queue's rows start under the border (row 2) and the column heads (row 3).
        update(&mut s, click(10, 6));
        assert_eq!(s.approvals.selected_change().map(|c| c.id), Some(1));
        update(&mut s, wheel(false));
        assert_eq!(s.approvals.selected_change().map(|c| c.id), Some(4));
        update(&mut s, wheel(true));
        update(&mut s, wheel(true));
        assert_eq!(s.approvals.selected_change().map(|c| c.id), Some(3));
        // A click while a confirmation is open does not answer it.
        update(&mut s, key('k'));
        update(&mut s, key('a'));
        assert!(matches!(s.modal, Some(Modal::Confirm(_))));
        update(&mut s, click(10, 5));
        update(&mut s, wheel(true));
        assert!(matches!(s.modal, Some(Modal::Confirm(_))));
        // The wheel scrolls the help.
        update(&mut s, code(KeyCode::Esc));
        update(&mut s, key('?'));
        update(&mut s, wheel(true));
        assert!(matches!(s.modal, Some(Modal::Scroll { offset: 1, .. })));
    }
}
