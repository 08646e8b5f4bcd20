//! Rollbacks: the rollback command with what was captured, through the policy and the action's rollback level.

use crate::support::fakes::*;
use crate::support::*;
use commandbridge::domain::api::{ApproveRequest, IncidentRequest, PauseRequest};
use commandbridge::domain::{ChangeState, Level, Priority, Requirement};
use serde_json::json;

// ---- rollback --------------------------------------------------------------------------------

#[tokio::test]
async fn rollback_runs_the_rollback_command_with_the_captured_value_through_the_policy() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |dir| {
        verification_toml(0.05) + &rollback_actions(dir)
    })
    .await;
    let (alice, bob, carol, dave) = (
        srv.client("alice"),
        srv.client("bob"),
        srv.client("carol"),
        srv.client("dave"),
    );

    // capture_command ran before the change; the rollback runs with what it printed.
    let orig = create(
        &bob,
        &req("scale-captured", "CHG-4001", "web", json!({"replicas": 3})),
    )
    .await;
    let orig = settled(&bob, orig.id).await;
    assert_eq!(orig.state, ChangeState::Executed, "{:?}", orig.output);
    assert_eq!(rollback_log(&srv), ["scale web 3"]);
    let rb = bob
        .rollback(orig.id, &rollback_req("too many replicas", None))
        .await
        .expect("roll back");
    assert_eq!(rb.rollback_of, Some(orig.id));
    assert_ne!(rb.id, orig.id);
    assert_eq!(
        (
            rb.action.as_str(),
            rb.target.as_str(),
            rb.ticket.as_str(),
            rb.requested_by.as_str()
        ),
        ("scale-captured", "web", "CHG-4001", "bob")
    );
    assert!(rb.reason.contains("too many replicas"), "{}", rb.reason);
    let rb = settled(&bob, rb.id).await;
    assert_eq!(rb.state, ChangeState::Executed, "{:?}", rb.output);
    assert_eq!(rollback_log(&srv), ["scale web 3", "rollback web 7"]);
    let orig_now = bob.change(orig.id).await.expect("GET");
    assert_eq!(
        (orig_now.state, orig_now.rollback_of),
        (ChangeState::Executed, None)
    );
    // A rollback is not rolled back.
    let (_, message) = api_error(bob.rollback(rb.id, &rollback_req("again", None)).await, 409);
    assert!(message.contains("itself a rollback"), "{message}");

    // A command but no rollback_command: the rollback is manual, and the text says how.
    let manual = executed(&bob, "manual-undo", "CHG-4002", "web").await;
    let (error, message) = api_error(bob.rollback(manual, &rollback_req("undo", None)).await, 409);
    assert_eq!(error, "conflict");
    assert!(
        message.contains("manual")
            && message.contains("Redeploy the previous image by hand (runbook RB-12)"),
        "{message}"
    );

    // Only an executed change rolls back: not a failed one, not a pending one, not a missing one.
    let failed = create(&bob, &req("fail-medium", "CHG-4003", "web", json!({}))).await;
    assert_eq!(settled(&bob, failed.id).await.state, ChangeState::Failed);
    let (_, message) = api_error(
        bob.rollback(failed.id, &rollback_req("undo", None)).await,
        409,
    );
    assert!(message.contains("failed"), "{message}");
    let pending = create(&alice, &req("record-high", "CHG-4004", "web", json!({}))).await;
    assert_eq!(pending.state, ChangeState::PendingApproval);
    api_error(
        bob.rollback(pending.id, &rollback_req("undo", None)).await,
        409,
    );
    api_error(bob.rollback(424242, &rollback_req("undo", None)).await, 404);
    let log_before = rollback_log(&srv);

    // rollback_level = "L3": bob (L2) ran the failover himself, but its reversal needs an L3.
    let fo = executed(&bob, "failover-test", "CHG-4005", "db").await;
    let rb = bob
        .rollback(fo, &rollback_req("primary is back", None))
        .await
        .expect("request the failback");
    assert_eq!(rb.state, ChangeState::PendingApproval);
    assert_eq!(rb.rollback_of, Some(fo));
    assert_eq!(
        rb.approvals_required,
        [Requirement::Level {
            min: Level::L3,
            count: 1
        }]
    );
    let (_, message) = api_error(dave.approve(rb.id, &ApproveRequest::default()).await, 403);
    assert!(message.contains("L3"), "{message}");
    api_error(bob.approve(rb.id, &ApproveRequest::default()).await, 403);
    assert!(!rollback_log(&srv).contains(&"failback db".to_string()));
    let done = carol
        .approve(rb.id, &ApproveRequest::default())
        .await
        .expect("carol approves the failback");
    let done = settled(&carol, done.id).await;
    assert_eq!(done.state, ChangeState::Executed, "{:?}", done.output);
    let mut want = log_before.clone();
    want.extend(["failover db".to_string(), "failback db".to_string()]);
    assert_eq!(rollback_log(&srv), want);

    // The policy applies to rollbacks: with changes paused, a CHG rollback is refused. (A
    // change not rolled back yet: `orig` has had its one rollback.)
    let again = create(
        &bob,
        &req("scale-captured", "CHG-4006", "web", json!({"replicas": 4})),
    )
    .await;
    assert_eq!(settled(&bob, again.id).await.state, ChangeState::Executed);
    want.push("scale web 4".to_string());
    assert_eq!(rollback_log(&srv), want);
    bob.pause(&PauseRequest {
        reason: "incident in progress".into(),
    })
    .await
    .expect("pause");
    let changes_before = bob.changes(None, None).await.expect("changes").len();
    let (error, message) = api_error(
        bob.rollback(again.id, &rollback_req("scale back", None))
            .await,
        409,
    );
    assert_eq!(error, "refused");
    assert!(message.contains("paused"), "{message}");
    assert_eq!(
        bob.changes(None, None).await.expect("changes").len(),
        changes_before,
        "a refused rollback creates no change"
    );
    assert_eq!(rollback_log(&srv), want);
}

