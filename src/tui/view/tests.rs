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

/// `?` lists every key grouped by pane, and scrolls: at 80×24 the Verification keys are
/// reached with G.
#[test]
fn help_scrolls_to_the_last_pane() {
    let mut s = scene("bob", Level::L2);
    key(&mut s, KeyCode::Char('?'));
    let top = render(&s, 80, 24);
    assert!(
        top.contains("Everywhere") && top.contains("j/k PgUp/PgDn"),
        "{top}"
    );
    key(&mut s, KeyCode::Char('G'));
    let end = render(&s, 80, 24);
    assert!(
        end.contains("4 Verification") && end.contains("escalate"),
        "{end}"
    );
    insta::assert_snapshot!("help_80x24", end);
    key(&mut s, KeyCode::Char('g'));
    assert_eq!(render(&s, 80, 24), top);
    insta::assert_snapshot!("help_160x48", {
        s.size = (160, 48);
        render(&s, 160, 48)
    });
    key(&mut s, KeyCode::Esc);
    assert!(s.modal.is_none());
}

/// Enter on a row: everything about the change, scrollable, Esc back.
#[test]
fn the_full_change_view() {
    let mut s = crate::tui::fixtures::escalated_scene("carol", Level::L3);
    let mut c = s.approvals.changes()[&1].clone();
    c.approvals = vec![crate::domain::approval::Approval {
        approver: "dave".into(),
        level: Level::L2,
        comment: Some("checked the IP".into()),
        at: crate::tui::fixtures::now(),
    }];
    c.params = [("ip".to_string(), "203.0.113.7".to_string())].into();
    c.warnings = vec!["off-peak preferred: high-risk changes belong in the Off-peak window".into()];
    update(&mut s, Msg::Changes(Ok(vec![c])));
    key(&mut s, KeyCode::Char('2'));
    while s.approvals.selected_change().map(|c| c.id) != Some(1) {
        key(&mut s, KeyCode::Char('j'));
    }
    key(&mut s, KeyCode::Enter);
    for (w, h) in [(80, 24), (160, 48)] {
        s.size = (w, h);
        let screen = render(&s, w, h);
        assert!(
            screen.contains("Change #1")
                && screen.contains("dave (L2)")
                && screen.contains("Reason"),
            "{screen}"
        );
        insta::assert_snapshot!(format!("change_view_{w}x{h}"), screen);
    }
    s.size = (80, 24);
    key(&mut s, KeyCode::Esc);
    assert!(s.modal.is_none());
    // The change under verification opens from the Verification pane too, with its verification.
    key(&mut s, KeyCode::Char('4'));
    key(&mut s, KeyCode::Enter);
    key(&mut s, KeyCode::Char('G'));
    let screen = render(&s, 80, 24);
    assert!(
        screen.contains("Verification") && screen.contains("incident INC-2026-1124-001"),
        "{screen}"
    );
}

