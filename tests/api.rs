//! API tests over real HTTP: the real server on a random loopback port, driven by the real client
//! (and by raw requests where the client would never send such a thing).

mod support;

mod api {
    pub mod conformance;
}

use chrono::{Duration as ChronoDuration, Utc};
use commandbridge::client::ClientError;
use commandbridge::domain::api::{
    ApproveRequest, DenyRequest, Event, FreezeRequest, IncidentRequest, PauseRequest,
};
use commandbridge::domain::{ChangeState, Level, Priority, Requirement};
use commandbridge::server::clock::Clock;
use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use support::*;

fn approve() -> ApproveRequest {
    ApproveRequest::default()
}

fn deny(reason: &str) -> DenyRequest {
    DenyRequest {
        reason: reason.into(),
    }
}

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
    commandbridge::server::operators::revoke(srv.store(), "erin")
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
        vec![Requirement::Level { min: Level::L3 }]
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

// ---- 404 ------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_ids_and_routes_get_404() {
    let srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");

    let (error, message) = api_error(bob.change(424242).await, 404);
    assert_eq!(error, "not_found");
    assert!(message.contains("424242"), "{message}");
    api_error(bob.approve(424242, &approve()).await, 404);
    api_error(bob.deny(424242, &deny("no such thing")).await, 404);
    api_error(srv.client("carol").delete_freeze(424242).await, 404);

    for path in [
        "/api/v1/changes/abc",
        "/api/v1/changes/1.5",
        "/api/v1/nope",
        "/api/v2/changes",
        "/nope",
    ] {
        let resp = send(srv.raw_as("bob", Method::GET, path)).await;
        let body = resp.error(404);
        assert!(!body.message.is_empty(), "{path}");
    }
    let resp = send(
        srv.raw_as("bob", Method::POST, "/api/v1/changes/abc/approve")
            .json(&json!({})),
    )
    .await;
    resp.error(404);
}

#[tokio::test]
async fn wrong_methods_get_405_with_an_error_body() {
    let srv = TestServer::start(TUESDAY_10).await;
    for (method, path) in [
        (Method::PUT, "/api/v1/changes"),
        (Method::DELETE, "/api/v1/me"),
        (Method::PATCH, "/api/v1/changes/1"),
        (Method::GET, "/api/v1/changes/1/approve"),
        (Method::GET, "/api/v1/pause"),
    ] {
        let resp = send(srv.raw_as("bob", method.clone(), path)).await;
        assert_eq!(resp.status, 405, "{method} {path}");
        // Like every other error: {error, message}, not an empty body.
        if let Err(why) = resp.check_error_body() {
            panic!("{method} {path}: {why}");
        }
    }
}

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

// ---- 413 ------------------------------------------------------------------------------------

#[tokio::test]
async fn bodies_over_64_kib_get_413() {
    let srv = TestServer::start(TUESDAY_10).await;
    let pending = create(
        &srv.client("alice"),
        &req("record-high", "CHG-7000", "web", json!({})),
    )
    .await;

    let mut big = req("pull-logs", "CHG-7001", "web", json!({"lines": 1}));
    big.reason = "x".repeat(70 * 1024);
    let resp = send(
        srv.raw_as("bob", Method::POST, "/api/v1/changes")
            .json(&big),
    )
    .await;
    let body = resp.error(413);
    assert!(body.message.contains("64 KiB"), "{}", body.message);

    let approve_body = json!({ "comment": "y".repeat(70 * 1024) });
    let path = format!("/api/v1/changes/{}/approve", pending.id);
    send(srv.raw_as("bob", Method::POST, &path).json(&approve_body))
        .await
        .error(413);
    let path = format!("/api/v1/changes/{}/deny", pending.id);
    send(
        srv.raw_as("bob", Method::POST, &path)
            .json(&json!({ "reason": "z".repeat(70 * 1024) })),
    )
    .await
    .error(413);

    // Without a Content-Length (a streamed body) the limit holds too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..80)
        .map(|i| {
            Ok(if i == 0 {
                br#"{"action":"pull-logs","ticket":"CHG-1","target":"web","reason":""#.to_vec()
            } else {
                vec![b'x'; 1024]
            })
        })
        .collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let resp = send(
        srv.raw_as("bob", Method::POST, "/api/v1/changes")
            .header("content-type", "application/json")
            .body(streamed),
    )
    .await;
    resp.error(413);

    // Nothing of that was recorded, and the pending change is untouched.
    let bob = srv.client("bob");
    assert_eq!(bob.changes(None, None).await.expect("list").len(), 1);
    assert_eq!(
        bob.change(pending.id).await.expect("show").state,
        ChangeState::PendingApproval
    );
}

