//! Separation of duties: nobody gets a change through on their own say-so, nobody ends a
//! verification they do not answer for, a rollback runs once, and incident numbers cannot be
//! used up.

use crate::support::fakes::verification_of;
use crate::support::*;
use commandbridge::domain::api::{IncidentRequest, OutcomeKind, OutcomeRequest, RollbackRequest};
use commandbridge::domain::{ChangeState, Level, Priority, Requirement};
use serde_json::json;
use std::path::Path;

fn incident(priority: Priority, commander: &str) -> IncidentRequest {
    IncidentRequest {
        priority,
        title: "checkout down".into(),
        commander: commander.into(),
    }
}

/// An action whose command and rollback command each append a line to `runs.log`, so a test
/// counts how often each ran. The scripts are fixed; the log and the target are `$0` and `$1`.
fn undoable(dir: &Path) -> String {
    let log = dir.join("runs.log");
    let log = log.to_str().expect("a UTF-8 temporary path");
    format!(
        r#"
[[actions]]
name = "undoable"
risk = "medium"
description = "test: do, and undo"
rollback = "undo it"
command = ["sh", "-c", 'echo "do $1" >> "$0"', "{log}", "{{target}}"]
rollback_command = ["sh", "-c", 'echo "undo $1" >> "$0"', "{log}", "{{target}}"]
timeout_secs = 10

[verification]
duration_minutes = 0.02
interval_seconds = 1
"#
    )
}

/// The attack: during a freeze an L1 declares a P1 naming themselves commander and
/// scales a service to zero. The change now waits for an L2 or L3 besides the requester.
#[tokio::test]
async fn a_self_declared_p1_does_not_let_an_l1_run_a_change_alone_during_a_freeze() {
    let srv = TestServer::start(IN_Q4_FREEZE).await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));
    let p1 = alice
        .declare_incident(&incident(Priority::P1, "alice"))
        .await
        .expect("any operator may declare an incident");
    let change = create(
        &alice,
        &req("record-medium", &p1.ticket, "checkout", json!({})),
    )
    .await;
    assert_eq!(change.state, ChangeState::PendingApproval);
    assert_eq!(
        change.approvals_required,
        vec![Requirement::Level {
            min: Level::L2,
            count: 1
        }]
    );
    assert_eq!(change.emergency.as_deref(), Some(p1.ticket.as_str()));
    let (_, message) = api_error(alice.approve(change.id, &approve()).await, 403);
    assert!(
        message.contains("nobody approves their own change"),
        "{message}"
    );
    assert!(srv.runs().is_empty(), "ran without a second person");

    let done = bob
        .approve(change.id, &approve())
        .await
        .expect("bob approves");
    assert_eq!(settled(&bob, done.id).await.state, ChangeState::Executed);
    assert_eq!(srv.runs(), ["checkout"]);

    // The audit and the activity feed say it was an emergency change.
    let entries = bob.audit(None, Some(1000)).await.expect("audit");
    let requested = entries
        .iter()
        .find(|e| e.kind == "change.requested" && e.subject == format!("change:{}", change.id))
        .expect("the request is audited");
    assert_eq!(requested.detail["emergency"], json!(p1.ticket));
    let summaries = collect_summaries(bob.events(Some(0)), "change.requested").await;
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("EMERGENCY record-medium on checkout")),
        "{summaries:?}"
    );
}

/// The same for an L2 outside the windows with a failover (high risk, which an L2 would
/// otherwise run directly): the commander being the requester never stands in for a reviewer.
#[tokio::test]
async fn an_l2_commanding_their_own_incident_cannot_fail_over_alone_outside_the_windows() {
    let srv = TestServer::start(SATURDAY_NOON).await;
    let (bob, dave, alice) = (srv.client("bob"), srv.client("dave"), srv.client("alice"));
    let p1 = bob
        .declare_incident(&incident(Priority::P1, "bob"))
        .await
        .expect("declare");
    let change = create(&bob, &req("record-high", &p1.ticket, "region-a", json!({}))).await;
    assert_eq!(change.state, ChangeState::PendingApproval);
    // An L1 is not enough; another L2 is.
    let (_, message) = api_error(alice.approve(change.id, &approve()).await, 403);
    assert!(message.contains("L2+ approval"), "{message}");
    assert!(srv.runs().is_empty());
    dave.approve(change.id, &approve())
        .await
        .expect("dave approves");
    assert_eq!(settled(&dave, change.id).await.state, ChangeState::Executed);
}

