//! The life of a change: decided once, executed exactly once, idempotent retries, the policy re-checked at the last approval, emergency changes, expiry.

use crate::support::*;
use chrono::Duration as ChronoDuration;
use commandbridge::client::ClientError;
use commandbridge::domain::api::{ApproveRequest, IncidentRequest};
use commandbridge::domain::{ChangeState, Level, Priority, Requirement};
use commandbridge::server::clock::Clock;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

// ---- 409 ------------------------------------------------------------------------------------

#[tokio::test]
async fn deciding_a_decided_change_gets_409() {
    let srv = TestServer::start(TUESDAY_10).await;
    let (alice, bob, dave) = (srv.client("alice"), srv.client("bob"), srv.client("dave"));

    let change = create(&alice, &req("record-high", "CHG-3001", "web-1", json!({}))).await;
    assert_eq!(change.state, ChangeState::PendingApproval);
    let done = bob
        .approve(change.id, &approve())
        .await
        .expect("bob approves");
    assert_eq!(done.state, ChangeState::Executed);
    assert_eq!(srv.runs_of("web-1"), 1);

    let (error, message) = api_error(dave.approve(change.id, &approve()).await, 409);
    assert_eq!(error, "conflict");
    assert!(message.contains("already executed"), "{message}");
    api_error(bob.approve(change.id, &approve()).await, 409);
    api_error(dave.deny(change.id, &deny("too late")).await, 409);
    assert_eq!(srv.runs_of("web-1"), 1, "a late approval runs nothing");

    // A denied change cannot be approved afterwards.
    let denied = create(&alice, &req("record-high", "CHG-3002", "web-2", json!({}))).await;
    let d = bob.deny(denied.id, &deny("not today")).await.expect("deny");
    assert_eq!(d.state, ChangeState::Denied);
    let (_, message) = api_error(dave.approve(denied.id, &approve()).await, 409);
    assert!(message.contains("denied"), "{message}");
    assert_eq!(srv.runs_of("web-2"), 0);
}

// ---- withdrawn ---------------------------------------------------------------------------------

/// The requester takes back their own pending change: recorded as withdrawn, not as denied by
/// themselves; nobody else may withdraw it, and a withdrawn change is decided for good.
#[tokio::test]
async fn the_requester_withdraws_their_own_pending_change() {
    let srv = TestServer::start(TUESDAY_10).await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));
    let change = create(&alice, &req("record-high", "CHG-3101", "web-1", json!({}))).await;
    let (_, message) = api_error(bob.withdraw(change.id, &withdraw(None)).await, 403);
    assert!(message.contains("only its requester (alice)"), "{message}");
    let w = alice
        .withdraw(change.id, &withdraw(Some("wrong target")))
        .await
        .expect("withdraw");
    assert_eq!(w.state, ChangeState::Withdrawn);
    assert_eq!(w.outcome_reason.as_deref(), Some("wrong target"));
    assert_eq!(w.decided_by.as_deref(), Some("alice"));
    let (_, message) = api_error(bob.approve(change.id, &approve()).await, 409);
    assert!(message.contains("withdrawn"), "{message}");
    api_error(alice.withdraw(change.id, &withdraw(None)).await, 409);
    assert_eq!(srv.runs_of("web-1"), 0);

    // The requester's own "deny" is a withdrawal too.
    let other = create(&alice, &req("record-high", "CHG-3102", "web-2", json!({}))).await;
    let d = alice
        .deny(other.id, &deny("not needed"))
        .await
        .expect("deny own");
    assert_eq!(d.state, ChangeState::Withdrawn);
    api_error(alice.withdraw(424242, &withdraw(None)).await, 404);
}

fn withdraw(reason: Option<&str>) -> commandbridge::domain::api::WithdrawRequest {
    commandbridge::domain::api::WithdrawRequest {
        reason: reason.map(str::to_string),
    }
}