// ---- 422 ------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_input_gets_422_saying_what_to_fix() {
    let srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");
    let invalid = |r: Result<_, ClientError>| {
        let (error, message) = api_error(r, 422);
        assert_eq!(error, "invalid");
        message
    };

    let m = invalid(
        bob.create_change(&req("purge-cache", "TICKET-1", "web", json!({})), None)
            .await,
    );
    assert!(
        m.contains("INC-YYYY-MMDD-NNN") && m.contains("INC-NNN") && m.contains("CHG-"),
        "names the accepted formats: {m}"
    );
    let m = invalid(
        bob.create_change(
            &req("purge-cache", "INC-2026-0230-001", "web", json!({})),
            None,
        )
        .await,
    );
    assert!(m.contains("calendar date"), "{m}");
    invalid(
        bob.create_change(&req("purge-cache", "chg-1234", "web", json!({})), None)
            .await,
    );

    let m = invalid(
        bob.create_change(&req("purge-cache", "CHG-1", "Web Server!", json!({})), None)
            .await,
    );
    assert!(m.contains("target"), "{m}");
    invalid(
        bob.create_change(&req("purge-cache", "CHG-1", "", json!({})), None)
            .await,
    );
    invalid(
        bob.create_change(
            &req("purge-cache", "CHG-1", &"a".repeat(64), json!({})),
            None,
        )
        .await,
    );

    let m = invalid(
        bob.create_change(
            &req("blacklist-ip", "CHG-1", "edge", json!({"ip": "999.1.1.1"})),
            None,
        )
        .await,
    );
    assert!(m.contains("IP address"), "{m}");
    invalid(
        bob.create_change(
            &req(
                "blacklist-ip",
                "CHG-1",
                "edge",
                json!({"ip": "10.0.0.0/99"}),
            ),
            None,
        )
        .await,
    );
    invalid(
        bob.create_change(&req("blacklist-ip", "CHG-1", "edge", json!({})), None)
            .await,
    );

    let m = invalid(
        bob.create_change(
            &req("scale-service", "CHG-1", "web", json!({"replicas": 501})),
            None,
        )
        .await,
    );
    assert!(m.contains("from 0 to 500"), "{m}");
    invalid(
        bob.create_change(
            &req("scale-service", "CHG-1", "web", json!({"replicas": -1})),
            None,
        )
        .await,
    );
    invalid(
        bob.create_change(
            &req("scale-service", "CHG-1", "web", json!({"replicas": "many"})),
            None,
        )
        .await,
    );
    let m = invalid(
        bob.create_change(
            &req(
                "scale-service",
                "CHG-1",
                "web",
                json!({"replicas": 3, "force": true}),
            ),
            None,
        )
        .await,
    );
    assert!(m.contains("force"), "{m}");

    let m = invalid(
        bob.create_change(&req("reboot-everything", "CHG-1", "web", json!({})), None)
            .await,
    );
    assert!(
        m.contains("reboot-everything") && m.contains("scale-service"),
        "lists the catalog: {m}"
    );

    let mut no_reason = req("purge-cache", "CHG-1", "web", json!({}));
    no_reason.reason = "   ".into();
    let m = invalid(bob.create_change(&no_reason, None).await);
    assert!(m.contains("reason"), "{m}");
    // Preview checks the same input (a reason is optional there: forms preview as you type).
    let mut bad_ticket = no_reason.clone();
    bad_ticket.ticket = "TICKET-1".into();
    let (_, m) = api_error(bob.preview(&bad_ticket).await, 422);
    assert!(m.contains("INC-YYYY-MMDD-NNN"), "{m}");
    let mut bad_replicas = req("scale-service", "CHG-1", "web", json!({"replicas": 501}));
    bad_replicas.reason.clear();
    api_error(bob.preview(&bad_replicas).await, 422);

    // Raw bodies the client would never send.
    let raw = |body: &str| {
        srv.raw_as("bob", Method::POST, "/api/v1/changes")
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let m = send(raw(
        r#"{"action":"purge-cache","ticket":"CHG-1","target":"web"}"#,
    ))
    .await
    .error(422)
    .message;
    assert!(m.contains("reason"), "names the missing field: {m}");
    send(raw(r#"{"action":"purge-cache","ticket":"CHG-1","#))
        .await
        .error(422);
    send(raw("not json at all")).await.error(422);
    let m = send(raw(
        r#"{"action":"purge-cache","ticket":"CHG-1","target":"web","reason":"r","priority":"now"}"#,
    ))
    .await
    .error(422)
    .message;
    assert!(m.contains("priority"), "names the unknown field: {m}");
    send(raw(
        r#"{"action":7,"ticket":"CHG-1","target":"web","reason":"r"}"#,
    ))
    .await
    .error(422);

    // Deny needs a reason.
    let pending = create(
        &srv.client("alice"),
        &req("record-high", "CHG-1", "web", json!({})),
    )
    .await;
    let m = invalid(bob.deny(pending.id, &deny("  ")).await);
    assert!(m.contains("reason"), "{m}");
    let path = format!("/api/v1/changes/{}/deny", pending.id);
    send(srv.raw_as("bob", Method::POST, &path).json(&json!({})))
        .await
        .error(422);
    send(
        srv.raw_as("bob", Method::POST, &path)
            .header("content-type", "application/json")
            .body(""),
    )
    .await
    .error(422);
    // An approval with an unknown field is refused, and nothing was decided.
    let path = format!("/api/v1/changes/{}/approve", pending.id);
    send(
        srv.raw_as("bob", Method::POST, &path)
            .json(&json!({"comment": "ok", "force": true})),
    )
    .await
    .error(422);
    assert_eq!(
        bob.change(pending.id).await.expect("show").state,
        ChangeState::PendingApproval
    );

    // Nothing invalid was recorded.
    assert_eq!(bob.changes(None, None).await.expect("list").len(), 1);
    assert!(srv.runs().is_empty());
}

// ---- no 5xx, whatever arrives -----------------------------------------------------------------

/// A small deterministic generator, so a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

struct Case {
    method: Method,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Option<Vec<u8>>,
    /// Authenticate as carol (L3), so input checks run past the level checks.
    auth: bool,
}

fn case(method: Method, path: &str) -> Case {
    Case {
        method,
        path: path.to_string(),
        headers: Vec::new(),
        body: None,
        auth: true,
    }
}

fn json_case(path: &str, body: impl Into<Vec<u8>>) -> Case {
    let mut c = case(Method::POST, path);
    c.headers
        .push(("content-type", b"application/json".to_vec()));
    c.body = Some(body.into());
    c
}

fn with_header(mut c: Case, name: &'static str, value: impl Into<Vec<u8>>) -> Case {
    c.headers.push((name, value.into()));
    c
}

#[tokio::test]
async fn malformed_requests_never_get_a_5xx() {
    let srv = TestServer::start(TUESDAY_10).await;
    let pending = create(
        &srv.client("alice"),
        &req("record-high", "CHG-1", "web", json!({})),
    )
    .await;
    let id = pending.id;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let change = |params: &str| {
        format!(
            r#"{{"action":"scale-service","ticket":"CHG-1","target":"web","params":{params},"reason":"r"}}"#
        )
    };
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));

    let mut cases = Vec::new();
    for (path, n) in [
        ("/api/v1/changes", 6),
        ("/api/v1/changes/preview", 2),
        ("/api/v1/incidents", 2),
        ("/api/v1/freezes", 1),
        ("/api/v1/pause", 1),
    ] {
        for _ in 0..n {
            let len = 1 + (rng.next() % 3000) as usize;
            cases.push(json_case(path, rng.bytes(len)));
        }
    }
    for _ in 0..3 {
        let len = 1 + (rng.next() % 500) as usize;
        cases.push(json_case(
            &format!("/api/v1/changes/{id}/approve"),
            rng.bytes(len),
        ));
        cases.push(json_case(
            &format!("/api/v1/changes/{id}/deny"),
            rng.bytes(len),
        ));
    }
    // Huge numbers and wrong types where numbers belong.
    for params in [
        r#"{"replicas":1e400}"#,
        r#"{"replicas":99999999999999999999999}"#,
        r#"{"replicas":-9223372036854775809}"#,
        r#"{"replicas":1.5}"#,
        r#"{"replicas":"12abc"}"#,
        r#"{"replicas":true}"#,
        r#"{"replicas":null}"#,
        r#"{"replicas":{}}"#,
        r#"[1,2,3]"#,
        r#""replicas""#,
    ] {
        cases.push(json_case("/api/v1/changes", change(params)));
    }
    // Deep nesting.
    cases.push(json_case(
        "/api/v1/changes",
        change(&format!(r#"{{"replicas":{}}}"#, deep(5000))),
    ));
    cases.push(json_case("/api/v1/changes", deep(20000)));
    cases.push(json_case(
        "/api/v1/changes",
        format!("{}1{}", r#"{"a":"#.repeat(3000), "}".repeat(3000)),
    ));
    cases.push(json_case(
        &format!("/api/v1/changes/{id}/approve"),
        format!(r#"{{"comment":{}}}"#, deep(3000)),
    ));
    // Wrong shapes and types.
    for body in [
        "[]",
        "null",
        "123",
        r#""a string""#,
        r#"{"action":5,"ticket":"CHG-1","target":"web","reason":"r"}"#,
        r#"{"action":"scale-service","ticket":null,"target":"web","reason":"r"}"#,
        r#"{"action":"scale-service","ticket":"CHG-1","target":{},"reason":[]}"#,
        r#"{"action":"scale-service","ticket":"CHG-1","target":"wéb","params":{"replicas":1},"reason":"r"}"#,
        r#"{"action":"scale-service","ticket":"CHG-١٢٣","target":"web","params":{"replicas":1},"reason":"r"}"#,
        r#"{"action":"scale-service","ticket":"CHG-1","target":"web","params":{"replicas":1},"reason":"a\u0000b"}"#,
        "\u{feff}{}",
    ] {
        cases.push(json_case("/api/v1/changes", body));
    }
    for body in [
        r#"{"priority":"P0","title":"t","commander":"carol"}"#,
        r#"{"priority":1,"title":"t","commander":"carol"}"#,
        r#"{"priority":"P1","title":"t","commander":"ghost"}"#,
        r#"{"priority":"P1","title":"","commander":""}"#,
    ] {
        cases.push(json_case("/api/v1/incidents", body));
    }
    for body in [
        r#"{"name":"f","starts_at":"2027-02-02T00:00:00Z","ends_at":"2027-02-01T00:00:00Z"}"#,
        r#"{"name":"f","starts_at":"yesterday","ends_at":"2027-02-01T00:00:00Z"}"#,
        r#"{"name":"f","starts_at":"+262142-01-01T00:00:00Z","ends_at":"+262142-12-31T00:00:00Z"}"#,
        r#"{"name":"","starts_at":"2027-02-01T00:00:00Z","ends_at":"2027-02-02T00:00:00Z"}"#,
    ] {
        cases.push(json_case("/api/v1/freezes", body));
    }
    // Query strings.
    for path in [
        "/api/v1/changes?state=bogus",
        "/api/v1/changes?limit=0",
        "/api/v1/changes?limit=99999999999999999999",
        "/api/v1/changes?limit=abc&foo=1",
        "/api/v1/audit?after=abc",
        "/api/v1/audit?after=-5&limit=1001",
        "/api/v1/audit?after=9223372036854775807",
        "/api/v1/windows?from=garbage",
        "/api/v1/windows?from=2026-01-01T00:00:00Z&to=2025-01-01T00:00:00Z",
        "/api/v1/windows?from=2026-01-01T00:00:00Z&to=2029-01-01T00:00:00Z",
        "/api/v1/windows?from=%2B262143-12-30T00:00:00Z",
        "/api/v1/windows?from=%2B262142-12-30T00:00:00Z",
        "/api/v1/windows?from=%2B262142-12-20T00:00:00Z&to=%2B262142-12-31T23:59:59Z",
        "/api/v1/windows?from=-262143-01-01T00:00:00Z&to=-262143-01-05T00:00:00Z",
        "/api/v1/windows?from=%FF%FE",
        "/api/v1/events?backlog=-1",
        "/api/v1/events?backlog=abc",
        "/api/v1/events?backlog=99999999999999999999",
        "/api/v1/events?follow=1",
    ] {
        cases.push(case(Method::GET, path));
    }
    // Paths.
    for path in [
        "/api/v1/changes/-1",
        "/api/v1/changes/99999999999999999999",
        "/api/v1/changes/%FF%00",
        "/api/v1/changes/1/approve/extra",
        "/api/v1//changes",
        "/api/v1/changes/0x10",
        "/api/v1/changes/1%2F2",
        "/api/v1/../../etc/passwd",
    ] {
        cases.push(case(Method::GET, path));
    }
    cases.push(case(Method::DELETE, "/api/v1/freezes/abc"));
    cases.push(case(Method::DELETE, "/api/v1/freezes/-7"));
    cases.push(json_case(
        "/api/v1/changes/99999999999999999999/approve",
        "{}",
    ));
    // Headers.
    for auth in [
        &b"Bearer"[..],
        b"Bearer     ",
        b"Basic Zm9vOmJhcg==",
        b"Bearer \xff\xfe",
        b"bearer x",
    ] {
        let mut c = case(Method::GET, "/api/v1/me");
        c.auth = false;
        cases.push(with_header(c, "authorization", auth));
    }
    let valid = change(r#"{"replicas":2}"#);
    for key in [
        "k".repeat(300).into_bytes(),
        b"\xff\xfe".to_vec(),
        b"   ".to_vec(),
    ] {
        cases.push(with_header(
            json_case("/api/v1/changes", valid.clone()),
            "idempotency-key",
            key,
        ));
    }
    let mut text_plain = case(Method::POST, "/api/v1/changes");
    text_plain
        .headers
        .push(("content-type", b"text/plain".to_vec()));
    text_plain.body = Some(valid.clone().into_bytes());
    cases.push(text_plain);
    let mut no_type = case(Method::POST, "/api/v1/changes");
    no_type.body = Some(valid.clone().into_bytes());
    cases.push(no_type);
    for last in [
        &b"-1"[..],
        b"abc",
        b"1e3",
        b"99999999999999999999",
        b"\xff",
        b"",
        b" 0x1 ",
    ] {
        cases.push(with_header(
            case(Method::GET, "/api/v1/events"),
            "last-event-id",
            last,
        ));
    }
    // A valid but far-future Last-Event-ID is a stream that waits for events.
    cases.push(with_header(
        case(Method::GET, "/api/v1/events"),
        "last-event-id",
        &b"9223372036854775807"[..],
    ));
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let mut rb = srv.raw(c.method.clone(), &c.path);
        if c.auth {
            rb = rb.bearer_auth(srv.token("carol"));
        }
        for (name, value) in &c.headers {
            let value = reqwest::header::HeaderValue::from_bytes(value).expect("a header value");
            rb = rb.header(*name, value);
        }
        if let Some(body) = &c.body {
            rb = rb.body(body.clone());
        }
        let what = format!(
            "{} {} {:?} body {:?}",
            c.method,
            c.path,
            c.headers
                .iter()
                .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>(),
            c.body
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned())
        );
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{what}: no answer ({e})"));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if content_type.starts_with("text/event-stream") {
            // An open stream: nothing more to read.
            if status != 200 {
                failures.push(format!("{what}: event stream with status {status}"));
            }
            continue;
        }
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        let raw = RawResponse {
            status,
            content_type,
            body,
        };
        if status >= 500 {
            failures.push(format!("{what}: {status} {}", raw.text()));
        } else if status >= 400
            && let Err(why) = raw.check_error_body()
        {
            failures.push(format!("{what}: {why}"));
        }
    }
    // The server is still answering afterwards.
    let health = srv.client("bob").health().await.expect("still up");
    assert_eq!(health.status, "ok");
    assert_eq!(
        srv.metric("commandbridge_http_responses_5xx_total").await,
        0.0
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
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
        vec![Requirement::Level { min: Level::L2 }]
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

// ---- verification clock --------------------------------------------------------------------------

#[tokio::test]
async fn executed_changes_open_a_fifteen_minute_verification() {
    let srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");

    let medium = create(&bob, &req("record-medium", "CHG-1234", "search", json!({}))).await;
    assert_eq!(medium.state, ChangeState::Executed);
    let finished = medium.output.as_ref().expect("output").finished_at;
    let logs = create(
        &bob,
        &req("pull-logs", "CHG-1234", "search", json!({"lines": 100})),
    )
    .await;
    assert_eq!(logs.state, ChangeState::Executed);
    let failed = create(&bob, &req("fail-medium", "CHG-1234", "search", json!({}))).await;
    assert_eq!(settled(&bob, failed.id).await.state, ChangeState::Failed);

    let vs = bob.verifications().await.expect("verifications");
    assert_eq!(
        vs.len(),
        1,
        "only the executed medium change is watched: {vs:?}"
    );
    let v = &vs[0];
    assert_eq!(v.change_id, medium.id);
    assert_eq!(v.target, "search");
    assert_eq!(v.state.as_str(), "watching");
    // Stored to the millisecond.
    let expected = finished + ChronoDuration::minutes(15);
    let off = (v.deadline - expected)
        .num_microseconds()
        .expect("small")
        .abs();
    assert!(
        off < 1000,
        "deadline {} vs executed_at + 15 min {}",
        v.deadline,
        expected
    );
    // The clock is the server's (pinned) clock, not the wall clock.
    assert!(
        (v.deadline - at("2026-11-24T10:15:00Z"))
            .num_seconds()
            .abs()
            < 60,
        "{}",
        v.deadline
    );

    let audit = bob.audit(None, Some(1000)).await.expect("audit");
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.kind == "verification.started")
            .count(),
        1
    );
}

// ---- SSE -------------------------------------------------------------------------------------

type Events = futures::stream::BoxStream<'static, Result<Event, ClientError>>;

/// The next event, within 2 s. A `stream.ready` greeting (a marker of where the stream starts,
/// not an event of its own) is skipped.
async fn next(stream: &mut Events) -> Event {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(2), stream.next())
            .await
            .expect("an event within 2 s")
            .expect("the stream is open")
            .expect("a valid event");
        if e.kind != "stream.ready" {
            return e;
        }
    }
}

