//! Snapshots of every pane at 80×24 and 160×48, the help overlay and the change form.
//! Review changes with `INSTA_UPDATE=always cargo test` and `git diff`.

use crate::domain::Level;
use crate::tui::app::{Msg, Pane, State, update};
use crate::tui::fixtures::scene;
use crate::tui::theme::Theme;
use crate::tui::view::draw;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn render(state: &State, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, state, &Theme { mono: true })).unwrap();
    t.backend().to_string()
}

fn key(s: &mut State, c: KeyCode) {
    update(s, Msg::Key(KeyEvent::new(c, KeyModifiers::NONE)));
}

#[test]
fn every_pane_at_both_sizes() {
    for pane in Pane::ALL {
        let mut s = scene("bob", Level::L2);
        s.pane = pane;
        for (w, h) in [(80, 24), (160, 48)] {
            insta::assert_snapshot!(
                format!("{}_{w}x{h}", pane.title().to_lowercase()),
                render(&s, w, h)
            );
        }
    }
}

#[test]
fn help_overlay() {
    let mut s = scene("bob", Level::L2);
    key(&mut s, KeyCode::Char('?'));
    insta::assert_snapshot!("help_80x24", render(&s, 80, 24));
    insta::assert_snapshot!("help_160x48", render(&s, 160, 48));
}

#[test]
fn change_form_with_a_bad_ticket() {
    let mut s = scene("alice", Level::L1);
    key(&mut s, KeyCode::Char('1'));
    key(&mut s, KeyCode::Enter);
    for c in "CHG-Nope".chars() {
        key(&mut s, KeyCode::Char(c));
    }
    insta::assert_snapshot!("form_80x24", render(&s, 80, 24));
    insta::assert_snapshot!("form_160x48", render(&s, 160, 48));
}

#[test]
fn too_small_says_so_instead_of_drawing() {
    let s = scene("bob", Level::L2);
    let screen = render(&s, 40, 10);
    assert!(screen.contains("terminal too small"), "{screen}");
}

#[test]
fn any_size_renders_without_panicking() {
    let mut s = scene("carol", Level::L3);
    key(&mut s, KeyCode::Char('2'));
    key(&mut s, KeyCode::Char('d'));
    for w in [1u16, 20, 59, 60, 79, 80, 120, 159, 160, 250] {
        for h in [1u16, 5, 15, 16, 24, 39, 40, 60] {
            render(&s, w, h);
        }
    }
}