/// During a P1 incident an emergency rollback of an L3-only action needs BOTH the incident
/// commander's approval and an L3's. The commander (an L2) approving alone must not run it.
#[tokio::test]
async fn a_commanders_approval_does_not_stand_in_for_the_l3_a_rollback_needs() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |dir| {
        verification_toml(0.05) + &rollback_actions(dir)
    })
    .await;
    let (bob, carol, dave) = (srv.client("bob"), srv.client("carol"), srv.client("dave"));
    let fo = executed(&bob, "failover-test", "CHG-4101", "db").await;

    // A P1 with dave (L2) in command; changes paused, so only the P1's changes may run.
    let inc = carol
        .declare_incident(&IncidentRequest {
            priority: Priority::P1,
            title: "db primary lost".into(),
            commander: "dave".into(),
        })
        .await
        .expect("declare");
    bob.pause(&PauseRequest {
        reason: "P1 in progress".into(),
    })
    .await
    .expect("pause");

    let rb = bob
        .rollback(fo, &rollback_req("fail back", Some(&inc.ticket)))
        .await
        .expect("request the failback for the P1");
    assert_eq!(rb.state, ChangeState::PendingApproval);
    assert!(
        rb.approvals_required.contains(&Requirement::Commander {
            name: "dave".into(),
            incident: inc.ticket.clone(),
        }) && rb.approvals_required.contains(&Requirement::Level {
            min: Level::L3,
            count: 1
        }),
        "{:#?}",
        rb.approvals_required
    );

    let after = dave
        .approve(rb.id, &ApproveRequest::default())
        .await
        .expect("the commander approves");
    let after = settled(&dave, after.id).await;
    assert_eq!(
        after.state,
        ChangeState::PendingApproval,
        "the commander's approval ran an L3-only failback without an L3 approval; it now \
         requires {:?}",
        after.approvals_required
    );
    assert!(!rollback_log(&srv).contains(&"failback db".to_string()));
    let done = carol
        .approve(rb.id, &ApproveRequest::default())
        .await
        .expect("carol approves");
    let done = settled(&carol, done.id).await;
    assert_eq!(done.state, ChangeState::Executed);
    // The record still says what it needed.
    assert!(
        done.approvals_required.contains(&Requirement::Level {
            min: Level::L3,
            count: 1
        }),
        "{:#?}",
        done.approvals_required
    );
}