/// A refusal too long for the message line opens whole in a popup, in the server's words;
/// the message log keeps it after the popup is closed.
#[test]
fn an_error_popup_shows_all_of_a_refusal_and_the_log_keeps_it() {
    let refusal = "changes are paused since 2026-11-24 10:20 UTC by carol: \"escalation of change #5\"; \
        only low-risk actions, changes for a declared P1 incident and the rollback of the change \
        that escalated may run. To resume, an L2 or L3 resumes changes once the incident is under \
        control (dashboard: Windows pane; API: DELETE /api/v1/pause); you are L1: ask one of them";
    for (w, h) in [(80, 24), (160, 48)] {
        let mut s = scene("alice", Level::L1);
        update(&mut s, Msg::Resize(w, h));
        update(&mut s, Msg::Submitted(Err(refusal.into())));
        let screen = render(&s, w, h);
        assert!(
            screen.contains("ask one of them"),
            "the end of the refusal is cut off:\n{screen}"
        );
        insta::assert_snapshot!(format!("error_popup_{w}x{h}"), screen);
        key(&mut s, KeyCode::Esc);
        assert!(s.popup.is_none());
        key(&mut s, KeyCode::Char('m'));
        let log = render(&s, w, h);
        assert!(log.contains("✗ changes are paused"), "{log}");
    }
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

#[test]
fn verification_pane_in_every_state() {
    use crate::domain::verification::{HealthCheck, RateCheck, Summary, VerificationState};
    let mut s = scene("bob", Level::L2);
    s.pane = Pane::Verification;
    let base = s.verification.list.items()[0].clone();
    let mut list = Vec::new();
    for (i, state) in VerificationState::ALL.into_iter().enumerate() {
        let mut v = base.clone();
        v.id = i as i64 + 1;
        v.change_id = 20 + i as i64;
        v.state = state;
        if state == VerificationState::Degraded {
            let sample = v.last_sample.as_mut().unwrap();
            sample.health = Some(HealthCheck {
                ok: false,
                detail: "503 in 4 ms".into(),
            });
            sample.error_rate = Some(RateCheck::reading(0.034, 0.01));
            v.recent_error_rates.push(Some(0.034));
        }
        if !state.is_active() {
            v.deadline = crate::tui::fixtures::now() - chrono::Duration::seconds(30);
            v.summary = Some(Summary {
                samples: 30,
                failing_samples: 0,
                health_all_passed: Some(true),
                error_rate_exceeded: Some(false),
                peak_error_rate: Some(0.0042),
                text: "health passed 30/30; error rate peaked at 0.0042 (max 0.01)".into(),
            });
        }
        if state == VerificationState::Escalated {
            v.incident = Some("INC-2026-1124-001".into());
        }
        list.push(v);
    }
    let mut none = base.clone();
    none.id = 9;
    none.change_id = 30;
    (
        none.health_checked,
        none.error_rate_checked,
        none.last_sample,
    ) = (false, false, None);
    none.recent_error_rates.clear();
    list.push(none);
    update(&mut s, Msg::Verifications(Ok(list)));
    insta::assert_snapshot!("verification_states_80x24", render(&s, 80, 24));
    insta::assert_snapshot!("verification_states_160x48", render(&s, 160, 48));
}

#[test]
fn the_outcome_of_a_submitted_change() {
    let mut s = scene("alice", Level::L1);
    let mut c = crate::tui::fixtures::change(
        9,
        "blacklist-ip",
        crate::domain::Risk::High,
        "alice",
        Level::L1,
        0,
    );
    c.warnings = vec!["off-peak preferred: high-risk changes belong in the Off-peak window".into()];
    update(&mut s, Msg::Submitted(Ok(c)));
    insta::assert_snapshot!("outcome_pending_80x24", render(&s, 80, 24));
}

/// A reviewer sees that a change takes the emergency path before anything else about it.
#[test]
fn an_emergency_change_says_so_in_the_queue_detail() {
    let mut s = scene("bob", Level::L2);
    s.pane = Pane::Approvals;
    let mut c = s
        .approvals
        .selected_change()
        .expect("a pending change")
        .clone();
    let id = c.id;
    c.emergency = Some("INC-2026-1124-001".into());
    update(&mut s, Msg::Changes(Ok(vec![c])));
    let screen = render(&s, 160, 48);
    assert!(
        screen.contains(&format!("#{id} EMERGENCY for INC-2026-1124-001 · ")),
        "{screen}"
    );
}

/// 3 a.m. after an escalation: line 1 names the incident, its commander, its age and the pause
/// at both sizes; the Verification pane lists it and says who escalated when.
#[test]
fn incident_header_and_the_incidents_section() {
    let mut s = crate::tui::fixtures::escalated_scene("carol", Level::L3);
    s.pane = Pane::Verification;
    for (w, h) in [(80, 24), (160, 48)] {
        let screen = render(&s, w, h);
        let line1 = screen.lines().next().unwrap_or_default();
        assert!(
            line1.contains("INCIDENT INC-2026-1124-001 P2 · IC carol · 10m ago · PAUSED"),
            "{w}×{h}: {line1}"
        );
        assert!(screen.contains("escalated 10:20 by carol"), "{screen}");
        insta::assert_snapshot!(format!("incident_{w}x{h}"), screen);
    }
    // The rollback's confirmation says it runs through the pause, and who approves it.
    key(&mut s, KeyCode::Char('r'));
    let screen = render(&s, 80, 24);
    assert!(
        screen.contains("It answers incident") && screen.contains("you command it"),
        "{screen}"
    );
}

/// `/` and `:` prompt at one fixed place, the message line, at once; `:` lists completions.
#[test]
fn one_line_prompts_sit_on_the_message_line() {
    let mut s = scene("bob", Level::L2);
    key(&mut s, KeyCode::Char('2'));
    key(&mut s, KeyCode::Char('/'));
    let screen = render(&s, 80, 24);
    let line = screen.lines().nth(22).unwrap_or_default();
    assert!(line.starts_with("\"/"), "{screen}");
    key(&mut s, KeyCode::Esc);
    key(&mut s, KeyCode::Char(':'));
    for c in "re".chars() {
        key(&mut s, KeyCode::Char(c));
    }
    let screen = render(&s, 80, 24);
    let line = screen.lines().nth(22).unwrap_or_default();
    assert!(line.contains(":re   resume"), "{screen}");
    // Typed whole, the command says what it does and what it wants.
    for c in "sume".chars() {
        key(&mut s, KeyCode::Char(c));
    }
    let screen = render(&s, 80, 24);
    let line = screen.lines().nth(22).unwrap_or_default();
    assert!(line.contains(":resume   resume changes"), "{screen}");
    key(&mut s, KeyCode::Esc);
    key(&mut s, KeyCode::Char(':'));
    for c in "cancel 4".chars() {
        key(&mut s, KeyCode::Char(c));
    }
    let screen = render(&s, 80, 24);
    let line = screen.lines().nth(22).unwrap_or_default();
    assert!(
        line.contains(":cancel 4   cancel scheduled change N, as C does (:cancel 42)"),
        "{screen}"
    );
}

/// Read-only (`--read-only`, or an observer): the header says READ-ONLY first, the footer offers
/// only keys that work, and `?` lists only those.
#[test]
fn read_only_header_footer_and_help() {
    let mut s = scene("carol", Level::L3);
    s.read_only = true;
    key(&mut s, KeyCode::Char('2'));
    for (w, h) in [(80, 24), (160, 48)] {
        s.size = (w, h);
        let screen = render(&s, w, h);
        let header = screen.lines().next().unwrap_or_default();
        assert!(header.starts_with("\" READ-ONLY "), "{screen}");
        for acting in ["approve", "deny", "withdraw", "freeze", "pause"] {
            let footer = screen.lines().nth(usize::from(h) - 1).unwrap_or_default();
            assert!(!footer.contains(acting), "{acting} offered: {footer}");
        }
        insta::assert_snapshot!(format!("read_only_approvals_{w}x{h}"), screen);
    }
    key(&mut s, KeyCode::Char('?'));
    for (w, h) in [(80, 24), (160, 48)] {
        s.size = (w, h);
        let screen = render(&s, w, h);
        assert!(
            screen.contains("READ-ONLY: keys that would change"),
            "{screen}"
        );
        insta::assert_snapshot!(format!("read_only_help_{w}x{h}"), screen);
    }
    // Scrolled to its end, `?` still lists no key that acts, in any pane.
    key(&mut s, KeyCode::Char('G'));
    s.size = (80, 24);
    let end = render(&s, 80, 24);
    for acting in [
        "approve the",
        "deny the",
        "announce a",
        "pause all",
        "escalate:",
        "roll the",
    ] {
        assert!(!end.contains(acting), "{acting} listed: {end}");
    }
}

/// An observer's dashboard is read-only without `--read-only`: the header says so, beside the
/// operator's level, and a key that would act answers on the message line.
#[test]
fn an_observers_dashboard() {
    let mut s = scene("olga", Level::Observer);
    key(&mut s, KeyCode::Char('2'));
    key(&mut s, KeyCode::Char('a'));
    for (w, h) in [(80, 24), (160, 48)] {
        s.size = (w, h);
        let screen = render(&s, w, h);
        assert!(
            screen.contains("READ-ONLY") && screen.contains("olga observer"),
            "{screen}"
        );
        assert!(
            screen.contains("read-only: approving a change is not allowed here"),
            "{screen}"
        );
        insta::assert_snapshot!(format!("observer_approvals_{w}x{h}"), screen);
    }
}