// ---- exactly once -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_approvals_execute_exactly_once() {
    let mut srv = TestServer::start(TUESDAY_10).await;
    let mut reviewers = Vec::new();
    for i in 0..20 {
        let level = if i % 3 == 0 { Level::L3 } else { Level::L2 };
        reviewers.push(srv.add_operator(&format!("reviewer-{i:02}"), level).await);
    }
    let change = create(
        &srv.client("alice"),
        &req("record-high", "CHG-8001", "db-primary", json!({})),
    )
    .await;
    assert_eq!(change.state, ChangeState::PendingApproval);

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(reviewers.len()));
    let tasks: Vec<_> = reviewers
        .into_iter()
        .map(|client| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                client
                    .approve(
                        change.id,
                        &ApproveRequest {
                            comment: Some("lgtm".into()),
                        },
                    )
                    .await
            })
        })
        .collect();
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for t in tasks {
        match t.await.expect("the task ran") {
            Ok(c) => ok.push(c),
            Err(ClientError::Api { status, .. }) if status == 409 || status == 403 => {
                refused.push(status)
            }
            Err(e) => panic!("unexpected answer to a concurrent approval: {e}"),
        }
    }
    assert_eq!(
        ok.len(),
        1,
        "exactly one approval wins; refused: {refused:?}"
    );
    assert_eq!(refused.len(), 19);
    let winner = &ok[0];
    assert_eq!(winner.state, ChangeState::Executed, "{winner:?}");
    assert_eq!(winner.output.as_ref().and_then(|o| o.exit_code), Some(0));

    // Give a second execution every chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        srv.runs(),
        vec!["db-primary".to_string()],
        "the command ran exactly once"
    );
    let shown = srv.client("bob").change(change.id).await.expect("show");
    assert_eq!(shown.state, ChangeState::Executed);
    assert_eq!(
        shown.approvals.len(),
        1,
        "one approval recorded: {:?}",
        shown.approvals
    );
    let audit = srv
        .client("bob")
        .audit(None, Some(1000))
        .await
        .expect("audit");
    let subject = format!("change:{}", change.id);
    let executed = audit
        .iter()
        .filter(|e| e.subject == subject && e.kind == "change.executed")
        .count();
    assert_eq!(executed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_create_retries_run_once() {
    let srv = TestServer::start(TUESDAY_10).await;
    let body = req("record-medium", "CHG-9001", "cache-1", json!({}));
    let post = |key: &str, body: &commandbridge::domain::api::ChangeRequest, who: &str| {
        srv.raw_as(who, Method::POST, "/api/v1/changes")
            .header("Idempotency-Key", key)
            .json(body)
    };

    let first = send(post("retry-1", &body, "bob")).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let first = first.json();
    assert_eq!(first["state"], "executed");
    let replay = send(post("retry-1", &body, "bob")).await;
    assert_eq!(
        replay.status,
        200,
        "a replay answers 200: {}",
        replay.text()
    );
    let replay = replay.json();
    assert_eq!(replay["id"], first["id"], "the same change");
    assert_eq!(replay["state"], "executed");

    // Same key, different request: refused, nothing recorded or run.
    let mut other = body.clone();
    other.target = "cache-2".into();
    let m = send(post("retry-1", &other, "bob"))
        .await
        .error(422)
        .message;
    assert!(m.contains("Idempotency-Key"), "{m}");
    // Keys belong to their operator: alice may use the same key for her own request.
    let alices = send(post("retry-1", &other, "alice")).await;
    assert_eq!(alices.status, 201, "{}", alices.text());

    // Concurrent retries of one request: one change, one execution.
    let mut second = body.clone();
    second.target = "cache-3".into();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let rb = post("retry-2", &second, "bob");
            tokio::spawn(send(rb))
        })
        .collect();
    let mut ids = Vec::new();
    let mut created = 0;
    for t in tasks {
        let r = t.await.expect("task");
        assert!(
            r.status == 200 || r.status == 201,
            "{} {}",
            r.status,
            r.text()
        );
        created += usize::from(r.status == 201);
        ids.push(r.json()["id"].as_i64().expect("an id"));
    }
    assert_eq!(created, 1, "one request created it, the rest were replays");
    ids.dedup();
    assert_eq!(ids.len(), 1, "every retry got the same change");

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(srv.runs_of("cache-1"), 1);
    assert_eq!(srv.runs_of("cache-2"), 1, "alice's change");
    assert_eq!(srv.runs_of("cache-3"), 1);
    assert_eq!(srv.runs().len(), 3);
    assert_eq!(
        srv.client("bob")
            .changes(None, None)
            .await
            .expect("list")
            .len(),
        3
    );
}