/// Escalating a verification pauses every change; the rollback of the change that escalated is
/// the incident's response and runs through that pause, with the commander approving. Anything
/// else is refused, saying how changes resume and who may resume them.
#[tokio::test]
async fn the_rollback_of_an_escalated_change_runs_during_the_pause_with_the_commanders_approval() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |dir| {
        verification_toml(60.0) + &rollback_actions(dir)
    })
    .await;
    let (alice, bob, carol) = (srv.client("alice"), srv.client("bob"), srv.client("carol"));
    let bad = create(
        &bob,
        &req("scale-captured", "CHG-4201", "web", json!({"replicas": 3})),
    )
    .await;
    assert_eq!(settled(&bob, bad.id).await.state, ChangeState::Executed);
    let other = create(
        &bob,
        &req("scale-captured", "CHG-4202", "api", json!({"replicas": 2})),
    )
    .await;
    assert_eq!(settled(&bob, other.id).await.state, ChangeState::Executed);
    let v = verification_of(&bob, bad.id).await;
    let esc = bob
        .verification_outcome(v.id, &escalated(Some("5xx"), Some("carol")))
        .await
        .expect("escalate");
    let ticket = esc.incident.expect("an incident");

    // Another change's rollback is refused by the pause, saying how to resume and who may.
    let (error, message) = api_error(
        alice.rollback(other.id, &rollback_req("undo", None)).await,
        409,
    );
    assert_eq!(error, "refused");
    assert!(
        message.contains("To resume, an L2 or L3 resumes changes")
            && message.contains("you are L1: ask one of them"),
        "{message}"
    );

    // The escalated change's rollback: pending the commander's approval, marked emergency.
    let rb = bob
        .rollback(bad.id, &rollback_req("5xx since the scale", None))
        .await
        .expect("the rollback during the escalation's pause");
    assert_eq!(rb.state, ChangeState::PendingApproval);
    assert_eq!(rb.emergency.as_deref(), Some(ticket.as_str()));
    assert_eq!(
        rb.approvals_required,
        [Requirement::Commander {
            name: "carol".into(),
            incident: ticket.clone()
        }]
    );
    let done = carol
        .approve(rb.id, &ApproveRequest::default())
        .await
        .expect("the commander approves, still during the pause");
    let done = settled(&carol, done.id).await;
    assert_eq!(done.state, ChangeState::Executed, "{:?}", done.output);
    assert!(
        rollback_log(&srv).contains(&"rollback web 7".to_string()),
        "{:?}",
        rollback_log(&srv)
    );
    assert!(
        bob.current_window().await.expect("window").pause.is_some(),
        "the rollback does not end the pause"
    );
}

/// A rollback its requester withdraws never ran: it leaves room for a new rollback of the same
/// change, as a denied one does.
#[tokio::test]
async fn a_withdrawn_rollback_leaves_room_for_a_new_one() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |dir| {
        verification_toml(0.05) + &rollback_actions(dir)
    })
    .await;
    let (bob, carol) = (srv.client("bob"), srv.client("carol"));
    let fo = executed(&bob, "failover-test", "CHG-4101", "db").await;
    let rb = bob
        .rollback(fo, &rollback_req("fail back", None))
        .await
        .expect("request the failback");
    assert_eq!(rb.state, ChangeState::PendingApproval, "{rb:?}");
    // While it is pending, it holds the change's one place.
    api_error(bob.rollback(fo, &rollback_req("again", None)).await, 409);
    let gone = bob
        .withdraw(
            rb.id,
            &commandbridge::domain::api::WithdrawRequest {
                reason: Some("wrong moment".into()),
            },
        )
        .await
        .expect("withdraw the rollback");
    assert_eq!(gone.state, ChangeState::Withdrawn);
    let again = bob
        .rollback(fo, &rollback_req("fail back now", None))
        .await
        .expect("a new rollback after the withdrawn one");
    assert_eq!(again.state, ChangeState::PendingApproval);
    carol
        .approve(again.id, &ApproveRequest::default())
        .await
        .expect("approve");
    assert_eq!(settled(&carol, again.id).await.state, ChangeState::Executed);
}

/// A high-risk action whose rollback needs no more than the process's approval matrix: an L1's
/// rollback waits for an L2+, an L2's or L3's runs at once.
fn high_risk_undo(dir: &std::path::Path) -> String {
    let log = dir.join("rollback.log");
    let log = log.to_str().expect("a UTF-8 temporary path");
    format!(
        r#"
[[actions]]
name = "maintenance-test"
risk = "high"
description = "test: a maintenance flag and its reversal"
rollback = "Toggle the flag back off"
command = ["sh", "-c", 'echo "maintenance on $1" >> "$0"', "{log}", "{{target}}"]
rollback_command = ["sh", "-c", 'echo "maintenance off $1" >> "$0"', "{log}", "{{target}}"]
timeout_secs = 10
"#
    )
}