#[tokio::test]
async fn events_arrive_live_and_a_reconnect_replays_exactly_the_missed_ones() {
    let srv = TestServer::start(TUESDAY_10).await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));

    let mut stream = bob.events(None);
    // The stream connects when first polled; wait until the server has registered it, so the
    // change below happens after it started listening.
    let mut pending_first = Box::pin(next(&mut stream));
    let connected = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if srv.metric("commandbridge_sse_connections_total").await >= 1.0 {
                return;
            }
            tokio::select! {
                _ = &mut pending_first => panic!("an event arrived before any change"),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    connected.expect("the event stream connects");

    let c1 = create(&alice, &req("record-high", "CHG-1", "svc-1", json!({}))).await;
    let e = pending_first.await;
    assert_eq!(e.kind, "change.requested");
    assert_eq!(e.data["id"], c1.id);
    assert_eq!(e.actor, "alice");
    let mut last = e.seq;

    let c2 = create(&alice, &req("record-high", "CHG-1", "svc-2", json!({}))).await;
    let e = next(&mut stream).await;
    assert_eq!(
        (e.kind.as_str(), e.data["id"].as_i64()),
        ("change.requested", Some(c2.id))
    );
    assert_eq!(e.seq, last + 1);
    last = e.seq;
    drop(stream);

    // While disconnected: a request, an approval that executes, a low-risk run, a denial.
    let c3 = create(&alice, &req("record-high", "CHG-1", "svc-3", json!({}))).await;
    let approved = bob.approve(c1.id, &approve()).await.expect("approve");
    assert_eq!(approved.state, ChangeState::Executed);
    let logs = create(
        &alice,
        &req("pull-logs", "CHG-1", "svc-4", json!({"lines": 3})),
    )
    .await;
    bob.deny(c2.id, &deny("not now")).await.expect("deny");
    let missed = [
        ("change.requested", c3.id),
        ("change.approved", c1.id),
        ("change.executed", c1.id),
        ("verification.started", c1.id),
        ("change.requested", logs.id),
        ("change.executed", logs.id),
        ("change.denied", c2.id),
    ];

    let mut stream = bob.events(Some(last));
    let mut got = Vec::new();
    for _ in 0..missed.len() {
        let e = next(&mut stream).await;
        assert_eq!(
            e.seq,
            last + 1,
            "no gap, no duplicate: {} after {last}",
            e.seq
        );
        last = e.seq;
        let id = e
            .data
            .get("change_id")
            .or_else(|| e.data.get("id"))
            .and_then(|v| v.as_i64());
        got.push((e.kind.clone(), id.expect("the event names its change")));
    }
    let want: Vec<(String, i64)> = missed.iter().map(|(k, id)| (k.to_string(), *id)).collect();
    assert_eq!(got, want, "exactly the missed events, in order");
    // Nothing else is queued ...
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err(),
        "no extra events after the replay"
    );
    // ... and live events follow the replay.
    let c5 = create(&alice, &req("record-high", "CHG-1", "svc-5", json!({}))).await;
    let e = next(&mut stream).await;
    assert_eq!(
        (e.kind.as_str(), e.data["id"].as_i64()),
        ("change.requested", Some(c5.id))
    );
    assert_eq!(e.seq, last + 1);
    assert_eq!(
        srv.metric("commandbridge_last_event_seq").await as i64,
        e.seq
    );

    // Replaying from 0 starts at the first event ever.
    let mut all = bob.events(Some(0));
    assert_eq!(next(&mut all).await.seq, 1);
}