// ---- the policy at approval time ------------------------------------------------------------------

#[tokio::test]
async fn policy_is_rechecked_when_the_last_approval_arrives() {
    // Three seconds before the Standard window closes.
    let srv = TestServer::start("2026-11-24T15:59:57Z").await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));

    let change = create(&alice, &req("record-high", "CHG-1111", "web", json!({}))).await;
    assert_eq!(
        change.state,
        ChangeState::PendingApproval,
        "requested inside the window"
    );
    assert!(
        change
            .warnings
            .iter()
            .any(|w| w.contains("off-peak preferred")),
        "{:?}",
        change.warnings
    );

    // Wait, by the server's clock, until the window has closed.
    let closes = at("2026-11-24T16:00:00Z");
    let now = bob.health().await.expect("health").now;
    assert!(now < closes, "the test set-up took too long: {now}");
    let wait = (closes - now).to_std().expect("positive") + Duration::from_millis(150);
    tokio::time::sleep(wait).await;

    let (error, message) = api_error(bob.approve(change.id, &approve()).await, 409);
    assert_eq!(error, "refused");
    assert!(
        message.contains("refused") && message.contains("window"),
        "{message}"
    );
    let shown = bob.change(change.id).await.expect("show");
    assert_eq!(shown.state, ChangeState::Refused);
    assert_eq!(shown.decided_by.as_deref(), Some("bob"));
    assert!(shown.output.is_none(), "nothing was started");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(srv.runs().is_empty(), "the command did not run");
}

// ---- emergency changes ---------------------------------------------------------------------------

#[tokio::test]
async fn emergency_change_needs_a_p1_or_p2_incident_and_its_commander() {
    let srv = TestServer::start(SATURDAY_NOON).await;
    let (bob, carol, dave) = (srv.client("bob"), srv.client("carol"), srv.client("dave"));

    let p2 = dave
        .declare_incident(&IncidentRequest {
            priority: Priority::P2,
            title: "error rate up on api".into(),
            commander: "carol".into(),
        })
        .await
        .expect("declare P2");
    assert_eq!(p2.ticket, "INC-2026-1128-001");
    assert_eq!(p2.commander, "carol");
    assert!(
        dave.incidents()
            .await
            .expect("list")
            .iter()
            .any(|i| i.ticket == p2.ticket)
    );

    // Medium risk, L2 requester: only the commander's approval is needed.
    let change = create(&bob, &req("record-medium", &p2.ticket, "api", json!({}))).await;
    assert_eq!(change.state, ChangeState::PendingApproval);
    assert_eq!(
        change.approvals_required,
        vec![Requirement::Commander {
            name: "carol".into(),
            incident: p2.ticket.clone()
        }]
    );
    let (_, message) = api_error(dave.approve(change.id, &approve()).await, 403);
    assert!(message.contains("carol"), "says who can approve: {message}");
    assert!(srv.runs().is_empty());
    let done = carol
        .approve(change.id, &approve())
        .await
        .expect("the commander approves");
    assert_eq!(done.state, ChangeState::Executed);
    assert_eq!(srv.runs(), vec!["api".to_string()]);

    assert_eq!(done.emergency.as_deref(), Some(p2.ticket.as_str()));

    // The commander's own emergency change still needs someone else: an L2 or L3.
    let own = create(
        &carol,
        &req("record-medium", &p2.ticket, "api-2", json!({})),
    )
    .await;
    assert_eq!(own.state, ChangeState::PendingApproval);
    assert_eq!(
        own.approvals_required,
        vec![Requirement::Level {
            min: Level::L2,
            count: 1
        }]
    );
    let done = dave
        .approve(own.id, &approve())
        .await
        .expect("an L2 approves");
    assert_eq!(done.state, ChangeState::Executed);

    // P3 is not an emergency.
    let p3 = dave
        .declare_incident(&IncidentRequest {
            priority: Priority::P3,
            title: "minor".into(),
            commander: "carol".into(),
        })
        .await
        .expect("declare P3");
    assert_eq!(p3.ticket, "INC-2026-1128-002");
    let (error, message) = api_error(
        bob.create_change(&req("record-medium", &p3.ticket, "api", json!({})), None)
            .await,
        409,
    );
    assert_eq!(error, "refused");
    assert!(message.contains("P1 and P2"), "{message}");
    // Nor is an incident that was never declared.
    let (_, message) = api_error(
        bob.create_change(&req("record-medium", "INC-042", "api", json!({})), None)
            .await,
        409,
    );
    assert!(message.contains("not an incident declared"), "{message}");
    assert_eq!(srv.runs().len(), 2);
}

