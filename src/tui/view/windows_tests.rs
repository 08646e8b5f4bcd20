//! Snapshots of the Windows pane with scheduled changes (issue 11): "⏲" in the slot of their
//! time, and the list under the grid with countdowns. 80×24 and 160×48.

use crate::domain::change::ChangeState;
use crate::domain::{Level, Risk};
use crate::tui::app::{Msg, Pane, State, update};
use crate::tui::fixtures::{change, now, scene};
use crate::tui::theme::Theme;
use crate::tui::view::draw;
use chrono::Duration;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn render(state: &State, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, state, &Theme { mono: true })).unwrap();
    t.backend().to_string()
}

/// bob's dashboard with two changes scheduled this week (one still waiting for approval) and
/// one next week, on the Windows pane.
fn with_scheduled(w: u16, h: u16) -> State {
    let mut s = scene("bob", Level::L2);
    let at = |id, action: &str, risk, by, level, minutes, state| {
        let mut c = change(id, action, risk, by, level, 5);
        c.state = state;
        c.run_at = Some(now() + Duration::minutes(minutes));
        c
    };
    update(
        &mut s,
        Msg::Changes(Ok(vec![
            // Tonight 22:00, Off-peak.
            at(
                6,
                "restart-pods",
                Risk::Medium,
                "dave",
                Level::L2,
                11 * 60 + 30,
                ChangeState::Scheduled,
            ),
            // Wednesday 23:30, waiting for an L2's approval.
            at(
                7,
                "failover-region",
                Risk::High,
                "alice",
                Level::L1,
                37 * 60,
                ChangeState::PendingApproval,
            ),
            // Next week: not in this week's grid.
            at(
                8,
                "purge-cache",
                Risk::Medium,
                "bob",
                Level::L2,
                7 * 24 * 60,
                ChangeState::Scheduled,
            ),
        ])),
    );
    s.pane = Pane::Windows;
    update(&mut s, Msg::Resize(w, h));
    s
}

#[test]
fn the_windows_pane_marks_and_lists_scheduled_changes() {
    for (w, h) in [(80, 24), (160, 48)] {
        let s = with_scheduled(w, h);
        let screen = render(&s, w, h);
        assert!(screen.contains("⏲ Change"), "the legend names the mark");
        assert!(
            screen.contains("⏲ #6 Tue 22:00 · in 11h30m · scheduled · restart-pods on payments"),
            "{screen}"
        );
        assert!(
            screen.contains("⏲ #7 Wed 23:30 · in 1d13h · awaiting approval · failover-region"),
            "{screen}"
        );
        assert!(
            !screen.contains("⏲ #8"),
            "next week's is not listed: {screen}"
        );
        insta::assert_snapshot!(format!("windows_scheduled_{w}x{h}"), screen);
    }
}

/// `C` on #6 in the list: the prompt names the change and when it was to run, and the footer
/// says what Enter and Esc do in words that cannot be read backwards.
#[test]
fn the_cancel_prompt_names_the_change_and_its_time() {
    use crate::tui::fixtures::{key, typed};
    for (w, h) in [(80, 24), (160, 48)] {
        let mut s = with_scheduled(w, h);
        update(&mut s, key('j'));
        update(&mut s, key('C'));
        typed(&mut s, "customer asked to wait");
        let screen = render(&s, w, h);
        assert!(screen.contains("Cancel change #6"), "{screen}");
        assert!(
            screen.contains("restart-pods on payments · CHG-4706 · by dave"),
            "{screen}"
        );
        assert!(
            screen.contains("scheduled for Tue 24 Nov 22:00 UTC (in 11h30m)"),
            "{screen}"
        );
        assert!(
            screen.contains("Enter cancel the change  Esc keep it"),
            "{screen}"
        );
        insta::assert_snapshot!(format!("cancel_prompt_{w}x{h}"), screen);
    }
}

/// With a scheduled change selected, the footer offers `C cancel`; at 80 columns what no
/// longer fits is left out whole, never cut to a bare key.
#[test]
fn the_footer_offers_cancel_and_leaves_out_whole_hints_that_do_not_fit() {
    use crate::tui::fixtures::key;
    let mut s = with_scheduled(80, 24);
    update(&mut s, key('j'));
    let screen = render(&s, 80, 24);
    let footer = screen.lines().last().unwrap_or_default().trim_matches('"');
    assert!(footer.contains("C cancel"), "{footer}");
    assert!(footer.trim_end().ends_with("? help"), "{footer}");
    let s = with_scheduled(160, 48);
    let screen = render(&s, 160, 48);
    let footer = screen.lines().last().unwrap_or_default().trim_matches('"');
    assert!(footer.trim_end().ends_with("q quit"), "{footer}");
}
