//! Snapshots of scheduling and conflicts in the dashboard (issue 11): the request form's offer
//! to schedule a change the window refuses, the Approvals queue's marks, and the confirmation of
//! an approval while a newer request on the same target is pending. 80×24 and 160×48.

use crate::domain::api::{NextWindow, Preview};
use crate::domain::change::{ChangeState, Conflict};
use crate::domain::policy::Outcome;
use crate::domain::{Level, Risk, WindowKind};
use crate::tui::app::{Effect, Modal, Msg, Pane, State, update};
use crate::tui::fixtures::{change, code, key, now, scene_with, typed, watched};
use crate::tui::theme::Theme;
use crate::tui::view::draw;
use chrono::Duration;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn render(state: &State, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, state, &Theme { mono: true })).unwrap();
    t.backend().to_string()
}

fn off_peak() -> chrono::DateTime<chrono::Utc> {
    now() + Duration::minutes(11 * 60 + 30)
}

/// bob's restart-pods form on checkout, with the preview `p` shown.
fn form_with(p: Preview) -> State {
    let mut s = scene_with("bob", Level::L2, vec![], vec![]);
    update(&mut s, key('1'));
    while s.actions.list.selected().map(|a| a.name.as_str()) != Some("restart-pods") {
        update(&mut s, key('j'));
    }
    update(&mut s, code(KeyCode::Enter));
    typed(&mut s, "CHG-1234");
    update(&mut s, code(KeyCode::Tab));
    let mut effects = typed(&mut s, "checkout");
    while let Some(Effect::Preview(g, _)) = effects.first() {
        let g = *g;
        effects = update(&mut s, Msg::Preview(g, Ok(p.clone())));
    }
    s
}

#[test]
fn the_form_offers_to_schedule_a_change_the_window_refuses() {
    let refused = Preview {
        decision: Outcome::Blocked,
        reasons: vec![
            "outside the deployment windows: a medium-risk change with a CHG ticket runs only \
             in a Standard or Off-peak window"
                .into(),
        ],
        approvals_required: vec![],
        warnings: vec![],
        run_at: None,
        next_window: Some(NextWindow {
            kind: WindowKind::OffPeak,
            opens_at: off_peak(),
        }),
        conflicts: vec![],
    };
    let mut s = form_with(refused);
    for (w, h) in [(80, 24), (160, 48)] {
        let screen = render(&s, w, h);
        assert!(screen.contains("Ctrl-N schedules it"), "{screen}");
        insta::assert_snapshot!(format!("form_schedule_offer_{w}x{h}"), screen);
    }
    // Chosen: the preview, asked again with run_at, says when it runs.
    let effects = update(
        &mut s,
        Msg::Key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::CONTROL)),
    );
    let [Effect::Preview(g, req)] = effects.as_slice() else {
        panic!("{effects:?}")
    };
    assert_eq!(req.run_at.as_deref(), Some("next_window"));
    let scheduled = Preview {
        decision: Outcome::Execute,
        reasons: vec!["inside the Off-peak window, which closes Wed 2026-11-25 06:00 UTC".into()],
        approvals_required: vec![],
        warnings: vec![],
        run_at: Some(off_peak()),
        next_window: None,
        conflicts: vec![Conflict {
            change_id: 12,
            action: "restart-pods".into(),
            target: "checkout".into(),
            state: ChangeState::Scheduled,
            requested_by: "dave".into(),
            activity: "scheduled".into(),
            from: Some(off_peak()),
            until: Some(off_peak() + Duration::minutes(15)),
            message: "conflicts with #12 restart-pods on checkout (scheduled for 22:00 UTC, by \
                      dave)"
                .into(),
        }],
    };
    update(&mut s, Msg::Preview(*g, Ok(scheduled)));
    for (w, h) in [(80, 24), (160, 48)] {
        let screen = render(&s, w, h);
        assert!(screen.contains("SCHEDULED for Tue 22:00 UTC"), "{screen}");
        insta::assert_snapshot!(format!("form_scheduled_{w}x{h}"), screen);
    }
}

/// The queue as carol (L3) sees it: #1 scheduled for tonight, #2 and #4 on the same target
/// (checkout), #3 warned at request of a conflict with a change under verification.
fn marked_queue() -> State {
    let mut scheduled = change(1, "blacklist-ip", Risk::High, "alice", Level::L1, 12);
    scheduled.run_at = Some(off_peak());
    scheduled.expires_at = off_peak() + Duration::minutes(10);
    let mut older = change(2, "rotate-secrets", Risk::Critical, "dave", Level::L2, 40);
    older.target = "checkout".into();
    let mut warned = change(3, "maintenance-mode", Risk::High, "alice", Level::L1, 3);
    warned.target = "payments".into();
    warned.conflicts = vec![Conflict {
        change_id: 5,
        action: "scale-service".into(),
        target: "payments".into(),
        state: ChangeState::Executed,
        requested_by: "bob".into(),
        activity: "under verification".into(),
        from: None,
        until: Some(now() + Duration::minutes(10)),
        message: "conflicts with #5 scale-service on payments (under verification until \
                  10:40 UTC, by bob)"
            .into(),
    }];
    let mut newer = change(4, "maintenance-mode", Risk::High, "erin", Level::L1, 1);
    newer.target = "checkout".into();
    let mut s = scene_with(
        "carol",
        Level::L3,
        vec![scheduled, older, warned, newer],
        vec![watched()],
    );
    s.pane = Pane::Approvals;
    s
}

#[test]
fn the_queue_marks_scheduled_and_conflicting_changes() {
    let s = marked_queue();
    for (w, h) in [(80, 24), (160, 48)] {
        let screen = render(&s, w, h);
        assert!(
            screen.contains("⏲ 22:00") && screen.contains("⚠ #4"),
            "{screen}"
        );
        insta::assert_snapshot!(format!("approvals_marks_{w}x{h}"), screen);
    }
}

#[test]
fn approving_an_older_change_names_the_newer_one_on_its_target() {
    let mut s = marked_queue();
    while s.approvals.selected_change().map(|c| c.id) != Some(2) {
        update(&mut s, key('j'));
    }
    update(&mut s, key('a'));
    assert!(matches!(s.modal, Some(Modal::Confirm(_))));
    for (w, h) in [(80, 24), (160, 48)] {
        let screen = render(&s, w, h);
        assert!(
            screen.contains("NEWER change") && screen.contains("by erin"),
            "{screen}"
        );
        insta::assert_snapshot!(format!("approve_newer_pending_{w}x{h}"), screen);
    }
    // The change without a newer request asks the plain question.
    update(&mut s, key('n'));
    while s.approvals.selected_change().map(|c| c.id) != Some(4) {
        update(&mut s, key('j'));
    }
    update(&mut s, key('a'));
    assert!(!render(&s, 160, 48).contains("NEWER change"));
}
