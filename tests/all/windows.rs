//! Deployment windows, freezes and the change pause.

use crate::support::*;
use commandbridge::domain::api::{IncidentRequest, PauseRequest};
use commandbridge::domain::{ChangeState, Priority};
use serde_json::json;

#[tokio::test]
async fn chg_change_outside_windows_is_refused_naming_the_next_window() {
    let srv = TestServer::start(SATURDAY_NOON).await;
    let bob = srv.client("bob");

    let (error, message) = api_error(
        bob.create_change(&req("record-medium", "CHG-4001", "web", json!({})), None)
            .await,
        409,
    );
    assert_eq!(error, "refused");
    assert!(
        message.contains("outside the deployment windows"),
        "{message}"
    );
    // Saturday noon: the next window is Monday's Off-peak at 22:00.
    assert!(
        message.contains("Off-peak window opens Mon 2026-11-30 22:00 UTC"),
        "names when the next window opens: {message}"
    );
    assert!(srv.runs().is_empty());
    assert!(
        bob.changes(None, None).await.expect("list").is_empty(),
        "nothing recorded"
    );

    // Low risk needs no window.
    let logs = create(
        &bob,
        &req("pull-logs", "CHG-4001", "web", json!({"lines": 50})),
    )
    .await;
    assert_eq!(logs.state, ChangeState::Executed);
}

#[tokio::test]
async fn a_pause_refuses_changes_until_resumed() {
    let srv = TestServer::start(TUESDAY_10).await;
    let (alice, bob, dave) = (srv.client("alice"), srv.client("bob"), srv.client("dave"));

    // A change pending when the pause starts is refused when its approval arrives.
    let pending = create(
        &alice,
        &req("record-high", "CHG-5000", "pending-one", json!({})),
    )
    .await;

    let pause = PauseRequest {
        reason: "investigating elevated errors".into(),
    };
    bob.pause(&pause).await.expect("an L2 pauses changes");
    let (_, message) = api_error(dave.pause(&pause).await, 409);
    assert!(message.contains("already paused"), "{message}");

    let (error, message) = api_error(
        alice
            .create_change(&req("record-medium", "CHG-5001", "web", json!({})), None)
            .await,
        409,
    );
    assert_eq!(error, "refused");
    assert!(message.contains("paused"), "{message}");
    assert!(message.contains("bob"), "says who paused: {message}");
    // Low-risk actions still run.
    create(
        &alice,
        &req("pull-logs", "CHG-5001", "web", json!({"lines": 5})),
    )
    .await;

    let (_, message) = api_error(dave.approve(pending.id, &approve()).await, 409);
    assert!(message.contains("paused"), "{message}");
    assert_eq!(
        alice.change(pending.id).await.expect("show").state,
        ChangeState::Refused
    );

    dave.resume().await.expect("an L2 resumes changes");
    api_error(dave.resume().await, 409);
    let ran = create(&alice, &req("record-medium", "CHG-5001", "web", json!({}))).await;
    assert_eq!(ran.state, ChangeState::Executed);
    assert_eq!(
        srv.runs(),
        vec!["web".to_string()],
        "only the change after the pause ran"
    );
}