#[tokio::test]
async fn a_pending_change_expires_after_its_ttl() {
    let t0 = at(TUESDAY_10);
    let mut srv = TestServer::start(TUESDAY_10).await;
    let change = create(
        &srv.client("alice"),
        &req("record-high", "CHG-1", "web", json!({})),
    )
    .await;
    assert_eq!(change.state, ChangeState::PendingApproval);
    assert!(
        (change.created_at - t0).num_seconds().abs() < 30,
        "{}",
        change.created_at
    );
    let ttl = change.expires_at - change.created_at;
    assert!(
        (ttl - ChronoDuration::minutes(240))
            .num_milliseconds()
            .abs()
            <= 1,
        "{ttl}"
    );

    // Five hours later (still inside Tuesday's Standard window): past the 240-minute limit.
    srv.restart(Clock::starting_at(t0 + ChronoDuration::hours(5)))
        .await;
    let (error, message) = api_error(srv.client("bob").approve(change.id, &approve()).await, 409);
    assert_eq!(error, "expired");
    assert!(message.contains("expired"), "{message}");
    let shown = srv.client("bob").change(change.id).await.expect("show");
    assert_eq!(shown.state, ChangeState::Expired);
    api_error(srv.client("bob").deny(change.id, &deny("late")).await, 409);
    assert!(srv.runs().is_empty());
    let audit = srv
        .client("bob")
        .audit(None, Some(1000))
        .await
        .expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.kind == "change.expired" && e.subject == format!("change:{}", change.id))
    );
}

// ---- approving exactly what runs --------------------------------------------------------------

fn deploy_action(version: &str) -> String {
    format!(
        r#"
[[actions]]
name = "deploy-web"
risk = "high"
description = "test: deploy a version"
rollback = "deploy the previous version"
command = ["echo", "deploy", "{{target}}", "--version={version}"]
timeout_secs = 10
"#
    )
}

/// A change shows the argv it will run, fixed at request; if the catalog's command changes
/// before it is approved, the approval refuses it instead of running what no reviewer saw.
#[tokio::test]
async fn a_change_runs_the_command_its_reviewers_saw_or_none() {
    let mut srv =
        TestServer::start_configured(clock_at(TUESDAY_10), |_| deploy_action("1.0")).await;
    let alice = srv.client("alice");
    let c = create(&alice, &req("deploy-web", "CHG-1", "web-1", json!({}))).await;
    assert_eq!(c.state, ChangeState::PendingApproval);
    assert_eq!(
        c.command.as_deref(),
        Some(&["echo", "deploy", "web-1", "--version=1.0"].map(String::from)[..])
    );

    srv.restart_configured(clock_at(TUESDAY_10), &deploy_action("2.0"))
        .await;
    let (error, message) = api_error(srv.client("bob").approve(c.id, &approve()).await, 409);
    assert_eq!(error, "refused");
    assert!(
        message.contains(
            "the action's command changed since this change was requested; request it again"
        ),
        "{message}"
    );
    let refused = srv.client("alice").change(c.id).await.expect("show");
    assert_eq!(refused.state, ChangeState::Refused);
    assert!(refused.output.is_none(), "nothing ran");

    // Requested again, it shows and runs the new command.
    let again = create(
        &srv.client("alice"),
        &req("deploy-web", "CHG-1", "web-1", json!({})),
    )
    .await;
    assert_eq!(
        again.command.as_deref(),
        Some(&["echo", "deploy", "web-1", "--version=2.0"].map(String::from)[..])
    );
    srv.client("bob")
        .approve(again.id, &approve())
        .await
        .expect("approve");
    let ran = settled(&srv.client("alice"), again.id).await;
    assert_eq!(ran.state, ChangeState::Executed);
    let out = ran.output.expect("output");
    assert_eq!(out.stdout.trim(), "deploy web-1 --version=2.0");
}