/// Two L1s cannot get a change through a freeze between them: one declares a P1 and names the
/// other its commander, who approves. An L2 or L3 must approve as well.
#[tokio::test]
async fn two_l1s_with_an_incident_of_their_own_do_not_get_through_a_freeze() {
    use commandbridge::domain::api::FreezeRequest;
    let srv = TestServer::start(TUESDAY_10).await;
    let (alice, bob, carol) = (srv.client("alice"), srv.client("bob"), srv.client("carol"));
    carol
        .create_freeze(&FreezeRequest {
            name: "quarter end".into(),
            starts_at: at("2026-11-24T09:00:00Z"),
            ends_at: at("2026-11-25T09:00:00Z"),
        })
        .await
        .expect("carol freezes");
    let mal = load::add_operators(&srv.db_url(), 1).await.remove(0);
    let mal = srv.client_with_token(&mal);
    let commander = mal.me().await.expect("mal").name;
    let p1 = alice
        .declare_incident(&incident(Priority::P1, &commander))
        .await
        .expect("an L1 declares, naming another L1 commander");
    let change = create(
        &alice,
        &req("record-medium", &p1.ticket, "search", json!({})),
    )
    .await;
    assert_eq!(change.state, ChangeState::PendingApproval);
    assert!(
        change.approvals_required.contains(&Requirement::Level {
            min: Level::L2,
            count: 1
        }),
        "{:?}",
        change.approvals_required
    );
    let after = mal
        .approve(change.id, &approve())
        .await
        .expect("the commander approves");
    assert_eq!(
        after.state,
        ChangeState::PendingApproval,
        "the commander alone is not enough"
    );
    assert!(
        srv.runs().is_empty(),
        "never ran on two L1s: {:?}",
        srv.runs()
    );
    bob.approve(change.id, &approve())
        .await
        .expect("bob (L2) approves");
    assert_eq!(settled(&bob, change.id).await.state, ChangeState::Executed);
}

#[tokio::test]
async fn an_incident_names_a_commander_who_exists() {
    let srv = TestServer::start(TUESDAY_10).await;
    let alice = srv.client("alice");
    let (_, message) = api_error(
        alice
            .declare_incident(&incident(Priority::P1, "mallory"))
            .await,
        422,
    );
    assert!(
        message.contains("'mallory' is not an operator"),
        "{message}"
    );
}

/// Reads events until the stream is quiet, keeping the summaries of one kind.
async fn collect_summaries(
    mut stream: futures::stream::BoxStream<
        'static,
        Result<commandbridge::domain::api::Event, commandbridge::client::ClientError>,
    >,
    kind: &str,
) -> Vec<String> {
    use futures::StreamExt;
    let mut out = Vec::new();
    while let Ok(Some(Ok(e))) =
        tokio::time::timeout(std::time::Duration::from_millis(500), stream.next()).await
    {
        if e.kind == kind {
            out.push(e.summary);
        }
    }
    out
}

fn outcome(kind: OutcomeKind) -> OutcomeRequest {
    OutcomeRequest {
        outcome: kind,
        note: None,
        priority: None,
        commander: None,
    }
}

