//! Who may do what: tokens (401) and levels and own changes (403).

use crate::support::*;
use commandbridge::domain::api::{FreezeRequest, PauseRequest};
use commandbridge::domain::{ChangeState, Level, Requirement};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

// ---- 401 ------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_unknown_and_revoked_tokens_get_401() {
    let srv = TestServer::start(TUESDAY_10).await;

    // No Authorization header at all.
    let resp = send(srv.raw(Method::GET, "/api/v1/me")).await;
    let body = resp.error(401);
    assert!(body.message.contains("Authorization"), "{}", body.message);

    // Not a bearer token.
    let resp = send(
        srv.raw(Method::GET, "/api/v1/changes")
            .header("Authorization", "Basic YTpi"),
    )
    .await;
    resp.error(401);

    // A well-formed token nobody was given.
    let stranger = srv.client_with_token(&format!("cb_{}", "0".repeat(64)));
    api_error(stranger.me().await, 401);
    api_error(stranger.changes(None, None).await, 401);

    // A token that worked until it was revoked.
    let mut srv = srv;
    let erin = srv.add_operator("erin", Level::L2).await;
    assert_eq!(erin.me().await.expect("erin's token works").name, "erin");
    commandbridge::server::users::revoke(srv.store(), "erin")
        .await
        .expect("revoke erin");
    // A checked token is trusted for TOKEN_CACHE_TTL; the revocation holds after that.
    tokio::time::sleep(commandbridge::server::auth::TOKEN_CACHE_TTL + Duration::from_millis(100))
        .await;
    let (_, message) = api_error(erin.me().await, 401);
    assert!(message.contains("revoked"), "{message}");
    // Every route behind the token refuses it, including the event stream.
    let resp = send(srv.raw_as("erin", Method::GET, "/api/v1/events")).await;
    resp.error(401);
    let resp = send(
        srv.raw_as("erin", Method::POST, "/api/v1/changes")
            .json(&req("pull-logs", "CHG-1", "web", json!({"lines": 10}))),
    )
    .await;
    resp.error(401);
}

// ---- 403 ------------------------------------------------------------------------------------

#[tokio::test]
async fn level_and_own_change_violations_get_403() {
    let srv = TestServer::start(TUESDAY_10).await;
    let (alice, bob, carol) = (srv.client("alice"), srv.client("bob"), srv.client("carol"));

    // A critical change by an L2 needs an L3: an L1 (or another L2) may not approve it.
    let critical = create(
        &bob,
        &req("rotate-secrets", "CHG-2001", "payments", json!({})),
    )
    .await;
    assert_eq!(critical.state, ChangeState::PendingApproval);
    assert_eq!(
        critical.approvals_required,
        vec![Requirement::Level {
            min: Level::L3,
            count: 1
        }]
    );
    let (error, message) = api_error(alice.approve(critical.id, &approve()).await, 403);
    assert_eq!(error, "forbidden");
    assert!(message.contains("L3"), "says who can approve: {message}");
    api_error(
        srv.client("dave").approve(critical.id, &approve()).await,
        403,
    );

    // The requester never approves their own change.
    let (_, message) = api_error(bob.approve(critical.id, &approve()).await, 403);
    assert!(
        message.contains("your own") || message.contains("you requested"),
        "{message}"
    );
    // An L1 may not deny what it could not approve either.
    api_error(alice.deny(critical.id, &deny("no")).await, 403);
    // None of that changed anything.
    let still = bob.change(critical.id).await.expect("show");
    assert_eq!(still.state, ChangeState::PendingApproval);
    assert!(still.approvals.is_empty());

    // Freezes are L3 business; pauses L2 and up.
    let freeze = FreezeRequest {
        name: "test freeze".into(),
        starts_at: at("2027-06-01T00:00:00Z"),
        ends_at: at("2027-06-02T00:00:00Z"),
    };
    let (_, message) = api_error(alice.create_freeze(&freeze).await, 403);
    assert!(message.contains("L3"), "{message}");
    api_error(bob.create_freeze(&freeze).await, 403);
    let made = carol
        .create_freeze(&freeze)
        .await
        .expect("an L3 announces a freeze");
    let id = made.id.expect("an API freeze has an id");
    api_error(bob.delete_freeze(id).await, 403);
    carol.delete_freeze(id).await.expect("an L3 removes it");

    let pause = PauseRequest {
        reason: "incident".into(),
    };
    let (_, message) = api_error(alice.pause(&pause).await, 403);
    assert!(message.contains("L2"), "{message}");
    assert!(
        alice
            .current_window()
            .await
            .expect("window")
            .pause
            .is_none()
    );
    api_error(alice.resume().await, 403);

    // Finally the right approver runs it.
    let done = carol
        .approve(critical.id, &approve())
        .await
        .expect("L3 approves");
    assert_eq!(done.state, ChangeState::Executed);
}