#[tokio::test]
async fn stopping_the_server_does_not_wait_for_open_event_streams() {
    let mut srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");
    let mut stream = bob.events(Some(0));
    assert_eq!(next(&mut stream).await.seq, 1);
    // A dashboard left open must not keep the server from shutting down (SIGTERM, Ctrl-C).
    let running = srv.take_running();
    let stopped = tokio::time::timeout(Duration::from_secs(5), running.stop()).await;
    assert!(
        stopped.is_ok(),
        "Running::stop hung for 5 s while an event stream was open"
    );
    drop(stream);
}

// ---- audit verify through the real binary ---------------------------------------------------------

async fn audit_verify(db: &std::path::Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_commandbridge"))
        .args(["audit", "verify", "--database"])
        .arg(format!("sqlite://{}", db.display()))
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run commandbridge audit verify")
}

/// Copies the database (and any WAL beside it) so each tampering starts from the same log.
fn copy_db(from: &std::path::Path, to: &std::path::Path) {
    std::fs::copy(from, to).expect("copy the database");
    for suffix in ["-wal", "-shm"] {
        let side = std::path::PathBuf::from(format!("{}{suffix}", from.display()));
        if side.exists() {
            std::fs::copy(&side, format!("{}{suffix}", to.display())).expect("copy the WAL");
        }
    }
}