/// Ending a verification is for those who answer for the change (its requester, its approvers)
/// and for L2 and up: an unrelated L1 can neither mark it verified nor escalate it (which would
/// pause every change, something an L1 may not do).
#[tokio::test]
async fn only_the_requester_approvers_and_l2_up_end_a_verification() {
    let mut srv = TestServer::start_configured(clock_at(TUESDAY_10), undoable).await;
    let erin = srv.add_operator("erin", Level::L1).await;
    let frank = srv.add_operator("frank", Level::L1).await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));
    // record-high by an L1: bob approves, so alice and bob answer for it.
    let c = create(&alice, &req("record-high", "CHG-1", "web", json!({}))).await;
    bob.approve(c.id, &approve()).await.expect("approve");
    assert_eq!(settled(&bob, c.id).await.state, ChangeState::Executed);
    let v = verification_of(&alice, c.id).await;
    for kind in [OutcomeKind::Verified, OutcomeKind::Escalated] {
        let (_, message) = api_error(erin.verification_outcome(v.id, &outcome(kind)).await, 403);
        assert!(
            message.contains("only the requester of change") && message.contains("erin L1"),
            "{message}"
        );
    }
    let window = bob.current_window().await.expect("window");
    assert!(window.pause.is_none(), "nothing was paused: {window:?}");

    // The requester escalates their own change, as the process asks of them.
    let escalated = alice
        .verification_outcome(v.id, &outcome(OutcomeKind::Escalated))
        .await
        .expect("the requester escalates");
    assert_eq!(escalated.state.as_str(), "escalated");

    // An approver, and any L2, may end one too: a second change, approved by bob, that frank
    // (L1, unrelated) may not touch but dave (L2) may.
    bob.resume().await.expect("resume");
    let d = create(&erin, &req("record-high", "CHG-2", "api", json!({}))).await;
    bob.approve(d.id, &approve()).await.expect("approve");
    settled(&bob, d.id).await;
    let w = verification_of(&bob, d.id).await;
    api_error(
        frank
            .verification_outcome(w.id, &outcome(OutcomeKind::Escalated))
            .await,
        403,
    );
    srv.client("dave")
        .verification_outcome(w.id, &outcome(OutcomeKind::Escalated))
        .await
        .expect("an L2 escalates");
}

/// One rollback per change, settled by the database: a second request is refused naming the
/// first, and 100 at once run the rollback command once.
#[tokio::test]
async fn a_change_is_rolled_back_once_however_often_it_is_asked() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), undoable).await;
    let bob = srv.client("bob");
    let rb = |reason: &str| RollbackRequest {
        reason: reason.into(),
        ticket: None,
    };

    let first = create(&bob, &req("undoable", "CHG-1", "web", json!({}))).await;
    assert_eq!(settled(&bob, first.id).await.state, ChangeState::Executed);
    let undo = bob
        .rollback(first.id, &rb("bad deploy"))
        .await
        .expect("roll back");
    settled(&bob, undo.id).await;
    let (error, message) = api_error(bob.rollback(first.id, &rb("again")).await, 409);
    assert_eq!(error, "conflict");
    assert!(
        message.contains(&format!("already has a rollback: change #{}", undo.id)),
        "{message}"
    );

    // 100 concurrent requests for another change: one rollback, run once.
    let second = create(&bob, &req("undoable", "CHG-1", "api", json!({}))).await;
    assert_eq!(settled(&bob, second.id).await.state, ChangeState::Executed);
    let tries = (0..100).map(|i| {
        let bob = srv.client("bob");
        let r = rb(&format!("try {i}"));
        let id = second.id;
        tokio::spawn(async move { bob.rollback(id, &r).await })
    });
    let results = futures::future::join_all(tries).await;
    let created: Vec<i64> = results
        .iter()
        .filter_map(|r| r.as_ref().expect("join").as_ref().ok().map(|c| c.id))
        .collect();
    assert_eq!(created.len(), 1, "{results:?}");
    for r in results {
        if let Err(e) = r.expect("join") {
            let (_, message) = api_error::<()>(Err(e), 409);
            assert!(
                message.contains(&format!("change #{}", created[0])),
                "{message}"
            );
        }
    }
    settled(&bob, created[0]).await;
    let undos = srv.runs().iter().filter(|l| *l == "undo api").count();
    assert_eq!(undos, 1, "{:?}", srv.runs());
}