/// An L1's rollback waiting for approval must not hold the change's one rollback against an
/// operator who may run it at once: an L3's request replaces it (withdrawn, with a reason naming
/// the new one, in the same commit) and runs. A request that would wait too is still refused,
/// saying who may replace it; an executed rollback is never replaced.
#[tokio::test]
async fn a_rollback_that_runs_at_once_replaces_one_waiting_for_approval() {
    let mut srv = TestServer::start_configured(clock_at(TUESDAY_10), |dir| {
        verification_toml(0.05) + &rollback_actions(dir) + &high_risk_undo(dir)
    })
    .await;
    let erin = srv.add_operator("erin", Level::L1).await;
    let (alice, bob, carol, dave) = (
        srv.client("alice"),
        srv.client("bob"),
        srv.client("carol"),
        srv.client("dave"),
    );
    let orig = executed(&bob, "maintenance-test", "CHG-4201", "web").await;
    let waiting = alice
        .rollback(orig, &rollback_req("errors since the flag", None))
        .await
        .expect("alice requests the rollback");
    assert_eq!(waiting.state, ChangeState::PendingApproval, "{waiting:?}");

    // Another L1 would wait too: refused, saying who decides and who may replace it.
    let (error, message) = api_error(
        erin.rollback(orig, &rollback_req("me too", None)).await,
        409,
    );
    assert_eq!(error, "conflict");
    assert!(
        message.contains(&format!("#{}", waiting.id))
            && message.contains("alice")
            && message.contains("L2+ approval")
            && message.contains("L2 or above")
            && message.contains("replace"),
        "{message}"
    );
    assert_eq!(
        alice.change(waiting.id).await.expect("GET").state,
        ChangeState::PendingApproval
    );

    // carol (L3) runs it at once: alice's request ends, replaced, and carol's executes.
    let mine = carol
        .rollback(orig, &rollback_req("incident: undo it now", None))
        .await
        .expect("carol's rollback replaces the waiting one");
    assert_eq!(mine.rollback_of, Some(orig));
    let mine = settled(&carol, mine.id).await;
    assert_eq!(mine.state, ChangeState::Executed, "{:?}", mine.output);
    assert_eq!(
        rollback_log(&srv),
        ["maintenance on web", "maintenance off web"],
        "the rollback ran once"
    );
    let old = alice.change(waiting.id).await.expect("GET");
    assert_eq!(old.state, ChangeState::Withdrawn);
    assert_eq!(old.decided_by.as_deref(), Some("carol"));
    let why = old.outcome_reason.clone().unwrap_or_default();
    assert!(
        why.contains(&format!("replaced by rollback #{}", mine.id)) && why.contains("carol"),
        "{why}"
    );
    // The approval alice's request waited for can no longer run it.
    api_error(
        bob.approve(waiting.id, &ApproveRequest::default()).await,
        409,
    );

    // Both are in the audit chain, in order, and the chain is whole.
    let audit = carol.audit(None, Some(500)).await.expect("audit");
    let of = |id: i64| {
        audit
            .iter()
            .filter(|e| e.subject == format!("change:{id}"))
            .map(|e| (e.kind.clone(), e.actor.clone()))
            .collect::<Vec<_>>()
    };
    let pair = |k: &str, a: &str| (k.to_string(), a.to_string());
    let old_entries = of(waiting.id);
    assert_eq!(
        old_entries[..2],
        [
            pair("change.requested", "alice"),
            pair("change.withdrawn", "carol")
        ],
        "{old_entries:?}"
    );
    let withdrawn = audit
        .iter()
        .find(|e| e.subject == format!("change:{}", waiting.id) && e.kind == "change.withdrawn")
        .expect("the withdrawal");
    assert!(
        withdrawn
            .detail
            .to_string()
            .contains(&format!("replaced by rollback #{}", mine.id)),
        "{}",
        withdrawn.detail
    );
    assert!(
        withdrawn.seq
            < audit
                .iter()
                .find(|e| e.subject == format!("change:{}", mine.id))
                .expect("carol's")
                .seq
    );
    assert_eq!(of(mine.id)[0], pair("change.requested", "carol"));
    match commandbridge::server::audit_check::verify(srv.store())
        .await
        .expect("verify")
    {
        commandbridge::server::audit_check::Verdict::Intact { .. } => {}
        broken => panic!("{broken:?}"),
    }

    // An executed rollback is never replaced, not even by an L3.
    for who in [&alice, &carol] {
        let (_, message) = api_error(who.rollback(orig, &rollback_req("again", None)).await, 409);
        assert!(
            message.contains(&format!("#{}", mine.id)) && message.contains("executed"),
            "{message}"
        );
    }

    // Where only an L3 runs the rollback (`rollback_level`), an L2's request waits, and another
    // L2 is told that only an L3 may replace it.
    let fo = executed(&bob, "failover-test", "CHG-4202", "db").await;
    let bobs = bob
        .rollback(fo, &rollback_req("fail back", None))
        .await
        .expect("bob requests the failback");
    assert_eq!(bobs.state, ChangeState::PendingApproval);
    let (_, message) = api_error(dave.rollback(fo, &rollback_req("now", None)).await, 409);
    assert!(
        message.contains("an L3") && message.contains("L3 approval"),
        "{message}"
    );
}