// ---- approval thresholds ----------------------------------------------------------------------

const TWO_L3: &str = "\n[approvals.critical]\ncount = 2\nmin_level = \"L3\"\n";

/// `[approvals.critical] count = 2, min_level = "L3"`: two distinct L3s, never the requester,
/// each once; the queue says how far it is; one eligible denial ends it; a pending change keeps
/// the rule it was requested under when the configuration changes.
#[tokio::test]
async fn a_two_of_l3_rule_needs_two_distinct_l3s_and_one_denial_ends_it() {
    let mut srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| TWO_L3.into()).await;
    srv.add_operator("erin", Level::L3).await;
    let (alice, bob, carol, erin) = (
        srv.client("alice"),
        srv.client("bob"),
        srv.client("carol"),
        srv.client("erin"),
    );
    let c = create(
        &alice,
        &req("rotate-secrets", "CHG-1", "payments", json!({})),
    )
    .await;
    assert_eq!(c.state, ChangeState::PendingApproval);
    assert_eq!(
        c.approvals_required,
        vec![Requirement::Level {
            min: Level::L3,
            count: 2
        }]
    );
    let after = carol
        .approve(c.id, &approve())
        .await
        .expect("carol approves");
    assert_eq!(
        after.state,
        ChangeState::PendingApproval,
        "one of two is not enough"
    );
    assert_eq!(
        after.approvals_required[0].progress(&after.approvals, &after.requested_by),
        "1 of 2 L3 approvals: carol"
    );
    api_error(carol.approve(c.id, &approve()).await, 409);
    api_error(bob.approve(c.id, &approve()).await, 403);
    erin.approve(c.id, &approve()).await.expect("erin approves");
    assert_eq!(settled(&alice, c.id).await.state, ChangeState::Executed);

    // The requester's own approval never counts, whatever their level.
    let own = create(
        &carol,
        &req("rotate-secrets", "CHG-1", "checkout", json!({})),
    )
    .await;
    assert_eq!(
        own.state,
        ChangeState::PendingApproval,
        "an L3 requester needs two others"
    );
    api_error(carol.approve(own.id, &approve()).await, 403);
    // One denial by an eligible reviewer ends it.
    let denied = erin
        .deny(own.id, &deny("not during the sale"))
        .await
        .expect("deny");
    assert_eq!(denied.state, ChangeState::Denied);

    // A stricter rule changed away: the pending change keeps its own, a new one gets the new.
    let kept = create(&alice, &req("rotate-secrets", "CHG-1", "search", json!({}))).await;
    srv.restart_configured(clock_at(TUESDAY_10), "").await;
    let carol = srv.client("carol");
    let still = carol.approve(kept.id, &approve()).await.expect("approve");
    assert_eq!(still.state, ChangeState::PendingApproval, "{still:?}");
    let fresh = create(
        &srv.client("alice"),
        &req("rotate-secrets", "CHG-1", "ads", json!({})),
    )
    .await;
    assert_eq!(
        fresh.approvals_required,
        vec![Requirement::Level {
            min: Level::L3,
            count: 1
        }]
    );
    carol.approve(fresh.id, &approve()).await.expect("approve");
    assert_eq!(settled(&carol, fresh.id).await.state, ChangeState::Executed);
}

#[test]
fn an_approval_rule_is_checked_when_the_configuration_loads() {
    use commandbridge::config::{DEFAULT_SERVER_TOML, ServerConfig};
    for (rule, says) in [
        (
            "[approvals.critical]\ncount = 6\nmin_level = \"L3\"\n",
            "approvals.critical.count",
        ),
        (
            "[approvals.low]\ncount = 1\nmin_level = \"L2\"\n",
            "approvals.low",
        ),
        ("[approvals.high]\ncount = 2\nmin_level = \"L9\"\n", "L9"),
        (
            "[approvals.high]\ncount = 1\nmin_level = \"observer\"\n",
            "observers approve nothing",
        ),
    ] {
        let err =
            ServerConfig::parse(&format!("{DEFAULT_SERVER_TOML}\n{rule}"), "test").expect_err(rule);
        assert!(err.to_string().contains(says), "{rule}: {err}");
    }
}