/// Declarations are limited per operator (429 saying when to retry); an escalation is not; and
/// the numbering of a day goes past 999 with tickets the parser accepts.
#[tokio::test]
async fn incident_numbers_cannot_be_used_up() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), undoable).await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));
    for _ in 0..5 {
        alice
            .declare_incident(&incident(Priority::P3, "bob"))
            .await
            .expect("declare");
    }
    let (error, message) = api_error(
        alice.declare_incident(&incident(Priority::P1, "bob")).await,
        429,
    );
    assert_eq!(error, "rate_limited");
    assert!(
        message.contains("retry after") && message.contains("UTC"),
        "{message}"
    );
    // Another operator still declares.
    bob.declare_incident(&incident(Priority::P3, "bob"))
        .await
        .expect("bob declares");

    // alice's own change degrades: her escalation is never refused by the limit.
    let c = create(&alice, &req("undoable", "CHG-9", "web", json!({}))).await;
    settled(&alice, c.id).await;
    let v = verification_of(&alice, c.id).await;
    alice
        .verification_outcome(v.id, &outcome(OutcomeKind::Escalated))
        .await
        .expect("escalation is not rate-limited");

    // An escalation does not count toward the limit: dave escalates first, then still declares
    // his five.
    let dave = srv.client("dave");
    dave.resume()
        .await
        .expect("resume after alice's escalation");
    let d = create(&dave, &req("undoable", "CHG-10", "api", json!({}))).await;
    settled(&dave, d.id).await;
    let w = verification_of(&dave, d.id).await;
    dave.verification_outcome(w.id, &outcome(OutcomeKind::Escalated))
        .await
        .expect("dave escalates");
    for _ in 0..5 {
        dave.declare_incident(&incident(Priority::P3, "bob"))
            .await
            .expect("an escalation is not counted");
    }
    api_error(
        dave.declare_incident(&incident(Priority::P3, "bob")).await,
        429,
    );

    // Fill the day up to 999 directly in the database, then declare the 1000th over the API.
    let now = srv.state().clock.now();
    let mut tx = srv.store().write().await.expect("a write transaction");
    let declared = alice.incidents().await.expect("list").len();
    for _ in declared..999 {
        tx.incident_insert(Priority::P3, "filler", "bob", "dave", now, false)
            .await
            .expect("insert");
    }
    tx.commit().await.expect("commit");
    let thousandth = srv
        .client("carol")
        .declare_incident(&incident(Priority::P1, "bob"))
        .await
        .expect("the 1000th incident of the day");
    assert_eq!(thousandth.ticket, "INC-2026-1124-1000");
    // The list of a thousand incidents comes a page at a time, newest first.
    let listed = alice.incidents().await.expect("list");
    assert_eq!(listed.len(), 200);
    assert_eq!(listed[0].ticket, thousandth.ticket);
    let r = send(srv.raw_as("alice", reqwest::Method::GET, "/api/v1/incidents?limit=501")).await;
    assert!(r.error(422).message.contains("between 1 and 500"));
    // Its ticket is a ticket: an emergency change can cite it.
    srv.client("carol")
        .preview(&req("record-medium", &thousandth.ticket, "web", json!({})))
        .await
        .expect("the ticket of the 1000th incident is accepted");
}

/// A change waiting for approval when its requester's access is revoked has nobody standing
/// behind it: the approval that would run it refuses it instead, as its scheduled time would.
#[tokio::test]
async fn a_revoked_operators_pending_change_is_refused_when_approved() {
    let srv = TestServer::start(TUESDAY_10).await;
    let c = create(
        &srv.client("alice"),
        &req("record-high", "CHG-7400", "edge", json!({})),
    )
    .await;
    assert_eq!(c.state, ChangeState::PendingApproval);
    commandbridge::server::users::revoke(srv.store(), "alice")
        .await
        .expect("revoke alice");
    let (error, message) = api_error(srv.client("bob").approve(c.id, &approve()).await, 409);
    assert_eq!(error, "refused");
    assert!(message.contains("alice's access was revoked"), "{message}");
    let after = srv.client("bob").change(c.id).await.expect("the change");
    assert_eq!(after.state, ChangeState::Refused);
    assert!(srv.runs().is_empty(), "never ran: {:?}", srv.runs());
}