#[tokio::test]
async fn a_freeze_allows_only_low_risk_and_p1_response() {
    let srv = TestServer::start(IN_Q4_FREEZE).await;
    let (alice, bob, carol, dave) = (
        srv.client("alice"),
        srv.client("bob"),
        srv.client("carol"),
        srv.client("dave"),
    );
    let status = bob.current_window().await.expect("window");
    assert_eq!(
        status.freeze.expect("the Q4 freeze is in force").name,
        "Q4 freeze"
    );

    let (error, message) = api_error(
        bob.create_change(&req("record-medium", "CHG-6001", "web", json!({})), None)
            .await,
        409,
    );
    assert_eq!(error, "refused");
    assert!(message.contains("Q4 freeze"), "{message}");
    assert!(
        message.contains("2027-01-04"),
        "says when the freeze ends: {message}"
    );

    // A P2 incident is not enough during a freeze.
    let p2 = bob
        .declare_incident(&IncidentRequest {
            priority: Priority::P2,
            title: "slow checkout".into(),
            commander: "carol".into(),
        })
        .await
        .expect("declare P2");
    api_error(
        bob.create_change(&req("record-medium", &p2.ticket, "web", json!({})), None)
            .await,
        409,
    );
    // Low risk is fine.
    create(
        &bob,
        &req("pull-logs", "CHG-6001", "web", json!({"lines": 1})),
    )
    .await;

    // A P1 incident: the change needs its commander and, for an L1's high-risk change, an L2+.
    let p1 = bob
        .declare_incident(&IncidentRequest {
            priority: Priority::P1,
            title: "checkout down".into(),
            commander: "carol".into(),
        })
        .await
        .expect("declare P1");
    let change = create(
        &alice,
        &req("record-high", &p1.ticket, "checkout", json!({})),
    )
    .await;
    assert_eq!(change.state, ChangeState::PendingApproval);
    assert_eq!(
        change.approvals_required.len(),
        2,
        "{:?}",
        change.approvals_required
    );

    let after_dave = dave
        .approve(change.id, &approve())
        .await
        .expect("dave approves");
    assert_eq!(
        after_dave.state,
        ChangeState::PendingApproval,
        "still needs carol"
    );
    // Approving twice is a conflict, not a second approval.
    let (_, message) = api_error(dave.approve(change.id, &approve()).await, 409);
    assert!(message.contains("already approved"), "{message}");
    assert_eq!(srv.runs_of("checkout"), 0);

    let done = carol
        .approve(change.id, &approve())
        .await
        .expect("commander approves");
    assert_eq!(done.state, ChangeState::Executed);
    assert_eq!(done.approvals.len(), 2);
    assert_eq!(srv.runs_of("checkout"), 1);

    // One approval counts for both when the commander holds the level.
    let second = create(
        &alice,
        &req("record-high", &p1.ticket, "checkout-2", json!({})),
    )
    .await;
    let done = carol
        .approve(second.id, &approve())
        .await
        .expect("commander approves");
    assert_eq!(done.state, ChangeState::Executed);
    assert_eq!(srv.runs_of("checkout-2"), 1);
}

/// An incident ends when its commander (or an L2/L3) closes it; it cannot be closed twice, and an
/// L1 who does not command it may not close it.
#[tokio::test]
async fn an_incident_is_closed_by_its_commander_or_an_l2_once() {
    let srv = TestServer::start(TUESDAY_10).await;
    let inc = srv
        .client("carol")
        .declare_incident(&IncidentRequest {
            priority: Priority::P1,
            title: "checkout down".into(),
            commander: "alice".into(),
        })
        .await
        .expect("declare");
    let other = srv
        .client("carol")
        .declare_incident(&IncidentRequest {
            priority: Priority::P2,
            title: "slow search".into(),
            commander: "dave".into(),
        })
        .await
        .expect("declare");
    // alice (L1) commands the first: she may close it, not the other.
    let (_, message) = api_error(srv.client("alice").close_incident(other.id).await, 403);
    assert!(message.contains("only its commander (dave)"), "{message}");
    let closed = srv
        .client("alice")
        .close_incident(inc.id)
        .await
        .expect("close");
    assert!(closed.closed_at.is_some());
    let (_, message) = api_error(srv.client("bob").close_incident(inc.id).await, 409);
    assert!(message.contains("already closed"), "{message}");
    api_error(srv.client("bob").close_incident(99_999).await, 404);
    srv.client("bob")
        .close_incident(other.id)
        .await
        .expect("an L2 closes it");
    let audit = srv
        .client("bob")
        .audit(None, Some(1000))
        .await
        .expect("audit");
    assert_eq!(
        audit.iter().filter(|e| e.kind == "incident.closed").count(),
        2
    );
}