async fn tamper(db: &std::path::Path, statements: &[&str]) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the copy");
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(*s))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    conn.close().await.expect("close");
}

#[tokio::test]
async fn audit_verify_catches_altered_and_deleted_entries() {
    let mut srv = TestServer::start(TUESDAY_10).await;
    let (alice, bob, carol) = (srv.client("alice"), srv.client("bob"), srv.client("carol"));
    let c = create(&alice, &req("record-high", "CHG-1", "web", json!({}))).await;
    bob.approve(c.id, &approve()).await.expect("approve");
    let d = create(&alice, &req("rotate-secrets", "CHG-1", "web", json!({}))).await;
    carol
        .deny(d.id, &deny("not this week"))
        .await
        .expect("deny");
    create(&bob, &req("pull-logs", "CHG-1", "web", json!({"lines": 1}))).await;
    let entries = bob.audit(None, Some(1000)).await.expect("audit");
    let n = entries.len() as i64;
    assert!(n >= 12, "{n} entries");
    assert_eq!(entries.last().expect("entries").seq, n);

    // While the server runs: intact.
    let out = audit_verify(&srv.db_path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("intact") && stdout.contains(&format!("{n} entries")),
        "{stdout}"
    );

    srv.stop().await;
    let dir = srv.dir.path();

    // An altered detail.
    let altered = dir.join("altered.db");
    copy_db(&srv.db_path(), &altered);
    tamper(
        &altered,
        &[
            "DROP TRIGGER audit_log_no_update",
            r#"UPDATE audit_log SET detail = '{"approved":false}' WHERE seq = 7"#,
        ],
    )
    .await;
    let out = audit_verify(&altered).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an altered entry passed");
    assert!(stderr.contains("entry 7"), "names the entry: {stderr}");
    assert!(stderr.contains("altered"), "{stderr}");

    // An altered entry whose own hash was recomputed: the next entry no longer follows it.
    let rehashed = dir.join("rehashed.db");
    copy_db(&srv.db_path(), &rehashed);
    let e = &entries[4];
    let forged_detail = r#"{"forged":true}"#;
    let forged_hash = commandbridge::server::store::audit_hash(
        e.seq,
        e.at.timestamp_millis(),
        &e.actor,
        &e.kind,
        &e.subject,
        forged_detail,
        &e.prev_hash,
    );
    let update = format!(
        "UPDATE audit_log SET detail = '{forged_detail}', hash = '{forged_hash}' WHERE seq = {}",
        e.seq
    );
    tamper(&rehashed, &["DROP TRIGGER audit_log_no_update", &update]).await;
    let out = audit_verify(&rehashed).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a re-hashed entry passed");
    assert!(stderr.contains(&format!("entry {}", e.seq + 1)), "{stderr}");

    // A deleted entry in the middle.
    let middle = dir.join("middle.db");
    copy_db(&srv.db_path(), &middle);
    tamper(
        &middle,
        &[
            "DROP TRIGGER audit_log_no_delete",
            "DELETE FROM audit_log WHERE seq = 5",
        ],
    )
    .await;
    let out = audit_verify(&middle).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a deleted entry passed");
    assert!(
        stderr.contains("entry 5") && stderr.contains("missing"),
        "{stderr}"
    );

    // The newest entry deleted.
    let newest = dir.join("newest.db");
    copy_db(&srv.db_path(), &newest);
    tamper(
        &newest,
        &[
            "DROP TRIGGER audit_log_no_delete",
            "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)",
        ],
    )
    .await;
    let out = audit_verify(&newest).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "deleting the newest entry passed");
    assert!(stderr.contains(&format!("entry {n}")), "{stderr}");

    // The untouched original still verifies.
    let out = audit_verify(&srv.db_path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- restarts ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_restart_fails_interrupted_changes_without_rerunning_and_keeps_verifications() {
    let mut srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");

    let quick = create(&bob, &req("record-medium", "CHG-1", "quick", json!({}))).await;
    assert_eq!(quick.state, ChangeState::Executed);
    let before = bob.verifications().await.expect("verifications");
    assert_eq!(before.len(), 1);

    // A command still running when the create call stops waiting: the change is `executing`.
    let slow = create(&bob, &req("slow-medium", "CHG-1", "slow", json!({}))).await;
    assert_eq!(slow.state, ChangeState::Executing);
    assert_eq!(srv.runs_of("slow"), 1, "the command started");

    srv.restart(clock_at("2026-11-24T10:00:05Z")).await;
    let bob = srv.client("bob");
    let after = bob.change(slow.id).await.expect("show");
    assert_eq!(after.state, ChangeState::Failed, "{after:?}");
    assert_eq!(
        after.outcome_reason.as_deref(),
        Some("interrupted by a server restart")
    );
    let output = after.output.expect("the failure is explained");
    assert!(output.stderr.contains("not run again"), "{}", output.stderr);
    // Nothing starts it again, now or a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(srv.runs_of("slow"), 1, "never run twice");
    assert_eq!(
        bob.change(slow.id).await.expect("show").state,
        ChangeState::Failed
    );
    api_error(srv.client("carol").approve(slow.id, &approve()).await, 409);

    // The verification clock survived, with the same deadline.
    let clocks = |list: &[commandbridge::domain::verification::Verification]| {
        list.iter()
            .map(|v| (v.id, v.change_id, v.started_at, v.deadline, v.state))
            .collect::<Vec<_>>()
    };
    let survived = bob.verifications().await.expect("verifications");
    assert_eq!(clocks(&survived), clocks(&before));
    // Events from before the restart are still there to replay.
    let mut all = bob.events(Some(0));
    assert_eq!(next(&mut all).await.seq, 1);
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

// ---- OpenAPI, metrics, health ----------------------------------------------------------------------

#[tokio::test]
async fn openapi_metrics_and_health_describe_the_server() {
    let srv = TestServer::start(TUESDAY_10).await;

    let doc = send(srv.raw(Method::GET, "/api/v1/openapi.json")).await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let served: &[(&str, &[&str])] = &[
        ("/api/v1/me", &["get"]),
        ("/api/v1/actions", &["get"]),
        ("/api/v1/changes", &["get", "post"]),
        ("/api/v1/changes/preview", &["post"]),
        ("/api/v1/changes/{id}", &["get"]),
        ("/api/v1/changes/{id}/approve", &["post"]),
        ("/api/v1/changes/{id}/deny", &["post"]),
        ("/api/v1/windows", &["get"]),
        ("/api/v1/windows/current", &["get"]),
        ("/api/v1/freezes", &["post"]),
        ("/api/v1/freezes/{id}", &["delete"]),
        ("/api/v1/pause", &["post", "delete"]),
        ("/api/v1/incidents", &["get", "post"]),
        ("/api/v1/audit", &["get"]),
        ("/api/v1/events", &["get"]),
        ("/api/v1/verifications", &["get"]),
        ("/healthz", &["get"]),
    ];
    for (path, methods) in served {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for m in *methods {
            assert!(item.get(*m).is_some(), "{m} {path} is not documented");
        }
    }
    // And everything documented is served: no documented route falls through to "no route".
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            if !["GET", "POST", "DELETE", "PUT", "PATCH"].contains(&m.as_str()) {
                continue;
            }
            let concrete = path.replace("{id}", "1");
            let mut rb = srv.raw_as("alice", m.clone(), &concrete);
            if m == Method::POST {
                rb = rb.json(&json!({}));
            }
            // Event streams stay open: only the status matters.
            let resp = send(rb).await;
            let no_route = resp.status == 404 && resp.text().contains("no route");
            assert!(
                !no_route && resp.status != 405,
                "{m} {path} is documented but not served: {}",
                resp.status
            );
        }
    }
    assert!(!paths.contains_key("/api/v1/nope"));

    // Prometheus text format.
    send(srv.raw_as("bob", Method::GET, "/api/v1/nope")).await;
    let metrics = send(srv.raw(Method::GET, "/metrics")).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.content_type.starts_with("text/plain"),
        "{}",
        metrics.content_type
    );
    let text = metrics.text();
    let mut samples = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let bare = name.split('{').next().expect("name");
        assert!(
            bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !bare.is_empty(),
            "metric name {bare:?}"
        );
        assert!(
            text.contains(&format!("# TYPE {bare} ")),
            "{bare} has no TYPE"
        );
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        samples += 1;
    }
    assert!(samples >= 5, "{text}");
    assert!(srv.metric("commandbridge_http_responses_4xx_total").await >= 1.0);
    assert_eq!(srv.metric("commandbridge_changes_pending").await, 0.0);
    create(
        &srv.client("alice"),
        &req("record-high", "CHG-1", "web", json!({})),
    )
    .await;
    assert_eq!(srv.metric("commandbridge_changes_pending").await, 1.0);
    assert_eq!(
        srv.metric("commandbridge_changes_requested_total").await,
        1.0
    );

    // Health: up, and honest about the pinned clock.
    let health = srv.client("bob").health().await.expect("health");
    assert_eq!(health.status, "ok");
    assert!(health.simulated_clock);
    assert!(
        (health.now - at(TUESDAY_10)).num_seconds().abs() < 30,
        "{}",
        health.now
    );

    let real = TestServer::start_with_clock(Clock::real()).await;
    let health = real.client("bob").health().await.expect("health");
    assert!(!health.simulated_clock);
    assert!((health.now - Utc::now()).num_seconds().abs() < 5);
}
